"""Training: jit-compiled epochs, evaluation, and the two-phase SmartMixed run.

An epoch is one ``lax.scan`` over shuffled minibatches of data that stays on
the device. The last, partial batch is padded and masked out of the loss, so
every example is seen exactly once per epoch, as with PyTorch's DataLoader.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smartmixed_jax.config import Config
from smartmixed_jax.data import Dataset, Split
from smartmixed_jax.freeze import FrozenMLP, fixed_mlp, freeze
from smartmixed_jax.mlp import Params, apply_hard, apply_selective, choices, init_mlp
from smartmixed_jax.pool import pool_names

ApplyFn = Callable[[Params, jax.Array, jax.Array], jax.Array]
"""``apply(params, x, key) -> logits``; deterministic models ignore ``key``."""


def make_optimizer(
  learning_rate: float,
  clip_norm: float,
  *,
  decay_steps: Optional[int] = None,
  skip_nonfinite: bool = False,
) -> optax.GradientTransformation:
  """Adam after global-norm gradient clipping (the reference set-up).

  Args:
    learning_rate: Adam's learning rate; the peak if ``decay_steps`` is set.
    clip_norm: maximum global norm of the gradients.
    decay_steps: if set, cosine-decay the learning rate to zero over this many steps.
    skip_nonfinite: skip (do not apply) updates whose gradients are not finite.
  """
  if decay_steps:
    learning_rate = optax.cosine_decay_schedule(learning_rate, decay_steps)
  optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
  if skip_nonfinite:
    optimizer = optax.apply_if_finite(optimizer, max_consecutive_errors=2**31 - 1)
  return optimizer


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


def _batch_loss(apply_fn, loss_fn, params, x, y, mask, key):
  logits = apply_fn(params, x, key)
  weight = mask.astype(logits.dtype)
  total = jnp.sum(weight * loss_fn(logits, y))
  correct = jnp.sum(weight * (jnp.argmax(logits, -1) == y))
  return total / jnp.maximum(jnp.sum(weight), 1.0), (total, correct)


def make_train_step(
  apply_fn: ApplyFn,
  optimizer: optax.GradientTransformation,
  *,
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = cross_entropy,
):
  """Builds ``step(params, opt_state, x, y, mask, key) -> (params, opt_state, (loss_sum, correct))``.

  One optimizer update on a batch; ``mask`` ``[batch]`` marks the real
  examples (padding has weight 0). Not jit-compiled itself: it is meant to be
  called inside a jit-compiled loop (or wrapped in ``jax.jit``).
  """
  grad_fn = jax.grad(functools.partial(_batch_loss, apply_fn, loss_fn), has_aux=True)

  def step(params, opt_state, x, y, mask, key):
    grads, sums = grad_fn(params, x, y, mask, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, sums

  return step


def make_train_epoch(
  apply_fn: ApplyFn,
  optimizer: optax.GradientTransformation,
  *,
  batch_size: int,
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = cross_entropy,
  step_stats: Optional[Callable[[Params, jax.Array], Any]] = None,
):
  """Builds ``epoch(params, opt_state, x, y, key) -> (params, opt_state, EpochMetrics)``.

  The returned function is jit-compiled and runs one pass over ``(x, y)`` in
  shuffled minibatches as a single ``lax.scan`` of :func:`make_train_step`.
  Metrics are the epoch means of the training loss and accuracy, and where
  the loss was not finite.

  Args:
    apply_fn: ``apply(params, x, key) -> logits``.
    optimizer: the optax optimizer.
    batch_size: examples per step.
    loss_fn: per-example loss of ``(logits, labels)``.
    step_stats: optional ``stats(params, key) -> pytree`` evaluated at every
      step with the step's parameters and the key its forward pass gets; the
      epoch's sum is returned as ``metrics.step_stats``. With
      :func:`sample_choices` it counts the activations Phase 1 sampled.
  """
  train_step = make_train_step(apply_fn, optimizer, loss_fn=loss_fn)

  @jax.jit
  def epoch(params, opt_state, x, y, key):
    shuffle_key, step_key = jax.random.split(key)
    indices, mask = _batched_indices(shuffle_key, x.shape[0], batch_size)
    step_keys = jax.random.split(step_key, indices.shape[0])
    no_stats = lambda params, key: ()  # noqa: E731
    stats_fn = step_stats or no_stats
    zero_stats = jax.tree.map(jnp.zeros_like, jax.eval_shape(stats_fn, params, step_keys[0]))

    def step(carry, batch):
      params, opt_state, stats = carry
      idx, m, k = batch
      stats = jax.tree.map(jnp.add, stats, stats_fn(params, k))
      params, opt_state, sums = train_step(params, opt_state, x[idx], y[idx], m, k)
      return (params, opt_state, stats), sums

    (params, opt_state, stats), (totals, corrects) = jax.lax.scan(
      step, (params, opt_state, zero_stats), (indices, mask, step_keys)
    )
    n = x.shape[0]
    finite = jnp.isfinite(totals)
    first_bad = jnp.where(jnp.all(finite), -1, jnp.argmin(finite))
    metrics = EpochMetrics(
      jnp.sum(jnp.where(finite, totals, 0)) / n,
      jnp.sum(corrects) / n,
      first_bad,
      jnp.sum(~finite),
      stats if step_stats else None,
    )
    return params, opt_state, metrics

  return epoch


def make_evaluate(
  apply_fn: ApplyFn,
  *,
  batch_size: int,
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = cross_entropy,
):
  """Builds jit-compiled ``evaluate(params, x, y, key) -> Metrics`` over a whole split."""

  @jax.jit
  def evaluate(params, x, y, key):
    indices, mask = _batched_indices(None, x.shape[0], min(batch_size, x.shape[0]))
    keys = jax.random.split(key, indices.shape[0])

    def chunk(batch):
      idx, m, k = batch
      _, (total, correct) = _batch_loss(apply_fn, loss_fn, params, x[idx], y[idx], m, k)
      return total, correct

    totals, corrects = jax.lax.map(chunk, (indices, mask, keys))
    n = x.shape[0]
    return Metrics(jnp.sum(totals) / n, jnp.sum(corrects) / n)

  return evaluate


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or parameters."""


def _by_validation_loss(record: dict[str, Any]) -> tuple[bool, float]:
  loss = record["val_loss"]
  return (not math.isfinite(loss), loss)  # non-finite losses rank last


@dataclasses.dataclass
class PhaseState:
  """Everything needed to continue a phase where it stopped.

  ``history[e]`` holds epoch ``e``'s records; epoch 0 is the model before the
  phase's first update. The best epoch is the one with the lowest validation
  loss (the earliest on ties); ``best_params`` are its parameters.
  """

  epoch: int
  params: Params
  opt_state: Any
  key: jax.Array
  best_params: Params
  history: list[dict[str, Any]]
  seconds: float

  @property
  def best(self) -> dict[str, Any]:
    return min(self.history, key=_by_validation_loss)

  def arrays(self) -> dict[str, Any]:
    """The checkpointed arrays."""
    return {
      "params": self.params,
      "opt_state": self.opt_state,
      "key": jax.random.key_data(self.key),
      "best_params": self.best_params,
    }

  def meta(self) -> dict[str, Any]:
    """The checkpointed JSON records."""
    return {"epoch": self.epoch, "history": self.history, "seconds": self.seconds}

  @classmethod
  def restore(cls, arrays: dict[str, Any], meta: dict[str, Any]) -> PhaseState:
    return cls(
      epoch=meta["epoch"],
      params=arrays["params"],
      opt_state=arrays["opt_state"],
      key=jax.random.wrap_key_data(arrays["key"]),
      best_params=arrays["best_params"],
      history=meta["history"],
      seconds=meta["seconds"],
    )


@dataclasses.dataclass
class PhaseResult:
  """The outcome of one training phase; ``best`` is the selected epoch's record."""

  name: str
  history: list[dict[str, Any]]
  best: dict[str, Any]
  best_params: Params
  seconds: float


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree))


def run_phase(
  name: str,
  params: Params,
  *,
  train_apply: ApplyFn,
  eval_apply: ApplyFn,
  data: Dataset,
  config: Config,
  epochs: int,
  key: jax.Array,
  epoch_stats: Optional[Callable[[Params], dict[str, Any]]] = None,
  progress: bool = True,
  resume: Optional[PhaseState] = None,
  on_epoch: Optional[Callable[[PhaseState, bool], None]] = None,
) -> PhaseResult:
  """Trains ``params`` for ``epochs`` and keeps the lowest-validation-loss epoch.

  Args:
    name: phase name for the progress bar and the records.
    params: initial trainable parameters.
    train_apply: forward pass used for the updates.
    eval_apply: forward pass used for validation and test.
    data: the dataset; it is moved to the device once.
    config: learning rate, batch sizes, clipping, quirks.
    epochs: number of passes over the training data.
    key: PRNG key for shuffling and any sampling.
    epoch_stats: extra per-epoch records computed from the parameters.
    progress: show a progress bar with live metrics.
    resume: a state saved by ``on_epoch``; training continues from it.
    on_epoch: called as ``on_epoch(state, last)`` after every epoch (e.g. to
      checkpoint), ``last`` being True after the final one.

  Raises:
    NonFiniteError: the training loss or the parameters became non-finite
      (unless ``config.skip_nonfinite``); the message names epoch and step.
  """
  from tqdm.auto import tqdm

  loss_fn = functools.partial(cross_entropy, softmax_output=config.reference_quirks)
  steps_per_epoch = math.ceil(data.train.x.shape[0] / config.batch_size)
  decay_steps = epochs * steps_per_epoch if config.schedule == "cosine" else None
  optimizer = make_optimizer(
    config.learning_rate, config.clip_norm, decay_steps=decay_steps, skip_nonfinite=config.skip_nonfinite
  )
  train_epoch = make_train_epoch(train_apply, optimizer, batch_size=config.batch_size, loss_fn=loss_fn)
  evaluate = make_evaluate(eval_apply, batch_size=config.eval_batch_size, loss_fn=loss_fn)
  splits = {
    s: jax.device_put((split.x, split.y))
    for s, split in (("train", data.train), ("val", data.validation), ("test", data.test))
  }

  def record(epoch, params, train_metrics, eval_key, train_seconds):
    start = time.perf_counter()
    rec = {"epoch": epoch}
    if train_metrics is not None:
      rec.update(train_loss=float(train_metrics.loss), train_accuracy=float(train_metrics.accuracy))
      if int(train_metrics.nonfinite_steps):
        rec["skipped_steps"] = int(train_metrics.nonfinite_steps)
    for s, k in zip(("val", "test"), jax.random.split(eval_key)):
      m = evaluate(params, *splits[s], k)
      rec[f"{s}_loss"], rec[f"{s}_accuracy"] = float(m.loss), float(m.accuracy)
    rec["train_seconds"] = train_seconds
    rec["eval_seconds"] = time.perf_counter() - start
    if epoch_stats is not None:
      rec.update(epoch_stats(params))
    return rec

  start = time.perf_counter()
  if resume is None:
    key, eval_key = jax.random.split(key)
    state = PhaseState(0, params, optimizer.init(params), key, params, [], 0.0)
    state.history.append(record(0, params, None, eval_key, 0.0))
  else:
    state = resume
  elapsed = state.seconds
  bar = tqdm(
    range(state.epoch + 1, epochs + 1),
    desc=name,
    unit="epoch",
    initial=state.epoch,
    total=epochs,
    disable=not progress or None,
    dynamic_ncols=True,
  )
  for epoch in bar:
    key, epoch_key, eval_key = jax.random.split(state.key, 3)
    t = time.perf_counter()
    params, opt_state, metrics = train_epoch(state.params, state.opt_state, *splits["train"], epoch_key)
    jax.block_until_ready(params)
    train_seconds = time.perf_counter() - t
    if not config.skip_nonfinite:
      step = int(metrics.first_nonfinite_step)
      where = f"step {step + 1} of {steps_per_epoch}" if step >= 0 else "its end (parameters)"
      if step >= 0 or not _all_finite(params):
        raise NonFiniteError(
          f"{name}: training diverged at epoch {epoch}, {where}: the loss or the parameters are not"
          f" finite (learning rate {config.learning_rate}). Lower the learning rate, or skip such"
          " steps with skip_nonfinite (--skip-nonfinite)."
        )
    rec = record(epoch, params, metrics, eval_key, train_seconds)
    best_params = params if _by_validation_loss(rec) < _by_validation_loss(state.best) else state.best_params
    state = PhaseState(
      epoch, params, opt_state, key, best_params, state.history + [rec],
      elapsed + time.perf_counter() - start,
    )  # fmt: skip
    bar.set_postfix(
      loss=f"{rec['train_loss']:.4f}",
      val_acc=f"{rec['val_accuracy']:.4f}",
      test_acc=f"{rec['test_accuracy']:.4f}",
    )
    if on_epoch is not None:
      on_epoch(state, epoch == epochs)
  if on_epoch is not None and state.epoch == 0 == epochs:
    on_epoch(state, True)
  return PhaseResult(name, state.history, state.best, state.best_params, state.seconds)


@dataclasses.dataclass
class RunResult:
  """Everything a run produced: the config, each phase, and the frozen model."""

  config: Config
  phases: list[PhaseResult]
  model: FrozenMLP
  phase1_params: Optional[Params] = None

  def summary(self) -> dict[str, Any]:
    """The JSON-ready results: config, per-phase best metrics, timings, counts."""
    phases = {}
    for p in self.phases:
      epochs = p.history[1:]

      def median(field, epochs=epochs):
        return float(np.median([r[field] for r in epochs])) if epochs else None

      phases[p.name] = {
        "best": {k: v for k, v in p.best.items() if k != "activation_counts"},
        "epochs": len(epochs),
        "seconds": p.seconds,
        "median_epoch_train_seconds": median("train_seconds"),
        "median_epoch_eval_seconds": median("eval_seconds"),
        "history": p.history,
      }
    final = self.phases[-1].best
    return {
      "config": self.config.to_dict(),
      "phases": phases,
      "final": {k: final[k] for k in ("val_accuracy", "test_accuracy", "val_loss", "test_loss")},
      "activation_counts": self.model.counts(),
    }


def activation_counts(params: Params, names: tuple[str, ...]) -> dict[str, Any]:
  """Per hidden layer, how many neurons currently pick each activation (argmax)."""
  counts = [np.bincount(np.asarray(c), minlength=len(names)).tolist() for c in choices(params)]
  return {"activation_counts": [dict(zip(names, c)) for c in counts]}


def _abstract_arrays(config: Config, meta: dict[str, Any]) -> dict[str, Any]:
  """Shapes and dtypes of a checkpoint's arrays, from the config and its phase."""
  pool = (config.baseline,) if config.baseline else config.pool
  mlp = jax.eval_shape(lambda: init_mlp(jax.random.key(0), config.layer_sizes, pool=pool))
  params = mlp if meta["phase"] == "phase1" else {"layers": mlp["layers"]}
  optimizer = make_optimizer(
    1.0,
    1.0,
    decay_steps=1 if config.schedule == "cosine" else None,
    skip_nonfinite=config.skip_nonfinite,
  )
  arrays = {
    "params": params,
    "opt_state": jax.eval_shape(optimizer.init, params),
    "key": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
    "best_params": params,
  }
  if meta["phase"] == "phase2":
    arrays["phase1_best_params"] = mlp
  return arrays


def train_and_evaluate(
  config: Config,
  data: Dataset,
  *,
  workdir: Optional[os.PathLike] = None,
  resume: bool = False,
  checkpoint_every: int = 5,
  max_to_keep: int = 3,
  progress: bool = True,
) -> RunResult:
  """Trains SmartMixed (Phase 1, freeze, Phase 2), or a fixed baseline.

  Phase 1 trains weights and selection logits through the Gumbel
  straight-through forward pass. Its lowest-validation-loss epoch is frozen
  (argmax per neuron) and Phase 2 trains the grouped network on. With
  ``config.baseline`` set, a fixed-activation MLP trains for the total epochs.

  With a ``workdir``, the full training state is checkpointed to
  ``workdir/checkpoints`` every ``checkpoint_every`` epochs and at the end of
  each phase; ``resume=True`` continues from the newest readable checkpoint
  and ends with the same results as an uninterrupted run.

  Args:
    config: the run's settings.
    data: train / validation / test splits.
    workdir: where checkpoints go; None for no checkpoints.
    resume: continue from the newest checkpoint in ``workdir``.
    checkpoint_every: epochs between checkpoints.
    max_to_keep: how many checkpoints to keep.
    progress: show progress bars.

  Returns:
    A :class:`RunResult`; ``result.summary()`` is what ``results.json`` holds.

  Raises:
    NonFiniteError: training diverged (see :func:`run_phase`).
    ValueError: bad data, or checkpoints present without ``resume``.
  """
  if data.train.x.shape[-1] != config.layer_sizes[0] or not np.issubdtype(data.train.x.dtype, np.floating):
    raise ValueError(
      f"Training data is {data.train.x.dtype}{list(data.train.x.shape)}; the model expects floating"
      f" point inputs with {config.layer_sizes[0]} features."
    )
  if checkpoint_every < 1:
    raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}.")
  if config.train_limit is not None:
    data = data._replace(train=Split(data.train.x[: config.train_limit], data.train.y[: config.train_limit]))
  if config.batch_size > len(data.train.y):
    raise ValueError(f"batch_size {config.batch_size} exceeds the {len(data.train.y)} training examples.")
  init_key, phase1_key, reinit_key, phase2_key = jax.random.split(jax.random.key(config.seed), 4)
  common = dict(data=data, config=config, progress=progress)

  store, restored = None, None
  if workdir is not None:
    from smartmixed_jax.checkpoint import Checkpoints

    store = Checkpoints(Path(workdir) / "checkpoints", max_to_keep=max_to_keep)
    if resume:
      restored = store.restore_latest(functools.partial(_abstract_arrays, config))
    elif store.steps():
      raise ValueError(f"{store.directory} already holds checkpoints; resume from them or start elsewhere.")
  phase_of = restored.meta["phase"] if restored else None

  def checkpointing(phase: str, first_step: int, arrays=None, meta=None):
    if store is None:
      return None

    def on_epoch(state: PhaseState, last: bool):
      if last or state.epoch % checkpoint_every == 0:
        store.save(
          first_step + state.epoch,
          {**state.arrays(), **(arrays or {})},
          {"phase": phase, **state.meta(), **(meta or {})},
        )

    return on_epoch

  def resumed(phase: str) -> Optional[PhaseState]:
    return PhaseState.restore(restored.arrays, restored.meta) if phase_of == phase else None

  if config.baseline is not None:
    model = fixed_mlp(init_key, config.layer_sizes, config.baseline)
    frozen_apply = lambda p, x, key: model.apply(p, x)  # noqa: E731
    phase = run_phase(
      config.baseline, model.params, train_apply=frozen_apply, eval_apply=frozen_apply,
      epochs=config.phase1_epochs + config.phase2_epochs, key=phase2_key,
      resume=resumed(config.baseline), on_epoch=checkpointing(config.baseline, 0), **common,
    )  # fmt: skip
    return RunResult(config, [phase], dataclasses.replace(model, params=phase.best_params))

  pool, clip = config.pool, config.clip_activations
  selective = functools.partial(apply_selective, temperature=config.temperature, pool=pool, clip=clip)
  if config.reference_quirks:
    phase1_eval = selective  # the reference samples Gumbel noise when evaluating too
  else:
    phase1_eval = lambda p, x, key: apply_hard(p, x, pool=pool, clip=clip)  # noqa: E731
  names = pool_names(pool)
  if phase_of == "phase2":  # Phase 1 finished before the interruption
    saved = restored.meta["phase1"]
    phase1 = PhaseResult("phase1", saved["history"], min(saved["history"], key=_by_validation_loss),
                         restored.arrays["phase1_best_params"], saved["seconds"])  # fmt: skip
  else:
    phase1 = run_phase(
      "phase1", init_mlp(init_key, config.layer_sizes, pool=pool),
      train_apply=selective, eval_apply=phase1_eval, epochs=config.phase1_epochs, key=phase1_key,
      epoch_stats=lambda p: activation_counts(p, names), resume=resumed("phase1"),
      on_epoch=checkpointing("phase1", 0), **common,
    )  # fmt: skip
  selected = phase1.best_params
  if config.reinit_phase2:
    fresh = init_mlp(reinit_key, config.layer_sizes, pool=pool)
    model = freeze(fresh, pool=pool, choices=choices(selected))
  else:
    model = freeze(selected, pool=pool)
  frozen_apply = lambda p, x, key: model.apply(p, x)  # noqa: E731
  phase1_record = {"phase1": {"history": phase1.history, "seconds": phase1.seconds}}
  phase2 = run_phase(
    "phase2", model.params, train_apply=frozen_apply, eval_apply=frozen_apply,
    epochs=config.phase2_epochs, key=phase2_key, resume=resumed("phase2"),
    on_epoch=checkpointing("phase2", config.phase1_epochs, {"phase1_best_params": selected}, phase1_record),
    **common,
  )  # fmt: skip
  return RunResult(
    config, [phase1, phase2], dataclasses.replace(model, params=phase2.best_params), phase1_params=selected
  )
