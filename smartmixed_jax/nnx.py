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

from collections.abc import Sequence
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smartmixed_jax._src.grouped import fixed_activation, select
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, as_pool, pool_names, resolve_pool
from smartmixed_jax._src.selection import check_temperature, gumbel_straight_through, init_logits, mix

__all__ = ["Choices", "FrozenActivation", "Logits", "MixedActivation", "counts", "freeze"]

RngsLike = Union[nnx.Rngs, nnx.RngStream, jax.Array, None]


class Logits(nnx.Param):
  """Selection logits ``[features, candidates]``: a ``Param`` subclass, so filters can pick them.

  Example:
    >>> nnx.state(model, Logits)                          # doctest: +SKIP
    >>> nnx.Optimizer(model, optax.adam(1e-2), wrt=Logits)  # doctest: +SKIP
  """


def _stream(rngs: RngsLike, collection: str):
  """An RNG stream to keep: ``rngs[collection]`` (or its fallback), or None when it has none."""
  if isinstance(rngs, nnx.Rngs):
    try:
      return rngs[collection].fork()
    except KeyError:
      return None  # eval-only use needs no noise
  if isinstance(rngs, nnx.RngStream):
    return rngs.fork()
  if rngs is None:
    return None
  raise TypeError(f"rngs must be nnx.Rngs, an nnx.RngStream or None, got {type(rngs).__name__}.")


class MixedActivation(nnx.Module):
  """Per-feature activation selection (SmartMixed Phase 1) as an NNX layer.

  In training mode each call draws one Gumbel sample per feature (shared by
  every leading position: batch, height, width, sequence) and applies the
  straight-through one-hot choice; the gradient reaches the logits. The key
  comes from the call's ``rngs`` (a key, an ``RngStream`` or ``Rngs``), else
  from the ``rng_collection`` stream kept at construction (falling back to
  ``default`` as ``nnx.Rngs`` does), like ``nnx.Dropout``. In evaluation mode
  (``model.eval()`` or ``deterministic=True``) each feature uses the argmax
  of its logits and needs no RNG.

  Args:
    num_features: size of the last axis of the input.
    pool: candidate activations (names or ``(name, callable)`` pairs).
    temperature: Gumbel-Softmax temperature, > 0.
    hard: straight-through one-hot (True) or soft mixture (False) in training.
    deterministic: start in evaluation mode.
    rng_collection: the stream of ``rngs`` that feeds the Gumbel noise.
    dtype: computation and output dtype; None keeps the input's (bf16 in, bf16 out).
    param_dtype: dtype of the logits.
    rngs: initialises the logits (``params`` stream) and feeds the noise.
  """

  def __init__(
    self,
    num_features: int,
    *,
    pool: Pool = DEFAULT_POOL,
    temperature: float = 0.3,
    hard: bool = True,
    deterministic: bool = False,
    rng_collection: str = "gumbel",
    dtype: Optional[jnp.dtype] = None,
    param_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
      raise ValueError(f"num_features must be a positive integer, got {num_features!r}.")
    check_temperature(temperature)
    self.pool = as_pool(pool)
    self.num_features = int(num_features)
    self.temperature = temperature
    self.hard = hard
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.logits = Logits(
      init_logits(rngs.params(), self.num_features, len(resolve_pool(self.pool)), param_dtype)
    )
    self.rngs = nnx.data(_stream(rngs, rng_collection))

  def _key(self, rngs: RngsLike) -> jax.Array:
    if isinstance(rngs, nnx.Rngs):
      return rngs[self.rng_collection]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    if rngs is not None:
      raise TypeError(f"rngs must be a key, nnx.RngStream or nnx.Rngs, got {type(rngs).__name__}.")
    if self.rngs is None:
      raise ValueError(
        f"MixedActivation is in training mode but has no {self.rng_collection!r} RNG stream: pass"
        f" rngs=nnx.Rngs({self.rng_collection}=...) at construction or at call time, or call model.eval()."
      )
    return self.rngs()

  def __call__(
    self, x: jax.Array, *, deterministic: Optional[bool] = None, rngs: RngsLike = None
  ) -> jax.Array:
    """``[..., num_features] -> [..., num_features]``, in ``dtype`` (default: the input's)."""
    if x.shape[-1] != self.num_features:
      raise ValueError(f"Input has shape {tuple(x.shape)}; its last axis must be {self.num_features}.")
    x = x.astype(self.dtype or x.dtype)
    fns = [fn for _, fn in resolve_pool(self.pool)]
    logits = self.logits[...]
    if self.deterministic if deterministic is None else deterministic:
      return select(x, jnp.argmax(logits, -1), fns, range(len(fns)))
    weights = gumbel_straight_through(logits, self._key(rngs), temperature=self.temperature, hard=self.hard)
    return mix(x, weights, fns)

  def choices(self) -> np.ndarray:
    """Each feature's chosen pool index (argmax; ties to the lowest)."""
    logits = np.asarray(self.logits[...])
    if logits.ndim != 2:
      raise ValueError(
        f"This MixedActivation holds logits of shape {logits.shape}: a batched (vmapped / stacked)"
        " model. Freeze each model on its own (e.g. index the stacked state first)."
      )
    if not np.all(np.isfinite(logits)):
      raise ValueError("The logits are not finite; cannot choose activations from them.")
    return np.argmax(logits, -1)


class Choices(nnx.Variable):
  """A frozen layer's per-feature pool indices: state, but not a ``Param`` (never trained).

  Because the choices are state, a frozen model's checkpoint holds them, and it
  restores into ``nnx.eval_shape(lambda: freeze(build_model()))`` without the
  Phase 1 logits.
  """


class FrozenActivation(nnx.Module):
  """Fixed per-feature activations (SmartMixed Phase 2) as an NNX layer.

  The choices are a :class:`Choices` variable. Called eagerly, they are
  concrete and only the activations in use run (sorted choices as contiguous
  segments). Under ``nnx.jit`` they are traced data: every pool activation
  runs in one fused elementwise loop and each feature selects its own, which
  is what lets one compiled function serve any restored choices.

  Args:
    choices: per feature, its index into ``pool``.
    pool: the candidate activations.
  """

  def __init__(self, choices: Union[Sequence[int], jax.Array], pool: Pool = DEFAULT_POOL):
    names = pool_names(pool)
    self.pool = as_pool(pool)
    if isinstance(choices, jax.core.Tracer):  # under nnx.eval_shape: an abstract model to restore into
      self.choices = Choices(jnp.asarray(choices, jnp.int32))
      return
    c = np.asarray(choices)
    integers = c.ndim == 1 and c.size > 0 and np.issubdtype(c.dtype, np.integer)
    if not integers or c.min() < 0 or c.max() >= len(names):
      raise ValueError(
        f"choices must be a non-empty list of indices into the pool {names}, got {c.tolist()[:10]}."
      )
    self.choices = Choices(jnp.asarray(c, jnp.int32))

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[..., features] -> [..., features]``."""
    choices = self.choices[...]
    if not isinstance(choices, jax.core.Tracer):
      choices = np.asarray(choices)
    return fixed_activation(x, choices, pool=self.pool)


def _edges(model: nnx.Module) -> list[tuple[object, object, nnx.Module]]:
  """Every ``(parent, key, child module)`` reference in ``model``: a shared child once per reference."""
  edges, seen = [], set()

  def visit(node):
    if id(node) in seen:
      return
    seen.add(id(node))
    if isinstance(node, nnx.List):
      items = list(enumerate(node))
    elif isinstance(node, nnx.Module):
      items = [(k, v) for k, v in vars(node).items() if not k.startswith("_pytree__")]
    elif isinstance(node, (list, dict)):
      items = list(node.items() if isinstance(node, dict) else enumerate(node))
    else:
      return
    for key, child in items:
      if isinstance(child, nnx.Module):
        edges.append((node, key, child))
      visit(child)

  visit(model)
  return edges


def _feature_axes(layer) -> Optional[tuple[int, int]]:
  """(output-feature axis, input-feature axis) of a kernel this module fully understands.

  Exact types only: a subclass (``nnx.LoRALinear``) may hold more weights that
  read the same features, so it is not permuted.
  """
  if type(layer) is nnx.Linear:
    return -1, 0
  if type(layer) is nnx.Conv and layer.feature_group_count == 1:
    return -1, -2
  return None


def _permute_sandwiches(model: nnx.Module, edges) -> None:
  """In every Sequential, sorts the features of Linear/Conv -> Mixed -> Linear/Conv.

  Only where the three layers are referenced once in the whole model: a layer
  read elsewhere too would see its features reordered.
  """
  references: dict[int, int] = {}
  for _, _, child in edges:
    references[id(child)] = references.get(id(child), 0) + 1
  sequentials = {id(child): child for _, _, child in edges if isinstance(child, nnx.Sequential)}
  if isinstance(model, nnx.Sequential):
    sequentials[id(model)] = model
  for node in sequentials.values():
    layers = list(node.layers)
    for i in range(1, len(layers) - 1):
      before, act, after = layers[i - 1], layers[i], layers[i + 1]
      if not isinstance(act, MixedActivation) or not (_feature_axes(before) and _feature_axes(after)):
        continue
      if any(references.get(id(layer), 0) != 1 for layer in (before, act, after)):
        continue
      perm = jnp.argsort(_choices(act), stable=True)
      out_axis, _ = _feature_axes(before)
      _, in_axis = _feature_axes(after)
      before.kernel.set_value(jnp.take(before.kernel[...], perm, axis=out_axis))
      if before.bias is not None:
        before.bias.set_value(before.bias[...][perm])
      after.kernel.set_value(jnp.take(after.kernel[...], perm, axis=in_axis))
      act.logits.set_value(act.logits[...][perm])


def _choices(act: MixedActivation) -> Union[np.ndarray, jax.Array]:
  """``act.choices()``, or its traced equivalent inside ``nnx.eval_shape`` (an abstract model)."""
  logits = act.logits[...]
  return jnp.argmax(logits, -1) if isinstance(logits, jax.core.Tracer) else act.choices()


def freeze(model: nnx.Module) -> nnx.Module:
  """A copy of ``model`` with every :class:`MixedActivation` fixed and grouped; the function is unchanged.

  Where a mixed activation sits between two plain ``nnx.Linear`` or two
  ``nnx.Conv`` layers of a ``Sequential``, and none of the three is used
  anywhere else, the adjacent layers' features are permuted so that each
  activation is one contiguous segment. Everywhere else (a residual block, a
  LoRA layer, a shared layer or activation) the features keep their places
  and each is selected by a constant mask. Either way the frozen model
  computes what the evaluation-mode model computes. A shared activation
  stays shared. ``model`` is left untouched. The choices are state
  (:class:`Choices`), so the frozen model checkpoints like any other; inside
  ``nnx.eval_shape`` ``freeze`` builds the abstract frozen model to restore
  such a checkpoint into.

  Args:
    model: any NNX module containing :class:`MixedActivation` layers.

  Returns:
    A new module of the same structure with :class:`FrozenActivation` layers.

  Raises:
    ValueError: a batched (vmapped / stacked) activation, or non-finite logits.
  """
  frozen = nnx.clone(model)
  if isinstance(frozen, MixedActivation):
    return FrozenActivation(_choices(frozen), frozen.pool)
  edges = _edges(frozen)
  for _, _, child in edges:
    if isinstance(child, MixedActivation):
      _choices(child)  # refuses batched or non-finite logits before anything changes
  _permute_sandwiches(frozen, edges)
  replacement: dict[int, FrozenActivation] = {}
  for parent, key, child in edges:
    if not isinstance(child, MixedActivation):
      continue
    if id(child) not in replacement:
      replacement[id(child)] = FrozenActivation(_choices(child), child.pool)
    if isinstance(parent, nnx.Module) and isinstance(key, str):
      setattr(parent, key, replacement[id(child)])
    else:
      parent[key] = replacement[id(child)]
  return frozen


def counts(model: nnx.Module) -> list[dict[str, int]]:
  """Per mixed or frozen activation layer (in graph order), how many features use each activation."""
  out = []
  for _, node in nnx.iter_graph(model):
    if isinstance(node, (MixedActivation, FrozenActivation)):
      picks = node.choices() if isinstance(node, MixedActivation) else np.asarray(node.choices[...])
      names = pool_names(node.pool)
      out.append(dict(zip(names, np.bincount(picks, minlength=len(names)).tolist())))
  return out
