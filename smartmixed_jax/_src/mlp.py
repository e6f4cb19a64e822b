"""The SmartMixed MLP: parameters bound to their pool, and its forward passes.

:class:`MLPParams` is a pytree: the weights and the selection logits are its
leaves, the pool is static metadata. Every function takes the pool from the
parameters, so a model can never be run with a pool it was not made with.
Neurons live on the last axis; inputs may have any number of leading axes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from smartmixed_jax._src import grouped, selection
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, as_pool, pool_names, resolve_pool


class Dense(NamedTuple):
  """One affine layer."""

  w: jax.Array  # [fan_in, fan_out]
  b: jax.Array  # [fan_out]


def static_field(**kwargs):
  """A dataclass field that is pytree metadata (hashable, compared by jit), not a leaf."""
  return dataclasses.field(metadata={"static": True}, **kwargs)


def shapes_repr(obj, **extra) -> str:
  """``Name(field=float32[784,512], ...)``: shapes, not values."""
  leaves = lambda tree: ", ".join(  # noqa: E731
    f"{leaf.dtype}{list(leaf.shape)}" if hasattr(leaf, "shape") else repr(leaf)
    for leaf in jax.tree.leaves(tree)
  )
  data = [f.name for f in dataclasses.fields(obj) if not f.metadata.get("static")]
  parts = [f"{name}=[{leaves(getattr(obj, name))}]" for name in data]
  parts += [f"{k}={v}" for k, v in extra.items()]
  return f"{type(obj).__name__}({', '.join(parts)})"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, repr=False)
class MLPParams:
  """Phase 1 parameters of a SmartMixed MLP, bound to their pool.

  A pytree: ``jax.jit``, ``jax.vmap``, ``jax.grad``, optax and orbax see the
  weights and logits as leaves; ``pool`` is static. Make one with
  :func:`init_mlp`; change fields with ``dataclasses.replace``.

  Attributes:
    layers: one :class:`Dense` per layer, hidden layers then the output layer.
    logits: per hidden layer, ``[neurons, len(pool)]`` selection logits
      (empty when only the weights are of interest, e.g. :func:`apply_choices`).
    pool: the candidate activations (static).
  """

  layers: tuple[Dense, ...]
  logits: tuple[jax.Array, ...]  # per hidden layer: [neurons, candidates]
  pool: Pool = static_field(default=DEFAULT_POOL)

  @property
  def layer_sizes(self) -> tuple[int, ...]:
    """``(input, hidden..., output)``."""
    return (self.layers[0].w.shape[-2],) + tuple(layer.w.shape[-1] for layer in self.layers)

  def __repr__(self) -> str:
    return shapes_repr(self, pool=pool_names(self.pool))


def validate_layer_sizes(layer_sizes: Sequence[int]) -> tuple[int, ...]:
  """Checks ``(input, hidden..., output)`` sizes (Python or numpy integers) and returns a tuple of ints."""
  try:
    raw = tuple(layer_sizes)  # operator.index below takes numpy integers too
  except TypeError:
    raise ValueError(f"layer_sizes must be a sequence of positive integers, got {layer_sizes!r}.") from None
  if len(raw) < 2:
    raise ValueError(f"layer_sizes needs at least an input and an output size, got {raw}.")
  sizes = []
  for s in raw:
    try:
      size = operator.index(s) if not isinstance(s, bool) else None
    except TypeError:
      size = None
    if size is None or size <= 0:
      raise ValueError(f"layer_sizes must be positive integers, got {s!r} in {raw}.")
    sizes.append(size)
  return tuple(sizes)


def init_dense(key: jax.Array, fan_in: int, fan_out: int) -> Dense:
  """PyTorch's ``nn.Linear`` default: weight and bias ~ U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  wkey, bkey = jax.random.split(key)
  return Dense(
    jax.random.uniform(wkey, (fan_in, fan_out), minval=-bound, maxval=bound),
    jax.random.uniform(bkey, (fan_out,), minval=-bound, maxval=bound),
  )


def init_mlp(key: jax.Array, layer_sizes: Sequence[int], *, pool: Pool = DEFAULT_POOL) -> MLPParams:
  """Initialises a SmartMixed MLP.

  Args:
    key: a PRNG key.
    layer_sizes: ``(input, hidden..., output)``, e.g. ``(784, 512, 256, 10)``.
    pool: the candidate activations, bound to the parameters from now on.

  Returns:
    :class:`MLPParams` with one ``[neurons, len(pool)]`` logits array per
    hidden layer (near-uniform: zeros with one random entry at 0.001).

  Example:
    >>> params = init_mlp(jax.random.key(0), (784, 64, 10))
    >>> params.logits[0].shape
    (64, 6)
  """
  sizes = validate_layer_sizes(layer_sizes)
  pool = as_pool(pool)
  return MLPParams(*_init_arrays(key, sizes, len(resolve_pool(pool))), pool)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_arrays(key: jax.Array, sizes: tuple[int, ...], candidates: int):
  """The weights and logits of :func:`init_mlp`, as one program (eagerly, each op compiles on its own)."""
  keys = jax.random.split(key, 2 * (len(sizes) - 1))
  layers = tuple(init_dense(keys[i], a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
  logits = tuple(
    selection.init_logits(keys[len(sizes) - 1 + i], n, candidates) for i, n in enumerate(sizes[1:-1])
  )
  return layers, logits


def is_logits_path(path: tuple) -> bool:
  """Whether a pytree path leads to selection logits: through a field or key named ``logits``
  (:class:`MLPParams`, an NNX ``State`` of :class:`smartmixed_jax.nnx.MixedActivation`, Linen params)."""
  return any(getattr(key, "name", getattr(key, "key", None)) == "logits" for key in path)


def param_labels(params: Any) -> Any:
  """``"weights"`` / ``"logits"`` per leaf, for ``optax.multi_transform``.

  Works on :class:`MLPParams`, an NNX ``State`` and Linen params alike: the
  logits are the leaves under a field or key named ``logits``.

  Example (the logits learning 100x faster, as :func:`make_optimizer` has them by default):
    >>> opt = optax.multi_transform({"weights": optax.adam(1e-3), "logits": optax.adam(1e-1)},
    ...                             param_labels)                                  # doctest: +SKIP
  """
  label = lambda path, _: "logits" if is_logits_path(path) else "weights"  # noqa: E731
  return jax.tree_util.tree_map_with_path(label, params)


def check_params(params, *, need_logits: bool) -> int:
  """Raises unless ``params`` are :class:`MLPParams` whose logits fit their pool; returns the pool size."""
  if not isinstance(params, MLPParams):
    raise TypeError(f"Expected MLPParams (from init_mlp), got {type(params).__name__}.")
  hidden = len(params.layers) - 1
  candidates = len(resolve_pool(params.pool))
  if need_logits or params.logits:
    if len(params.logits) != hidden:
      raise ValueError(f"params have {len(params.logits)} logits arrays for {hidden} hidden layers.")
    for i, logits in enumerate(params.logits):
      if logits.shape[-1] != candidates:
        raise ValueError(
          f"logits[{i}] has {logits.shape[-1]} candidates but the params' pool"
          f" {list(pool_names(params.pool))} has {candidates}."
        )
  return candidates


def check_input(x: jax.Array, in_features: int) -> None:
  """Raises if ``x`` is not floating point or its last axis is not the input width."""
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"Input must be floating point (e.g. pixels / 255), got dtype {x.dtype}.")
  if x.ndim < 1 or x.shape[-1] != in_features:
    raise ValueError(
      f"Input has shape {tuple(x.shape)}; its last axis must be the model's input width {in_features}."
    )


def forward(layers: Sequence[Dense], x: jax.Array, activations: Sequence) -> jax.Array:
  """``x`` through the affine ``layers``, with ``activations[i](z)`` after hidden layer ``i``."""
  check_input(x, layers[0].w.shape[0])
  h = x
  for layer, activation in zip(layers[:-1], activations):
    h = activation(h @ layer.w + layer.b)
  return h @ layers[-1].w + layers[-1].b


def apply_selective(
  params: MLPParams,
  x: jax.Array,
  key: jax.Array,
  *,
  temperature: selection.Temperature = 0.3,
  hard: bool = True,
  clip: Optional[float] = None,
) -> jax.Array:
  """The Phase 1 forward pass: each neuron samples its activation.

  One Gumbel sample per neuron per call, shared by every example, so the
  whole batch sees the same network. Gradients reach the logits
  (reverse mode: the mixture has a memory-saving custom VJP).

  Args:
    params: from :func:`init_mlp`.
    x: ``[..., input]`` inputs.
    key: PRNG key for the Gumbel noise.
    temperature: Gumbel-Softmax temperature; a scalar array (e.g. from a
      schedule) may be traced, so changing it does not recompile.
    hard: straight-through one-hot selection (True) or soft mixture (False).
    clip: optional clamp of activations and mixture (the reference code's quirk).

  Returns:
    ``[..., output]`` logits of the output layer (no selection there).

  Example:
    >>> params = init_mlp(jax.random.key(0), (4, 8, 3))
    >>> apply_selective(params, jnp.ones((2, 4)), jax.random.key(1)).shape
    (2, 3)
  """
  check_params(params, need_logits=True)
  selection.check_temperature(temperature)
  fns = [fn for _, fn in resolve_pool(params.pool)]
  noise = selection.layer_noise(params.logits, key)
  weights = [selection.straight_through(lg, g, temperature, hard) for lg, g in zip(params.logits, noise)]
  return forward(params.layers, x, [lambda z, w=w: selection.mix(z, w, fns, clip=clip) for w in weights])


def sample_choices(params: MLPParams, key: jax.Array) -> list[jax.Array]:
  """The activation each hidden neuron samples in ``apply_selective(params, x, key)``.

  Same key, same draw: counting these over a Phase 1 epoch gives how often
  every neuron actually used each activation. The draw is
  ``argmax(logits + gumbel)``, whatever the temperature.

  Returns:
    One ``[neurons]`` int array of pool indices per hidden layer.
  """
  check_params(params, need_logits=True)
  noise = selection.layer_noise(params.logits, key)
  return [jnp.argmax(lg + g, axis=-1) for lg, g in zip(params.logits, noise)]


def choices(params: MLPParams) -> list[jax.Array]:
  """Each hidden neuron's chosen activation index: ``argmax`` of its logits (ties: lowest index).

  Returns one ``[neurons]`` int array per hidden layer.
  """
  check_params(params, need_logits=True)
  return [jnp.argmax(logits, axis=-1) for logits in params.logits]


def apply_choices(params: MLPParams, x: jax.Array, choices: Sequence[jax.Array]) -> jax.Array:
  """Forward pass with the given per-neuron activations (pool indices into ``params.pool``).

  Neurons keep their order and the logits are ignored. Choices may be traced
  data, so ``jax.vmap`` batches models with different choices (e.g. the
  Phase 2 of several seeds as one program); it computes what
  ``freeze(params, choices=choices)`` computes.

  Args:
    params: :class:`MLPParams` (logits may be empty).
    x: ``[..., input]`` inputs.
    choices: per hidden layer, ``[neurons]`` pool indices.

  Returns:
    ``[..., output]`` output-layer logits.
  """
  check_params(params, need_logits=False)
  if len(choices) != len(params.layers) - 1:
    raise ValueError(
      f"choices has {len(choices)} layers but the MLP has {len(params.layers) - 1} hidden layers."
    )
  pool = params.pool
  return forward(
    params.layers, x, [lambda z, c=c: grouped.fixed_activation(z, c, pool=pool) for c in choices]
  )


def apply_hard(params: MLPParams, x: jax.Array, *, clip: Optional[float] = None) -> jax.Array:
  """Deterministic Phase 1 evaluation: every neuron uses its argmax activation.

  Neurons keep their order (compare :func:`smartmixed_jax.freeze`). Built
  from ``jnp.where`` selections, so forward- and reverse-mode autodiff
  (``jax.jvp``, ``jax.hessian``) work in the inputs and weights.

  Args:
    params: from :func:`init_mlp`.
    x: ``[..., input]`` inputs.
    clip: optional clamp of the activations (the reference code's quirk).

  Returns:
    ``[..., output]`` output-layer logits.
  """
  candidates = check_params(params, need_logits=True)
  fns = [fn for _, fn in resolve_pool(params.pool)]
  if clip is not None:
    fns = [lambda z, fn=fn: jnp.clip(fn(z), -clip, clip) for fn in fns]
  picks = [jnp.argmax(logits, axis=-1) for logits in params.logits]
  return forward(
    params.layers, x, [lambda z, c=c: grouped.select(z, c, fns, range(candidates)) for c in picks]
  )
