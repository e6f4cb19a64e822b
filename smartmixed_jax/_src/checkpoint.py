"""Checkpoints of a run's full training state, so that no crash loses a run.

A checkpoint holds a pytree of arrays (parameters, optimizer state, PRNG key,
best parameters so far) and JSON metadata (phase, epoch, history, best
metrics). Orbax writes each one to a temporary directory and renames it when
complete, so a process killed mid-write leaves the previous checkpoints
intact; only the newest ``max_to_keep`` are kept.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax

log = logging.getLogger(__name__)


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
    if step in self._manager.all_steps():
      self._manager.delete(step)
    flat = {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(arrays))}
    self._manager.save(
      step,
      args=ocp.args.Composite(arrays=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(meta)),
      force=True,
    )
    self._manager.wait_until_finished()

  def restore_latest(self, abstract: Callable[[dict[str, Any]], Any]) -> Optional[Restored]:
    """The newest readable checkpoint, or None if there is none.

    An unreadable checkpoint (corrupt, truncated) is reported on stderr and
    the next older one is tried.

    Args:
      abstract: maps a checkpoint's metadata to the structure (shapes and
        dtypes, e.g. from ``jax.eval_shape``) of its arrays.
    """
    ocp = self._ocp
    for step in reversed(self.steps()):
      try:
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        leaves, treedef = jax.tree.flatten(abstract(meta))
        target = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
        arrays = self._manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(target)))
        flat = arrays["arrays"]
        return Restored(step, jax.tree.unflatten(treedef, [flat[k] for k in sorted(flat)]), meta)
      except Exception as e:  # any damage: fall back to an older checkpoint
        message = f"checkpoint {step} in {self.directory} is unreadable ({type(e).__name__}: {str(e)[:300]})"
        print(f"warning: {message}; trying an older one.", file=sys.stderr)
        log.warning(message)
    return None

  def close(self) -> None:
    self._manager.close()
