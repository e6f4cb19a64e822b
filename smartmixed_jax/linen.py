"""Flax Linen: the same per-feature activation layers, for Linen codebases.

Example:
  >>> import flax.linen as nn
  >>> class MLP(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x, train: bool):
  ...     x = nn.Dense(64)(x)
  ...     x = MixedActivation()(x, deterministic=not train)
  ...     return nn.Dense(10)(x)
  >>> variables = MLP().init({"params": jax.random.key(0)}, jnp.ones((1, 784)), train=False)
  >>> y = MLP().apply(variables, jnp.ones((4, 784)), train=True, rngs={"gumbel": jax.random.key(1)})
  >>> module, frozen = freeze(MLP(), variables)   # logits out, a "choices" collection in
  >>> y = module.apply(frozen, jnp.ones((4, 784)), train=True)   # fixed activations, no RNG
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from smartmixed_jax._src.grouped import fixed_activation
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, pool_names, resolve_pool
from smartmixed_jax._src.probe import disagreement, tolerance
from smartmixed_jax._src.selection import (
  Temperature,
  check_temperature,
  gumbel_straight_through,
  init_logits,
  mix,
)

__all__ = ["FrozenActivation", "MixedActivation", "counts", "freeze", "frozen_choices"]


class MixedActivation(nn.Module):
  """Per-feature activation selection (SmartMixed Phase 1) as a Linen layer.

  Training (``deterministic=False``) draws one Gumbel sample per feature from
  the ``gumbel`` RNG stream and applies the straight-through choice;
  evaluation uses each feature's argmax. The logits live in ``params`` as
  ``logits: [features, len(pool)]`` (``[layers, features, len(pool)]`` under
  ``nn.scan`` / ``nn.vmap``). Once :func:`freeze` has replaced them by a
  ``choices`` collection, every call applies those fixed activations (a scan
  over such layers lists ``"choices"`` in its ``variable_axes``, as it does
  ``"params"``).

  Attributes:
    pool: candidate activations.
    temperature: Gumbel-Softmax temperature, > 0; a call's ``temperature``
      (which may be traced: a schedule) overrides it.
    hard: straight-through one-hot (True) or soft mixture (False).
    deterministic: default mode; a call argument overrides it.
    dtype: computation and output dtype; None keeps the input's.
    param_dtype: dtype of the logits.
  """

  pool: Pool = DEFAULT_POOL
  temperature: float = 0.3
  hard: bool = True
  deterministic: Optional[bool] = None
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, deterministic: Optional[bool] = None, temperature: Optional[Temperature] = None
  ) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    temperature = self.temperature if temperature is None else temperature
    check_temperature(temperature)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise TypeError(
        f"MixedActivation needs floating-point input (e.g. x.astype(jnp.float32)), got {x.dtype}."
      )
    x = x.astype(self.dtype or x.dtype)
    if self.has_variable("choices", "choices"):
      return fixed_activation(x, self.get_variable("choices", "choices"), pool=tuple(self.pool))
    fns = [fn for _, fn in resolve_pool(tuple(self.pool))]
    logits = self.param("logits", lambda key: init_logits(key, x.shape[-1], len(fns), self.param_dtype))
    if deterministic:
      weights = jax.nn.one_hot(jnp.argmax(logits, -1), len(fns), dtype=x.dtype)
    else:
      weights = gumbel_straight_through(
        logits, self.make_rng("gumbel"), temperature=temperature, hard=self.hard
      )
    return mix(x, weights.astype(x.dtype), fns)


class FrozenActivation(nn.Module):
  """Fixed per-feature activations (SmartMixed Phase 2) as a Linen layer.

  Attributes:
    choices: per feature, its pool index (e.g. from :func:`frozen_choices`).
    pool: the candidate activations.
  """

  choices: tuple[int, ...]
  pool: Pool = DEFAULT_POOL

  def __call__(self, x: jax.Array) -> jax.Array:
    return fixed_activation(x, self.choices, pool=tuple(self.pool))


Variables = dict[str, Any]


def _logits(params, paths: Optional[set] = None) -> dict[tuple[str, ...], jax.Array]:
  """The ``MixedActivation`` logits in ``params``, by module path.

  With ``paths`` (found by running the model) exactly those; otherwise every
  param named ``logits`` with at least two axes that is its module's only param.
  """
  flat = traverse_util.flatten_dict(params)
  params_of: dict[tuple[str, ...], int] = {}
  for path in flat:
    params_of[path[:-1]] = params_of.get(path[:-1], 0) + 1
  return {
    path[:-1]: v
    for path, v in flat.items()
    if path[-1] == "logits"
    and (path[:-1] in paths if paths is not None else jnp.ndim(v) >= 2 and params_of[path[:-1]] == 1)
  }


def _mixed_paths(run: Callable[[nn.Module, Variables], Any], module: nn.Module, variables: Variables):
  """``run(module, variables)``'s output, and the scope paths of the ``MixedActivation`` layers it called."""
  found = set()

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, MixedActivation) and context.method_name == "__call__":
      found.add(tuple(context.module.scope.path))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    out = run(module, variables)
  return out, found


def freeze(
  module: nn.Module, variables: Variables, *, probe: Optional[Callable[[nn.Module, Variables], Any]] = None
) -> tuple[nn.Module, Variables]:
  """Phase 2 for a Linen model: each ``MixedActivation``'s argmax becomes fixed state.

  Each layer's ``logits`` param is replaced by a ``choices`` collection entry
  at the same module path (stacked ``[layers, features]`` under ``nn.scan`` /
  ``nn.vmap``); a ``MixedActivation`` that finds its choices there applies
  them as fixed activations (all pool activations run, each feature selects
  its own: the features keep their places, since Linen cannot rewire the
  layers around it). The module itself does not change; it is returned for
  symmetry with :func:`smartmixed_jax.nnx.freeze`.

  Which params are the layers' logits: with ``probe``, exactly those of the
  layers the model calls; without, every param named ``logits`` with two or
  more axes that is its module's only param (a module of yours holding just
  such a param needs the probe).

  Args:
    module: the Linen model.
    variables: its trained variables (``{"params": ...}``, any other collections).
    probe: ``probe(module, variables)`` applies the model in evaluation mode to
      an example batch, e.g. ``lambda m, v: m.apply(v, x, train=False)``. Freeze
      runs it on the model and on the frozen variables and raises if they differ.

  Returns:
    ``(module, frozen_variables)``: ``module.apply(frozen_variables, x, ...)``
    computes what the evaluation-mode model computed, and checkpoints without
    the logits.

  Raises:
    ValueError: no logits to freeze, non-finite logits, or (with ``probe``) a
      frozen model that differs from the evaluated one.
  """
  expected, paths = _mixed_paths(probe, module, variables) if probe is not None else (None, None)
  logits = _logits(variables.get("params", {}), paths)
  if not logits:
    raise ValueError("variables['params'] holds no MixedActivation 'logits'; nothing to freeze.")
  flat = traverse_util.flatten_dict(variables["params"])
  kept = {p: v for p, v in flat.items() if p[-1] != "logits" or p[:-1] not in logits}
  params = traverse_util.unflatten_dict(kept)
  choices = {path + ("choices",): _argmax("/".join(path), v) for path, v in logits.items()}
  frozen = {**variables, "params": params, "choices": traverse_util.unflatten_dict(choices)}
  if probe is not None:
    error = disagreement(expected, probe(module, frozen))
    if error > tolerance(v.dtype for v in jax.tree.leaves(variables) if hasattr(v, "dtype")):
      raise ValueError(
        f"The frozen model differs from the evaluated model on the probe by up to {error:.3g} (relative)."
        " Does the probe evaluate with deterministic=True, and are those logits MixedActivation layers'?"
      )
  return module, frozen


def _argmax(where: str, logits: jax.Array) -> jax.Array:
  logits = np.asarray(logits)
  if not np.all(np.isfinite(logits)):
    raise ValueError(f"{where}: the logits are not finite; cannot choose activations from them.")
  return jnp.asarray(np.argmax(logits, -1), jnp.int32)


def counts(variables: Variables, pool: Pool = DEFAULT_POOL) -> dict[str, dict[str, int]]:
  """Per mixed or frozen layer (``"/"``-joined module path; ``path[i]`` for layer ``i`` of a stack), how
  many features use each activation of ``pool``, which must be the layers' own.

  Raises:
    ValueError: a layer's logits or choices do not fit ``pool`` (another pool's model).
  """
  names = pool_names(pool)
  picks = {}
  for path, v in _logits(variables.get("params", {})).items():
    if v.shape[-1] != len(names):
      raise ValueError(
        f"{'/'.join(path)} chooses among {v.shape[-1]} activations, but the pool given is {list(names)}:"
        " pass counts(variables, pool=...) the model's own pool."
      )
    picks[path] = np.argmax(np.asarray(v), -1)
  for path, v in traverse_util.flatten_dict(variables.get("choices", {})).items():
    layer, picks[path[:-1]] = "/".join(path[:-1]), np.asarray(v)
    if picks[path[:-1]].max() >= len(names):
      raise ValueError(
        f"{layer} uses activation {picks[path[:-1]].max()}, beyond the pool given {list(names)}:"
        " pass counts(variables, pool=...) the model's own pool."
      )
  out = {}
  for path, c in picks.items():
    layers = c.reshape(-1, c.shape[-1])
    for i, layer in enumerate(layers):
      key = "/".join(path) + (f"[{i}]" if c.ndim > 1 else "")
      out[key] = dict(zip(names, np.bincount(layer, minlength=len(names)).tolist()))
  return out


def frozen_choices(logits: jax.Array) -> tuple[int, ...]:
  """A trained layer's choices (argmax of its ``logits`` param) as static data."""
  if not np.all(np.isfinite(np.asarray(logits))):
    raise ValueError("The logits are not finite; cannot choose activations from them.")
  return tuple(int(c) for c in np.asarray(jnp.argmax(logits, -1)))
