"""smartmixed_jax: per-neuron activation selection (SmartMixed) in JAX.

Phase 1 trains, for every hidden neuron, logits over a pool of activations
through a Gumbel-Softmax straight-through estimator; :func:`freeze` then fixes
each neuron's choice and groups neurons by activation, and Phase 2 trains the
fixed mixed network at the speed of an ordinary one.

Flax users: ``smartmixed_jax.nnx`` (NNX) and ``smartmixed_jax.linen`` (Linen)
hold drop-in activation layers; import them explicitly (they need flax).
"""

from smartmixed_jax.checkpoint import Checkpoints
from smartmixed_jax.config import ARCHITECTURES, PRESETS, Config, make_config, parse_architecture
from smartmixed_jax.data import (
  DATASETS,
  DataError,
  Dataset,
  Split,
  load_dataset,
  load_mnist,
  stratified_split,
)
from smartmixed_jax.freeze import (
  FrozenMLP,
  Segment,
  apply_choices,
  apply_frozen,
  fixed_activation,
  fixed_mlp,
  freeze,
  grouped_activation,
)
from smartmixed_jax.mlp import (
  apply_hard,
  apply_selective,
  choices,
  gumbel_straight_through,
  init_mlp,
  mix,
  sample_choices,
)
from smartmixed_jax.pool import ACTIVATIONS, DEFAULT_POOL, pool_names, resolve_pool
from smartmixed_jax.train import (
  EpochMetrics,
  Metrics,
  NonFiniteError,
  PhaseResult,
  PhaseState,
  RunResult,
  cross_entropy,
  make_evaluate,
  make_optimizer,
  make_train_epoch,
  make_train_step,
  run_phase,
  train_and_evaluate,
)

__version__ = "0.1.0"

__all__ = [
  "ACTIVATIONS",
  "ARCHITECTURES",
  "DATASETS",
  "DEFAULT_POOL",
  "PRESETS",
  "Checkpoints",
  "Config",
  "DataError",
  "EpochMetrics",
  "Dataset",
  "FrozenMLP",
  "Metrics",
  "NonFiniteError",
  "PhaseResult",
  "PhaseState",
  "RunResult",
  "Segment",
  "Split",
  "apply_choices",
  "apply_frozen",
  "apply_hard",
  "apply_selective",
  "choices",
  "cross_entropy",
  "fixed_activation",
  "fixed_mlp",
  "freeze",
  "grouped_activation",
  "gumbel_straight_through",
  "init_mlp",
  "load_dataset",
  "load_mnist",
  "make_config",
  "make_evaluate",
  "make_optimizer",
  "make_train_epoch",
  "make_train_step",
  "run_phase",
  "mix",
  "parse_architecture",
  "pool_names",
  "resolve_pool",
  "sample_choices",
  "stratified_split",
  "train_and_evaluate",
]
