"""The Phase 1 (selective) MLP: parameters, Gumbel straight-through, forward passes.

Parameters are a plain dict pytree::

    {"layers": [{"w": [fan_in, fan_out], "b": [fan_out]}, ...],
     "logits": [[neurons, candidates], ...]}   # one per hidden layer

Neurons live on the last axis; inputs may have any number of leading axes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from smartmixed_jax.pool import DEFAULT_POOL, Activation, Pool, resolve_pool

Params = dict[str, Any]

LOGIT_INIT_BUMP = 1e-3
"""Init: zero logits with one random entry per neuron set to this value."""


def validate_layer_sizes(layer_sizes: Sequence[int]) -> tuple[int, ...]:
  """Checks ``(input, hidden..., output)`` sizes and returns them as a tuple."""
  sizes = tuple(layer_sizes)
  if len(sizes) < 2:
    raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}.")
  for s in sizes:
    if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
      raise ValueError(f"layer_sizes must be positive integers, got {s!r} in {sizes}.")
  return sizes


def init_linear(key: jax.Array, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
  """PyTorch's ``nn.Linear`` default: weight and bias ~ U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  wkey, bkey = jax.random.split(key)
  return {
    "w": jax.random.uniform(wkey, (fan_in, fan_out), minval=-bound, maxval=bound),
    "b": jax.random.uniform(bkey, (fan_out,), minval=-bound, maxval=bound),
  }


def init_logits(key: jax.Array, neurons: int, candidates: int) -> jax.Array:
  """Near-uniform selection logits: zeros, one random entry per neuron bumped."""
  bumped = jax.random.randint(key, (neurons,), 0, candidates)
  return LOGIT_INIT_BUMP * jax.nn.one_hot(bumped, candidates)


def init_mlp(key: jax.Array, layer_sizes: Sequence[int], *, pool: Pool = DEFAULT_POOL) -> Params:
  """Initialises a SmartMixed MLP.

  Args:
    key: a PRNG key.
    layer_sizes: ``(input, hidden..., output)``, e.g. ``(784, 512, 256, 10)``.
    pool: the candidate activations; fixes the logits' last dimension.

  Returns:
    ``{"layers": [{"w": [fan_in, fan_out], "b": [fan_out]}, ...],
    "logits": [[neurons, len(pool)], ...]}`` with one logits array per hidden
    layer.

  Example:
    >>> params = init_mlp(jax.random.key(0), (784, 64, 10))
    >>> params["logits"][0].shape
    (64, 6)
  """
  sizes = validate_layer_sizes(layer_sizes)
  candidates = len(resolve_pool(pool))
  layer_keys = jax.random.split(key, 2 * (len(sizes) - 1))
  layers = [
    init_linear(layer_keys[i], fan_in, fan_out)
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]))
  ]
  logits = [init_logits(layer_keys[len(sizes) - 1 + i], n, candidates) for i, n in enumerate(sizes[1:-1])]
  return {"layers": layers, "logits": logits}


def layer_sizes_of(params: Params) -> tuple[int, ...]:
  """The ``(input, hidden..., output)`` sizes of an MLP's parameters."""
  layers = params["layers"]
  return (layers[0]["w"].shape[0],) + tuple(layer["w"].shape[1] for layer in layers)


def gumbel_straight_through(
  logits: jax.Array, key: jax.Array, *, temperature: float, hard: bool = True
) -> jax.Array:
  r"""Samples per-neuron selection weights with the Gumbel-Softmax estimator.

  .. math::
      y_\text{soft} = \mathrm{softmax}((\ell + g) / \tau), \quad g \sim \mathrm{Gumbel}(0, 1)

  With ``hard=True`` the forward value is exactly ``one_hot(argmax y_soft)``
  while the gradient is that of ``y_soft`` (straight-through).

  Args:
    logits: ``[neurons, candidates]`` selection logits.
    key: a PRNG key; one sample per neuron.
    temperature: softmax temperature, > 0.
    hard: straight-through one-hot (True) or the soft relaxation (False).

  Returns:
    ``[neurons, candidates]`` weights that sum to one per neuron.
  """
  noise = jax.random.gumbel(key, logits.shape, logits.dtype)
  return _straight_through(logits, noise, temperature, hard)


def _straight_through(logits, noise, temperature, hard):
  y_soft = jax.nn.softmax((logits + noise) / temperature, axis=-1)
  if not hard:
    return y_soft
  y_hard = jax.nn.one_hot(jnp.argmax(y_soft, axis=-1), logits.shape[-1], dtype=y_soft.dtype)
  # Adding an exact zero keeps the forward value exactly one-hot.
  return y_hard + (y_soft - jax.lax.stop_gradient(y_soft))


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
  out = _weighted_sum(_values(z, fns, clip), weights)
  return out if clip is None else jnp.clip(out, -clip, clip)


def _mix_fwd(z, weights, fns, clip):
  # Only the inputs are kept for the backward pass, not the K activations of
  # every neuron: memory stays that of one activation, not K.
  return _mix(z, weights, fns, clip), (z, weights)


def _mix_bwd(fns, clip, residuals, g):
  z, weights = residuals
  ones = jnp.ones_like(z)
  # Value and derivative of every candidate in one pass; for elementwise
  # functions the JVP with a ones tangent is the derivative.
  pairs = [jax.jvp(fn, (z,), (ones,)) for fn in fns]
  if clip is not None:
    pairs = [(jnp.clip(v, -clip, clip), jnp.where(jnp.abs(v) <= clip, d, 0)) for v, d in pairs]
    g = jnp.where(jnp.abs(_weighted_sum([v for v, _ in pairs], weights)) <= clip, g, 0)
  dz = g * _weighted_sum([d for _, d in pairs], weights)
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

  Args:
    z: ``[..., neurons]`` pre-activations.
    weights: ``[neurons, candidates]`` mixing weights.
    fns: the ``candidates`` activation functions (elementwise).
    clip: if set, clamp every activation and the mixture to ``[-clip, clip]``
      (the reference code's Phase 1 behaviour); as in PyTorch's ``clamp``,
      the gradient passes on the bounds themselves.

  Returns:
    ``[..., neurons]`` activations.
  """
  return _mix(z, weights, tuple(fns), clip)


def check_input(x: jax.Array, in_features: int) -> None:
  """Raises if ``x`` is not floating point or its last axis is not the input width."""
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"Input must be floating point (e.g. pixels / 255), got dtype {x.dtype}.")
  if x.ndim < 1 or x.shape[-1] != in_features:
    raise ValueError(
      f"Input has shape {tuple(x.shape)}; its last axis must be the model's input width {in_features}."
    )


def check_temperature(temperature: float) -> None:
  if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
    raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")


def check_pool_matches(params: Params, candidates: int) -> None:
  for i, logits in enumerate(params["logits"]):
    if logits.shape[-1] != candidates:
      raise ValueError(
        f"logits[{i}] has {logits.shape[-1]} candidates but the pool has"
        f" {candidates}; pass the pool the params were made with."
      )


def _forward(params: Params, x: jax.Array, weights: Sequence[jax.Array], fns, clip):
  layers = params["layers"]
  check_input(x, layers[0]["w"].shape[0])
  h = x
  for layer, w in zip(layers[:-1], weights):
    h = mix(h @ layer["w"] + layer["b"], w, fns, clip=clip)
  return h @ layers[-1]["w"] + layers[-1]["b"]


def apply_selective(
  params: Params,
  x: jax.Array,
  key: jax.Array,
  *,
  temperature: float = 0.3,
  hard: bool = True,
  pool: Pool = DEFAULT_POOL,
  clip: Optional[float] = None,
) -> jax.Array:
  """The Phase 1 forward pass: each neuron samples its activation.

  One Gumbel sample per neuron per call, shared by every example, so the
  whole batch sees the same network. Gradients reach the logits.

  Args:
    params: from :func:`init_mlp`.
    x: ``[..., input]`` inputs.
    key: PRNG key for the Gumbel noise.
    temperature: Gumbel-Softmax temperature, > 0.
    hard: straight-through one-hot selection (True) or soft mixture (False).
    pool: the pool the params were made with.
    clip: optional clamp of activations and mixture (reference quirk).

  Returns:
    ``[..., output]`` logits of the output layer (no selection there).

  Example:
    >>> params = init_mlp(jax.random.key(0), (4, 8, 3))
    >>> apply_selective(params, jnp.ones((2, 4)), jax.random.key(1)).shape
    (2, 3)
  """
  check_temperature(temperature)
  fns = [fn for _, fn in resolve_pool(pool)]
  check_pool_matches(params, len(fns))
  weights = [
    _straight_through(logits, noise, temperature, hard)
    for logits, noise in zip(params["logits"], _layer_noise(params["logits"], key))
  ]
  return _forward(params, x, weights, fns, clip)


def _layer_noise(logits: Sequence[jax.Array], key: jax.Array) -> list[jax.Array]:
  """Gumbel noise shaped like each layer's logits, from one draw for all layers
  (a single RNG call is cheaper than one per layer)."""
  if not logits:
    return []
  sizes = [layer_logits.shape[0] for layer_logits in logits]
  noise = jax.random.gumbel(key, (sum(sizes), logits[0].shape[-1]), logits[0].dtype)
  offsets = np.cumsum([0, *sizes])
  return [noise[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def sample_choices(params: Params, key: jax.Array, *, temperature: float = 0.3) -> list[jax.Array]:
  """The activation each hidden neuron samples in ``apply_selective(params, x, key)``.

  Same key, same draw: counting these over a Phase 1 epoch gives how often
  every neuron actually used each activation (e.g. for a "most frequent
  sample" freeze rule).

  Returns:
    One ``[neurons]`` int array of pool indices per hidden layer.
  """
  check_temperature(temperature)
  return [
    jnp.argmax(_straight_through(logits, noise, temperature, hard=False), axis=-1)
    for logits, noise in zip(params["logits"], _layer_noise(params["logits"], key))
  ]


def choices(params: Params) -> list[jax.Array]:
  """Each hidden neuron's chosen activation index: ``argmax`` of its logits.

  Ties go to the lowest index. Returns one ``[neurons]`` int array per layer.
  """
  return [jnp.argmax(logits, axis=-1) for logits in params["logits"]]


def apply_hard(
  params: Params,
  x: jax.Array,
  *,
  pool: Pool = DEFAULT_POOL,
  clip: Optional[float] = None,
) -> jax.Array:
  """Deterministic Phase 1 evaluation: every neuron uses its argmax activation.

  Neurons keep their original order; compare :func:`smartmixed_jax.freeze`.

  Args:
    params: from :func:`init_mlp`.
    x: ``[..., input]`` inputs.
    pool: the pool the params were made with.
    clip: optional clamp of activations and mixture (reference quirk).

  Returns:
    ``[..., output]`` output-layer logits.
  """
  fns = [fn for _, fn in resolve_pool(pool)]
  check_pool_matches(params, len(fns))
  weights = [jax.nn.one_hot(c, len(fns), dtype=x.dtype) for c in choices(params)]
  return _forward(params, x, weights, fns, clip)
