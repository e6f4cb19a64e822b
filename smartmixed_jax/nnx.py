"""Flax NNX: a drop-in per-feature activation layer, and freezing whole models.

Use :class:`MixedActivation` wherever a model would call an activation; it
learns, per feature (the last axis), which activation of the pool to use.
:func:`freeze` then returns a copy of the model whose mixed activations are
fixed and grouped. Both call the same pure core as the functional API.

Example:
  >>> from flax import nnx
  >>> model = nnx.Sequential(
  ...     nnx.Linear(784, 256, rngs=nnx.Rngs(0)),
  ...     MixedActivation(256, rngs=nnx.Rngs(1)),
  ...     nnx.Linear(256, 10, rngs=nnx.Rngs(2)))
  >>> y = model(jnp.ones((8, 784)))          # training: Gumbel straight-through
  >>> model.eval(); frozen = freeze(model)   # argmax per feature, then grouped
  >>> bool(jnp.allclose(frozen(jnp.ones((8, 784))), model(jnp.ones((8, 784))), atol=1e-5))
  True
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smartmixed_jax.freeze import fixed_activation
from smartmixed_jax.mlp import check_temperature, gumbel_straight_through, init_logits, mix
from smartmixed_jax.pool import DEFAULT_POOL, Pool, pool_names, resolve_pool

__all__ = ["FrozenActivation", "MixedActivation", "freeze"]


class MixedActivation(nnx.Module):
  """Per-feature activation selection (SmartMixed Phase 1) as an NNX layer.

  In training mode each call draws one Gumbel sample per feature (shared by
  every leading position: batch, height, width, sequence) from the ``gumbel``
  stream of its ``rngs`` (or ``default``), and applies the straight-through
  one-hot choice; the gradient reaches the logits. In evaluation mode
  (``model.eval()``, or ``deterministic=True``) each feature uses the argmax of
  its logits.

  Args:
    num_features: size of the last axis of the input.
    pool: candidate activations (names or ``(name, callable)`` pairs).
    temperature: Gumbel-Softmax temperature, > 0.
    hard: straight-through one-hot (True) or soft mixture (False) in training.
    deterministic: start in evaluation mode.
    rngs: initialises the logits and feeds the Gumbel noise.
  """

  def __init__(
    self,
    num_features: int,
    *,
    pool: Pool = DEFAULT_POOL,
    temperature: float = 0.3,
    hard: bool = True,
    deterministic: bool = False,
    rngs: nnx.Rngs,
  ):
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
      raise ValueError(f"num_features must be a positive integer, got {num_features!r}.")
    check_temperature(temperature)
    self.pool = tuple(pool)
    self.num_features = num_features
    self.temperature = temperature
    self.hard = hard
    self.deterministic = deterministic
    self.logits = nnx.Param(init_logits(rngs.params(), num_features, len(resolve_pool(self.pool))))
    self.rngs = rngs["gumbel"].fork()

  def __call__(self, x: jax.Array, *, deterministic: Optional[bool] = None) -> jax.Array:
    """``[..., num_features] -> [..., num_features]``."""
    if x.shape[-1] != self.num_features:
      raise ValueError(f"Input has shape {tuple(x.shape)}; its last axis must be {self.num_features}.")
    fns = [fn for _, fn in resolve_pool(self.pool)]
    logits = self.logits[...]
    if self.deterministic if deterministic is None else deterministic:
      weights = jax.nn.one_hot(jnp.argmax(logits, -1), len(fns), dtype=x.dtype)
    else:
      weights = gumbel_straight_through(logits, self.rngs(), temperature=self.temperature, hard=self.hard)
    return mix(x, weights, fns)

  def choices(self) -> np.ndarray:
    """Each feature's chosen pool index (argmax; ties to the lowest)."""
    return np.asarray(jnp.argmax(self.logits[...], -1))


class FrozenActivation(nnx.Module):
  """Fixed per-feature activations (SmartMixed Phase 2) as an NNX layer.

  Calls :func:`smartmixed_jax.fixed_activation`: sorted choices run as
  contiguous segments, others through constant masks.

  Args:
    choices: per feature, its index into ``pool`` (a tuple of ints).
    pool: the candidate activations.
  """

  def __init__(self, choices: tuple[int, ...], pool: Pool = DEFAULT_POOL):
    names = pool_names(pool)
    self.choices = tuple(int(c) for c in choices)
    if not self.choices or min(self.choices) < 0 or max(self.choices) >= len(names):
      raise ValueError(f"choices must index the pool {names}, got {self.choices[:10]}...")
    self.pool = tuple(pool)

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[..., features] -> [..., features]``."""
    return fixed_activation(x, self.choices, self.pool)


def _feature_axes(layer) -> Optional[tuple[int, int]]:
  """(output-feature axis, input-feature axis) of a layer's kernel, if permutable."""
  if isinstance(layer, nnx.Linear):
    return -1, 0
  if isinstance(layer, nnx.Conv) and layer.feature_group_count == 1:
    return -1, -2
  return None


def _permute_sandwiches(model: nnx.Module) -> None:
  """In every Sequential, sorts the features of Linear/Conv -> Mixed -> Linear/Conv."""
  for _, node in nnx.iter_graph(model):
    if not isinstance(node, nnx.Sequential):
      continue
    layers = node.layers
    for i in range(1, len(layers) - 1):
      before, act, after = layers[i - 1], layers[i], layers[i + 1]
      if not isinstance(act, MixedActivation) or not (_feature_axes(before) and _feature_axes(after)):
        continue
      perm = np.argsort(act.choices(), kind="stable")
      out_axis, _ = _feature_axes(before)
      _, in_axis = _feature_axes(after)
      before.kernel.set_value(jnp.take(before.kernel[...], perm, axis=out_axis))
      if before.bias is not None:
        before.bias.set_value(before.bias[...][perm])
      after.kernel.set_value(jnp.take(after.kernel[...], perm, axis=in_axis))
      act.logits.set_value(act.logits[...][perm])


def freeze(model: nnx.Module) -> nnx.Module:
  """A copy of ``model`` with every :class:`MixedActivation` fixed and grouped.

  Where a mixed activation sits between two Linear or two Conv layers of a
  ``Sequential`` (the only readers of its features), the adjacent layers'
  features are permuted so that each activation is one contiguous segment.
  Elsewhere (e.g. inside a residual block) the features keep their places and
  each is selected by a constant mask. Either way the frozen model computes
  what the evaluation-mode model computes. ``model`` is left untouched.

  Args:
    model: any NNX module containing :class:`MixedActivation` layers.

  Returns:
    A new module of the same structure with :class:`FrozenActivation` layers.
  """
  frozen = nnx.clone(model)
  _permute_sandwiches(frozen)
  replacements = [
    (path, FrozenActivation(tuple(node.choices().tolist()), node.pool))
    for path, node in nnx.iter_graph(frozen)
    if isinstance(node, MixedActivation)
  ]
  for path, new in replacements:
    if not path:
      return new
    parent = frozen
    for key in path[:-1]:
      parent = getattr(parent, key) if _is_attribute(parent, key) else parent[key]
    if _is_attribute(parent, path[-1]):
      setattr(parent, path[-1], new)
    else:
      parent[path[-1]] = new
  return frozen


def _is_attribute(parent, key) -> bool:
  return isinstance(parent, nnx.Module) and isinstance(key, str)
