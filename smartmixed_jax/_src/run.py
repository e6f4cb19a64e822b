"""A SmartMixed run: Phase 1, freeze, Phase 2 (or a fixed baseline), its directory and results.

:func:`train_and_evaluate` owns the run directory: ``config.json`` (the run's
settings), ``checkpoints/`` (resumable state) and ``results.json`` with the
plots (written last). Each phase trains through :func:`smartmixed_jax.fit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import optax

from smartmixed_jax._src import engine, loop, rundir
from smartmixed_jax._src.artifacts import write_run
from smartmixed_jax._src.config import Config
from smartmixed_jax._src.data import Dataset, Split
from smartmixed_jax._src.files import write_json
from smartmixed_jax._src.frozen import FrozenMLP, freeze
from smartmixed_jax._src.mlp import MLPParams, init_mlp
from smartmixed_jax._src.record import RunRecord
from smartmixed_jax._src.rundir import CHECKPOINTS, CONFIG_FILE, RESULTS_FILE, Stopped
from smartmixed_jax._src.version import __version__


def environment() -> dict[str, Any]:
  """Versions and hardware a result was obtained with."""
  return {
    "smartmixed_jax": __version__,
    "jax": jax.__version__,
    "optax": optax.__version__,
    "python": platform.python_version(),
    "backend": jax.default_backend(),
    "device_kind": str(jax.devices()[0].device_kind),
    "device_count": jax.device_count(),
  }


def check_data(data: Dataset, *, features: int, classes: int) -> None:
  """Refuses data a run cannot learn from, before any compute: naming split and problem."""
  for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
    x, y = np.asarray(split.x), np.asarray(split.y)
    if len(y) == 0:
      raise ValueError(f"The {name} split is empty.")
    if x.ndim != 2 or x.shape[1] != features or not np.issubdtype(x.dtype, np.floating):
      raise ValueError(
        f"The {name} inputs are {x.dtype}{list(x.shape)}; the model expects floating point"
        f" [examples, {features}]."
      )
    if y.shape != (x.shape[0],):
      raise ValueError(f"The {name} split has {x.shape[0]} inputs but labels of shape {list(y.shape)}.")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
      raise ValueError(
        f"The {name} labels must be integers in [0, {classes}); got {y.dtype} in [{y.min()}, {y.max()}]."
      )
    if not np.all(np.isfinite(x)):
      bad = int(np.sum(~np.isfinite(x).all(axis=1)))
      raise ValueError(f"The {name} inputs hold non-finite values (in {bad} examples).")


def _available_memory() -> tuple[int, str]:
  """Bytes the default device can hold, and its name."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind} memory"
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available RAM"
  except (ValueError, OSError):  # not on this platform
    return 2**62, "memory"


def check_memory(config: Config, train_examples: int, eval_examples: int) -> None:
  """Refuses a run that cannot fit in memory, before allocating anything.

  Counts the parameters and logits, seven copies of them (gradients, Adam's
  two moments, the best epoch's, Phase 1's selection, an update in flight),
  the data and the widest batch's activations; a lower bound, so a run it
  passes may still run out, which the CLI reports as such.

  Raises:
    MemoryError: the estimate exceeds what the device has available.
  """
  sizes = config.layer_sizes
  weights = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])) + sum(sizes[1:-1]) * len(config.pool)
  batch = max(config.batch_size, config.eval_batch_size)
  data = (train_examples + eval_examples) * (sizes[0] + 1)
  needed = 4 * (8 * weights + data + batch * sum(sizes) * (len(config.pool) + 2))
  available, what = _available_memory()
  if needed > available:
    raise MemoryError(
      f"The {config.arch} network ({weights:,} parameters) needs at least {needed / 2**30:.1f} GiB for its"
      f" weights, optimizer state and data; {what} is {available / 2**30:.1f} GiB. Use narrower layers."
    )


def device_splits(data: Dataset, train_limit: Optional[int] = None) -> dict[str, tuple[jax.Array, jax.Array]]:
  """The splits as device arrays ``{"train", "val", "test"}``, the training set cut to ``train_limit``."""
  train = data.train if train_limit is None else Split(data.train.x[:train_limit], data.train.y[:train_limit])
  return {
    name: jax.device_put((split.x, split.y))
    for name, split in (("train", train), ("val", data.validation), ("test", data.test))
  }


@dataclasses.dataclass
class RunResult:
  """Everything a run produced: its config, each phase, the selected frozen model and its record.

  ``record`` is what ``results.json`` holds (:meth:`summary` as JSON data).
  """

  config: Config
  phases: list[loop.PhaseResult]
  model: FrozenMLP
  record: RunRecord
  phase1_params: Optional[MLPParams] = None

  def summary(self) -> dict[str, Any]:
    """What ``results.json`` holds: the run's :class:`RunRecord` as JSON data."""
    return self.record.to_json()


def abstract_state(config: Config, meta: dict[str, Any]) -> dict[str, Any]:
  """Shapes, dtypes and tree structure of a checkpoint's arrays, from its metadata.

  The settings stored with the checkpoint define it (``config`` only for
  checkpoints written before they were stored).
  """
  if "config" in meta:
    config = Config.from_dict(meta["config"])
  init = lambda: init_mlp(jax.random.key(0), config.layer_sizes, pool=config.training_pool)  # noqa: E731
  picks = [np.asarray(c, np.int32) for c in meta.get("choices", ())]

  def arrays() -> dict[str, Any]:
    params = init() if meta["phase"] == "phase1" else freeze(init(), choices=picks)
    state = loop.PhaseState.initial(params, config.optimizer(1), jax.random.key(0))
    if meta["phase"] != "phase1" and not config.baseline:
      return {**state.arrays(), "phase1_best_params": init()}
    return state.arrays()

  return jax.eval_shape(arrays)


def train_and_evaluate(
  config: Config,
  data: Dataset,
  *,
  workdir: Optional[os.PathLike] = None,
  resume: bool = False,
  overwrite: bool = False,
  checkpoint_every: int = 5,
  max_to_keep: int = 3,
  progress: bool = True,
  should_stop: Optional[Callable[[], bool]] = None,
  devices: Optional[int] = 1,
) -> RunResult:
  """Trains SmartMixed (Phase 1, freeze, Phase 2), or a fixed baseline.

  Phase 1 trains weights and selection logits through the Gumbel
  straight-through forward pass. Its lowest-validation-loss epoch is frozen
  (argmax per neuron) and Phase 2 trains the grouped network on. With
  ``config.baseline`` set, a fixed-activation MLP trains for the total epochs.

  With a ``workdir``, the run holds the directory's lock throughout and
  checkpoints its full training state, with its settings, to
  ``workdir/checkpoints`` every ``checkpoint_every`` epochs and at the end of
  each phase. ``resume=True`` continues from the newest intact checkpoint and
  ends with the same results as an uninterrupted run; it may change only
  ``learning_rate`` and ``skip_nonfinite`` (recorded in the results).
  Everything is validated before anything is written: a refused run leaves
  the directory as it was.

  Args:
    config: the run's settings.
    data: train / validation / test splits (checked before any compute).
    workdir: the run directory; None for no checkpoints and no files.
    resume: continue the run in ``workdir`` from its newest checkpoint.
    overwrite: replace a run already in ``workdir`` (its checkpoints too).
    checkpoint_every: epochs between checkpoints.
    max_to_keep: how many checkpoints to keep.
    progress: show progress bars.
    should_stop: polled after every epoch; when it returns True the run
      checkpoints that epoch and raises :class:`Stopped` (the CLI's SIGTERM).
    devices: data-parallel over this many devices (None: all of them); each
      batch is split over them, so ``batch_size`` is global. Same results as
      one device up to float round-off; may change on resume. A run of
      several processes (``jax.distributed``) uses all devices of all of them.

  Returns:
    A :class:`RunResult`; ``result.summary()`` is what ``results.json`` holds.

  Raises:
    NonFiniteError: training diverged.
    ValueError: bad data or settings; a run in ``workdir`` and neither
      ``resume`` nor ``overwrite``; settings that differ from the resumed run's.
    RunBusyError: another process is using ``workdir``.
    MemoryError: the network cannot fit in the device's memory.
    Stopped: ``should_stop`` asked to stop.
  """
  check_data(data, features=config.layer_sizes[0], classes=config.layer_sizes[-1])
  if checkpoint_every < 1 or max_to_keep < 1:
    raise ValueError(f"checkpoint_every and max_to_keep must be >= 1, got {checkpoint_every}, {max_to_keep}.")
  if resume and overwrite:
    raise ValueError("resume continues the run in workdir and overwrite deletes it; give one of them.")
  train_examples = (
    len(data.train.y) if config.train_limit is None else min(config.train_limit, len(data.train.y))
  )
  if config.batch_size > train_examples:
    raise ValueError(f"batch_size {config.batch_size} exceeds the {train_examples} training examples.")
  check_memory(config, train_examples, len(data.validation.y) + len(data.test.y))
  engine.data_parallel_mesh(devices)  # validates devices before anything is written
  if jax.process_count() > 1 and devices is not None and devices != jax.device_count():
    raise ValueError(
      f"A run of {jax.process_count()} processes trains data-parallel on all {jax.device_count()} devices"
      f" of all of them; got devices={devices}. Give devices=None."
    )
  train = functools.partial(
    _train, config, data, train_examples=train_examples, checkpoint_every=checkpoint_every,
    progress=progress, should_stop=should_stop or (lambda: False), devices=devices,
  )  # fmt: skip
  if workdir is None:
    if resume:
      raise ValueError("resume needs the workdir of the run to continue.")
    return train(None, None)
  workdir = Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f"workdir {workdir} is a file, not a directory.")
  primary = jax.process_index() == 0  # with several processes (hosts), only the first writes files
  with contextlib.ExitStack() as stack:
    lock = None

    def prepare() -> None:  # the directory's checks and set-up, on process 0 alone
      nonlocal lock
      lock = stack.enter_context(rundir.locked(workdir))
      held = rundir.holds_run(workdir)
      if not resume and held and not overwrite:
        raise ValueError(
          f"{workdir} already holds a run ({', '.join(held)}); resume it, overwrite it, or choose another"
          " directory."
        )
      if resume and not held:
        raise ValueError(f"Nothing to resume in {workdir}: it holds no run.")
      if not resume:
        rundir.clear(workdir)
      rundir.mark(workdir)

    _on_first_process(prepare)
    from smartmixed_jax._src.checkpoint import Checkpoints

    store = Checkpoints(workdir / CHECKPOINTS, max_to_keep=max_to_keep)
    restored = store.restore_latest(functools.partial(abstract_state, config)) if resume else None
    resumes = []
    if restored is not None:
      resumes = restored.meta.get("resumes", [])
      if "config" in restored.meta:
        saved, where = (
          Config.from_dict(restored.meta["config"]),
          f"checkpoint {restored.step} was written with",
        )
        changed = rundir.resume_changes(saved, config, where=where)
        if changed:
          resumes = [*resumes, {"from_checkpoint": restored.step, "changed": changed}]
          print(f"resuming with changed settings: {changed}", file=sys.stderr)
    elif resume:
      rundir.resume_changes(rundir.read_config(workdir), config, where=f"in {workdir / CONFIG_FILE}")
      print(f"note: {workdir} has no intact checkpoint; training starts from epoch 1.", file=sys.stderr)
    if primary:
      write_json(workdir / CONFIG_FILE, config.to_dict())
    return train(workdir, store, restored, resumes, verify=lock.verify if lock else lambda: None)


_MESSAGE_BYTES = 4096


def _on_first_process(prepare: Callable[[], None]) -> None:
  """``prepare()`` on process 0 alone; then every process raises its refusal, or none does.

  With several processes (hosts), only process 0 inspects and prepares the
  run directory: the others must neither read it half-prepared nor wait at a
  barrier that a refused process 0 never reaches.
  """
  if jax.process_count() == 1:
    prepare()
    return
  from jax.experimental import multihost_utils

  # What the other processes raise for process 0's error (the CLI's exit codes follow the class).
  kinds = (rundir.RunBusyError, ValueError, OSError, RuntimeError)
  error = None
  if jax.process_index() == 0:
    try:
      prepare()
    except Exception as e:  # whatever it is, no other process may be left waiting for process 0
      error = e
  text = str(error or "").encode()[:_MESSAGE_BYTES]
  payload = np.zeros(1 + _MESSAGE_BYTES, np.uint8)
  if error is not None:  # 1 + the first kind it is, RuntimeError for anything else
    payload[0] = 1 + next((i for i, kind in enumerate(kinds) if isinstance(error, kind)), len(kinds) - 1)
  payload[1 : 1 + len(text)] = np.frombuffer(text, np.uint8)
  shared = np.asarray(multihost_utils.broadcast_one_to_all(payload))
  if error is not None:
    raise error
  if shared[0]:
    message = bytes(shared[1:]).rstrip(b"\0").decode(errors="replace")
    raise kinds[shared[0] - 1](f"process 0 refused the run: {message}")


def _stop_together(asked: bool) -> bool:
  """Whether to stop after this epoch: for several processes, as soon as any of them was asked to (its
  own SIGTERM or Ctrl-C), so that all checkpoint the same epoch and stop there together."""
  if jax.process_count() == 1:
    return asked
  from jax.experimental import multihost_utils

  return bool(np.any(np.asarray(multihost_utils.process_allgather(np.array([asked])))))


def _train(
  config: Config,
  data: Dataset,
  workdir: Optional[Path],
  store,
  restored=None,
  resumes=(),
  *,
  train_examples: int,
  checkpoint_every: int,
  progress: bool,
  should_stop: Callable[[], bool],
  devices: Optional[int],
  verify: Callable[[], None] = lambda: None,
) -> RunResult:
  """The run itself, once everything is validated and the directory is held: one model through the engine."""
  splits = device_splits(data, config.train_limit)
  phase_of = restored.meta["phase"] if restored else None
  run_meta = {"config": config.to_dict(), "resumes": list(resumes)}

  def on_epoch(phase: str, first_step: int, arrays: dict[str, Any], meta: dict[str, Any]):
    def checkpoint(state: loop.PhaseState):
      stop = _stop_together(should_stop())
      if store is not None and (state.done or state.epoch % checkpoint_every == 0 or stop):
        verify()  # still this directory's owner
        meta_all = {"phase": phase, **state.meta(), **meta, **run_meta}
        store.save(first_step + state.epoch, {**state.arrays(), **arrays}, meta_all)
      if stop:
        saved = (
          f"; checkpointed in {store.directory}" if store is not None else " (no workdir: nothing saved)"
        )
        raise Stopped(
          f"stopped on request after {phase} epoch {state.epoch}{saved}", checkpointed=store is not None
        )

    return checkpoint

  def resume(phase: str) -> Optional[loop.PhaseState]:
    return loop.PhaseState.restore(restored.arrays, restored.meta) if phase_of == phase else None

  phase1 = None
  if phase_of == "phase2":  # Phase 1 finished before the interruption
    saved = restored.meta["phase1"]
    phase1 = loop.PhaseResult(
      "phase1", saved["histories"], saved["best_epochs"], restored.arrays["phase1_best_params"],
      saved["test"], saved["seconds"],
    )  # fmt: skip
  hooks = engine.Checkpointing(on_epoch=on_epoch, resume=resume, phase1=phase1)
  train = dict(devices=devices, checkpointing=hooks, progress=progress)
  result = (engine.baselines if config.baseline else engine.two_phase)(config, splits, **train)
  phases = [result] if config.baseline else [result.phase1, result.phase2]
  mesh = engine.data_parallel_mesh(devices)
  record = dataclasses.replace(
    engine.record(config, result),
    train_examples=train_examples, resumes=list(resumes),
    environment={**environment(), "devices_used": 1 if mesh is None else mesh.size},
    switch_epoch=len(phases[0].histories[0]) - 1 if config.switch_patience else None,
  )  # fmt: skip
  run = RunResult(
    config,
    phases,
    phases[-1].best_params,
    record,
    phase1_params=None if config.baseline else phases[0].best_params,
  )
  if workdir is not None and jax.process_index() == 0:
    verify()
    write_run(workdir, run)
  return run


def load_run(run_dir: os.PathLike) -> FrozenMLP:
  """The selected frozen model of a finished run: its lowest-validation-loss epoch of the last phase.

  Reads the run's settings and its newest intact checkpoint (written at the
  end of the last phase), so its predictions reproduce ``results.json``'s
  test accuracy exactly.

  Args:
    run_dir: a directory a finished :func:`train_and_evaluate` (or ``smartmixed train``) wrote.

  Raises:
    ValueError: no finished run there, or its final checkpoint is missing.

  Example:
    >>> model = load_run("runs/demo")            # doctest: +SKIP
    >>> logits = model(x)                        # doctest: +SKIP
  """
  from smartmixed_jax._src.checkpoint import Checkpoints
  from smartmixed_jax._src.record import read_record

  run_dir = Path(run_dir)
  if not (run_dir / RESULTS_FILE).is_file():
    raise ValueError(f"{run_dir} holds no finished run ({RESULTS_FILE} is missing); finish it with --resume.")
  config = rundir.read_config(run_dir)
  record = read_record(run_dir / RESULTS_FILE)
  last = config.baseline or "phase2"
  checkpoints = run_dir / CHECKPOINTS
  store = Checkpoints(checkpoints) if checkpoints.is_dir() else None
  if store is None or not store.steps():
    raise ValueError(f"{checkpoints} holds no checkpoint of the finished run; its model cannot be loaded.")
  # Read-only, and only the run's final checkpoint: an older one is not the model results.json describes.
  try:
    restored = store.restore(store.steps()[-1], functools.partial(abstract_state, config))
  except ValueError as e:
    raise ValueError(
      f"The run's final {e} Its model cannot be loaded exactly; nothing was changed."
    ) from None
  meta = restored.meta
  best = meta["histories"][0][meta["best_epochs"][0]] if meta.get("histories") else {}
  if meta["phase"] != last or best.get("val_accuracy") != record.final.val_accuracy:
    raise ValueError(
      f"The newest checkpoint in {checkpoints} ({restored.step}, {meta['phase']}) is not the model"
      f" {RESULTS_FILE} describes (its last phase {last}, validation accuracy {record.final.val_accuracy})."
    )
  return restored.arrays["best_params"]
