"""The training loop: pure step / epoch / evaluation functions and one driver, :func:`fit`.

An epoch is one ``lax.scan`` over shuffled minibatches of data that stays on
the device. The last, partial batch is padded and masked out of the loss, so
every example is seen exactly once per epoch, as with PyTorch's DataLoader.
:func:`fit` trains one model, or ``M`` same-shaped models stacked on a
leading axis as one ``jax.vmap``-ed program; the CLI, the sweep and the
experiments all train through it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smartmixed_jax._src.mlp import is_logits_path
from smartmixed_jax._src.policies import (
  Outcome,
  Phase,
  Policy,
  chain,
  progress_bar,
  raise_on_nonfinite,
)
from smartmixed_jax._src.record import PhaseRecord

ApplyFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]
"""``apply(params, x, key, step) -> logits``.

``key`` is the batch's PRNG key, ``step`` the phase's optimizer step (a traced
int32 scalar, e.g. for a temperature schedule); deterministic models ignore both.
"""

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
Splits = Mapping[str, tuple[jax.Array, jax.Array]]
"""``{"train": (x, y), "val": (x, y), "test": (x, y)}``, ideally already on the device."""


LOGITS_LR_SCALE = 100.0
"""How many times faster than the weights the selection logits learn by default.

At the weights' rate the logits barely move: Phase 1 ends with every neuron
undecided and freezes a uniform random draw. 100x decides at least 93% of the
hidden neurons in every run of the paper's 18 architectures x 3 seeds in 10
epochs, and its Phase 1 test accuracy is not below the weights' rate's on any
of them (``experiments/results/default_selects/REPORT.md``). The ``paper``
preset keeps 1.
"""


def scale_logits(scale: float = LOGITS_LR_SCALE) -> optax.GradientTransformation:
  """Scales the selection logits' updates by ``scale``; other leaves pass unchanged.

  Chain it after any optimizer to make the logits learn ``scale`` times
  faster than the weights (under Adam, the same as a ``scale`` times higher
  learning rate for them). The logits are the leaves under a field or key
  named ``logits``: :class:`MLPParams`, an NNX ``State`` and Linen params alike.

  Example:
    >>> tx = optax.chain(optax.adam(1e-3), scale_logits())
    >>> nnx_tx = nnx.Optimizer(model, tx, wrt=nnx.Param)  # doctest: +SKIP
  """
  if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
    raise ValueError(f"scale must be a finite number > 0, got {scale!r}.")
  return optax.masked(optax.scale(scale), _logits_mask)


def make_optimizer(
  learning_rate: float,
  clip_norm: float,
  *,
  decay_steps: Optional[int] = None,
  decay_offset: int = 0,
  skip_nonfinite: bool = False,
  logits_scale: float = LOGITS_LR_SCALE,
) -> optax.GradientTransformation:
  """Adam after global-norm gradient clipping (the reference set-up).

  Args:
    learning_rate: Adam's learning rate; the peak if ``decay_steps`` is set.
    clip_norm: maximum global norm of the gradients.
    decay_steps: if set, cosine-decay the learning rate to zero over this many steps.
    decay_offset: the optimizer's first step is this step of the decay: a
      phase that continues a schedule begun by an earlier phase.
    skip_nonfinite: skip (do not apply) updates whose gradients are not finite.
      The state has the same structure either way, so a resumed run may switch it.
    logits_scale: the selection logits learn this many times faster than the
      weights (beyond the paper; :data:`LOGITS_LR_SCALE` by default, 1 for
      the paper's set-up): their Adam updates are scaled after clipping
      (:func:`scale_logits`). It works on :class:`MLPParams`, an NNX
      ``State`` (``nnx.Optimizer(model, make_optimizer(...), wrt=nnx.Param)``)
      and Linen params alike.
  """
  if decay_steps:
    cosine = optax.cosine_decay_schedule(learning_rate, decay_steps)
    learning_rate = (lambda count: cosine(count + decay_offset)) if decay_offset else cosine
  optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
  if logits_scale != 1.0:  # only then, so the state of existing checkpoints keeps its structure
    optimizer = optax.chain(optimizer, scale_logits(logits_scale))
  # With 0 allowed errors a non-finite update goes through (and the loop reports the divergence).
  return optax.apply_if_finite(optimizer, max_consecutive_errors=2**31 - 1 if skip_nonfinite else 0)


def _logits_mask(params: Any) -> Any:
  """True for the selection logits' leaves (:func:`is_logits_path`)."""
  return jax.tree_util.tree_map_with_path(lambda path, _: is_logits_path(path), params)


def cross_entropy(logits: jax.Array, labels: jax.Array, *, softmax_output: bool = False) -> jax.Array:
  """Per-example cross-entropy; ``softmax_output`` reproduces the reference's
  softmax layer in front of ``CrossEntropyLoss`` (softmax applied twice)."""
  if softmax_output:
    logits = jax.nn.softmax(logits, axis=-1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


class Metrics(NamedTuple):
  loss: jax.Array
  accuracy: jax.Array


class EpochMetrics(NamedTuple):
  loss: jax.Array  # mean over the steps whose loss was finite
  accuracy: jax.Array
  first_nonfinite_step: jax.Array  # index of the first step with a non-finite loss, or -1
  nonfinite_steps: jax.Array  # how many steps had a non-finite loss
  step_stats: Any = None  # the epoch's sum of ``step_stats`` (see make_train_epoch), if asked for


def _batched_indices(key: Optional[jax.Array], n: int, batch_size: int):
  """``[steps, batch]`` example indices (shuffled if ``key``) and a validity mask."""
  steps = math.ceil(n / batch_size)
  order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
  pad = steps * batch_size - n
  order = jnp.concatenate([order, jnp.zeros(pad, order.dtype)])
  mask = jnp.arange(steps * batch_size) < n
  return order.reshape(steps, batch_size), mask.reshape(steps, batch_size)


def trainable(tree: Any) -> tuple[Any, Any]:
  """``tree`` split into its trained (floating-point) leaves and the rest, None standing in for the other.

  What :func:`fit` trains: a model may carry data that are not parameters,
  such as each model's activation choices as integers, and only its floating-
  point leaves get gradients and optimizer state. :func:`combine` undoes it.
  """
  leaves, treedef = jax.tree.flatten(tree)
  trained = [jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves]
  pick = lambda keep: treedef.unflatten([leaf if t == keep else None for leaf, t in zip(leaves, trained)])  # noqa: E731
  return pick(True), pick(False)


def combine(trained: Any, rest: Any) -> Any:
  """The inverse of :func:`trainable`."""
  return jax.tree.map(lambda a, b: b if a is None else a, trained, rest, is_leaf=lambda leaf: leaf is None)


def _batch_loss(apply_fn, loss_fn, trained, rest, x, y, mask, key, step):
  logits = apply_fn(combine(trained, rest), x, key, step)
  weight = mask.astype(jnp.float32)
  losses = loss_fn(logits, y).astype(jnp.float32)
  total = jnp.sum(weight * losses)
  # An example with several labels (a sequence's tokens) counts the share it gets right.
  hits = (jnp.argmax(logits, -1) == y).reshape(y.shape[0], -1).mean(-1)
  correct = jnp.sum(weight * hits)
  return total / jnp.maximum(jnp.sum(weight), 1.0), (total, correct)


def make_train_step(
  apply_fn: ApplyFn, optimizer: optax.GradientTransformation, *, loss_fn: LossFn = cross_entropy
):
  """Builds ``step(params, opt_state, x, y, mask, key, step) -> (params, opt_state, sums)``.

  One optimizer update on a batch; ``sums`` is ``(loss_sum, correct)``; ``mask`` ``[batch]`` marks the real
  examples (padding has weight 0). Only the floating-point leaves of
  ``params`` are trained (see :func:`trainable`). Pure and not compiled
  itself: call it inside a jit-compiled loop (or wrap it in ``jax.jit``).
  """
  grad_fn = jax.grad(functools.partial(_batch_loss, apply_fn, loss_fn), has_aux=True)

  def train_step(params, opt_state, x, y, mask, key, step):
    trained, rest = trainable(params)
    grads, sums = grad_fn(trained, rest, x, y, mask, key, step)
    updates, opt_state = optimizer.update(grads, opt_state, trained)
    return combine(optax.apply_updates(trained, updates), rest), opt_state, sums

  return train_step


def make_train_epoch(
  apply_fn: ApplyFn,
  optimizer: optax.GradientTransformation,
  *,
  batch_size: int,
  loss_fn: LossFn = cross_entropy,
  step_stats: Optional[Callable[[Any, jax.Array], Any]] = None,
  batch_sharding: Optional[jax.sharding.Sharding] = None,
):
  """Builds jit-compiled ``epoch(params, opt_state, x, y, key, step) -> (params, opt_state, m)``.

  One pass over ``(x, y)`` in shuffled minibatches as a single ``lax.scan``
  of :func:`make_train_step`; ``step`` is the phase step of its first batch;
  ``m`` is an :class:`EpochMetrics`.

  Args:
    apply_fn: ``apply(params, x, key, step) -> logits``.
    optimizer: the optax optimizer.
    batch_size: examples per step.
    loss_fn: per-example loss of ``(logits, labels)``.
    step_stats: optional ``stats(params, key) -> pytree`` evaluated at every
      step with the step's parameters and the key its forward pass gets; the
      epoch's sum is returned as ``metrics.step_stats``. With
      :func:`smartmixed_jax.sample_choices` it counts what Phase 1 sampled.
    batch_sharding: data parallelism: each batch is laid out with this
      sharding (e.g. split over a mesh axis); XLA then all-reduces the
      gradients of the replicated parameters.
  """
  train_step = make_train_step(apply_fn, optimizer, loss_fn=loss_fn)
  shard = _sharder(batch_sharding)
  stats_fn = step_stats or (lambda params, key: ())

  @jax.jit
  def epoch(params, opt_state, x, y, key, step):
    shuffle_key, step_key = jax.random.split(key)
    indices, mask = _batched_indices(shuffle_key, x.shape[0], batch_size)
    steps = indices.shape[0]
    step_keys = jax.random.split(step_key, steps)
    zero_stats = jax.tree.map(jnp.zeros_like, jax.eval_shape(stats_fn, params, step_keys[0]))

    def body(carry, batch):
      params, opt_state, stats = carry
      idx, m, k, s = batch
      stats = jax.tree.map(jnp.add, stats, stats_fn(params, k))
      params, opt_state, sums = train_step(params, opt_state, *shard(x[idx], y[idx], m), k, s)
      return (params, opt_state, stats), sums

    batches = (indices, mask, step_keys, step + jnp.arange(steps, dtype=jnp.int32))
    (params, opt_state, stats), (totals, corrects) = jax.lax.scan(
      body, (params, opt_state, zero_stats), batches
    )
    n = x.shape[0]
    finite = jnp.isfinite(totals)
    metrics = EpochMetrics(
      jnp.sum(jnp.where(finite, totals, 0)) / n,
      jnp.sum(corrects) / n,
      jnp.where(jnp.all(finite), -1, jnp.argmin(finite)),
      jnp.sum(~finite),
      stats if step_stats else None,
    )
    return params, opt_state, metrics

  return epoch


def _sharder(sharding: Optional[jax.sharding.Sharding]):
  """Lays arrays out with ``sharding`` along their first axis (identity for None)."""
  if sharding is None:
    return lambda *arrays: arrays
  return lambda *arrays: tuple(jax.lax.with_sharding_constraint(a, sharding) for a in arrays)


def make_evaluate(
  apply_fn: ApplyFn,
  *,
  batch_size: int,
  loss_fn: LossFn = cross_entropy,
  batch_sharding: Optional[jax.sharding.Sharding] = None,
):
  """Builds jit-compiled ``evaluate(params, x, y, key, step) -> Metrics`` over a whole split."""
  shard = _sharder(batch_sharding)

  @jax.jit
  def evaluate(params, x, y, key, step):
    indices, mask = _batched_indices(None, x.shape[0], min(batch_size, x.shape[0]))
    keys = jax.random.split(key, indices.shape[0])

    def chunk(batch):
      idx, m, k = batch
      batch = shard(x[idx], y[idx], m)
      _, (total, correct) = _batch_loss(apply_fn, loss_fn, *trainable(params), *batch, k, step)
      return total, correct

    totals, corrects = jax.lax.map(chunk, (indices, mask, keys))
    n = x.shape[0]
    return Metrics(jnp.sum(totals) / n, jnp.sum(corrects) / n)

  return evaluate


# ----------------------------------------------------------------------------
# The driver.


def _float(value) -> Optional[float]:
  value = float(value)
  return value if math.isfinite(value) else None  # JSON has no NaN


@jax.jit
def _keep_best(best, params, best_loss, loss):
  """Per model, ``params`` where its validation loss improved (NaN never does)."""
  better = loss < best_loss
  pick = lambda b, p: jnp.where(better.reshape(better.shape + (1,) * (p.ndim - better.ndim)), p, b)  # noqa: E731
  return jax.tree.map(pick, best, params), jnp.where(better, loss, best_loss)


def _finite(tree, stacked: bool) -> jax.Array:
  """Whether every leaf is finite: a bool, or ``[M]`` bools for stacked models."""
  axes = lambda leaf: tuple(range(1 if stacked else 0, leaf.ndim))  # noqa: E731
  flags = [jnp.all(jnp.isfinite(leaf), axis=axes(leaf)) for leaf in jax.tree.leaves(tree)]
  return functools.reduce(jnp.logical_and, flags, jnp.bool_(True))


_ARRAYS = ("params", "opt_state", "key", "best_params", "best_loss")


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=list(_ARRAYS),
  meta_fields=["epoch", "best_epochs", "histories", "seconds", "done"],
)
@dataclasses.dataclass(frozen=True)
class PhaseState:
  """Where a phase stands after an epoch: a pytree of its arrays, with its records as static fields.

  What a checkpoint holds, and what :func:`fit`'s policies see.
  ``histories[m][e]`` is model ``m``'s epoch ``e`` record; epoch 0 is the model
  before the first update. ``best_params`` are each model's lowest-validation-
  loss parameters among epochs >= 1, or >= 0 (see ``fit``'s ``select_start``).
  ``done`` marks the phase's last epoch: the planned last, or one a policy
  ended the phase at.
  """

  params: Any
  opt_state: Any
  key: jax.Array  # [] or [M]
  best_params: Any
  best_loss: jax.Array  # [] or [M]
  epoch: int = 0
  best_epochs: list[int] = dataclasses.field(default_factory=lambda: [0])
  histories: list[list[dict[str, Any]]] = dataclasses.field(default_factory=lambda: [[]])
  seconds: float = 0.0
  done: bool = False

  def replace(self, **changes) -> PhaseState:
    return dataclasses.replace(self, **changes)

  @classmethod
  def initial(cls, params: Any, optimizer: optax.GradientTransformation, key: jax.Array, **records):
    """The state before the first update; ``jax.eval_shape`` of it gives a checkpoint's abstract arrays.

    ``params`` (and ``key``) may be stacked; ``records`` may set ``best_loss`` and the static fields.
    """
    stacked = jnp.ndim(key) > 0
    init = lambda params: optimizer.init(trainable(params)[0])  # noqa: E731
    opt_state = jax.jit(jax.vmap(init) if stacked else init)(params)
    best_loss = jnp.full(jnp.shape(key), jnp.inf, jnp.float32)
    return cls(params, opt_state, key, params, **{"best_loss": best_loss, **records})

  def arrays(self) -> dict[str, Any]:
    """The checkpointed arrays (the key as its raw data)."""
    arrays = {name: getattr(self, name) for name in _ARRAYS}
    return {**arrays, "key": jax.random.key_data(self.key)}

  def meta(self) -> dict[str, Any]:
    """The checkpointed JSON records."""
    return {"epoch": self.epoch, "histories": self.histories, "best_epochs": self.best_epochs,
            "seconds": self.seconds}  # fmt: skip

  @classmethod
  def restore(cls, arrays: dict[str, Any], meta: dict[str, Any]) -> PhaseState:
    """The state :meth:`arrays` and :meth:`meta` were taken from."""
    arrays = {**{name: arrays[name] for name in _ARRAYS}, "key": jax.random.wrap_key_data(arrays["key"])}
    records = dict(epoch=meta["epoch"], best_epochs=list(meta["best_epochs"]), histories=meta["histories"])
    return cls(**arrays, **records, seconds=meta["seconds"])


@dataclasses.dataclass
class PhaseResult:
  """What :func:`fit` returns; per-model lists (one entry for a single model).

  ``best_params`` are stacked like the input params. :meth:`record` is the
  one results schema every run and sweep writes.
  """

  name: str
  histories: list[list[dict[str, Any]]]
  best_epochs: list[int]
  best_params: Any
  test: list[dict[str, Optional[float]]]
  seconds: float
  last_step_stats: Any = None

  def best(self, m: int = 0) -> dict[str, Any]:
    """Model ``m``'s selected epoch: its validation and test metrics."""
    rec = self.histories[m][self.best_epochs[m]]
    return {
      "epoch": self.best_epochs[m],
      "val_loss": rec["val_loss"],
      "val_accuracy": rec["val_accuracy"],
      **self.test[m],
    }

  def record(self, m: int = 0) -> PhaseRecord:
    """Model ``m``'s phase as a record: history, selected epoch, wall time."""
    return PhaseRecord.of(self, m)


def _place(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """``tree``'s arrays as global arrays laid out by ``sharding``, built from each process's own copy.

  Works across processes (hosts): every process holds the same values and
  contributes the shards its devices hold.
  """

  def put(leaf):
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def _mesh_layout(mesh: jax.sharding.Mesh, models: Optional[int]):
  """(sharding of per-model arrays, of shared arrays, of each batch) for training on ``mesh``."""
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  axis, devices = mesh.axis_names[0], mesh.shape[mesh.axis_names[0]]
  replicated = NamedSharding(mesh, P())
  if models is None:
    return replicated, replicated, NamedSharding(mesh, P(axis))
  if models % devices:
    raise ValueError(
      f"{models} stacked models do not split evenly over {devices} devices; use a divisor of {models}."
    )
  return NamedSharding(mesh, P(axis)), replicated, None


METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
"""What every epoch's record holds for each model (with its timings)."""


class _Programs(NamedTuple):
  """A phase's compiled programs, ``jax.vmap``-ed over the models when they are stacked."""

  epoch: Callable  # (params, opt_state, x, y, key, step) -> (params, opt_state, EpochMetrics)
  evaluate: Callable  # (params, x, y, key, step) -> Metrics
  split3: Callable  # key -> three keys
  finite: Callable  # params -> whether every leaf is finite


def _programs(
  apply, eval_apply, optimizer, *, stacked, batch_size, eval_batch_size, loss_fn, step_stats, batch_sharding
) -> _Programs:
  vmap = (lambda f, in_axes: jax.vmap(f, in_axes=in_axes)) if stacked else (lambda f, in_axes: f)
  epoch = make_train_epoch(
    apply,
    optimizer,
    batch_size=batch_size,
    loss_fn=loss_fn,
    step_stats=step_stats,
    batch_sharding=batch_sharding,
  )
  evaluate = make_evaluate(
    eval_apply, batch_size=eval_batch_size, loss_fn=loss_fn, batch_sharding=batch_sharding
  )
  return _Programs(
    jax.jit(vmap(epoch, (0, 0, None, None, 0, None))),
    jax.jit(vmap(evaluate, (0, None, None, 0, None))),
    jax.jit(vmap(lambda k: tuple(jax.random.split(k, 3)), (0,))),
    jax.jit(functools.partial(_finite, stacked=stacked)),
  )


def _on_mesh(mesh, models, params, key, splits, resume):
  """Everything laid out on ``mesh`` (see :func:`fit`), and the sharding of each batch."""
  model_sharding, shared, batch_sharding = _mesh_layout(mesh, models)
  # Through the host: every process holds the same values, which become one global array.
  params, key = _place((params, key), model_sharding)
  if resume is not None:
    arrays = ("params", "opt_state", "key", "best_params", "best_loss")
    placed = _place(tuple(getattr(resume, a) for a in arrays), model_sharding)
    resume = dataclasses.replace(resume, **dict(zip(arrays, placed)))
  return params, key, _place(splits, shared), resume, batch_sharding


def _start(run: _Programs, optimizer, params, key, val_split, models: Optional[int], select: bool):
  """Epoch 0: the models before any update, evaluated (a candidate for selection if ``select``)."""
  key, eval_key, _ = run.split3(key)
  val = run.evaluate(params, *val_split, eval_key, jnp.int32(0))
  count = models or 1
  losses, accs = (np.asarray(a).reshape(count) for a in jax.device_get((val.loss, val.accuracy)))
  histories = [[{"epoch": 0, "val_loss": _float(v), "val_accuracy": _float(a)}] for v, a in zip(losses, accs)]
  finite = jnp.where(jnp.isfinite(val.loss), val.loss, jnp.inf)
  best_loss = finite if select else jnp.full(np.shape(val.loss), jnp.inf)
  return PhaseState.initial(params, optimizer, key, best_loss=best_loss, best_epochs=[0] * count,
                            histories=histories)  # fmt: skip


def _epoch(run: _Programs, state: PhaseState, splits: Splits, phase: Phase) -> tuple[PhaseState, Outcome]:
  """One epoch: train, evaluate, keep each model's best parameters, record."""
  epoch, count = state.epoch + 1, phase.models or 1
  per_model = lambda a: np.asarray(a).reshape(count)  # noqa: E731
  key, epoch_key, eval_key = run.split3(state.key)
  t = time.perf_counter()
  step = jnp.int32((epoch - 1) * phase.steps)
  params, opt_state, metrics = run.epoch(state.params, state.opt_state, *splits["train"], epoch_key, step)
  finite = run.finite(params)
  jax.block_until_ready(params)
  seconds = {"train_seconds": time.perf_counter() - t}
  t = time.perf_counter()
  val = run.evaluate(params, *splits["val"], eval_key, jnp.int32(epoch * phase.steps))
  best_params, best_loss = _keep_best(state.best_params, params, state.best_loss, val.loss)
  fetched = jax.device_get(
    (metrics.loss, metrics.accuracy, val.loss, val.accuracy, metrics.nonfinite_steps,
     metrics.first_nonfinite_step, finite, best_loss < state.best_loss)
  )  # fmt: skip
  *values, bad, first, finite, improved = map(per_model, fetched)
  seconds["eval_seconds"] = time.perf_counter() - t
  records = [
    {"epoch": epoch, **{k: _float(v[m]) for k, v in zip(METRICS, values)}, **seconds,
     **({"skipped_steps": int(bad[m])} if bad[m] else {})}
    for m in range(count)
  ]  # fmt: skip
  new = PhaseState(
    params, opt_state, key, best_params, best_loss, epoch=epoch,
    best_epochs=[epoch if better else b for b, better in zip(state.best_epochs, improved)],
    histories=[[*history, record] for history, record in zip(state.histories, records)],
    seconds=state.seconds, done=epoch >= phase.epochs,
  )  # fmt: skip
  return new, Outcome(state.params, metrics.step_stats, bad, first, finite)


DEFAULT_POLICIES = (raise_on_nonfinite(), progress_bar())
"""What :func:`fit` does around its epochs unless told otherwise: stop on divergence, show progress."""


def fit(
  params: Any,
  *,
  apply: ApplyFn,
  optimizer: optax.GradientTransformation,
  splits: Splits,
  epochs: int,
  key: jax.Array,
  batch_size: int,
  loss_fn: LossFn = cross_entropy,
  eval_apply: Optional[ApplyFn] = None,
  eval_batch_size: int = 2000,
  models: Optional[int] = None,
  step_stats: Optional[Callable[[Any, jax.Array], Any]] = None,
  select_start: bool = False,
  policies: Sequence[Policy] = DEFAULT_POLICIES,
  name: str = "train",
  resume: Optional[PhaseState] = None,
  mesh: Optional[jax.sharding.Mesh] = None,
) -> PhaseResult:
  """Trains for ``epochs`` and keeps each model's lowest-validation-loss epoch.

  Epoch 0 (before any update) is evaluated and recorded; it is a candidate
  for selection when ``select_start`` is set (or ``epochs == 0``). The test
  split is evaluated once, for the selected parameters. Everything else
  around the epochs (stopping on divergence, extra statistics, stopping
  early, checkpoints, a progress bar) is a :class:`Policy`.

  Args:
    params: initial parameters (any pytree), or ``M`` models' parameters
      stacked on a leading axis with ``models=M``. Only the floating-point
      leaves are trained; the others (e.g. each model's activation choices,
      as integers) are carried as data and reach ``apply`` unchanged.
    apply: forward pass used for the updates (see :data:`ApplyFn`).
    optimizer: the optax optimizer.
    splits: ``{"train", "val", "test"}`` ``(x, y)`` arrays.
    epochs: passes over the training data.
    key: PRNG key for shuffling and any sampling; ``[M]`` keys if stacked.
    batch_size: training examples per step.
    loss_fn: per-example loss of ``(logits, labels)``.
    eval_apply: forward pass for validation and test; ``apply`` if None.
    eval_batch_size: evaluation chunk size.
    models: ``M`` for stacked models (one ``jax.vmap``-ed program), None for one.
    step_stats: ``stats(params, key)`` summed over each epoch's steps (one
      model); policies see the sum, :func:`record_stats` can record it.
    select_start: epoch 0, the parameters given, competes in the selection:
      a phase that starts from a trained model (SmartMixed's Phase 2 starts
      from the frozen Phase 1 network) may then keep it.
    policies: run in this order after each epoch (see :mod:`policies
      <smartmixed_jax._src.policies>`); without :func:`raise_on_nonfinite`
      a diverged model is recorded and training goes on.
    name: the phase's name, for progress bars and messages.
    resume: a state a policy saw earlier (e.g. checkpointed by
      :func:`each_epoch`); training continues from it.
    mesh: train on its devices (its first axis): one model data-parallel
      (each batch split over the devices, parameters and optimizer state
      replicated, gradients all-reduced by XLA), or stacked models split over
      the devices (``models`` must be a multiple of their number). Same
      results as one device, up to float round-off.

  Returns:
    A :class:`PhaseResult`.
  """
  start = time.perf_counter()
  phase = Phase(name, epochs, math.ceil(splits["train"][0].shape[0] / batch_size), models)
  policy, batch_sharding = chain(policies), None
  if mesh is not None:
    params, key, splits, resume, batch_sharding = _on_mesh(mesh, models, params, key, splits, resume)
  run = _programs(
    apply, eval_apply or apply, optimizer, stacked=models is not None, batch_size=batch_size,
    eval_batch_size=eval_batch_size, loss_fn=loss_fn, step_stats=step_stats, batch_sharding=batch_sharding,
  )  # fmt: skip
  state = resume or _start(run, optimizer, params, key, splits["val"], models, select_start or epochs == 0)
  state = policy.start(state.replace(done=state.epoch >= epochs), phase)
  elapsed, step_sums = state.seconds, None
  while not state.done:
    state, outcome = _epoch(run, state, splits, phase)
    state = policy.after_epoch(state.replace(seconds=elapsed + time.perf_counter() - start), phase, outcome)
    step_sums = outcome.step_stats
  policy.end(state, phase)
  count = models or 1
  test_key, test_step = run.split3(state.key)[2], jnp.int32(state.epoch * phase.steps)
  test = run.evaluate(state.best_params, *splits["test"], test_key, test_step)
  test_loss, test_acc = (np.asarray(a).reshape(count) for a in jax.device_get((test.loss, test.accuracy)))
  return PhaseResult(
    name=name,
    histories=state.histories,
    best_epochs=state.best_epochs,
    best_params=state.best_params,
    test=[{"test_loss": _float(v), "test_accuracy": _float(a)} for v, a in zip(test_loss, test_acc)],
    seconds=elapsed + time.perf_counter() - start,
    last_step_stats=step_sums,
  )
