"""Atomic file writes: a crash, a full disk or a kill never leaves a partial file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` so that a crash never leaves a partial file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:  # disk full, read-only, interrupted: leave no temp file behind
    tmp.unlink(missing_ok=True)
    raise


def write_json(path: os.PathLike, payload: Any) -> None:
  """Writes ``payload`` as JSON, atomically."""
  atomic_write_bytes(path, json.dumps(payload, indent=1).encode())
