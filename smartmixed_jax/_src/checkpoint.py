"""Checkpoints of a run's full training state, so that no crash loses a run.

A checkpoint holds a pytree of arrays (parameters, optimizer state, PRNG key,
best parameters so far) and JSON metadata (phase, epoch, history, best
metrics, a SHA-256 digest of the arrays). Orbax writes each one to a
temporary directory and renames it when complete, so a process killed
mid-write leaves the previous checkpoints intact; only the newest
``max_to_keep`` are kept. A checkpoint that fails to read or to match its
digest is named in one line, moved aside (``N.damaged``, never deleted) and
the next older one is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

log = logging.getLogger(__name__)

REPLACED = ".replaced"
"""Suffix of a checkpoint kept aside while one of the same step is written (``--phase2-epochs 0``)."""

DIGEST = "arrays_sha256"
"""The metadata key of a checkpoint's digest."""

META_DIGEST = "meta_sha256"
"""The metadata key of the digest of the metadata itself (choices, epoch, histories: what a resume trusts)."""


def meta_digest(meta: dict[str, Any]) -> str:
  """SHA-256 of the metadata's canonical JSON, its own digest entries left out."""
  rest = {k: v for k, v in meta.items() if k not in (DIGEST, META_DIGEST)}
  return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def digest(leaves: list[Any]) -> str:
  """SHA-256 of arrays: dtype, shape and bytes of each, in order."""
  h = hashlib.sha256()
  for leaf in leaves:
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    a = np.asarray(leaf)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _wait_until_quiet(fd: int, *, quiet_s: float = 0.5, limit_s: float = 5.0) -> None:
  """Waits until nothing was written to ``fd`` for ``quiet_s`` seconds (at most ``limit_s`` in all)."""
  deadline = time.monotonic() + limit_s
  size = os.fstat(fd).st_size
  while time.monotonic() < deadline:
    time.sleep(quiet_s)
    grown = os.fstat(fd).st_size
    if grown == size:
      return
    size = grown


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
  """Holds what anything (Python, C++ threads) writes to stderr in the block; replays it unless it fails.

  A failed write (disk full) makes orbax's worker threads print pages of
  tracebacks, some of them after the failure has reached us (tensorstore
  callbacks into orbax's closed event loop); the caller reports the failure
  in one line instead. After a failure the stream stays held until those
  threads have gone quiet.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  held = os.memfd_create("stderr") if hasattr(os, "memfd_create") else os.open(os.devnull, os.O_WRONLY)
  os.dup2(held, 2)
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    raise
  finally:
    sys.stderr.flush()
    if failed:
      _wait_until_quiet(held)
    os.dup2(saved, 2)
    os.close(saved)
    if not failed and hasattr(os, "memfd_create"):
      os.lseek(held, 0, os.SEEK_SET)
      while chunk := os.read(held, 1 << 16):
        os.write(2, chunk)
    os.close(held)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Silences orbax's and absl's logging of a failed read (we report it in one line)."""
  loggers = [logging.getLogger(name) for name in ("absl", "orbax", "orbax.checkpoint", "jax")]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


class DamagedCheckpoint(Exception):
  """A checkpoint that cannot be read, or does not match its digests; the message says why."""


class Restored(NamedTuple):
  step: int
  arrays: Any  # the saved pytree
  meta: dict[str, Any]


class Checkpoints:
  """A directory of numbered checkpoints.

  Args:
    directory: where the checkpoints live (created if missing).
    max_to_keep: how many of the newest checkpoints to keep.

  Example:
    >>> store = Checkpoints(tmp_dir, max_to_keep=2)                # doctest: +SKIP
    >>> store.save(3, {"w": jnp.ones(2)}, {"epoch": 3})           # doctest: +SKIP
    >>> store.restore_latest(lambda meta: {"w": jax.ShapeDtypeStruct((2,), jnp.float32)})  # doctest: +SKIP
  """

  def __init__(self, directory: os.PathLike, *, max_to_keep: int = 3):
    import orbax.checkpoint as ocp  # heavy; only runs that checkpoint need it

    if max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}.")
    self._ocp = ocp
    self.directory = Path(directory).absolute()
    if self.directory.exists() and not self.directory.is_dir():
      raise ValueError(
        f"{self.directory} is a file; a run keeps its checkpoints in a directory of that name."
      )
    self._recover_replaced()
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=False,
        create=True,
        cleanup_tmp_directories=True,
      ),
    )

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, arrays: Any, meta: dict[str, Any]) -> None:
    """Saves ``arrays`` (any pytree) and ``meta`` as checkpoint ``step`` (replacing one of that number).

    The arrays are stored as a flat list of leaves: restoring needs only the
    tree structure (from ``abstract``), whatever pytree types hold them.
    """
    ocp = self._ocp
    replaced = self.directory / f"{step}{REPLACED}"
    if step in self._manager.all_steps():  # kept aside until its replacement is written
      if jax.process_index() == 0:
        os.replace(self.directory / str(step), replaced)
      with _quiet():
        self._manager.reload()
    leaves = jax.tree.leaves(arrays)
    flat = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
    meta = {**meta, DIGEST: digest(leaves)}
    meta[META_DIGEST] = meta_digest(meta)
    try:
      with _stderr_held(), _quiet():
        self._manager.save(
          step,
          args=ocp.args.Composite(arrays=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)),
          force=True,
        )
        self._manager.wait_until_finished()
    except BaseException:  # disk full, read-only, interrupted: no half-written directory stays behind
      for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
        shutil.rmtree(partial, ignore_errors=True)
      self._recover_replaced()
      with _quiet():
        self._manager.reload()
      raise
    if jax.process_index() == 0:
      shutil.rmtree(replaced, ignore_errors=True)

  def _recover_replaced(self) -> None:
    """A checkpoint set aside for its replacement comes back if the replacement was never finished."""
    if jax.process_index() != 0 or not self.directory.is_dir():
      return
    for aside in self.directory.glob(f"*{REPLACED}"):
      step = self.directory / aside.name[: -len(REPLACED)]
      if step.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
      else:
        os.replace(aside, step)

  def _read_meta(self, step: int) -> dict[str, Any]:
    return self._manager.restore(step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore()))[
      "meta"
    ]

  def _set_aside(self, step: int, reason: str) -> None:
    """Reports a damaged checkpoint in one line and moves it aside (kept for inspection)."""
    damaged = self.directory / f"{step}.damaged"
    for n in itertools.count(1):  # an older damaged copy of the same step stays too
      if not damaged.exists():
        break
      damaged = self.directory / f"{step}.damaged.{n}"
    if jax.process_index() == 0:  # one process moves it; the others only skip it
      os.replace(self.directory / str(step), damaged)
    with _quiet():
      self._manager.reload()
    print(f"warning: checkpoint {step} is damaged ({reason}); moved to {damaged}, using an older one.",
          file=sys.stderr)  # fmt: skip
    log.warning("checkpoint %s damaged: %s", step, reason)

  def latest_meta(self) -> Optional[tuple[int, dict[str, Any]]]:
    """``(step, metadata)`` of the newest checkpoint whose metadata reads, or None."""
    for step in reversed(self.steps()):
      try:
        with _quiet():
          meta = self._read_meta(step)
      except Exception:  # damaged: restore_latest reports it
        continue
      if META_DIGEST not in meta or meta_digest(meta) == meta[META_DIGEST]:
        return step, meta
    return None

  def _load(self, step: int, abstract: Callable[[dict[str, Any]], Any]) -> Restored:
    """Checkpoint ``step``, checked against both digests; read-only.

    Raises:
      DamagedCheckpoint: unreadable, or not matching a digest (the reason says which).
    """
    ocp = self._ocp
    try:
      with _quiet():
        meta = self._read_meta(step)
        leaves, treedef = jax.tree.flatten(abstract(meta))
        target = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
        flat = self._manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(target)))[
          "arrays"
        ]
    except Exception as e:
      raise DamagedCheckpoint(
        f"unreadable: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
      ) from e
    leaves = [flat[k] for k in sorted(flat)]
    if DIGEST in meta and digest(leaves) != meta[DIGEST]:
      raise DamagedCheckpoint("its arrays do not match the digest written with them")
    if META_DIGEST in meta and meta_digest(meta) != meta[META_DIGEST]:
      raise DamagedCheckpoint("its metadata (choices, epochs, history) does not match its digest")
    return Restored(step, jax.tree.unflatten(treedef, leaves), meta)

  def restore(self, step: int, abstract: Callable[[dict[str, Any]], Any]) -> Restored:
    """Checkpoint ``step``, exactly: read-only, nothing set aside or replaced.

    Raises:
      ValueError: it is missing, unreadable or does not match its digests.
    """
    try:
      return self._load(step, abstract)
    except DamagedCheckpoint as e:
      raise ValueError(f"checkpoint {step} in {self.directory} is damaged ({e}).") from None

  def restore_latest(self, abstract: Callable[[dict[str, Any]], Any]) -> Optional[Restored]:
    """The newest intact checkpoint, or None if there is none.

    A damaged checkpoint (unreadable, truncated, or not matching its digests)
    is reported on stderr in one line, moved aside, and the next older one is
    tried.

    Args:
      abstract: maps a checkpoint's metadata to the structure (shapes and
        dtypes, e.g. from ``jax.eval_shape``) of its arrays.
    """
    for step in reversed(self.steps()):
      try:
        return self._load(step, abstract)
      except DamagedCheckpoint as e:  # fall back to an older checkpoint
        self._set_aside(step, str(e))
    return None

  def close(self) -> None:
    self._manager.close()
