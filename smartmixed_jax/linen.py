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
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from smartmixed_jax._src.grouped import fixed_activation
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, resolve_pool
from smartmixed_jax._src.selection import check_temperature, gumbel_straight_through, init_logits, mix

__all__ = ["FrozenActivation", "MixedActivation", "frozen_choices"]


class MixedActivation(nn.Module):
  """Per-feature activation selection (SmartMixed Phase 1) as a Linen layer.

  Training (``deterministic=False``) draws one Gumbel sample per feature from
  the ``gumbel`` RNG stream and applies the straight-through choice;
  evaluation uses each feature's argmax. The logits live in ``params`` as
  ``logits: [features, len(pool)]``.

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


def frozen_choices(logits: jax.Array) -> tuple[int, ...]:
  """A trained layer's choices (argmax of its ``logits`` param) as static data."""
  return tuple(int(c) for c in np.asarray(jnp.argmax(logits, -1)))
