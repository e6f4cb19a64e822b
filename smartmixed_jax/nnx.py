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

import zlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx import graphlib

from smartmixed_jax._src.grouped import fixed_activation, select
from smartmixed_jax._src.pool import DEFAULT_POOL, Pool, as_pool, pool_names, resolve_pool
from smartmixed_jax._src.probe import disagreement
from smartmixed_jax._src.probe import tolerance as probe_tolerance
from smartmixed_jax._src.selection import (
  Temperature,
  check_temperature,
  gumbel_straight_through,
  init_logits,
  mix,
)

__all__ = ["Choices", "FrozenActivation", "Logits", "MixedActivation", "PoolId", "counts", "freeze"]

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

  def set_view(self, deterministic: Optional[bool] = None):
    """``nnx.view(model, deterministic=True)`` evaluates with each feature's argmax (as ``nnx.Dropout``)."""
    if deterministic is not None:
      self.deterministic = deterministic

  def __call__(
    self,
    x: jax.Array,
    *,
    deterministic: Optional[bool] = None,
    rngs: RngsLike = None,
    temperature: Optional[Temperature] = None,
  ) -> jax.Array:
    """``[..., num_features] -> [..., num_features]``, in ``dtype`` (default: the input's).

    ``temperature`` overrides the layer's for this call; a scalar array (a
    schedule's value) does not retrace a jitted step when it changes.
    """
    _check_input(x, self.num_features, "MixedActivation")
    x = x.astype(self.dtype or x.dtype)
    fns = [fn for _, fn in resolve_pool(self.pool)]
    logits = self.logits[...]
    if self.deterministic if deterministic is None else deterministic:
      return select(x, jnp.argmax(logits, -1), fns, range(len(fns)))
    temperature = self.temperature if temperature is None else temperature
    weights = gumbel_straight_through(logits, self._key(rngs), temperature=temperature, hard=self.hard)
    return mix(x, weights.astype(x.dtype), fns)

  def choices(self) -> np.ndarray:
    """Each feature's chosen pool index (argmax; ties to the lowest); ``[layers, features]`` for a stack."""
    logits = np.asarray(self.logits[...])
    if logits.ndim < 2:
      raise ValueError(f"This MixedActivation holds logits of shape {logits.shape}; expected [features, k].")
    if not np.all(np.isfinite(logits)):
      raise ValueError("The logits are not finite; cannot choose activations from them.")
    return np.argmax(logits, -1)


def _check_input(x: jax.Array, features: int, layer: str) -> None:
  if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
    raise TypeError(f"{layer} needs floating-point input (e.g. x.astype(jnp.float32)), got {x.dtype}.")
  if x.shape[-1:] != (features,):
    raise ValueError(f"Input has shape {tuple(x.shape)}; its last axis must be {features}.")


class Choices(nnx.Variable):
  """A frozen layer's per-feature pool indices: state, but not a ``Param`` (never trained).

  Because the choices are state, a frozen model's checkpoint holds them, and it
  restores into ``nnx.eval_shape(lambda: freeze(build_model()))`` without the
  Phase 1 logits.
  """


class PoolId(nnx.Variable):
  """A frozen layer's pool, as a fingerprint of its names in order: choices restored into a layer built
  with another pool (or order) are caught instead of applying the wrong activations."""


def _fingerprint(pool: Pool) -> int:
  return zlib.crc32(",".join(pool_names(pool)).encode()) & 0x7FFFFFFF


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

  def __init__(
    self,
    choices: Union[Sequence[int], jax.Array],
    pool: Pool = DEFAULT_POOL,
    *,
    dtype: Optional[jnp.dtype] = None,
  ):
    names = pool_names(pool)
    self.pool = as_pool(pool)
    self.dtype = dtype
    # One per layer of a stack, so that nnx.scan / nnx.vmap slice it with the choices.
    stack = lambda c: jnp.full(jnp.shape(c)[:-1], _fingerprint(self.pool), jnp.int32)  # noqa: E731
    if isinstance(choices, jax.core.Tracer):  # under nnx.eval_shape: an abstract model to restore into
      self.choices, self.pool_id = Choices(jnp.asarray(choices, jnp.int32)), PoolId(stack(choices))
      return
    c = np.asarray(choices)
    integers = c.ndim >= 1 and c.size > 0 and np.issubdtype(c.dtype, np.integer)
    if not integers or c.min() < 0 or c.max() >= len(names):
      raise ValueError(
        f"choices must be a non-empty list of indices into the pool {names}, got {c.ravel().tolist()[:10]}."
      )
    self.choices, self.pool_id = Choices(jnp.asarray(c, jnp.int32)), PoolId(stack(c))

  def __call__(self, x: jax.Array) -> jax.Array:
    """``[..., features] -> [..., features]``, in ``dtype`` (default: the input's)."""
    choices = self.choices[...]
    _check_input(x, choices.shape[-1], "FrozenActivation")
    if choices.ndim != 1:
      raise ValueError(
        f"This FrozenActivation holds stacked choices {tuple(choices.shape)} (a frozen nnx.vmap stack):"
        " call it inside nnx.scan / nnx.vmap over the stack, which gives each layer its own."
      )
    stored, expected = self.pool_id[...], _fingerprint(self.pool)
    if not isinstance(stored, jax.core.Tracer) and np.any(np.asarray(stored) != expected):
      raise ValueError(
        "This FrozenActivation's state was frozen with another pool than its own"
        f" {list(pool_names(self.pool))} (or another order): build the model with its training pool."
      )
    if not isinstance(choices, jax.core.Tracer):
      choices = np.asarray(choices)
    out = fixed_activation(x.astype(self.dtype or x.dtype), choices, pool=self.pool)
    if isinstance(stored, jax.core.Tracer):  # under jit it cannot raise: NaN, never the wrong activations
      out = jnp.where(jnp.all(stored == expected), out, jnp.nan)
    return out


# ----------------------------------------------------------------------------
# Freezing: one pass over the graph as Flax traverses it.


class _Edge(NamedTuple):
  parent: Any
  key: Any
  child: Any
  path: tuple  # the child's path from the root


def _graph(model: Any) -> list[_Edge]:
  """Every reference in ``model``'s graph to a module, Variable or container, as Flax traverses it
  (modules, ``nnx.List`` / ``nnx.Dict``, lists, tuples, dicts): a shared node once per reference,
  its own references once."""
  edges, seen = [], set()

  def visit(node, path):
    if id(node) in seen or isinstance(node, nnx.Variable):
      return
    seen.add(id(node))
    impl = graphlib.get_node_impl(node)
    if impl is None:
      return
    for key, child in impl.node_dict(node).items():
      if isinstance(key, str) and key.startswith("_"):  # the pytree's own bookkeeping, not a reference
        continue
      if isinstance(child, nnx.Variable) or graphlib.is_node(child):
        edges.append(_Edge(node, key, child, (*path, key)))
        visit(child, (*path, key))

  visit(model, ())
  return edges


def _where(path: tuple) -> str:
  return "model." + ".".join(map(str, path)) if path else "the model"


_KNOWN_STATE = ("kernel", "bias", "mask")
"""The per-feature state of a plain ``nnx.Linear`` / ``nnx.Conv`` that a permutation rewrites."""


def _feature_axes(layer) -> Optional[tuple[int, int]]:
  """(output-feature axis, input-feature axis) of a layer whose every per-feature array is known.

  Exact types only, with unbatched kernels: a subclass (``nnx.LoRALinear``) may
  hold more weights that read the same features; any array state beyond
  :data:`_KNOWN_STATE` might too.
  """
  if type(layer) is nnx.Linear and layer.kernel[...].ndim == 2:
    axes = (-1, 0)
  elif (
    type(layer) is nnx.Conv
    and layer.feature_group_count == 1
    and layer.kernel[...].ndim == len(layer.kernel_size) + 2
  ):
    axes = (-1, -2)
  else:
    return None
  arrays = {k for k, v in vars(layer).items() if isinstance(v, (nnx.Variable, jax.Array, np.ndarray))}
  return axes if arrays <= set(_KNOWN_STATE) else None


def _take(layer, name: str, perm, axis: int) -> None:
  """``layer.<name>`` (a Variable or a plain array such as ``Conv.mask``) permuted along ``axis``."""
  value = getattr(layer, name, None)
  if value is None:
    return
  if isinstance(value, nnx.Variable):
    value.set_value(jnp.take(value[...], perm, axis=axis))
  else:
    setattr(layer, name, jnp.take(value, perm, axis=axis))


def _sandwiches(model: nnx.Module, edges: list[_Edge], *, trust_all: bool) -> list[tuple]:
  """The ``(before, activation, after)`` triples of ``Sequential`` layers whose features may be sorted.

  The three layers and each of their Variables are referenced once in the whole
  model (nothing else holds them), the outer two are plain ``nnx.Linear`` or
  ``nnx.Conv`` (:func:`_feature_axes`), and the ``Sequential`` is called the way
  its own code calls it: it is the model, or is reached from it through
  ``Sequential`` layers only. A module of the user's may call a layer of its
  ``Sequential`` directly or read its weights, which no graph shows; there
  the features are sorted only with ``trust_all`` (a self-check follows).
  """
  references: dict[int, int] = {}
  parents: dict[int, list] = {}
  for edge in edges:
    references[id(edge.child)] = references.get(id(edge.child), 0) + 1
    parents.setdefault(id(edge.child), []).append(edge.parent)

  def called_as_written(node) -> bool:
    """Only Flax's own code calls ``node``'s children: it is a Sequential or container, held by such."""
    if not isinstance(node, (nnx.Sequential, nnx.List, list, tuple, dict)):
      return False
    return node is model or all(called_as_written(p) for p in parents.get(id(node), []))

  def alone(layer) -> bool:
    variables = [v for v in vars(layer).values() if isinstance(v, nnx.Variable)]
    return references.get(id(layer), 0) == 1 and all(references.get(id(v), 0) == 1 for v in variables)

  sequentials = [e.child for e in edges if isinstance(e.child, nnx.Sequential)]
  if isinstance(model, nnx.Sequential):
    sequentials.append(model)
  out = []
  for node in {id(n): n for n in sequentials}.values():
    if not (trust_all or called_as_written(node)):
      continue
    layers = list(node.layers)
    for before, act, after in zip(layers, layers[1:], layers[2:]):
      if not isinstance(act, MixedActivation) or act.logits[...].ndim != 2:
        continue
      if _feature_axes(before) and _feature_axes(after) and all(alone(m) for m in (before, act, after)):
        out.append((before, act, after))
  return out


def _sort_features(before, act: MixedActivation, after) -> None:
  """Sorts the features of ``before -> act -> after`` by ``act``'s choice: each activation one segment."""
  perm = jnp.argsort(_choices(act), stable=True)
  out_axis, _ = _feature_axes(before)
  _, in_axis = _feature_axes(after)
  for name in _KNOWN_STATE:
    _take(before, name, perm, out_axis if name != "bias" else 0)
  for name in ("kernel", "mask"):
    _take(after, name, perm, in_axis)
  act.logits.set_value(act.logits[...][perm])


def _choices(act: MixedActivation) -> Union[np.ndarray, jax.Array]:
  """``act.choices()``, or its traced equivalent inside ``nnx.eval_shape`` (an abstract model)."""
  logits = act.logits[...]
  return jnp.argmax(logits, -1) if isinstance(logits, jax.core.Tracer) else act.choices()


def _replace_activations(model: Any) -> Any:
  """``model`` with every :class:`MixedActivation` replaced by its :class:`FrozenActivation`, in every
  container Flax traverses (a shared activation stays shared; an immutable container is rebuilt)."""
  done: dict[int, Any] = {}

  def swap(node, path):
    if id(node) in done:
      return done[id(node)]
    if isinstance(node, MixedActivation):
      done[id(node)] = FrozenActivation(_choices(node), node.pool, dtype=node.dtype)
      return done[id(node)]
    impl = None if isinstance(node, nnx.Variable) else graphlib.get_node_impl(node)
    if impl is None:
      return node
    done[id(node)] = node  # a cycle comes back to the node itself
    changed = {}
    for key, child in impl.node_dict(node).items():
      if isinstance(key, str) and key.startswith("_"):
        continue
      new = swap(child, (*path, key))
      if new is not child:
        changed[key] = new
    if changed and impl.set_key is not None:
      for key, new in changed.items():
        impl.set_key(node, key, new)
    elif changed:
      node = _rebuilt(node, changed, path)
    done[id(node)] = node
    return node

  return swap(model, ())


def _rebuilt(node, changed: dict, path: tuple):
  """An immutable container (tuple, named tuple, frozen mapping) with ``changed`` entries replaced."""
  if isinstance(node, tuple):
    items = [changed.get(i, item) for i, item in enumerate(node)]
    return type(node)._make(items) if hasattr(node, "_fields") else type(node)(items)
  if isinstance(node, Mapping):
    return type(node)({k: changed.get(k, v) for k, v in node.items()})
  raise ValueError(
    f"{_where(path)} is a {type(node).__name__} holding a MixedActivation; freeze cannot rebuild it. Hold"
    " the layer in a module attribute, nnx.List, nnx.Dict, list, tuple or dict."
  )


def _evaluate(model: Any, probe) -> Any:
  """``model``'s output on ``probe`` (one input, or a tuple of positional inputs) in evaluation mode."""
  view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
  return view(*(probe if isinstance(probe, tuple) else (probe,)))


def freeze(model: nnx.Module, *, probe: Any = None) -> nnx.Module:
  """A copy of ``model`` with every :class:`MixedActivation` fixed; the function is unchanged.

  Each activation becomes a :class:`FrozenActivation` wherever the model holds
  it (module attributes, ``nnx.List``, ``nnx.Dict``, lists, tuples, dicts; a
  shared activation stays shared). Where freeze can prove it safe, the
  features around an activation are also sorted by its choice so that each
  activation runs on one contiguous segment (the fast grouped form): a
  mixed activation between two plain ``nnx.Linear`` or two ``nnx.Conv``
  layers of an ``nnx.Sequential`` that is the model or sits in ``Sequential``
  layers only, the three layers and their Variables held nowhere else, with
  no per-feature state but kernel, bias and mask (a Conv mask is sorted with
  its kernel). Everywhere else the features keep their places and each is
  selected by a constant mask (exact; every activation in use runs on all
  features): a residual block, a LoRA layer, a tied or shared layer, a
  Sequential inside a module of yours (whose code might call one of its
  layers directly or read its weights).

  With ``probe`` freeze checks itself: it evaluates the model and the frozen
  copy on the probe in evaluation mode (``nnx.view(..., deterministic=True,
  use_running_average=True)``) and, since the check covers your modules'
  code, also sorts the features of Sequentials inside them. If the sorted
  copy disagrees it falls back to the unsorted one; if that disagrees too,
  it raises. ``model`` is left untouched. The choices are state
  (:class:`Choices`), so the frozen model checkpoints like any other; inside
  ``nnx.eval_shape`` freeze builds the abstract frozen model to restore such
  a checkpoint into (give it no probe there).

  Stacked layers (an ``nnx.vmap``-ed stack called under ``nnx.scan``, logits
  ``[layers, features, k]``) freeze to stacked choices ``[layers, features]``,
  applied per layer as data.

  Args:
    model: any NNX module containing :class:`MixedActivation` layers.
    probe: an input batch the model accepts (a tuple for several positional
      inputs), for the self-check.

  Returns:
    A new module of the same structure with :class:`FrozenActivation` layers.

  Raises:
    ValueError: non-finite logits (naming the layer), a MixedActivation in a
      container freeze cannot rebuild, or a frozen model that disagrees with
      the model on ``probe``.
  """
  if isinstance(model, MixedActivation):
    return FrozenActivation(_choices(model), model.pool, dtype=model.dtype)
  for edge in _graph(model):
    if isinstance(edge.child, MixedActivation):
      try:
        _choices(edge.child)  # refuses non-finite logits before anything changes
      except ValueError as e:
        raise ValueError(f"{_where(edge.path)}: {e}") from None

  def frozen_copy(sort: str) -> nnx.Module:
    copy = nnx.clone(model)
    if sort != "never":
      for triple in _sandwiches(copy, _graph(copy), trust_all=sort == "all"):
        _sort_features(*triple)
    return _replace_activations(copy)

  if probe is None:
    return frozen_copy("proven")
  tolerance = probe_tolerance(
    node.dtype for _, node in nnx.iter_graph(model) if isinstance(node, (MixedActivation, FrozenActivation))
  )
  for sort in ("all", "never"):
    frozen = frozen_copy(sort)
    error = disagreement(_evaluate(model, probe), _evaluate(frozen, probe))
    if error <= tolerance:
      return frozen
  raise ValueError(
    f"The frozen model differs from the evaluated model on the probe by up to {error:.3g} (relative; allowed"
    f" {tolerance:g}), even with every feature in place. Does the model sample at evaluation (a module"
    " without deterministic=True), or a MixedActivation subclass compute something else?"
  )


def counts(model: nnx.Module) -> list[dict[str, int]]:
  """Per mixed or frozen activation layer (in graph order; each layer of a stack), features per activation."""
  out = []
  for _, node in nnx.iter_graph(model):
    if isinstance(node, (MixedActivation, FrozenActivation)):
      picks = node.choices() if isinstance(node, MixedActivation) else np.asarray(node.choices[...])
      names = pool_names(node.pool)
      for layer in np.reshape(picks, (-1, picks.shape[-1])):
        out.append(dict(zip(names, np.bincount(layer, minlength=len(names)).tolist())))
  return out
