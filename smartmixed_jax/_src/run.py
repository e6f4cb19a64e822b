"""A SmartMixed run: Phase 1, freeze, Phase 2 (or a fixed baseline), its directory and results.

:func:`train_and_evaluate` owns the run directory: ``config.json`` (the run's
settings), ``checkpoints/`` (resumable state) and ``results.json`` with the
plots (written last). Each phase trains through :func:`smartmixed_jax.fit`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smartmixed_jax._src import loop
from smartmixed_jax._src.config import Config
from smartmixed_jax._src.data import Dataset, Split, atomic_write_bytes
from smartmixed_jax._src.frozen import FrozenMLP, fixed_mlp, freeze
from smartmixed_jax._src.mlp import MLPParams, apply_hard, apply_selective, choices, init_mlp
from smartmixed_jax._src.pool import pool_names

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINTS = "checkpoints"


def write_json(path: os.PathLike, payload: Any) -> None:
  """Writes ``payload`` as JSON, atomically."""
  atomic_write_bytes(Path(path), json.dumps(payload, indent=1).encode())


def environment() -> dict[str, Any]:
  """Versions and hardware a result was obtained with."""
  from smartmixed_jax import __version__

  return {
    "smartmixed_jax": __version__,
    "jax": jax.__version__,
    "optax": optax.__version__,
    "python": platform.python_version(),
    "backend": jax.default_backend(),
    "device_kind": str(jax.devices()[0].device_kind),
    "device_count": jax.device_count(),
  }


def check_data(data: Dataset, *, features: int, classes: int) -> None:
  """Refuses data a run cannot learn from, before any compute: naming split and problem."""
  for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
    x, y = np.asarray(split.x), np.asarray(split.y)
    if len(y) == 0:
      raise ValueError(f"The {name} split is empty.")
    if x.ndim != 2 or x.shape[1] != features or not np.issubdtype(x.dtype, np.floating):
      raise ValueError(
        f"The {name} inputs are {x.dtype}{list(x.shape)}; the model expects floating point"
        f" [examples, {features}]."
      )
    if y.shape != (x.shape[0],):
      raise ValueError(f"The {name} split has {x.shape[0]} inputs but labels of shape {list(y.shape)}.")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
      raise ValueError(
        f"The {name} labels must be integers in [0, {classes}); got {y.dtype} in [{y.min()}, {y.max()}]."
      )
    if not np.all(np.isfinite(x)):
      bad = int(np.sum(~np.isfinite(x).all(axis=1)))
      raise ValueError(f"The {name} inputs hold non-finite values (in {bad} examples).")


def device_splits(data: Dataset, train_limit: Optional[int] = None) -> dict[str, tuple[jax.Array, jax.Array]]:
  """The splits as device arrays ``{"train", "val", "test"}``, the training set cut to ``train_limit``."""
  train = data.train if train_limit is None else Split(data.train.x[:train_limit], data.train.y[:train_limit])
  return {
    name: jax.device_put((split.x, split.y))
    for name, split in (("train", train), ("val", data.validation), ("test", data.test))
  }


def temperature_schedule(config: Config, steps: int) -> optax.Schedule:
  """Phase 1's temperature per step: constant, or geometric from ``temperature`` to ``final_temperature``."""
  if config.final_temperature is None:
    return optax.constant_schedule(config.temperature)
  rate = config.final_temperature / config.temperature
  return optax.exponential_decay(config.temperature, max(steps, 1), rate, end_value=config.final_temperature)


def phase1_stats(params: MLPParams, step_stats) -> dict[str, Any]:
  """Per hidden layer, how many neurons currently pick each activation (argmax)."""
  names = pool_names(params.pool)
  counts = [np.bincount(np.asarray(c), minlength=len(names)).tolist() for c in choices(params)]
  return {"activation_counts": [dict(zip(names, c)) for c in counts]}


@dataclasses.dataclass
class RunResult:
  """Everything a run produced: its config, each phase, and the selected frozen model."""

  config: Config
  phases: list[loop.PhaseResult]
  model: FrozenMLP
  phase1_params: Optional[MLPParams] = None
  train_examples: Optional[int] = None

  def summary(self) -> dict[str, Any]:
    """What ``results.json`` holds: config, environment, each phase's record, final metrics, counts."""
    final = self.phases[-1].best()
    return {
      "config": self.config.to_dict(),
      "environment": environment(),
      "train_examples": self.train_examples,
      "phases": {p.name: p.record() for p in self.phases},
      "final": {k: final[k] for k in ("val_accuracy", "test_accuracy", "val_loss", "test_loss")},
      "activation_counts": self.model.counts(),
    }


def abstract_state(config: Config, meta: dict[str, Any]) -> dict[str, Any]:
  """Shapes, dtypes and tree structure of a checkpoint's arrays, from the config and its metadata."""
  init = lambda: init_mlp(jax.random.key(0), config.layer_sizes, pool=config.training_pool)  # noqa: E731
  mlp = jax.eval_shape(init)
  if meta["phase"] == "phase1":
    params = mlp
  else:
    picks = [np.asarray(c, np.int32) for c in meta["choices"]]
    params = jax.eval_shape(lambda: freeze(init(), choices=picks))
  arrays = {  # the keys of PhaseState.arrays()
    "params": params,
    "opt_state": jax.eval_shape(config.optimizer(1).init, params),
    "key": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
    "best_params": params,
    "best_loss": jax.ShapeDtypeStruct((), jnp.float32),
  }
  if meta["phase"] != "phase1" and not config.baseline:
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
    data: train / validation / test splits (checked before any compute).
    workdir: where checkpoints go; None for no checkpoints.
    resume: continue from the newest checkpoint in ``workdir``.
    checkpoint_every: epochs between checkpoints.
    max_to_keep: how many checkpoints to keep.
    progress: show progress bars.

  Returns:
    A :class:`RunResult`; ``result.summary()`` is what ``results.json`` holds.

  Raises:
    NonFiniteError: training diverged.
    ValueError: bad data, or checkpoints present without ``resume``.
  """
  check_data(data, features=config.layer_sizes[0], classes=config.layer_sizes[-1])
  if checkpoint_every < 1 or max_to_keep < 1:
    raise ValueError(f"checkpoint_every and max_to_keep must be >= 1, got {checkpoint_every}, {max_to_keep}.")
  splits = device_splits(data, config.train_limit)
  train_examples = int(splits["train"][1].shape[0])
  if config.batch_size > train_examples:
    raise ValueError(f"batch_size {config.batch_size} exceeds the {train_examples} training examples.")
  steps_per_epoch = math.ceil(train_examples / config.batch_size)
  init_key, phase1_key, reinit_key, phase2_key = jax.random.split(jax.random.key(config.seed), 4)
  common = dict(
    splits=splits, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
    loss_fn=config.loss_fn, progress=progress,
  )  # fmt: skip

  store, restored = None, None
  if workdir is not None:
    from smartmixed_jax._src.checkpoint import Checkpoints

    workdir = Path(workdir)
    holds_run = any((workdir / name).exists() for name in (CONFIG_FILE, RESULTS_FILE, CHECKPOINTS))
    if holds_run and not resume:
      raise ValueError(f"{workdir} already holds a run; resume it, or choose another directory.")
    store = Checkpoints(workdir / CHECKPOINTS, max_to_keep=max_to_keep)
    if resume:
      restored = store.restore_latest(functools.partial(abstract_state, config))
    else:
      write_json(workdir / CONFIG_FILE, config.to_dict())
  phase_of = restored.meta["phase"] if restored else None

  def checkpointing(phase: str, first_step: int, arrays=None, meta=None):
    if store is None:
      return None

    def on_epoch(state: loop.PhaseState, last: bool):
      if last or state.epoch % checkpoint_every == 0:
        store.save(
          first_step + state.epoch,
          {**state.arrays(), **(arrays or {})},
          {"phase": phase, **state.meta(), **(meta or {})},
        )

    return on_epoch

  def resumed(phase: str) -> Optional[loop.PhaseState]:
    return loop.PhaseState.restore(restored.arrays, restored.meta) if phase_of == phase else None

  def frozen_apply(model, x, key, step):
    return model(x)

  def train_frozen(name, model, epochs, first_step, arrays=None, meta=()):
    meta, chosen = dict(meta), [c.tolist() for c in model.choices()]  # the frozen structure, for resume
    return loop.fit(
      model, apply=frozen_apply, optimizer=config.optimizer(epochs * steps_per_epoch),
      epochs=epochs, key=phase2_key, name=name, resume=resumed(name),
      on_epoch=checkpointing(name, first_step, arrays, {"choices": chosen} | meta),
      **common,
    )  # fmt: skip

  def finish(result: RunResult) -> RunResult:
    if workdir is not None:
      from smartmixed_jax._src.artifacts import write_run

      write_run(workdir, result)
    return result

  if config.baseline is not None:
    model = fixed_mlp(init_key, config.layer_sizes, config.baseline)
    phase = train_frozen(config.baseline, model, config.phase1_epochs + config.phase2_epochs, 0)
    return finish(RunResult(config, [phase], phase.best_params, train_examples=train_examples))

  temperature = temperature_schedule(config, config.phase1_epochs * steps_per_epoch)
  clip = config.clip_activations

  def selective(params, x, key, step):
    return apply_selective(params, x, key, temperature=temperature(step), clip=clip)

  def hard(params, x, key, step):
    return apply_hard(params, x, clip=clip)

  if phase_of == "phase2":  # Phase 1 finished before the interruption
    saved = restored.meta["phase1"]
    phase1 = loop.PhaseResult(
      "phase1", saved["histories"], saved["best_epochs"], restored.arrays["phase1_best_params"],
      saved["test"], saved["seconds"],
    )  # fmt: skip
  else:
    phase1 = loop.fit(
      init_mlp(init_key, config.layer_sizes, pool=config.pool), apply=selective,
      eval_apply=selective if config.noisy_eval else hard,
      optimizer=config.optimizer(config.phase1_epochs * steps_per_epoch),
      epochs=config.phase1_epochs, key=phase1_key, epoch_stats=phase1_stats, name="phase1",
      resume=resumed("phase1"), on_epoch=checkpointing("phase1", 0), **common,
    )  # fmt: skip
  selected = phase1.best_params
  if config.reinit_phase2:
    model = freeze(init_mlp(reinit_key, config.layer_sizes, pool=config.pool), choices=choices(selected))
  else:
    model = freeze(selected)
  phase1_record = {"phase1": {k: getattr(phase1, k) for k in ("histories", "best_epochs", "test", "seconds")}}
  phase2 = train_frozen(
    "phase2",
    model,
    config.phase2_epochs,
    config.phase1_epochs,
    {"phase1_best_params": selected},
    phase1_record,
  )
  return finish(
    RunResult(
      config, [phase1, phase2], phase2.best_params, phase1_params=selected, train_examples=train_examples
    )
  )
