"""Fixed per-feature activations: each feature of the last axis has its own, chosen once.

Static choices that are sorted form contiguous *segments*; each activation then
runs once, on its own slice, and the slices are joined (no gather, no
scatter). Unsorted static choices and traced ones (one set per model under
``jax.vmap``) select each feature's activation with ``jnp.where``: every
activation in use runs on every feature. All are plain slices, concatenations
and ``jnp.where`` chains, so every autodiff mode works through them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from smartmixed_jax._src.pool import Pool, pool_names, resolve_pool

Segment = tuple[str, int, int]
"""``(activation name, start, stop)``: features ``start:stop`` use that activation."""


def grouped_activation(z: jax.Array, segments: Sequence[Segment], fns: dict[str, Callable]) -> jax.Array:
  """Applies each segment's activation to its contiguous slice of ``z``, once, and joins the slices.

  Each feature's activation is computed once, which matters where activations
  are a large share of the work: on the character-level transformer of the
  task panel (eight activations after a 4x-wide MLP) this form's inference is
  1.11x the all-gelu twin's on CPU, against 1.62x for the same segments
  selected by ``iota >= start`` masks, which compute every activation in use on
  every feature; on the benchmark's MLPs the two are tied (``benchmark.py``).

  Args:
    z: ``[..., features]`` pre-activations.
    segments: contiguous, sorted ``(name, start, stop)`` covering all features.
    fns: activation function per name.

  Returns:
    ``[..., features]`` activations.
  """
  if len(segments) == 1:
    return fns[segments[0][0]](z)
  return jnp.concatenate([fns[name](z[..., start:stop]) for name, start, stop in segments], axis=-1)


def select(z: jax.Array, choices: jax.Array, fns: Sequence[Callable], present: Sequence[int]) -> jax.Array:
  """Feature ``j`` gets ``fns[choices[j]](z[..., j])``; ``present`` are the indices that may occur.

  Each activation sees 0 on the features it does not serve (the double-where
  trick), so one that overflows there cannot turn their gradients into NaN.
  """
  first, *rest = present
  out = fns[first](z if not rest else jnp.where(choices == first, z, 0))
  for k in rest:
    mine = choices == k
    out = jnp.where(mine, fns[k](jnp.where(mine, z, 0)), out)
  return out


def select_data(z: jax.Array, choices: jax.Array, fns: Sequence[Callable]) -> jax.Array:
  """:func:`select` with the choices as data (traced): every activation runs, each feature takes its own.

  A choice outside the pool gives NaN for its feature: under ``jit`` it cannot
  raise, and it must not pass for the first activation.
  """
  out = select(z, choices, fns, range(len(fns)))
  return jnp.where((choices >= 0) & (choices < len(fns)), out, jnp.nan)


def segments_of(sorted_choices: np.ndarray, names: Sequence[str]) -> tuple[Segment, ...]:
  """The segments of sorted pool indices."""
  values, starts, counts = np.unique(sorted_choices, return_index=True, return_counts=True)
  return tuple((names[int(v)], int(s), int(s + c)) for v, s, c in zip(values, starts, counts))


def fixed_activation(x: jax.Array, choices: Sequence[int] | jax.Array, *, pool: Pool) -> jax.Array:
  """Applies to each feature (last axis) of ``x`` its chosen activation.

  With static ``choices`` (a tuple or numpy array) only the activations in use
  run, once each: sorted choices as contiguous segments, others through
  constant masks. Traced ``choices`` are data: every pool activation runs
  (a traced choice outside the pool gives NaN, see :func:`select_data`).

  Args:
    x: ``[..., features]``.
    choices: ``[features]`` indices into ``pool``.
    pool: the candidate activations the indices refer to.

  Returns:
    ``[..., features]`` activations, in ``x``'s dtype.

  Example:
    >>> y = fixed_activation(jnp.array([-1.0, -1.0]), (0, 2), pool=("relu", "sigmoid", "tanh"))
    >>> [round(v, 3) for v in y.tolist()]
    [0.0, -0.762]
  """
  names = pool_names(pool)
  fns = [fn for _, fn in resolve_pool(pool)]
  if isinstance(choices, jax.core.Tracer):
    if choices.shape != (x.shape[-1],):
      raise ValueError(
        f"choices must be {x.shape[-1]} indices into the pool {names}, got shape {choices.shape}."
      )
    return select_data(x, choices, fns)
  c = np.asarray(choices)
  if c.shape != (x.shape[-1],) or not np.issubdtype(c.dtype, np.integer):
    raise ValueError(
      f"choices must be {x.shape[-1]} integer indices into the pool {names}, got {c.dtype}{list(c.shape)}."
    )
  if c.min() < 0 or c.max() >= len(names):
    raise ValueError(f"choices must index the pool {names}; got values in [{c.min()}, {c.max()}].")
  if np.all(np.diff(c) >= 0):
    return grouped_activation(x, segments_of(c, names), dict(zip(names, fns)))
  return select(x, jnp.asarray(c), fns, np.unique(c))
