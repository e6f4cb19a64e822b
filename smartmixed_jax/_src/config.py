"""Run configuration: the paper's architectures and the training presets."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smartmixed_jax._src.data import DATASETS
from smartmixed_jax._src.loop import LOGITS_LR_SCALE, cross_entropy, make_optimizer
from smartmixed_jax._src.mlp import validate_layer_sizes
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, as_pool, pool_names
from smartmixed_jax._src.selection import MIN_TEMPERATURE

INPUT_SIZE = 784
NUM_CLASSES = 10
SCHEDULES = ("constant", "cosine", "cosine_run")

ARCHITECTURES: dict[str, tuple[int, ...]] = {
  "simple_2layer": (512,),
  "medium_4layer": (512, 256, 128),
  "medium_5layer": (512, 256, 128, 64),
  "small_3layer": (256, 128),
  "medium_5layer_alt": (512, 256, 256, 128),
  "wide_2layer": (768,),
  "wide_3layer": (768, 512),
  "wide_4layer": (768, 512, 512),
  "wide_5layer": (768, 512, 512, 256),
  "wide_6layer": (768, 512, 512, 256, 256),
  "wide_7layer": (768, 512, 512, 256, 256, 128),
  "wide_8layer": (768, 512, 512, 256, 256, 128, 128),
  "wide_9layer": (768, 512, 512, 256, 256, 128, 128, 64),
  "wide_10layer": (768, 512, 512, 256, 256, 128, 128, 64, 64),
  "wide_11layer": (768, 512, 512, 256, 256, 128, 128, 64, 64, 32),
  "wide_12layer": (768, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32),
  "wide_13layer": (768, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 16),
  "wide_14layer": (768, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 16, 16),
}
"""The paper's 18 MNIST architectures (hidden widths), numbered 1-18 in this order."""


def parse_architecture(arch: str) -> tuple[int, ...]:
  """Hidden widths from an architecture name or a spec like ``"512-256"``.

  Raises:
    ValueError: neither a known name nor dash-separated positive integers.
  """
  if arch in ARCHITECTURES:
    return ARCHITECTURES[arch]
  parts = arch.split("-")
  if not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(
      f"Unknown architecture {arch!r}: give widths like '512-256' (positive"
      f" integers) or one of {list(ARCHITECTURES)}."
    )
  return tuple(int(p) for p in parts)


DTYPES = ("float32", "bfloat16")


ADDED_FIELDS = {"logits_lr_scale": 1.0, "phase2_keeps_start": False}
"""Config fields added after 0.2.0, with what a run did before they existed: a config that lacks one
was trained so, whatever the field's default is now (:meth:`Config.from_dict`)."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a training run; plain, serialisable data.

  Attributes:
    hidden: hidden layer widths.
    arch: display name of the architecture.
    phase1_epochs: epochs of Phase 1 (selective).
    phase2_epochs: epochs of Phase 2 (frozen, mixed).
    baseline: if set, train a fixed-activation MLP with this activation for
      ``phase1_epochs + phase2_epochs`` epochs instead of SmartMixed.
    learning_rate: Adam learning rate (the peak, with a schedule).
    schedule: ``"constant"``; ``"cosine"``, decaying to zero over each phase
      (Phase 2 starts again from the peak); or ``"cosine_run"``, one cosine
      decay over the whole run's ``phase1_epochs + phase2_epochs``, which
      Phase 2 continues where Phase 1's planned epochs end: the schedule a
      baseline of the same total epochs follows (its ``"cosine"``).
    batch_size: training batch size.
    clip_norm: global gradient-norm clip (logits included).
    temperature: Gumbel-Softmax temperature (at the start of Phase 1).
    final_temperature: if set, the temperature decays geometrically to this
      value over Phase 1's steps (annealing, as in GDAS); None keeps it
      constant (the paper).
    seed: seeds the weights, the logits, the Gumbel noise and the shuffling.
    reinit_phase2: re-initialise weights and optimizer at the switch (the
      reference code) instead of carrying the Phase 1 weights over.
    softmax_output: the reference code's quirk of a softmax layer before the
      cross-entropy (softmax applied twice).
    clip_activations: the reference code's quirk of clamping every activation
      and the mixture to ``[-clip, clip]`` in Phase 1 (it uses 10).
    noisy_eval: the reference code's quirk of sampling Gumbel noise when
      evaluating Phase 1 (instead of each neuron's argmax).
    pool: candidate activations.
    dataset: ``"mnist"`` or ``"fashion_mnist"``.
    train_limit: use only the first N training examples (tests, quick looks).
    eval_batch_size: batch size for evaluation.
    skip_nonfinite: skip updates with non-finite gradients instead of
      stopping the run.
    switch_patience: if set, the adaptive switch (beyond the paper): Phase 1
      ends early, after at least this many epochs, once the share of neurons
      whose argmax changed has stayed below ``switch_threshold`` for this
      many consecutive epochs; ``phase1_epochs`` is then the maximum.
    switch_threshold: see ``switch_patience``.
    dtype: ``"float32"`` or ``"bfloat16"``: the forward and backward passes'
      compute dtype (mixed precision for GPU/TPU: parameters, optimizer
      state and the loss stay float32).
    logits_lr_scale: the selection logits learn this many times faster than
      the weights (beyond the paper; :data:`LOGITS_LR_SCALE`, 100, by
      default, under which the selection decides; the ``paper`` preset has 1).
    phase2_keeps_start: Phase 2's epoch 0, the frozen Phase 1 network, is a
      candidate for its model selection, so Phase 2 never ends worse on
      validation than the model it started from (beyond the paper, which
      selects among Phase 2's trained epochs only).
  """

  hidden: tuple[int, ...] = ARCHITECTURES["medium_5layer"]
  arch: str = "medium_5layer"
  phase1_epochs: int = 20
  phase2_epochs: int = 30
  baseline: Optional[str] = None
  learning_rate: float = 1e-3
  schedule: str = "constant"
  batch_size: int = 128
  clip_norm: float = 1.0
  temperature: float = 0.3
  final_temperature: Optional[float] = None
  seed: int = 0
  reinit_phase2: bool = False
  softmax_output: bool = False
  clip_activations: Optional[float] = None
  noisy_eval: bool = False
  pool: Pool = DEFAULT_POOL
  dataset: str = "mnist"
  train_limit: Optional[int] = None
  eval_batch_size: int = 2000
  skip_nonfinite: bool = False
  switch_patience: Optional[int] = None
  switch_threshold: float = 0.01
  dtype: str = "float32"
  logits_lr_scale: float = LOGITS_LR_SCALE
  phase2_keeps_start: bool = False

  def __post_init__(self):
    object.__setattr__(self, "hidden", validate_layer_sizes((INPUT_SIZE, *self.hidden, NUM_CLASSES))[1:-1])
    object.__setattr__(self, "pool", as_pool(self.pool))
    names = pool_names(self.pool)
    for name in ("phase1_epochs", "phase2_epochs", "batch_size", "eval_batch_size"):
      value = getattr(self, name)
      minimum = 0 if name.endswith("epochs") else 1
      if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    for name in (
      "learning_rate",
      "clip_norm",
      "temperature",
      "final_temperature",
      "clip_activations",
      "logits_lr_scale",
    ):
      value = getattr(self, name)
      if value is None and name in ("final_temperature", "clip_activations"):
        continue
      if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
      ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
      if value < np.finfo(np.float32).tiny:  # training computes in float32: it would be 0 or denormal
        raise ValueError(f"{name} {value!r} is below float32's smallest normal number (about 1.2e-38).")
      if name.endswith("temperature") and value < MIN_TEMPERATURE:
        raise ValueError(f"{name} must be >= {MIN_TEMPERATURE} (softmax overflows below), got {value!r}.")
    if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
      raise ValueError(f"seed must be an integer in [0, 2**32), got {self.seed!r}.")
    if self.dataset not in DATASETS:
      raise ValueError(f"Unknown dataset {self.dataset!r}; valid datasets are {list(DATASETS)}.")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"Unknown schedule {self.schedule!r}; valid schedules are {list(SCHEDULES)}.")
    if self.train_limit is not None and self.train_limit < 1:
      raise ValueError(f"train_limit must be >= 1 or None, got {self.train_limit!r}.")
    if self.switch_patience is not None and (
      isinstance(self.switch_patience, bool)
      or not isinstance(self.switch_patience, int)
      or self.switch_patience < 1
    ):
      raise ValueError(f"switch_patience must be an integer >= 1 or None, got {self.switch_patience!r}.")
    if not 0 < self.switch_threshold <= 1:
      raise ValueError(f"switch_threshold must be in (0, 1], got {self.switch_threshold!r}.")
    for name in ("reinit_phase2", "softmax_output", "noisy_eval", "skip_nonfinite", "phase2_keeps_start"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
    if self.dtype not in DTYPES:
      raise ValueError(f"Unknown dtype {self.dtype!r}; valid dtypes are {list(DTYPES)}.")
    if self.baseline is not None and self.baseline not in names:
      raise ValueError(f"baseline {self.baseline!r} is not in the pool {names}.")

  @property
  def layer_sizes(self) -> tuple[int, ...]:
    return (INPUT_SIZE, *self.hidden, NUM_CLASSES)

  def optimizer(self, steps: int, *, before: int = 0, after: int = 0) -> optax.GradientTransformation:
    """The run's optimizer for a phase of ``steps`` steps.

    Under ``"cosine"`` the learning rate decays over the phase's steps; under
    ``"cosine_run"`` over the whole run, of which ``before`` steps come before
    this phase and ``after`` steps after it.
    """
    run = self.schedule == "cosine_run"
    return make_optimizer(
      self.learning_rate,
      self.clip_norm,
      decay_steps={"constant": None, "cosine": steps, "cosine_run": before + steps + after}[self.schedule],
      decay_offset=before if run else 0,
      skip_nonfinite=self.skip_nonfinite,
      logits_scale=self.logits_lr_scale,
    )

  @property
  def loss_fn(self):
    """The run's per-example loss of ``(logits, labels)``."""
    return functools.partial(cross_entropy, softmax_output=self.softmax_output)

  def compute(self, apply_fn):
    """``apply_fn(params, x, ...)`` computing in :attr:`dtype`; the logits come back float32 for the loss."""
    if self.dtype == "float32":
      return apply_fn
    dtype = jnp.dtype(self.dtype)

    def cast(a):
      return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    def mixed(params, x, *args, **kwargs):
      return apply_fn(jax.tree.map(cast, params), cast(x), *args, **kwargs).astype(jnp.float32)

    return mixed

  @property
  def training_pool(self) -> Pool:
    """The pool the run's model is built with: the baseline's activation alone, or the pool."""
    return (self.baseline,) if self.baseline else self.pool

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Config:
    """The inverse of :meth:`to_dict` (pools of named activations only).

    Every field is required, except those added after 0.2.0 (:data:`ADDED_FIELDS`),
    which take the value runs had before them, so runs written by 0.2.0 still
    load and resume as they were trained.

    Raises:
      ValueError: unknown or missing fields, or invalid values.
    """
    if not isinstance(d, dict):
      raise ValueError(f"A config must be a JSON object, got {type(d).__name__}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown, missing = sorted(set(d) - fields), sorted(fields - set(d) - set(ADDED_FIELDS))
    if unknown or missing:
      raise ValueError(f"Config fields do not match: unknown {unknown}, missing {missing}.")
    d = {**{name: value for name, value in ADDED_FIELDS.items() if name not in d}, **d}
    for name in ("hidden", "pool"):
      if not isinstance(d[name], list):
        raise ValueError(f"Config field {name} must be a list, got {d[name]!r}.")
      d[name] = tuple(d[name])
    return cls(**d)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["pool"] = list(pool_names(self.pool))
    d["hidden"] = list(self.hidden)
    return d


PRESETS: dict[str, dict[str, Any]] = {
  # The reference code's settings and quirks, for comparable numbers.
  "paper": dict(
    phase1_epochs=50,
    phase2_epochs=350,
    learning_rate=1e-4,
    seed=42,
    reinit_phase2=True,
    softmax_output=True,
    clip_activations=10.0,
    noisy_eval=True,
    logits_lr_scale=1.0,
  ),
  # Ours: a 10x higher peak learning rate, decayed to zero over each phase,
  # reaches the same accuracy in a fraction of the epochs; the logits learn
  # 100x faster (Config's default), so the selection decides; weights carry
  # over into Phase 2; no quirks.
  "recommended": dict(phase1_epochs=20, phase2_epochs=30, learning_rate=1e-3, schedule="cosine"),
}


def make_config(arch: str = "medium_5layer", preset: str = "recommended", **overrides) -> Config:
  """A :class:`Config` from an architecture, a preset name and overrides.

  Every override is taken as given, ``None`` included: ``clip_activations=None``
  turns the paper preset's activation clipping off.

  Example:
    >>> make_config("512-256", "paper", phase2_epochs=10).learning_rate
    0.0001
    >>> print(make_config("512-256", "paper", clip_activations=None).clip_activations)
    None
  """
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; valid presets are {list(PRESETS)}.")
  return Config(hidden=parse_architecture(arch), arch=arch, **{**PRESETS[preset], **overrides})
