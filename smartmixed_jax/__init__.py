"""smartmixed_jax: per-neuron activation selection (SmartMixed) in JAX.

Phase 1 trains, for every hidden neuron, logits over a pool of activations
through a Gumbel-Softmax straight-through estimator; :func:`freeze` then fixes
each neuron's choice and groups neurons by activation, and Phase 2 trains the
fixed mixed network at the speed of an ordinary one.

The top level is the library a researcher composes. Beside it:
``smartmixed_jax.engine`` runs the two phases for one model or a cohort;
``smartmixed_jax.app`` is the MNIST application (configs, presets, data,
``train_and_evaluate``); ``smartmixed_jax.artifacts`` writes and plots what
runs leave; ``smartmixed_jax.nnx`` (NNX) and ``smartmixed_jax.linen`` (Linen)
hold drop-in activation layers (they need flax). Everything under
``smartmixed_jax._src`` is private.
"""

from smartmixed_jax._src.diagnostics import UndecidedSelectionWarning, selection_diagnostics
from smartmixed_jax._src.export import export_model
from smartmixed_jax._src.frozen import FrozenMLP, fixed_mlp, freeze
from smartmixed_jax._src.grouped import fixed_activation
from smartmixed_jax._src.loop import (
  LOGITS_LR_SCALE,
  PhaseResult,
  PhaseState,
  cross_entropy,
  fit,
  make_evaluate,
  make_optimizer,
  make_train_epoch,
  scale_logits,
)
from smartmixed_jax._src.mlp import (
  Dense,
  MLPParams,
  apply_choices,
  apply_hard,
  apply_selective,
  choices,
  init_mlp,
  param_labels,
  sample_choices,
)
from smartmixed_jax._src.policies import (
  NonFiniteError,
  Policy,
  each_epoch,
  progress_bar,
  raise_on_nonfinite,
  record_stats,
  stop_when,
)
from smartmixed_jax._src.pool import ACTIVATIONS, DEFAULT_POOL, Pool, pool_names
from smartmixed_jax._src.selection import gumbel_straight_through, mix
from smartmixed_jax._src.version import __version__ as __version__

__all__ = [
  # The pool.
  "ACTIVATIONS",
  "DEFAULT_POOL",
  "Pool",
  "pool_names",
  # Phase 1: the selective MLP.
  "Dense",
  "MLPParams",
  "init_mlp",
  "apply_selective",
  "apply_hard",
  "apply_choices",
  "choices",
  "sample_choices",
  "param_labels",
  "selection_diagnostics",
  "UndecidedSelectionWarning",
  "gumbel_straight_through",
  "mix",
  # Freeze and Phase 2.
  "FrozenMLP",
  "freeze",
  "fixed_mlp",
  "fixed_activation",
  # Training.
  "fit",
  "make_train_epoch",
  "make_evaluate",
  "make_optimizer",
  "scale_logits",
  "LOGITS_LR_SCALE",
  "cross_entropy",
  "PhaseResult",
  "PhaseState",
  # What fit does around its epochs.
  "Policy",
  "raise_on_nonfinite",
  "record_stats",
  "stop_when",
  "each_epoch",
  "progress_bar",
  "NonFiniteError",
  # Export.
  "export_model",
]


_MOVED_TO_APP = frozenset({
  "ARCHITECTURES", "PRESETS", "Config", "make_config", "train_and_evaluate", "RunResult", "load_run",
  "RunBusyError", "Stopped", "device_splits", "DataError", "Dataset", "Split", "load_dataset", "load_mnist",
})  # fmt: skip


def __getattr__(name: str):
  """Names moved to ``smartmixed_jax.app`` after 0.2.0 still resolve, with a warning."""
  if name in _MOVED_TO_APP:
    import warnings

    from smartmixed_jax import app

    warnings.warn(
      f"smartmixed_jax.{name} moved to smartmixed_jax.app.{name}; the old name will be removed.",
      FutureWarning,
      stacklevel=2,
    )
    return getattr(app, name)
  raise AttributeError(f"module 'smartmixed_jax' has no attribute {name!r}")
