"""The MNIST application built on the library: what ``smartmixed train`` and the studies run.

The paper's 18 architectures, run configurations and presets, the offline
data sets (MNIST, Fashion-MNIST) and :func:`train_and_evaluate`, which owns a
run directory (lock, checkpoints, resumption, results and plots), and
:class:`RunRecord`, the one record every run and study writes. The library
a researcher composes (pool, parameters, selection, freeze, ``fit``,
diagnostics, export) is the top level, ``smartmixed_jax``; the two-phase
engine both tiers train through is ``smartmixed_jax.engine``.

Example:
  >>> from smartmixed_jax import app
  >>> config = app.make_config("512-256", "paper", phase2_epochs=10)
  >>> config.layer_sizes, config.learning_rate
  ((784, 512, 256, 10), 0.0001)
"""

from smartmixed_jax._src.config import ARCHITECTURES, PRESETS, Config, make_config
from smartmixed_jax._src.data import DataError, Dataset, Split, load_dataset, load_mnist
from smartmixed_jax._src.record import (
  SCHEMA_VERSION,
  Cohort,
  Epoch,
  LayerSelection,
  Metrics,
  PhaseRecord,
  RunRecord,
  read_record,
)
from smartmixed_jax._src.run import RunResult, device_splits, load_run, train_and_evaluate
from smartmixed_jax._src.rundir import RunBusyError, Stopped

__all__ = [
  "ARCHITECTURES",
  "PRESETS",
  "Config",
  "make_config",
  "train_and_evaluate",
  "RunResult",
  "load_run",
  "RunRecord",
  "PhaseRecord",
  "Epoch",
  "Metrics",
  "LayerSelection",
  "Cohort",
  "SCHEMA_VERSION",
  "read_record",
  "RunBusyError",
  "Stopped",
  "device_splits",
  "DataError",
  "Dataset",
  "Split",
  "load_dataset",
  "load_mnist",
]
