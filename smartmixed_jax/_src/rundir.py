"""A run directory: one owner at a time, the run's settings, and what a resume may change.

A run directory holds ``config.json`` (the settings), ``checkpoints/`` and,
once finished, ``results.json`` with the plots. While a run uses it, an OS
lock (``fcntl.flock`` on ``.lock``, released by the kernel if the process
dies) keeps every other run out. The settings are also stored with each
checkpoint, so a resume compares what it is given with what the checkpoints
were trained with, and refuses a difference instead of silently restarting.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from smartmixed_jax._src.config import Config
from smartmixed_jax._src.files import atomic_write_bytes

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".lock"
MARKER = ".smartmixed-run"
"""Written into every run directory a run starts: ``--overwrite`` deletes only what a run of ours wrote."""
OUTPUTS = ("choices.csv", "curves.png", "activation_shares.png", "activation_trajectory.png", "selection.png")
"""The files a finished run writes beside ``results.json``."""

RESUMABLE = ("learning_rate", "skip_nonfinite")
"""Settings a resume may change (the remedies a divergence message recommends)."""


class RunBusyError(RuntimeError):
  """Another process is using the run directory."""


class Stopped(Exception):
  """The run stopped on request (SIGTERM, Ctrl-C) after checkpointing its last complete epoch."""

  def __init__(self, message: str, *, checkpointed: bool):
    super().__init__(message)
    self.checkpointed = checkpointed


def holds_run(directory: Path) -> list[str]:
  """What of a run ``directory`` holds (config, results, checkpoints); empty if none."""
  return [name for name in (CONFIG_FILE, RESULTS_FILE, CHECKPOINTS) if (directory / name).exists()]


def _busy(directory: Path, fd: int) -> str:
  """The refusal naming the lock holder's PID (written into the lock file)."""
  os.lseek(fd, 0, os.SEEK_SET)
  pid = os.read(fd, 32).decode(errors="replace").strip()
  holder = f"PID {pid}" if pid.isdigit() else "another process"
  return f"{directory} is in use by another run ({holder}); wait for it to end, or choose another directory."


def check_free(directory: Path) -> None:
  """Raises :class:`RunBusyError` if a run holds ``directory``'s lock; creates nothing."""
  try:
    fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
  except (FileNotFoundError, NotADirectoryError):
    return
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    raise RunBusyError(_busy(directory, fd)) from None
  finally:
    os.close(fd)


class Lock:
  """A held run-directory lock; :meth:`verify` before writing checks it is still the directory's."""

  def __init__(self, directory: Path, fd: int):
    self.directory, self._fd = directory, fd

  def verify(self) -> None:
    """Raises :class:`RunBusyError` if ``.lock`` was removed or replaced since it was taken.

    The OS lock holds the file, not its name: after ``rm .lock`` a second run
    can take a new one, and two runs would write into one directory.
    """
    held = os.fstat(self._fd)
    try:
      now = os.stat(self.directory / LOCK_FILE)
    except FileNotFoundError:
      now = None
    if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
      raise RunBusyError(
        f"{self.directory / LOCK_FILE} was removed or replaced while this run held it: another run may be"
        " writing there. Stopped without writing; check the directory before resuming."
      )


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[Lock]:
  """Holds ``directory``'s lock (creating both if needed) for the ``with`` block.

  Raises:
    RunBusyError: another process holds it; the message names its PID.
  """
  directory.mkdir(parents=True, exist_ok=True)
  if (directory / LOCK_FILE).is_dir():
    raise ValueError(f"{directory / LOCK_FILE} is a directory; a run needs it as its lock file. Remove it.")
  fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise RunBusyError(_busy(directory, fd)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    lock = Lock(directory, fd)
    lock.verify()  # the file locked is the one now named .lock (not one removed meanwhile)
    yield lock
  finally:
    os.close(fd)  # releases the lock


def ours(directory: Path) -> bool:
  """Whether a run of ours wrote ``directory``: its marker, or (a run from before the marker) a
  ``config.json`` that is a valid run config."""
  if (directory / MARKER).is_file():
    return True
  try:
    read_config(directory)
    return True
  except ValueError:
    return False


def mark(directory: Path) -> None:
  """Marks ``directory`` as a run's (see :func:`ours`)."""
  atomic_write_bytes(directory / MARKER, b"a smartmixed_jax run directory\n")


def clear(directory: Path) -> None:
  """Removes a run's config, results, plots, choices and checkpoints (the caller holds the lock).

  Raises:
    ValueError: ``directory`` holds a config or checkpoints that no run of ours wrote.
  """
  held = holds_run(directory)
  if held and not ours(directory):
    raise ValueError(
      f"{directory} holds {', '.join(held)}, but no smartmixed run wrote them (no {MARKER} marker, and"
      f" {CONFIG_FILE} is not a run config): refusing to delete them. Choose another directory."
    )
  for name in (CONFIG_FILE, RESULTS_FILE, *OUTPUTS):
    (directory / name).unlink(missing_ok=True)
  shutil.rmtree(directory / CHECKPOINTS, ignore_errors=True)


def read_config(directory: Path) -> Config:
  """The settings in ``directory/config.json``, strictly (every field, valid values).

  Raises:
    ValueError: missing, unreadable or invalid; the message says which.
  """
  path = directory / CONFIG_FILE
  if not path.is_file():
    raise ValueError(f"{path} is missing.")
  try:
    return Config.from_dict(json.loads(path.read_text()))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON ({e}).") from None
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path} is not a valid run config: {e}") from None


def resume_changes(saved: Config, given: Config, *, where: str) -> dict[str, list[Any]]:
  """The settings ``given`` changes relative to ``saved``: ``{name: [saved, given]}``.

  Raises:
    ValueError: a setting outside :data:`RESUMABLE` differs; every such one is
      named with both values.
  """
  old, new = saved.to_dict(), given.to_dict()
  changed = {k: [old[k], new[k]] for k in old if old[k] != new[k]}
  fixed = {k: v for k, v in changed.items() if k not in RESUMABLE}
  if fixed:
    listed = "; ".join(f"{k}: {v[0]!r} there, {v[1]!r} given" for k, v in fixed.items())
    raise ValueError(
      f"Cannot resume: the settings differ from those {where} ({listed}). A resume may change only"
      f" {', '.join(RESUMABLE)}. If config.json was edited, restore those values; nothing was changed."
    )
  return changed


STORAGE_ERRNOS = {
  errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
  errno.EPERM: "operation not permitted", errno.EIO: "input/output error",
}  # fmt: skip
"""OS errors that mean the machine's storage failed, not the program."""


def storage_error(error: BaseException) -> Optional[str]:
  """A short reason if ``error`` (or what caused it) is a storage failure, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
      where = f" ({error.filename})" if error.filename else ""
      return f"{STORAGE_ERRNOS[error.errno]}{where}"
    text = str(error)
    for reason in STORAGE_ERRNOS.values():
      if reason.lower() in text.lower():
        return reason
    error = error.__cause__ or error.__context__
  return None
