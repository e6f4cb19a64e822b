"""The self-check of a freeze: how far a frozen model's output is from the evaluated model's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

TOLERANCE = {"float32": 1e-4, "low": 2e-2}
"""Allowed :func:`disagreement`: summation order in float32; round-off of a 16-bit compute dtype."""


def tolerance(dtypes: Iterable[Any]) -> float:
  """The :data:`TOLERANCE` for a model computing in ``dtypes`` (the low one if any is 16-bit or less)."""
  low = any(d is not None and np.dtype(d).itemsize < 4 for d in dtypes)
  return TOLERANCE["low" if low else "float32"]


def disagreement(expected: Any, got: Any) -> float:
  """The largest ``|got - expected| / (1 + |expected|)`` over every output leaf (pytrees alike)."""
  worst = 0.0
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
      return float("inf")
    worst = max(worst, float(np.max(np.abs(a - b) / (1.0 + np.abs(a)), initial=0.0)))
  return worst
