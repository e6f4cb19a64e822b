"""Does the adaptive switch save Phase 1 time without losing accuracy? (beyond the paper)

    python experiments/adaptive_switch.py          # medium_5layer, 3 seeds, ~25 min on 2 CPU cores
    python experiments/adaptive_switch.py --archs 3 12 --logits-lr-scales 1 100 --thresholds 0.01 0.05

Per architecture, seed and logits learning-rate scale, runs of the
recommended preset at the sweep's ``medium`` budget (Phase 1 at most 10
epochs, Phase 2 20, full training set) that differ only in the switch: fixed
(after Phase 1's epochs, as the paper) or adaptive (``Config.switch_patience``:
once the share of argmaxes that changed stays below a threshold for
``--patience`` epochs), one per ``--thresholds`` value. Same seed, so same
initial weights, noise and data order. Each finished run writes
``OUT/runs/<arch>/scale<S>/<switch>/seed<N>.json`` (its ``results.json``);
a rerun skips what is done. ``OUT/REPORT.md`` compares each adaptive run with
the fixed one of its seed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from tqdm.auto import tqdm

from smartmixed_jax import app
from smartmixed_jax.artifacts import atomic_write_bytes, pyplot, save_figure, write_json

sys.path.insert(0, str(Path(__file__).parent))
from report import markdown_table  # noqa: E402
from stats import Stat  # noqa: E402
from sweep import BUDGETS, RESULTS, architecture  # noqa: E402

FIXED = "fixed"


def switch_name(patience: Optional[int], threshold: float) -> str:
  """``fixed``, or the adaptive switch's settings: ``adaptive_p2_t0.01``."""
  return FIXED if patience is None else f"adaptive_p{patience}_t{threshold:g}"


def record_path(out: Path, arch: str, scale: float, switch: str, seed: int) -> Path:
  return out / "runs" / arch / f"scale{scale:g}" / switch / f"seed{seed}.json"


def make_config(
  arch: str, scale: float, seed: int, patience: Optional[int], threshold: float, budget: str = "medium"
) -> app.Config:
  plan = BUDGETS[budget]
  return app.make_config(
    arch, "recommended", phase1_epochs=plan.phase1_epochs, phase2_epochs=plan.phase2_epochs,
    train_limit=plan.train_limit, seed=seed, logits_lr_scale=scale, switch_patience=patience,
    switch_threshold=threshold,
  )  # fmt: skip


def run_all(
  out: Path,
  data: app.Dataset,
  *,
  archs: Sequence[str],
  scales: Sequence[float],
  seeds: Sequence[int],
  patience: int,
  thresholds: Sequence[float],
  budget: str = "medium",
  progress: bool = True,
) -> int:
  """Trains every run not in ``out`` yet (per seed: the fixed switch and each threshold); returns how many."""
  switches = [(None, 0.01), *((patience, t) for t in thresholds)]
  todo = [
    (arch, scale, seed, switch)
    for arch in archs
    for scale in scales
    for seed in seeds
    for switch in switches
    if not record_path(out, arch, scale, switch_name(*switch), seed).exists()
  ]
  bar = tqdm(todo, desc="adaptive switch", unit="run", disable=not progress or None)
  for arch, scale, seed, (k, threshold) in bar:
    config = make_config(arch, scale, seed, k, threshold, budget)
    result = app.train_and_evaluate(config, data, progress=False)
    write_json(record_path(out, arch, scale, switch_name(k, threshold), seed), result.summary())
  return len(todo)


def budget_of(config: dict[str, Any]) -> str:
  """The name of the sweep budget whose epochs and training examples a run's config holds."""
  plan = (config["phase1_epochs"], config["phase2_epochs"], config["train_limit"])
  return next(
    name for name, b in BUDGETS.items() if (b.phase1_epochs, b.phase2_epochs, b.train_limit) == plan
  )


def load(out: Path) -> dict[tuple[str, float, int], dict[str, app.RunRecord]]:
  """``runs[(arch, scale, seed)][switch] = record``, for the seeds whose fixed run is done."""
  runs: dict[tuple[str, float, int], dict[str, app.RunRecord]] = {}
  for path in sorted(out.glob("runs/*/*/*/seed*.json")):
    record = app.read_record(path)
    runs.setdefault((record.arch, record.config["logits_lr_scale"], record.seed), {})[path.parent.name] = (
      record
    )
  return {k: v for k, v in runs.items() if FIXED in v and len(v) > 1}


def plot_changes(path: Path, pairs, thresholds: Sequence[float]) -> str:
  """Per epoch of the fixed runs, the share of argmaxes that changed, with the switch threshold."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 3.8))
  groups = sorted({(arch, scale) for arch, scale, _ in pairs})
  first_seed = min(seed for _, _, seed in pairs)
  cmap = plt.get_cmap("tab10")
  for n, (arch, scale) in enumerate(groups):
    for (a, s, seed), runs in pairs.items():
      if (a, s) != (arch, scale):
        continue
      history = [e for e in runs[FIXED].phase1.history if e.argmax_changed is not None]
      ax.plot(
        [e.epoch for e in history], [max(e.argmax_changed, 1e-4) for e in history], color=cmap(n),
        alpha=0.8, linewidth=1, label=f"{arch}, logits x{scale:g}" if seed == first_seed else None,
      )  # fmt: skip
  for threshold in thresholds:
    ax.axhline(threshold, color="grey", linestyle=":", label=f"threshold {threshold:g}")
  ax.set_yscale("log")
  ax.set_xlabel("Phase 1 epoch (fixed switch)")
  ax.set_ylabel("share of argmaxes changed")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save_figure(fig, path, dpi=110)


def write_report(out: Path) -> Path:
  """Writes ``out/REPORT.md`` and its figure from the finished runs; returns its path."""
  runs = load(out)
  if not runs:
    raise SystemExit(f"No finished pairs under {out / 'runs'}: run experiments/adaptive_switch.py first.")
  settings = {
    name: (r.config["switch_patience"], r.config["switch_threshold"])
    for seed_runs in runs.values()
    for name, r in seed_runs.items()
    if name != FIXED
  }
  figure = plot_changes(out / "argmax_changed.png", runs, sorted({t for _, t in settings.values()}))
  rows = []
  for arch, scale in sorted({(a, s) for a, s, _ in runs}):
    for name, (patience, threshold) in sorted(settings.items(), key=lambda item: item[1]):
      pairs = [v for (a, s, _), v in sorted(runs.items()) if (a, s) == (arch, scale) and name in v]
      if not pairs:
        continue
      epochs = [p[name].phase1.epochs for p in pairs]
      saved = Stat(1 - p[name].phase1.epochs / p[FIXED].phase1.epochs for p in pairs)
      diff = Stat(p[name].final.test_accuracy - p[FIXED].final.test_accuracy for p in pairs)
      rows.append([
        arch, f"{scale:g}", f"{patience} / {threshold:g}", ", ".join(map(str, epochs)), saved.fmt(100, 0),
        Stat(p[FIXED].final.test_accuracy for p in pairs).fmt(),
        Stat(p[name].final.test_accuracy for p in pairs).fmt(), diff.fmt_ci(), len(pairs),
      ])  # fmt: skip
  fixed = next(iter(runs.values()))[FIXED]
  thresholds = " ".join(f"{t:g}" for t in sorted({t for _, t in settings.values()}))
  command = (
    f"python experiments/adaptive_switch.py --archs {' '.join(sorted({a for a, _, _ in runs}))}"
    f" --logits-lr-scales {' '.join(f'{s:g}' for s in sorted({s for _, s, _ in runs}))}"
    f" --seeds {' '.join(str(s) for s in sorted({s for _, _, s in runs}))} --budget {budget_of(fixed.config)}"
    f" --patience {' '.join(sorted({str(p) for p, _ in settings.values()}))} --thresholds {thresholds}"
  )
  lines = [
    "# The adaptive switch: does it save Phase 1 time without losing accuracy?",
    "",
    f"Command: `{command}` (beyond the paper; rerunning it skips the finished runs and rewrites this"
    " report).",
    "",
    f"Recommended preset, Phase 1 at most {fixed.config['phase1_epochs']} epochs (the learning rate's"
    f" cosine decay is planned over them), then Phase 2 {fixed.config['phase2_epochs']};"
    f" {fixed.train_examples:,} training examples. The fixed switch freezes after every Phase 1 epoch"
    " has run; the adaptive one as soon as the share of argmaxes that changed in an epoch stays below the"
    " threshold for `patience` epochs. All runs of a seed share its initial weights, noise and data order."
    " Accuracy: test, at the lowest-validation-loss epoch, in %; differences are paired by seed (95% CI)."
    " Every Phase 1 epoch does the same work, so the epochs saved are the Phase 1 compute saved (wall"
    " times, in the records, are too noisy on this shared machine to add anything).",
    "",
    *markdown_table(
      [
        "architecture",
        "logits lr scale",
        "patience / threshold",
        "adaptive: Phase 1 epochs (per seed)",
        "Phase 1 epochs saved (%)",
        "fixed",
        "adaptive",
        "adaptive − fixed (95% CI)",
        "seeds",
      ],
      rows,
    ),  # fmt: skip
    "",
    f"![share of argmaxes changed per epoch]({figure})",
    "",
    "*Figure: per Phase 1 epoch of the fixed-switch runs, the share of neurons whose argmax changed (log"
    " scale, 0 drawn at 1e-4; one line per seed); dotted: the adaptive switch's thresholds.*",
    "",
    "The adaptive switch fires on a *stable* argmax, which is not a *decided* selection: with a cosine"
    " schedule the logits stop moving as the learning rate decays, whatever their entropy. Compare the"
    " selection diagnostics (a run's `selection.png`; the selection study).",
  ]
  path = out / "REPORT.md"
  atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
  return path


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--archs", nargs="+", default=["medium_5layer"], help="numbers 1-18 or names")
  parser.add_argument("--logits-lr-scales", type=float, nargs="+", default=[1.0, 100.0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--budget", choices=list(BUDGETS), default="medium", help="Phase 1 is the maximum")
  parser.add_argument("--patience", type=int, default=2)
  parser.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.05])
  parser.add_argument("--out", type=Path, default=RESULTS / "adaptive_switch")
  parser.add_argument("--data-dir", type=Path, default=None)
  parser.add_argument("--no-progress", dest="progress", action="store_false")
  args = parser.parse_args(argv)
  try:
    archs = [architecture(a) for a in args.archs]
    for scale in args.logits_lr_scales:  # validates the settings before any training
      for threshold in args.thresholds:
        make_config(archs[0], scale, args.seeds[0], args.patience, threshold, args.budget)
  except ValueError as e:
    parser.error(str(e))
  data = app.load_mnist(args.data_dir)
  run_all(
    args.out, data, archs=archs, scales=args.logits_lr_scales, seeds=args.seeds, patience=args.patience,
    thresholds=args.thresholds, budget=args.budget, progress=args.progress,
  )  # fmt: skip
  print(f"report: {write_report(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
