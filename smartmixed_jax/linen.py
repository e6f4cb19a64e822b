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

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from smartmixed_jax._src.grouped import fixed_activation
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, pool_names, resolve_pool
from smartmixed_jax._src.selection import check_temperature, gumbel_straight_through, init_logits, mix

__all__ = ["FrozenActivation", "MixedActivation", "counts", "freeze", "frozen_choices"]


class MixedActivation(nn.Module):
  """Per-feature activation selection (SmartMixed Phase 1) as a Linen layer.

  Training (``deterministic=False``) draws one Gumbel sample per feature from
  the ``gumbel`` RNG stream and applies the straight-through choice;
  evaluation uses each feature's argmax. The logits live in ``params`` as
  ``logits: [features, len(pool)]``. Once :func:`freeze` has replaced them by
  a ``choices`` collection, every call applies those fixed activations.

  Attributes:
    pool: candidate activations.
    temperature: Gumbel-Softmax temperature, > 0.
    hard: straight-through one-hot (True) or soft mixture (False).
    deterministic: default mode; a call argument overrides it.
  """

  pool: Pool = DEFAULT_POOL
  temperature: float = 0.3
  hard: bool = True
  deterministic: Optional[bool] = None

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: Optional[bool] = None) -> jax.Array:
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    check_temperature(self.temperature)
    if self.has_variable("choices", "choices"):
      return fixed_activation(x, self.get_variable("choices", "choices"), pool=tuple(self.pool))
    fns = [fn for _, fn in resolve_pool(tuple(self.pool))]
    logits = self.param("logits", lambda key: init_logits(key, x.shape[-1], len(fns)))
    if deterministic:
      weights = jax.nn.one_hot(jnp.argmax(logits, -1), len(fns), dtype=x.dtype)
    else:
      weights = gumbel_straight_through(
        logits, self.make_rng("gumbel"), temperature=self.temperature, hard=self.hard
      )
    return mix(x, weights, fns)


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


def _logits(params) -> dict[tuple[str, ...], jax.Array]:
  """Every ``MixedActivation``'s logits in ``params``, by module path."""
  flat = traverse_util.flatten_dict(params)
  return {path[:-1]: v for path, v in flat.items() if path[-1] == "logits" and jnp.ndim(v) == 2}


def freeze(module: nn.Module, variables: Variables) -> tuple[nn.Module, Variables]:
  """Phase 2 for a Linen model: each ``MixedActivation``'s argmax becomes fixed state.

  Every ``logits`` param (the ``MixedActivation`` params, found by name) is
  replaced by a ``choices`` collection entry at the same module path; a
  ``MixedActivation`` that finds its choices there applies them as fixed
  activations (all pool activations run, each feature selects its own: the
  features keep their places, since Linen cannot rewire the layers around it).
  The module itself does not change; it is returned for symmetry with
  :func:`smartmixed_jax.nnx.freeze`.

  Args:
    module: the Linen model.
    variables: its trained variables (``{"params": ...}``, any other collections).

  Returns:
    ``(module, frozen_variables)``: ``module.apply(frozen_variables, x, ...)``
    computes what the evaluation-mode model computed, and checkpoints without
    the logits.

  Raises:
    ValueError: no ``logits`` in ``variables["params"]``, or non-finite logits.
  """
  logits = _logits(variables.get("params", {}))
  if not logits:
    raise ValueError("variables['params'] holds no MixedActivation 'logits'; nothing to freeze.")
  flat = traverse_util.flatten_dict(variables["params"])
  kept = {p: v for p, v in flat.items() if p[-1] != "logits" or p[:-1] not in logits}
  params = traverse_util.unflatten_dict(kept)
  choices = {path + ("choices",): jnp.asarray(frozen_choices(v), jnp.int32) for path, v in logits.items()}
  return module, {**variables, "params": params, "choices": traverse_util.unflatten_dict(choices)}


def counts(variables: Variables, pool: Pool = DEFAULT_POOL) -> dict[str, dict[str, int]]:
  """Per mixed or frozen layer (``"/"``-joined module path), how many features use each activation."""
  names = pool_names(pool)
  picks = {p: np.asarray(frozen_choices(v)) for p, v in _logits(variables.get("params", {})).items()}
  flat = traverse_util.flatten_dict(variables.get("choices", {}))
  picks.update({p[:-1]: np.asarray(v) for p, v in flat.items()})
  return {
    "/".join(p): dict(zip(names, np.bincount(c, minlength=len(names)).tolist())) for p, c in picks.items()
  }


def frozen_choices(logits: jax.Array) -> tuple[int, ...]:
  """A trained layer's choices (argmax of its ``logits`` param) as static data."""
  if not np.all(np.isfinite(np.asarray(logits))):
    raise ValueError("The logits are not finite; cannot choose activations from them.")
  return tuple(int(c) for c in np.asarray(jnp.argmax(logits, -1)))
