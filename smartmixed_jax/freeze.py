"""Freezing: from per-neuron choices to a fixed, grouped, fast MLP (Phase 2).

:func:`freeze` sorts each hidden layer's neurons by their chosen activation and
permutes the weights so that every activation is one contiguous segment of the
layer. The network computes the same function; the frozen forward pass then
applies each activation once per layer, selecting its segment with a static
``jnp.where`` mask.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from smartmixed_jax.mlp import (
  Params,
  check_input,
  init_mlp,
  layer_sizes_of,
)
from smartmixed_jax.mlp import (
  choices as argmax_choices,
)
from smartmixed_jax.pool import DEFAULT_POOL, Pool, PoolEntry, pool_names, resolve_pool

Segment = tuple[str, int, int]
"""``(activation name, start, stop)``: neurons ``start:stop`` use that activation."""


def grouped_activation(z: jax.Array, segments: Sequence[Segment], fns: dict[str, Callable]) -> jax.Array:
  """Applies each segment's activation to its contiguous slice of ``z``.

  The segments are static and sorted, so the mask of a segment is a compile
  time constant ``iota >= start``: XLA fuses all of it into one elementwise
  loop, with no gather or scatter.

  Args:
    z: ``[..., neurons]`` pre-activations.
    segments: contiguous, sorted ``(name, start, stop)`` covering all neurons.
    fns: activation function per name.

  Returns:
    ``[..., neurons]`` activations.
  """
  (first, *rest) = segments
  out = fns[first[0]](z)
  if rest:
    position = jax.lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1)
    for name, start, _ in rest:
      out = jnp.where(position >= start, fns[name](z), out)
  return out


def fixed_activation(
  x: jax.Array, choices: Sequence[int] | jax.Array, pool: Pool = DEFAULT_POOL
) -> jax.Array:
  """Applies to each feature (last axis) of ``x`` its chosen activation.

  With static ``choices`` (a tuple or numpy array of pool indices) only the
  activations in use run, once each: sorted choices as contiguous segments
  (:func:`grouped_activation`), others through constant masks. Choices that
  are traced (e.g. one set per model under ``jax.vmap``) are data: every pool
  activation runs and each feature selects its own.

  Args:
    x: ``[..., features]``.
    choices: per feature, its index into ``pool``.
    pool: the candidate activations.
  """
  names = pool_names(pool)
  fns = [fn for _, fn in resolve_pool(pool)]
  if isinstance(choices, jax.core.Tracer):
    if choices.shape != (x.shape[-1],):
      raise ValueError(
        f"choices must be {x.shape[-1]} indices into the pool {names}, got shape {choices.shape}."
      )
    return _select(x, choices, fns, range(len(fns)))
  c = np.asarray(choices)
  if c.shape != (x.shape[-1],) or c.min() < 0 or c.max() >= len(names):
    raise ValueError(
      f"choices must be {x.shape[-1]} indices into the pool {names}, got {tuple(choices)[:8]}..."
    )
  if np.all(np.diff(c) >= 0):
    return grouped_activation(x, _segments(c, names), dict(zip(names, fns)))
  return _select(x, jnp.asarray(c), fns, np.unique(c))


def _select(x: jax.Array, choices: jax.Array, fns: Sequence[Callable], present: Sequence[int]) -> jax.Array:
  """Feature ``j`` gets ``fns[choices[j]](x[..., j])``; ``present`` are the indices that occur."""
  first, *rest = present
  out = fns[first](x)
  for k in rest:
    out = jnp.where(choices == k, fns[k](x), out)
  return out


def apply_choices(
  params: Params,
  x: jax.Array,
  choices: Sequence[jax.Array],
  *,
  pool: Pool = DEFAULT_POOL,
) -> jax.Array:
  """Forward pass of an MLP whose hidden neurons use the given activations.

  Neurons keep their order (no permutation) and any logits in ``params`` are
  ignored. This is the frozen network in a form ``jax.vmap`` can batch over
  models with different choices, e.g. the Phase 2 of several seeds trained as
  one program; it computes what ``freeze(params, choices=choices)`` computes.
  See :func:`fixed_activation` for what runs.

  Args:
    params: ``{"layers": [...]}`` (e.g. from :func:`init_mlp`).
    x: ``[..., input]`` inputs.
    choices: per hidden layer, ``[neurons]`` pool indices.
    pool: the candidate activations.

  Returns:
    ``[..., output]`` output-layer logits.
  """
  layers = params["layers"]
  check_input(x, layers[0]["w"].shape[0])
  if len(choices) != len(layers) - 1:
    raise ValueError(f"choices has {len(choices)} layers but the MLP has {len(layers) - 1} hidden layers.")
  h = x
  for layer, c in zip(layers[:-1], choices):
    h = fixed_activation(h @ layer["w"] + layer["b"], c, pool)
  return h @ layers[-1]["w"] + layers[-1]["b"]


def apply_frozen(
  params: Params,
  x: jax.Array,
  *,
  segments: Sequence[Sequence[Segment]],
  pool: Pool,
) -> jax.Array:
  """Forward pass of a frozen MLP; ``model.apply`` is this, jit-compiled.

  Args:
    params: ``{"layers": [{"w", "b"}, ...]}`` in the frozen (permuted) order.
    x: ``[..., input]`` inputs.
    segments: per hidden layer, its static segments.
    pool: activations the segments name.

  Returns:
    ``[..., output]`` output-layer logits.
  """
  fns = dict(resolve_pool(pool))
  layers = params["layers"]
  check_input(x, layers[0]["w"].shape[0])
  h = x
  for layer, layer_segments in zip(layers[:-1], segments):
    h = grouped_activation(h @ layer["w"] + layer["b"], layer_segments, fns)
  return h @ layers[-1]["w"] + layers[-1]["b"]


@dataclasses.dataclass(frozen=True, eq=False)
class FrozenMLP:
  """An MLP whose neurons have fixed activations, grouped into segments.

  Attributes:
    params: trainable ``{"layers": [{"w": [fan_in, fan_out], "b": [fan_out]}]}``,
      in the frozen neuron order.
    segments: per hidden layer, a tuple of ``(name, start, stop)``.
    permutations: per hidden layer, ``[neurons]`` int array: frozen position
      ``j`` holds original neuron ``permutations[l][j]``.
    pool: the activations the segments name.
  """

  params: Params
  segments: tuple[tuple[Segment, ...], ...]
  permutations: tuple[np.ndarray, ...]
  pool: Pool

  @functools.cached_property
  def apply(self) -> Callable[[Params, jax.Array], jax.Array]:
    """``apply(params, x) -> [..., output]``: pure and jit-compiled.

    Compiled once per input shape; the segments are baked in as constants.
    """
    return jax.jit(functools.partial(apply_frozen, segments=self.segments, pool=self.pool))

  @property
  def layer_sizes(self) -> tuple[int, ...]:
    return layer_sizes_of(self.params)

  def activation_names(self) -> list[list[str]]:
    """Per hidden layer, each original neuron's activation name (unpermuted)."""
    names = []
    for segs, perm in zip(self.segments, self.permutations):
      frozen_order = [name for name, start, stop in segs for _ in range(start, stop)]
      layer = [""] * len(perm)
      for position, neuron in enumerate(perm):
        layer[int(neuron)] = frozen_order[position]
      names.append(layer)
    return names

  def counts(self) -> list[dict[str, int]]:
    """Per hidden layer, how many neurons use each activation."""
    return [{name: stop - start for name, start, stop in segs} for segs in self.segments]


def _segments(sorted_choices: np.ndarray, names: Sequence[str]) -> tuple[Segment, ...]:
  values, starts, counts = np.unique(sorted_choices, return_index=True, return_counts=True)
  return tuple((names[int(v)], int(s), int(s + c)) for v, s, c in zip(values, starts, counts))


def freeze(
  params: Params,
  *,
  pool: Pool = DEFAULT_POOL,
  choices: Optional[Sequence[jax.Array]] = None,
) -> FrozenMLP:
  """Fixes every hidden neuron's activation and groups neurons by activation.

  Each hidden layer's neurons are sorted stably by their choice; the layer's
  weight columns and bias and the next layer's weight rows are permuted alike,
  so the network computes the same function as :func:`apply_hard`. The input
  ``params`` are left untouched; the logits are dropped.

  Args:
    params: from :func:`init_mlp` (logits may be absent if ``choices`` given).
    pool: the pool the params were made with.
    choices: optional per-layer ``[neurons]`` pool indices to use instead of
      the argmax of the logits (e.g. another freeze rule).

  Returns:
    A :class:`FrozenMLP`; ``model.apply(model.params, x)`` is the forward pass.

  Example:
    >>> params = init_mlp(jax.random.key(0), (4, 8, 3))
    >>> model = freeze(params)
    >>> x = jnp.ones((2, 4))
    >>> bool(jnp.allclose(model.apply(model.params, x), apply_hard(params, x), atol=1e-6))
    True
  """
  names = pool_names(pool)
  layers = params["layers"]
  if choices is None:
    choices = argmax_choices(params)
  choices = [np.asarray(jax.device_get(c)) for c in choices]
  if len(choices) != len(layers) - 1:
    raise ValueError(f"choices has {len(choices)} layers but the MLP has {len(layers) - 1} hidden layers.")
  new_layers = [dict(layer) for layer in layers]
  segments, permutations = [], []
  for i, c in enumerate(choices):
    neurons = layers[i]["w"].shape[1]
    if c.shape != (neurons,) or not np.issubdtype(c.dtype, np.integer):
      raise ValueError(f"choices[{i}] must be {neurons} integers, got {c.dtype}{list(c.shape)}.")
    if c.size and (c.min() < 0 or c.max() >= len(names)):
      raise ValueError(f"choices[{i}] must index the pool {names}; got values in [{c.min()}, {c.max()}].")
    perm = np.argsort(c, kind="stable")
    new_layers[i]["w"] = new_layers[i]["w"][:, perm]
    new_layers[i]["b"] = new_layers[i]["b"][perm]
    new_layers[i + 1]["w"] = new_layers[i + 1]["w"][perm, :]
    segments.append(_segments(c[perm], names))
    permutations.append(perm)
  return FrozenMLP(
    params={"layers": new_layers},
    segments=tuple(segments),
    permutations=tuple(permutations),
    pool=tuple(pool),
  )


def fixed_mlp(key: jax.Array, layer_sizes: Sequence[int], activation: PoolEntry) -> FrozenMLP:
  """A fixed-activation baseline: one activation everywhere, one segment a layer.

  Built through the same frozen path as SmartMixed's Phase 2, and with the same
  weight initialisation as :func:`init_mlp` for the same key.

  Args:
    key: a PRNG key.
    layer_sizes: ``(input, hidden..., output)``.
    activation: a name from :data:`ACTIVATIONS` or a ``(name, callable)`` pair.

  Returns:
    A :class:`FrozenMLP` whose every hidden neuron uses ``activation``.
  """
  pool = (activation,)
  params = init_mlp(key, layer_sizes, pool=pool)
  zeros = [jnp.zeros(logits.shape[0], jnp.int32) for logits in params["logits"]]
  return freeze(params, pool=pool, choices=zeros)
