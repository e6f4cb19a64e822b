"""What runs leave on disk: atomic JSON and file writes, and the plots of a run.

Public helpers for scripts and reports built on the library (the sweep and
its report use them); ``train_and_evaluate(..., workdir=...)`` writes a run's
artifacts with :func:`write_run`. Plots need the ``plots`` extra (matplotlib).
"""

from smartmixed_jax._src.artifacts import (
  plot_activation_shares,
  plot_activation_trajectory,
  plot_curves,
  plot_selection,
  pyplot,
  save_figure,
  write_run,
)
from smartmixed_jax._src.files import atomic_write_bytes, write_json

__all__ = [
  "atomic_write_bytes",
  "plot_activation_shares",
  "plot_activation_trajectory",
  "plot_curves",
  "plot_selection",
  "pyplot",
  "save_figure",
  "write_json",
  "write_run",
]
