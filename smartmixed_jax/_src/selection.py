"""Selection primitives: selection logits, the Gumbel straight-through sample, the mixture.

These are shared by the functional MLP and the Flax layers; they know nothing
of layers or models. A neuron's candidates live on the last axis of its logits
``[neurons, candidates]``; its features on the last axis of the input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from smartmixed_jax._src.pool import Activation

LOGIT_INIT_BUMP = 1e-3
"""Init: zero logits with one random entry per neuron set to this value."""

MIN_TEMPERATURE = 1e-3
"""Below this, ``(logits + g) / tau`` and its gradient overflow float32 in practice."""

Temperature = Union[float, jax.Array]
"""A positive Python number, or a scalar array (which may be traced: schedules)."""


def init_logits(key: jax.Array, neurons: int, candidates: int, dtype=jnp.float32) -> jax.Array:
  """Near-uniform selection logits ``[neurons, candidates]``: zeros, one random entry per neuron bumped."""
  bumped = jax.random.randint(key, (neurons,), 0, candidates)
  return (LOGIT_INIT_BUMP * jax.nn.one_hot(bumped, candidates)).astype(dtype)


def check_temperature(temperature: Temperature) -> None:
  """Raises unless ``temperature`` is a number >= :data:`MIN_TEMPERATURE` or a scalar array.

  Traced values cannot be checked here (a schedule's output); concrete ones are.
  """
  if isinstance(temperature, jax.core.Tracer):
    if temperature.shape != ():
      raise ValueError(f"temperature must be a scalar, got shape {temperature.shape}.")
    return
  if isinstance(temperature, (jax.Array, np.ndarray, np.generic)):
    if np.shape(temperature) != ():
      raise ValueError(f"temperature must be a scalar, got shape {np.shape(temperature)}.")
    temperature = float(temperature)
  if (
    isinstance(temperature, bool)
    or not isinstance(temperature, (int, float))
    or not math.isfinite(temperature)
    or temperature < MIN_TEMPERATURE
  ):
    raise ValueError(f"temperature must be a finite number >= {MIN_TEMPERATURE}, got {temperature!r}.")


def gumbel_straight_through(
  logits: jax.Array, key: jax.Array, *, temperature: Temperature, hard: bool = True
) -> jax.Array:
  r"""Samples per-neuron selection weights with the Gumbel-Softmax estimator.

  .. math::
      y_\text{soft} = \mathrm{softmax}((\ell + g) / \tau), \quad g \sim \mathrm{Gumbel}(0, 1)

  With ``hard=True`` the forward value is exactly ``one_hot(argmax y_soft)``
  while the gradient is that of ``y_soft`` (straight-through). The sampled
  index is ``argmax(logits + g)`` whatever ``tau``: the temperature shapes
  only the gradient (and the soft weights).

  Args:
    logits: ``[neurons, candidates]`` selection logits.
    key: a PRNG key; one sample per neuron.
    temperature: softmax temperature; a scalar array may be traced.
    hard: straight-through one-hot (True) or the soft relaxation (False).

  Returns:
    ``[neurons, candidates]`` weights that sum to one per neuron.

  Example:
    >>> y = gumbel_straight_through(jnp.zeros((3, 6)), jax.random.key(0), temperature=0.3)
    >>> y.sum(-1).tolist()
    [1.0, 1.0, 1.0]
  """
  check_temperature(temperature)
  return straight_through(logits, jax.random.gumbel(key, logits.shape, jnp.float32), temperature, hard)


def straight_through(logits: jax.Array, noise: jax.Array, temperature: Temperature, hard: bool) -> jax.Array:
  """:func:`gumbel_straight_through` with the noise given.

  The sample is drawn in float32 whatever the logits' dtype (in bfloat16,
  ties between noisy logits would favour the first candidate); the weights
  come back in the logits' dtype. A traced temperature below
  :data:`MIN_TEMPERATURE` (a schedule that reaches 0) is taken as that minimum.
  """
  if isinstance(temperature, jax.core.Tracer):
    temperature = jnp.maximum(temperature, MIN_TEMPERATURE)
  y_soft = jax.nn.softmax((logits.astype(jnp.float32) + noise) / temperature, axis=-1)
  if hard:
    y_hard = jax.nn.one_hot(jnp.argmax(y_soft, axis=-1), logits.shape[-1], dtype=y_soft.dtype)
    # Adding an exact zero keeps the forward value exactly one-hot.
    y_soft = y_hard + (y_soft - jax.lax.stop_gradient(y_soft))
  return y_soft.astype(logits.dtype)


def layer_noise(logits: Sequence[jax.Array], key: jax.Array) -> list[jax.Array]:
  """Gumbel noise shaped like each layer's logits, from one draw for all layers
  (a single RNG call is cheaper than one per layer)."""
  if not logits:
    return []
  sizes = [layer_logits.shape[0] for layer_logits in logits]
  noise = jax.random.gumbel(key, (sum(sizes), logits[0].shape[-1]), jnp.float32)
  offsets = np.cumsum([0, *sizes])
  return [noise[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def _values(z, fns, clip):
  values = [fn(z) for fn in fns]
  return values if clip is None else [jnp.clip(v, -clip, clip) for v in values]


def _weighted_sum(values, weights):
  out = weights[:, 0] * values[0]
  for k in range(1, len(values)):
    out = out + weights[:, k] * values[k]
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mix(z, weights, fns, clip):
  out = _weighted_sum(_values(z, fns, clip), weights.astype(z.dtype))
  return out if clip is None else jnp.clip(out, -clip, clip)


def _mix_fwd(z, weights, fns, clip):
  # Only the inputs are kept for the backward pass, not the K activations of
  # every neuron: memory stays that of one activation, not K.
  return _mix(z, weights, fns, clip), (z, weights)


def _mix_bwd(fns, clip, residuals, g):
  z, weights = residuals
  w = weights.astype(z.dtype)
  ones = jnp.ones_like(z)
  # Value and derivative of every candidate in one pass; for elementwise
  # functions the JVP with a ones tangent is the derivative.
  pairs = [jax.jvp(fn, (z,), (ones,)) for fn in fns]
  if clip is not None:
    pairs = [(jnp.clip(v, -clip, clip), jnp.where(jnp.abs(v) <= clip, d, 0)) for v, d in pairs]
    g = jnp.where(jnp.abs(_weighted_sum([v for v, _ in pairs], w)) <= clip, g, 0)
  dz = g * _weighted_sum([d for _, d in pairs], w)
  # d out / d weights[n, k] = sum over the leading axes of g * f_k(z). As a
  # ones-vector matmul per candidate it runs ~2x faster on CPU than a
  # reduction over a major axis, and accumulates in float32.
  g2 = g.reshape(-1, z.shape[-1])
  ones_row = jnp.ones((1, g2.shape[0]), z.dtype)
  dw = jnp.concatenate(
    [jnp.matmul(ones_row, g2 * v.reshape(g2.shape), preferred_element_type=jnp.float32) for v, _ in pairs]
  )
  return dz.astype(z.dtype), dw.T.astype(weights.dtype)


_mix.defvjp(_mix_fwd, _mix_bwd)


def mix(
  z: jax.Array,
  weights: jax.Array,
  fns: Sequence[Activation],
  *,
  clip: Optional[float] = None,
) -> jax.Array:
  """Per-neuron weighted sum of activations: ``sum_k weights[:, k] * f_k(z)``.

  Differentiable in ``z`` and ``weights`` through a custom VJP that keeps only
  ``z`` and ``weights`` and recomputes the activations in the backward pass,
  so a Phase 1 step needs the memory of one activation per neuron, not K.
  Reverse mode only: ``jax.jvp`` / ``jax.hessian`` do not go through a custom
  VJP (the deterministic :func:`smartmixed_jax.apply_hard` supports them).

  Args:
    z: ``[..., neurons]`` pre-activations; the output keeps their dtype.
    weights: ``[neurons, candidates]`` mixing weights.
    fns: the ``candidates`` activation functions (elementwise).
    clip: if set, clamp every activation and the mixture to ``[-clip, clip]``
      (the reference code's Phase 1 behaviour); as in PyTorch's ``clamp``,
      the gradient passes on the bounds themselves.

  Returns:
    ``[..., neurons]`` activations.
  """
  return _mix(z, weights, tuple(fns), clip)
