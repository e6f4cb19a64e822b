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
from collections.abc import Sequence
from typing import Optional

import jax
import numpy as np

from smartmixed_jax._src import grouped, mlp
from smartmixed_jax._src.grouped import Segment
from smartmixed_jax._src.pool import Pool, PoolEntry, as_pool, pool_names, resolve_pool


@functools.partial(jax.jit, static_argnames=("segments", "pool"))
def _apply_frozen(layers, x, *, segments, pool):
  fns = dict(resolve_pool(pool))
  return mlp.forward(layers, x, [lambda z, s=s: grouped.grouped_activation(z, s, fns) for s in segments])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, repr=False)
class FrozenMLP:
  """An MLP whose neurons have fixed activations, grouped into segments.

  A pytree whose leaves are the trainable weights; segments, permutations and
  pool are static metadata. ``model(x)`` runs it (compiled once per input
  shape and model structure, in a module-level cache); ``jax.jit``,
  ``jax.grad``, ``jax.device_put``, optax, orbax and ``pickle`` take the model
  itself.

  Attributes:
    layers: one :class:`Dense` per layer, in the frozen (grouped) neuron order.
    segments: per hidden layer, its ``(name, start, stop)`` segments.
    permutations: per hidden layer, frozen position ``j`` holds original
      neuron ``permutations[l][j]``.
    pool: the activations the segments name.

  Example:
    >>> import jax, jax.numpy as jnp, smartmixed_jax as sm
    >>> model = sm.freeze(sm.init_mlp(jax.random.key(0), (4, 8, 3)))
    >>> grads = jax.grad(lambda m: m(jnp.ones((2, 4))).sum())(model)
    >>> type(grads).__name__, grads.layers[0].w.shape
    ('FrozenMLP', (4, 8))
  """

  layers: tuple[mlp.Dense, ...]
  segments: tuple[tuple[Segment, ...], ...] = mlp.static_field()
  permutations: tuple[tuple[int, ...], ...] = mlp.static_field()
  pool: Pool = mlp.static_field()

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[..., input] -> [..., output]`` logits."""
    return _apply_frozen(self.layers, x, segments=self.segments, pool=self.pool)

  @property
  def layer_sizes(self) -> tuple[int, ...]:
    return (self.layers[0].w.shape[-2],) + tuple(layer.w.shape[-1] for layer in self.layers)

  def counts(self) -> list[dict[str, int]]:
    """Per hidden layer, how many neurons use each activation (pool order)."""
    return [{name: stop - start for name, start, stop in segs} for segs in self.segments]

  def choices(self) -> list[np.ndarray]:
    """Per hidden layer, each original neuron's pool index (unpermuted)."""
    names = pool_names(self.pool)
    out = []
    for segs, perm in zip(self.segments, self.permutations):
      layer = np.empty(len(perm), np.int32)
      for name, start, stop in segs:
        layer[list(perm[start:stop])] = names.index(name)
      out.append(layer)
    return out

  def activation_names(self) -> list[list[str]]:
    """Per hidden layer, each original neuron's activation name (unpermuted)."""
    names = pool_names(self.pool)
    return [[names[int(c)] for c in layer] for layer in self.choices()]

  def __repr__(self) -> str:
    counts = ["+".join(f"{n}:{c}" for n, c in layer.items()) for layer in self.counts()]
    return mlp.shapes_repr(self, segments=counts)


def freeze(params: mlp.MLPParams, *, choices: Optional[Sequence[jax.Array]] = None) -> FrozenMLP:
  """Fixes every hidden neuron's activation and groups neurons by activation.

  Each hidden layer's neurons are sorted stably by their choice; the layer's
  weight columns and bias and the next layer's weight rows are permuted alike,
  so the network computes the same function as :func:`apply_hard`. The input
  is left untouched; the logits are dropped; the pool is the params' own.

  Args:
    params: from :func:`init_mlp` (logits may be empty if ``choices`` given).
    choices: optional per-layer ``[neurons]`` pool indices to use instead of
      the argmax of the logits (e.g. another freeze rule).

  Returns:
    A :class:`FrozenMLP`; ``model(x)`` is the forward pass.

  Raises:
    ValueError: choices of the wrong shape or out of the pool's range, or
      non-finite logits (their argmax would be meaningless).

  Example:
    >>> import jax, jax.numpy as jnp, smartmixed_jax as sm
    >>> params = sm.init_mlp(jax.random.key(0), (4, 8, 3))
    >>> model = sm.freeze(params)
    >>> x = jnp.ones((2, 4))
    >>> bool(jnp.allclose(model(x), sm.apply_hard(params, x), atol=1e-6))
    True
  """
  mlp.check_params(params, need_logits=choices is None)
  names = pool_names(params.pool)
  layers = list(params.layers)
  if choices is None:
    for i, logits in enumerate(params.logits):
      if not np.all(np.isfinite(np.asarray(logits))):
        raise ValueError(f"logits[{i}] are not finite; cannot choose activations from them.")
    choices = mlp.choices(params)
  choices = [np.asarray(jax.device_get(c)) for c in choices]
  if len(choices) != len(layers) - 1:
    raise ValueError(f"choices has {len(choices)} layers but the MLP has {len(layers) - 1} hidden layers.")
  segments, permutations = [], []
  for i, c in enumerate(choices):
    neurons = layers[i].w.shape[1]
    if c.shape != (neurons,) or not np.issubdtype(c.dtype, np.integer):
      raise ValueError(f"choices[{i}] must be {neurons} integers, got {c.dtype}{list(c.shape)}.")
    if c.size and (c.min() < 0 or c.max() >= len(names)):
      raise ValueError(f"choices[{i}] must index the pool {names}; got values in [{c.min()}, {c.max()}].")
    perm = np.argsort(c, kind="stable")
    segments.append(grouped.segments_of(c[perm], names))
    permutations.append(tuple(int(p) for p in perm))
  layers = _permuted(tuple(layers), tuple(np.asarray(p, np.int32) for p in permutations))
  return FrozenMLP(layers, tuple(segments), tuple(permutations), params.pool)


@jax.jit
def _permuted(layers: tuple[mlp.Dense, ...], permutations: tuple[jax.Array, ...]) -> tuple[mlp.Dense, ...]:
  """Hidden layer ``i``'s neurons in the order ``permutations[i]``: its columns and the next layer's rows."""
  layers = list(layers)
  for i, perm in enumerate(permutations):
    layers[i] = mlp.Dense(layers[i].w[:, perm], layers[i].b[perm])
    layers[i + 1] = layers[i + 1]._replace(w=layers[i + 1].w[perm, :])
  return tuple(layers)


def fixed_mlp(key: jax.Array, layer_sizes: Sequence[int], activation: PoolEntry) -> FrozenMLP:
  """A fixed-activation baseline: one activation everywhere, one segment a layer.

  Built through the same frozen path as SmartMixed's Phase 2, and with the same
  weight initialisation as :func:`init_mlp` for the same key.

  Args:
    key: a PRNG key.
    layer_sizes: ``(input, hidden..., output)``.
    activation: a name from :data:`ACTIVATIONS` or a ``(name, callable)`` pair.
  """
  params = mlp.init_mlp(key, layer_sizes, pool=as_pool((activation,)))
  return freeze(params, choices=[np.zeros(n, np.int32) for n in params.layer_sizes[1:-1]])
