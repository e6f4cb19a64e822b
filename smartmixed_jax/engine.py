"""The two-phase engine: Phase 1, freeze, Phase 2 (or fixed baselines) for one model or a cohort.

``train_and_evaluate`` trains one model through :func:`two_phase`; the sweep and
the experiments train cohorts (``seeds=[...]``: one vmapped program) through
the same function, so a cohort's seed trains what the run with that seed trains.

Example:
  >>> import smartmixed_jax as sm
  >>> from smartmixed_jax import engine
  >>> engine.run_keys(0).phase2.shape, engine.run_keys([0, 1, 2]).phase2.shape
  ((), (3,))
"""

from smartmixed_jax._src.engine import (
  INITS,
  RULES,
  Checkpointing,
  RunKeys,
  TwoPhaseResult,
  baselines,
  data_parallel_mesh,
  depth_reversed,
  models_mesh,
  phase1_forward,
  phase1_stats,
  phase2_forward,
  preset_variant,
  record,
  run_keys,
  sampled_activations,
  settled,
  temperature_schedule,
  two_phase,
)

__all__ = [
  "INITS",
  "RULES",
  "Checkpointing",
  "RunKeys",
  "TwoPhaseResult",
  "baselines",
  "depth_reversed",
  "data_parallel_mesh",
  "models_mesh",
  "phase1_forward",
  "phase1_stats",
  "phase2_forward",
  "preset_variant",
  "record",
  "run_keys",
  "sampled_activations",
  "settled",
  "temperature_schedule",
  "two_phase",
]
