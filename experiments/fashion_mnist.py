"""SmartMixed beyond MLPs and MNIST: a CNN with per-channel selection on Fashion-MNIST.

    python experiments/fashion_mnist.py                      # CNN + MLP study, ~15 min on 2 cores
    python experiments/fashion_mnist.py --seeds 0 1 --cnn-epochs 2 2
    python experiments/fashion_mnist.py --smoke --out /tmp/fm   # 1 seed, 1+1 epochs on 512 examples (CI)

Part 1: a small CNN whose every conv/dense activation is a ``MixedActivation``
(Phase 1), frozen with ``smartmixed_jax.nnx.freeze`` and trained on (Phase 2),
against the same CNN with relu for the same total epochs, over several seeds.
Part 2: the paper's MLP study (SmartMixed and the six fixed activations) on
Fashion-MNIST for two of its architectures, each trained as two cohorts through
``smartmixed_jax.engine`` (SmartMixed's seeds; the baselines of every seed).
Writes REPORT.md, results.json and
per-layer activation plots to experiments/results/fashion_mnist/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import jax
from flax import nnx

import smartmixed_jax as sm
import smartmixed_jax.nnx as snx
from smartmixed_jax import app, engine
from smartmixed_jax.artifacts import plot_activation_shares

OUT = Path(__file__).parent / "results" / "fashion_mnist"


def make_cnn(seed: int, mixed: bool) -> nnx.Sequential:
  rngs = nnx.Rngs(params=seed, gumbel=seed + 1)
  act = (lambda n: snx.MixedActivation(n, rngs=rngs)) if mixed else (lambda n: nnx.relu)
  return nnx.Sequential(
    lambda x: x.reshape(*x.shape[:-1], 28, 28, 1),
    nnx.Conv(1, 16, (3, 3), strides=2, rngs=rngs), act(16),
    nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs), act(32),
    lambda x: x.reshape(*x.shape[:-3], -1),
    nnx.Linear(7 * 7 * 32, 128, rngs=rngs), act(128),
    nnx.Linear(128, 10, rngs=rngs),
  )  # fmt: skip


def train(model: nnx.Module, data: app.Dataset, epochs: int, key: jax.Array, label: str) -> dict:
  """Adam 1e-3 (cosine), batch 128, through ``sm.fit``; keeps the lowest-validation-loss epoch."""
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  model.eval()
  eval_graphdef = nnx.split(model, nnx.Param, ...)[0]

  def apply(graphdef):
    def forward(params, x, key, step):
      # The batch's key feeds the Gumbel draws (call-time rngs): the forward pass stays pure.
      return nnx.merge(graphdef, params, rest)(x, rngs=nnx.Rngs(gumbel=key))

    return forward

  steps = -(-len(data.train.y) // 128)
  result = sm.fit(
    params, apply=apply(graphdef), eval_apply=apply(eval_graphdef), splits=app.device_splits(data),
    # The logits at the weights' rate, as the committed runs were trained (before the default changed).
    optimizer=sm.make_optimizer(1e-3, 1.0, decay_steps=epochs * steps, logits_scale=1.0),
    epochs=epochs, key=key, batch_size=128, eval_batch_size=1000, name=label,
  )  # fmt: skip
  nnx.update(model, result.best_params)
  return result.record().to_json()


def channel_counts(model: nnx.Module) -> list[dict[str, int]]:
  return [{k: v for k, v in layer.items() if v} for layer in snx.counts(model)]


def run_cnn(data, seeds, epochs1, epochs2):
  runs = []
  for seed in seeds:
    key = jax.random.key(seed)
    mixed = make_cnn(seed, mixed=True)
    phase1 = train(mixed, data, epochs1, jax.random.fold_in(key, 1), f"seed {seed} smartmixed phase1")
    mixed.eval()
    frozen = snx.freeze(mixed)
    phase2 = train(frozen, data, epochs2, jax.random.fold_in(key, 2), f"seed {seed} smartmixed phase2")
    relu = train(make_cnn(seed, mixed=False), data, epochs1 + epochs2, jax.random.fold_in(key, 2),
                 f"seed {seed} relu")  # fmt: skip
    runs.append(
      {"seed": seed, "phase1": phase1, "phase2": phase2, "relu": relu, "counts": channel_counts(frozen)}
    )
  return runs


def run_mlps(data, archs, seeds, epochs1, epochs2):
  """Per architecture, SmartMixed's seeds as one cohort and the six baselines of every seed as another."""
  rows, names = [], sm.pool_names(sm.DEFAULT_POOL)
  splits = app.device_splits(data)
  final = ("val_accuracy", "test_accuracy", "val_loss", "test_loss")
  for arch in archs:
    # The logits at the weights' rate, as the committed runs were trained (before the default changed).
    config = app.make_config(
      arch, "recommended", phase1_epochs=epochs1, phase2_epochs=epochs2, logits_lr_scale=1.0
    )
    smart = engine.two_phase(config, splits, seeds=seeds, progress=False)
    pairs = [(act, seed) for seed in seeds for act in names]
    fixed = engine.baselines(config, splits, pairs=pairs, progress=False)
    for i, seed in enumerate(seeds):
      records = [engine.record(dataclasses.replace(config, seed=seed), smart, i)]
      records += [
        engine.record(dataclasses.replace(config, seed=seed, baseline=act), fixed, pairs.index((act, seed)))
        for act in names
      ]
      for record in records:
        counts = record.activation_counts if record.model == "smartmixed" else None
        rows.append({"arch": arch, "seed": seed, "model": record.model,
                     **{k: getattr(record.final, k) for k in final}, "counts": counts})  # fmt: skip
        print(f"  mlp {arch} seed {seed} {record.model}: test {record.final.test_accuracy:.4f}", flush=True)
  return rows


def mean_std(values):
  if len(values) == 1:
    return f"{100 * values[0]:.2f} (n = 1)"
  return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def report(cnn, mlps, args) -> str:
  lines = ["# SmartMixed on Fashion-MNIST", "",
           f"Command: `python experiments/fashion_mnist.py --seeds {' '.join(map(str, args.seeds))}"
           f" --cnn-epochs {args.cnn_epochs[0]} {args.cnn_epochs[1]} --mlp-epochs {args.mlp_epochs[0]}"
           f" {args.mlp_epochs[1]}`", "",
           "Accuracy (%) at the epoch with the lowest validation loss, mean ± std over seeds"
           " (54k/6k/10k split, Adam 1e-3 with cosine decay over each phase, batch 128). A short"
           " CPU budget: the numbers compare models at equal epochs, not at convergence.", "",
           "## CNN: per-channel activation selection vs relu", "",
           "| model | epochs | val acc | test acc | train time (s) |", "|---|---|---|---|---|"]  # fmt: skip
  e1, e2 = args.cnn_epochs
  rows = (
    ("phase1", "SmartMixed Phase 1", e1),
    ("phase2", "SmartMixed Phase 2 (frozen)", e2),
    ("relu", "relu CNN", e1 + e2),
  )
  for key, name, epochs in rows:
    val = [r[key]["best"]["val_accuracy"] for r in cnn]
    test = [r[key]["best"]["test_accuracy"] for r in cnn]
    secs = statistics.mean(r[key]["seconds"] for r in cnn)
    lines.append(f"| {name} | {epochs} | {mean_std(val)} | {mean_std(test)} | {secs:.0f} |")
  diff = [r["phase2"]["best"]["test_accuracy"] - r["relu"]["best"]["test_accuracy"] for r in cnn]
  spread = statistics.stdev(diff) if len(diff) > 1 else float("nan")
  lines += ["", f"SmartMixed (Phase 2) minus relu, test: {100 * statistics.mean(diff):+.2f} points"
            f" (std over seeds {100 * spread:.2f}; n = {len(diff)})."
            + (" Within the seed spread." if abs(statistics.mean(diff)) <= spread else ""), "",
            "Channels per activation after freezing (seed " + str(cnn[0]["seed"]) + "):", ""]  # fmt: skip
  for i, c in enumerate(cnn[0]["counts"]):
    lines.append(f"- layer {i + 1}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
  lines += ["", "![CNN activation shares](cnn_activation_shares.png)", "", "## MLPs (the paper's study)", "",
            "| architecture | " + " | ".join(["smartmixed", *sm.DEFAULT_POOL]) + " |",
            "|---" * (len(sm.DEFAULT_POOL) + 2) + "|"]  # fmt: skip
  for arch in args.archs:
    cells = []
    for model in ("smartmixed", *sm.DEFAULT_POOL):
      cells.append(mean_std([r["test_accuracy"] for r in mlps if r["arch"] == arch and r["model"] == model]))
    lines.append(f"| {arch} | " + " | ".join(cells) + " |")
  lines += ["", *[f"![{a} activation shares](mlp_{a}_activation_shares.png)" for a in args.archs], ""]
  return "\n".join(lines)


def rewrite_report(out: Path = OUT) -> None:
  """Regenerates REPORT.md from a finished run's results.json."""
  saved = json.loads((out / "results.json").read_text())
  (out / "REPORT.md").write_text(report(saved["cnn"], saved["mlp"], argparse.Namespace(**saved["args"])))


def subset(data: app.Dataset, n: int) -> app.Dataset:
  """The first ``n`` examples of every split."""
  cut = lambda split: app.Split(split.x[:n], split.y[:n])  # noqa: E731
  return app.Dataset(cut(data.train), cut(data.validation), cut(data.test), data.source)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--cnn-epochs", type=int, nargs=2, default=[2, 2], metavar=("PHASE1", "PHASE2"))
  parser.add_argument("--mlp-epochs", type=int, nargs=2, default=[5, 5], metavar=("PHASE1", "PHASE2"))
  parser.add_argument("--archs", nargs="+", default=["small_3layer", "medium_5layer"])
  parser.add_argument("--mlp-seeds", type=int, nargs="+", default=[0])
  parser.add_argument("--out", type=Path, default=OUT)
  parser.add_argument("--data-dir", type=Path, default=None, help="the data cache (default: the library's)")
  parser.add_argument("--download", action="store_true", help="let tfds download fashion_mnist if not cached")
  parser.add_argument(
    "--smoke", action="store_true", help="one seed, 1 + 1 epochs, a 32-unit MLP, 512 examples: checks it runs"
  )
  args = parser.parse_args(argv)
  if args.smoke:
    args.seeds, args.cnn_epochs, args.mlp_epochs, args.archs, args.mlp_seeds = (
      [0],
      [1, 1],
      [1, 1],
      ["32"],
      [0],
    )
  # Offline, the data comes from Debian's dataset-fashion-mnist (installed by `make`).
  data = app.load_dataset("fashion_mnist", args.data_dir, allow_download=args.download)
  if args.smoke:
    data = subset(data, 512)
  print(f"Fashion-MNIST from {data.source}", flush=True)
  cnn = run_cnn(data, args.seeds, *args.cnn_epochs)
  mlps = run_mlps(data, args.archs, args.mlp_seeds, *args.mlp_epochs)
  args.out.mkdir(parents=True, exist_ok=True)
  names = sm.pool_names(sm.DEFAULT_POOL)
  title = "Fashion-MNIST CNN: frozen activation per channel (conv1, conv2, dense)"
  plot_activation_shares(args.out / "cnn_activation_shares.png", cnn[0]["counts"], names, title)
  for arch in args.archs:
    counts = next(r["counts"] for r in mlps if r["arch"] == arch and r["model"] == "smartmixed")
    plot_activation_shares(args.out / f"mlp_{arch}_activation_shares.png", counts, names,
                           f"Fashion-MNIST {arch}: frozen activation choices")  # fmt: skip
  saved_args = vars(args) | {"out": str(args.out), "data_dir": args.data_dir and str(args.data_dir)}
  (args.out / "results.json").write_text(json.dumps({"cnn": cnn, "mlp": mlps, "args": saved_args}, indent=1))
  (args.out / "REPORT.md").write_text(report(cnn, mlps, args))
  print(f"wrote {args.out}/REPORT.md")


if __name__ == "__main__":
  main()
