"""Training: jit-compiled epochs, evaluation, and the two-phase SmartMixed run.

An epoch is one ``lax.scan`` over shuffled minibatches of data that stays on
the device. The last, partial batch is padded and masked out of the loss, so
every example is seen exactly once per epoch, as with PyTorch's DataLoader.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
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
  learning_rate: float, clip_norm: float, *, decay_steps: Optional[int] = None
) -> optax.GradientTransformation:
  """Adam after global-norm gradient clipping (the reference set-up).

  Args:
    learning_rate: Adam's learning rate; the peak if ``decay_steps`` is set.
    clip_norm: maximum global norm of the gradients.
    decay_steps: if set, cosine-decay the learning rate to zero over this many steps.
  """
  if decay_steps:
    learning_rate = optax.cosine_decay_schedule(learning_rate, decay_steps)
  return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))


def cross_entropy(logits: jax.Array, labels: jax.Array, *, softmax_output: bool = False) -> jax.Array:
  """Per-example cross-entropy; ``softmax_output`` reproduces the reference's
  softmax layer in front of ``CrossEntropyLoss`` (softmax applied twice)."""
  if softmax_output:
    logits = jax.nn.softmax(logits, axis=-1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


class Metrics(NamedTuple):
  loss: jax.Array
  accuracy: jax.Array


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
):
  """Builds ``epoch(params, opt_state, x, y, key) -> (params, opt_state, Metrics)``.

  The returned function is jit-compiled and runs one pass over ``(x, y)`` in
  shuffled minibatches as a single ``lax.scan`` of :func:`make_train_step`.
  Metrics are the epoch means of the training loss and accuracy.
  """
  train_step = make_train_step(apply_fn, optimizer, loss_fn=loss_fn)

  @jax.jit
  def epoch(params, opt_state, x, y, key):
    shuffle_key, step_key = jax.random.split(key)
    indices, mask = _batched_indices(shuffle_key, x.shape[0], batch_size)
    step_keys = jax.random.split(step_key, indices.shape[0])

    def step(carry, batch):
      idx, m, k = batch
      params, opt_state, sums = train_step(*carry, x[idx], y[idx], m, k)
      return (params, opt_state), sums

    (params, opt_state), (totals, corrects) = jax.lax.scan(
      step, (params, opt_state), (indices, mask, step_keys)
    )
    n = x.shape[0]
    return params, opt_state, Metrics(jnp.sum(totals) / n, jnp.sum(corrects) / n)

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


@dataclasses.dataclass
class PhaseResult:
  """The outcome of one training phase.

  ``history[e]`` holds epoch ``e``'s metrics; epoch 0 is the model before
  that phase's first update. ``best`` is the record of the epoch with the
  lowest validation loss, whose parameters are ``best_params``.
  """

  name: str
  history: list[dict[str, Any]]
  best: dict[str, Any]
  best_params: Params
  seconds: float


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
  """
  from tqdm.auto import tqdm

  loss_fn = functools.partial(cross_entropy, softmax_output=config.reference_quirks)
  steps_per_epoch = math.ceil(data.train.x.shape[0] / config.batch_size)
  decay_steps = epochs * steps_per_epoch if config.schedule == "cosine" else None
  optimizer = make_optimizer(config.learning_rate, config.clip_norm, decay_steps=decay_steps)
  train_epoch = make_train_epoch(train_apply, optimizer, batch_size=config.batch_size, loss_fn=loss_fn)
  evaluate = make_evaluate(eval_apply, batch_size=config.eval_batch_size, loss_fn=loss_fn)
  splits = {
    s: jax.device_put((split.x, split.y))
    for s, split in (("train", data.train), ("val", data.validation), ("test", data.test))
  }
  if config.batch_size > splits["train"][0].shape[0]:
    raise ValueError(
      f"batch_size {config.batch_size} exceeds the {splits['train'][0].shape[0]} training examples."
    )
  opt_state = optimizer.init(params)

  def record(epoch, params, train_metrics, eval_key, train_seconds):
    start = time.perf_counter()
    rec = {"epoch": epoch}
    if train_metrics is not None:
      rec.update(train_loss=float(train_metrics.loss), train_accuracy=float(train_metrics.accuracy))
    for s, k in zip(("val", "test"), jax.random.split(eval_key)):
      m = evaluate(params, *splits[s], k)
      rec[f"{s}_loss"], rec[f"{s}_accuracy"] = float(m.loss), float(m.accuracy)
    rec["train_seconds"] = train_seconds
    rec["eval_seconds"] = time.perf_counter() - start
    if epoch_stats is not None:
      rec.update(epoch_stats(params))
    return rec

  start = time.perf_counter()
  key, eval_key = jax.random.split(key)
  history = [record(0, params, None, eval_key, 0.0)]
  best, best_params = history[0], params
  bar = tqdm(
    range(1, epochs + 1),
    desc=name,
    unit="epoch",
    disable=not progress or None,
    dynamic_ncols=True,
    leave=True,
  )
  for epoch in bar:
    key, epoch_key, eval_key = jax.random.split(key, 3)
    t = time.perf_counter()
    params, opt_state, metrics = train_epoch(params, opt_state, *splits["train"], epoch_key)
    jax.block_until_ready(params)
    rec = record(epoch, params, metrics, eval_key, time.perf_counter() - t)
    history.append(rec)
    if rec["val_loss"] < best["val_loss"]:
      best, best_params = rec, params
    bar.set_postfix(
      loss=f"{rec['train_loss']:.4f}",
      val_acc=f"{rec['val_accuracy']:.4f}",
      test_acc=f"{rec['test_accuracy']:.4f}",
    )
  return PhaseResult(name, history, best, best_params, time.perf_counter() - start)


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
      phases[p.name] = {
        "best": {k: v for k, v in p.best.items() if k != "activation_counts"},
        "epochs": len(epochs),
        "seconds": p.seconds,
        "median_epoch_train_seconds": float(np.median([r["train_seconds"] for r in epochs]))
        if epochs
        else None,
        "median_epoch_eval_seconds": float(np.median([r["eval_seconds"] for r in epochs]))
        if epochs
        else None,
        "history": p.history,
      }
    return {
      "config": self.config.to_dict(),
      "phases": phases,
      "final": {
        k: self.phases[-1].best[k] for k in ("val_accuracy", "test_accuracy", "val_loss", "test_loss")
      },
      "activation_counts": self.model.counts(),
    }


def activation_counts(params: Params, names: tuple[str, ...]) -> dict[str, Any]:
  """Per hidden layer, how many neurons currently pick each activation (argmax)."""
  counts = [np.bincount(np.asarray(c), minlength=len(names)).tolist() for c in choices(params)]
  return {"activation_counts": [dict(zip(names, c)) for c in counts]}


def train_and_evaluate(config: Config, data: Dataset, *, progress: bool = True) -> RunResult:
  """Trains SmartMixed (Phase 1, freeze, Phase 2), or a fixed baseline.

  Phase 1 trains weights and selection logits through the Gumbel
  straight-through forward pass. Its lowest-validation-loss epoch is frozen
  (argmax per neuron) and Phase 2 trains the grouped network on. With
  ``config.baseline`` set, a fixed-activation MLP trains for the total epochs.

  Args:
    config: the run's settings.
    data: train / validation / test splits.
    progress: show progress bars.

  Returns:
    A :class:`RunResult`; ``result.summary()`` is what ``results.json`` holds.
  """
  if data.train.x.shape[-1] != config.layer_sizes[0]:
    raise ValueError(
      f"Data has {data.train.x.shape[-1]} features; the model expects {config.layer_sizes[0]}."
    )
  if config.train_limit is not None:
    data = data._replace(train=Split(data.train.x[: config.train_limit], data.train.y[: config.train_limit]))
  init_key, phase1_key, reinit_key, phase2_key = jax.random.split(jax.random.key(config.seed), 4)
  common = dict(data=data, config=config, progress=progress)

  if config.baseline is not None:
    model = fixed_mlp(init_key, config.layer_sizes, config.baseline)
    frozen_apply = lambda p, x, key: model.apply(p, x)  # noqa: E731
    phase = run_phase(
      config.baseline,
      model.params,
      train_apply=frozen_apply,
      eval_apply=frozen_apply,
      epochs=config.phase1_epochs + config.phase2_epochs,
      key=phase2_key,
      **common,
    )
    return RunResult(config, [phase], dataclasses.replace(model, params=phase.best_params))

  pool, clip = config.pool, config.clip_activations
  selective = functools.partial(apply_selective, temperature=config.temperature, pool=pool, clip=clip)
  if config.reference_quirks:
    phase1_eval = selective  # the reference samples Gumbel noise when evaluating too
  else:
    phase1_eval = lambda p, x, key: apply_hard(p, x, pool=pool, clip=clip)  # noqa: E731
  names = pool_names(pool)
  phase1 = run_phase(
    "phase1",
    init_mlp(init_key, config.layer_sizes, pool=pool),
    train_apply=selective,
    eval_apply=phase1_eval,
    epochs=config.phase1_epochs,
    key=phase1_key,
    epoch_stats=lambda p: activation_counts(p, names),
    **common,
  )
  selected = phase1.best_params
  if config.reinit_phase2:
    fresh = init_mlp(reinit_key, config.layer_sizes, pool=pool)
    model = freeze(fresh, pool=pool, choices=choices(selected))
  else:
    model = freeze(selected, pool=pool)
  frozen_apply = lambda p, x, key: model.apply(p, x)  # noqa: E731
  phase2 = run_phase(
    "phase2",
    model.params,
    train_apply=frozen_apply,
    eval_apply=frozen_apply,
    epochs=config.phase2_epochs,
    key=phase2_key,
    **common,
  )
  return RunResult(
    config, [phase1, phase2], dataclasses.replace(model, params=phase2.best_params), phase1_params=selected
  )
