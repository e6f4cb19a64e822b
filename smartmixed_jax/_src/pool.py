"""The candidate activation functions a neuron can choose from.

A *pool* is a tuple whose entries are either a registered name (``"relu"``) or a
``(name, callable)`` pair for a function of the user's own. Pools are plain
hashable Python data, so they can be closed over by jit-compiled functions and
used as static arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Union

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]
PoolEntry = Union[str, tuple[str, Activation]]
Pool = tuple[PoolEntry, ...]

LEAKY_RELU_SLOPE = 0.01
ELU_ALPHA = 1.0
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def relu(x: jax.Array) -> jax.Array:
  return jnp.maximum(x, 0)


def sigmoid(x: jax.Array) -> jax.Array:
  return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
  return jnp.tanh(x)


def leaky_relu(x: jax.Array) -> jax.Array:
  return jnp.where(x > 0, x, LEAKY_RELU_SLOPE * x)


def _expm1_cpu(x: jax.Array) -> jax.Array:
  """``expm1(x)`` for ``x <= 0``, accurate to a few float32 ulp, about 2x faster than XLA's on CPU.

  Near zero, where ``exp(x) - 1`` cancels, a Taylor polynomial (error < 1e-10
  for |x| < 0.1) takes over; XLA's CPU ``expm1`` is a scalar routine.
  """
  taylor = x * (1 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x / 720)))))
  return jnp.where(x > -0.1, taylor, jnp.exp(x) - 1)


def _expm1_negative_part(x: jax.Array) -> jax.Array:
  """``expm1(min(x, 0))``: the CPU speed-up on CPU, XLA's own ``expm1`` on GPU and TPU.

  Clamping first keeps exp of the untaken branch finite: where() would
  otherwise pass inf * 0 = nan back through the gradient for large x. The
  clamp is a ``where``, not ``minimum``, whose gradient at x = 0 would be
  split in half (elu'(0) = 0.5 instead of 1). The choice is made per platform
  when lowering, so one exported artifact carries both.
  """
  return jax.lax.platform_dependent(jnp.where(x > 0, 0.0, x), cpu=_expm1_cpu, default=jnp.expm1)


def elu(x: jax.Array) -> jax.Array:
  return jnp.where(x > 0, x, ELU_ALPHA * _expm1_negative_part(x))


def selu(x: jax.Array) -> jax.Array:
  return SELU_SCALE * jnp.where(x > 0, x, SELU_ALPHA * _expm1_negative_part(x))


def gelu(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=False)


def silu(x: jax.Array) -> jax.Array:
  return jax.nn.silu(x)


def softplus(x: jax.Array) -> jax.Array:
  return jax.nn.softplus(x)


ACTIVATIONS: dict[str, Activation] = {
  "relu": relu,
  "sigmoid": sigmoid,
  "tanh": tanh,
  "leaky_relu": leaky_relu,
  "elu": elu,
  "selu": selu,
  "gelu": gelu,
  "silu": silu,
  "softplus": softplus,
}
"""Activations that a pool may name. Pass ``(name, fn)`` for any other."""

_OURS = dict(ACTIVATIONS)
"""The functions above, which the tests check (``test_pool.py``); a pool checks any other itself."""

DEFAULT_POOL: Pool = ("relu", "sigmoid", "tanh", "leaky_relu", "elu", "selu")
"""The paper's candidate pool, in the paper's order."""


@functools.cache
def _resolve(pool: Pool) -> tuple[tuple[str, Activation], ...]:
  if not isinstance(pool, tuple) or not pool:
    raise ValueError(f"pool must be a non-empty tuple, got {pool!r}.")
  resolved = []
  for entry in pool:
    if isinstance(entry, str):
      if entry not in ACTIVATIONS:
        raise ValueError(
          f"Unknown activation {entry!r}; valid names are"
          f" {sorted(ACTIVATIONS)}, or pass a (name, callable) pair."
        )
      resolved.append((entry, ACTIVATIONS[entry]))
    elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str) and callable(entry[1]):
      resolved.append(entry)
    elif callable(entry) and getattr(entry, "__name__", "<lambda>") != "<lambda>":
      resolved.append((entry.__name__, entry))  # a named function: jax.nn.gelu is "gelu"
    else:
      raise TypeError(
        "A pool entry must be an activation name, a named function or a (name, callable) pair,"
        f" got {entry!r}."
      )
  names = [name for name, _ in resolved]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(f"pool has duplicate names {duplicates}: {names}.")
  # Concrete even when the pool is first resolved inside a trace (jit, eval_shape).
  with jax.ensure_compile_time_eval():
    for name, fn in resolved:
      if _OURS.get(name) is not fn:
        _check_activation(name, fn)
  return tuple(resolved)


def _check_activation(name: str, fn: Activation) -> None:
  probe = jnp.linspace(-3.0, 3.0, 6).reshape(2, 3)
  out = jax.eval_shape(fn, probe)
  if hasattr(out, "dtype") and not jnp.issubdtype(out.dtype, jnp.floating):
    raise TypeError(
      f"Activation {name!r} must return floating-point values, got {out.dtype} (cast its output)."
    )
  if getattr(out, "shape", None) != probe.shape:
    raise ValueError(
      f"Activation {name!r} must be elementwise and keep its input's"
      f" shape; it maps {probe.shape} to {getattr(out, 'shape', out)}."
    )
  values = fn(probe)
  if not bool(jnp.all(jnp.isfinite(values))):
    raise ValueError(f"Activation {name!r} is not finite on [-3, 3]: {values.ravel().tolist()}.")
  # Elementwise: each output depends on its own input only (the mixture's
  # backward pass relies on it).
  jacobian = jax.jacfwd(fn)(probe).reshape(probe.size, probe.size)
  if bool(jnp.any(jacobian * (1 - jnp.eye(probe.size)) != 0)):
    raise ValueError(f"Activation {name!r} must be elementwise; its outputs depend on other inputs.")


def as_pool(pool: Sequence[PoolEntry]) -> Pool:
  """A validated pool as hashable data: a tuple of names and ``(name, fn)`` pairs.

  Accepts a comma-separated string too (``"relu,gelu,silu"``).
  """
  if isinstance(pool, str):
    pool = tuple(name.strip() for name in pool.split(",") if name.strip())
  elif isinstance(pool, list):
    pool = tuple(tuple(e) if isinstance(e, list) else e for e in pool)
  resolve_pool(pool)
  return pool


def resolve_pool(pool: Sequence[PoolEntry]) -> tuple[tuple[str, Activation], ...]:
  """Validates a pool and returns its ``(name, function)`` pairs, in order.

  Args:
    pool: names from :data:`ACTIVATIONS`, named functions (``jax.nn.gelu``
      is ``"gelu"``) or ``(name, callable)`` pairs.

  Returns:
    A tuple of ``(name, function)`` pairs.

  Raises:
    ValueError: an unknown or duplicate name, an empty pool, or a function
      that does not keep its input's shape, is not elementwise or not finite.
    TypeError: an entry that is neither a name nor a ``(name, callable)`` pair.

  Example:
    >>> [name for name, _ in resolve_pool(("relu", ("sin", jnp.sin)))]
    ['relu', 'sin']
  """
  if isinstance(pool, list):
    pool = tuple(tuple(e) if isinstance(e, list) else e for e in pool)
  try:
    return _resolve(pool)
  except TypeError as e:
    if "unhashable" not in str(e):
      raise
    raise TypeError(f"pool must be hashable (a tuple), got {pool!r}.") from e


def pool_names(pool: Sequence[PoolEntry]) -> tuple[str, ...]:
  """The names of a pool's activations, in order."""
  return tuple(name for name, _ in resolve_pool(pool))
