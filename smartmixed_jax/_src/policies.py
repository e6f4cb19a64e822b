"""What :func:`fit` does around its epochs, as small pieces that compose: the loop's policies.

A :class:`Policy` is a NamedTuple of three functions, made by a factory that
closes over its settings (as an optax ``GradientTransformation`` is): ``start``
sees the state a phase begins from (fresh or resumed), ``after_epoch`` each
epoch's state and what the epoch produced, ``end`` the final state. ``start``
and ``after_epoch`` return the state, possibly with ``done=True`` to end the
phase there; any of them may raise. :func:`fit` runs its policies in the order
given, so a policy sees what the ones before it did (a checkpoint placed after
:func:`stop_when` knows whether the epoch is the last).

    fit(..., policies=[raise_on_nonfinite(), record_stats(stats), stop_when(settled), each_epoch(save),
                       progress_bar()])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import jax
import numpy as np

if TYPE_CHECKING:
  from smartmixed_jax._src.loop import PhaseState


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or parameters."""


class Phase(NamedTuple):
  """What a policy knows of the phase it serves."""

  name: str  # for progress bars and messages
  epochs: int  # planned
  steps: int  # optimizer steps per epoch
  models: Optional[int]  # M for stacked models, None for one


class Outcome(NamedTuple):
  """What an epoch produced beside the new state; per-model arrays have one entry per model."""

  before: Any  # the parameters before the epoch
  step_stats: Any  # the epoch's sum of fit's ``step_stats``, or None
  nonfinite_steps: np.ndarray  # [models] steps with a non-finite loss
  first_nonfinite_step: np.ndarray  # [models] the first of them, or -1
  finite: np.ndarray  # [models] whether every parameter is finite after the epoch


class Policy(NamedTuple):
  """A piece of the epoch loop's behaviour (see the module's docstring)."""

  start: Callable[[PhaseState, Phase], PhaseState] = lambda state, phase: state
  after_epoch: Callable[[PhaseState, Phase, Outcome], PhaseState] = lambda state, phase, outcome: state
  end: Callable[[PhaseState, Phase], None] = lambda state, phase: None


def chain(policies: Sequence[Policy]) -> Policy:
  """The policies as one, each step run in the given order."""

  def start(state, phase):
    for policy in policies:
      state = policy.start(state, phase)
    return state

  def after_epoch(state, phase, outcome):
    for policy in policies:
      state = policy.after_epoch(state, phase, outcome)
    return state

  def end(state, phase):
    for policy in policies:
      policy.end(state, phase)

  return Policy(start, after_epoch, end)


def raise_on_nonfinite() -> Policy:
  """Raise :class:`NonFiniteError` when a model diverges (a non-finite loss or parameters), when
  every step of an epoch had a non-finite loss, or when no epoch had a finite validation loss.

  Without it a phase records such epochs and goes on (a cohort, where one
  model's divergence is a result, not an error).
  """

  def after_epoch(state, phase, outcome):
    for m in range(len(outcome.finite)):
      which = f"model {m}: " if phase.models is not None else ""
      if outcome.nonfinite_steps[m] == phase.steps:
        raise NonFiniteError(
          f"{phase.name}: {which}every step of epoch {state.epoch} had a non-finite loss or gradients;"
          " nothing was learned. Lower the learning rate, or check the data."
        )
      if not outcome.finite[m]:
        first = outcome.first_nonfinite_step[m]
        where = f"step {first + 1} of {phase.steps}" if first >= 0 else "its end"
        raise NonFiniteError(
          f"{phase.name}: {which}training diverged at epoch {state.epoch}, {where}: the loss or the"
          " parameters are not finite. Lower the learning rate, or skip such steps with skip_nonfinite"
          " (--skip-nonfinite)."
        )
    return state

  def end(state, phase):
    unselected = ~np.isfinite(np.asarray(jax.device_get(state.best_loss)).reshape(-1))
    never = [m for m, bad in enumerate(unselected) if bad]
    if phase.epochs and never:
      raise NonFiniteError(
        f"{phase.name}: no epoch had a finite validation loss (models {never}); check the validation data."
      )

  return Policy(after_epoch=after_epoch, end=end)


def record_stats(stats: Callable[[Any, Any, Any], dict[str, Any]]) -> Policy:
  """Merge ``stats(params, step_stats, params_before_the_epoch)`` into each model's epoch record.

  ``stats`` sees one model at a time (stacked models are split), its
  parameters after the epoch, its share of the epoch's ``step_stats`` (None
  without them) and its parameters before the epoch.
  """

  def after_epoch(state, phase, outcome):
    pick = (lambda m, tree: tree) if phase.models is None else (lambda m, tree: _model(m, tree))  # noqa: E731
    histories = []
    for m, history in enumerate(state.histories):
      steps = None if outcome.step_stats is None else pick(m, outcome.step_stats)
      extra = stats(pick(m, state.params), steps, pick(m, outcome.before))
      histories.append([*history[:-1], {**history[-1], **extra}])
    return state.replace(histories=histories)

  return Policy(after_epoch=after_epoch)


def _model(m: int, tree: Any) -> Any:
  """Model ``m`` of stacked models."""
  return jax.tree.map(lambda leaf: leaf[m], tree)


def stop_when(stop: Callable[[PhaseState], bool]) -> Policy:
  """End the phase after the first epoch for which ``stop(state)`` is True (e.g. once a selection settled).

  Its decision must depend on the recorded state only: a phase resumed from
  the checkpoint of the epoch it stopped at then stays stopped.
  """

  def ask(state, phase):
    return state.replace(done=True) if not state.done and state.epoch > 0 and stop(state) else state

  return Policy(start=ask, after_epoch=lambda state, phase, outcome: ask(state, phase))


def each_epoch(callback: Callable[[PhaseState], None]) -> Policy:
  """Call ``callback(state)`` after every epoch (``state.done`` after the last), e.g. to checkpoint it;
  a phase of 0 epochs calls it once, with its starting state."""

  def after_epoch(state, phase, outcome):
    callback(state)
    return state

  def end(state, phase):
    if state.epoch == 0 == phase.epochs:
      callback(state)

  return Policy(after_epoch=after_epoch, end=end)


def progress_bar(*, leave: Optional[bool] = None) -> Policy:
  """A tqdm progress bar of the phase's epochs, with the last epoch's training loss and validation
  accuracy (means over stacked models); shown only on a terminal. ``leave``: keep it when the phase
  ends (default: for one model, not for stacked ones)."""
  from tqdm.auto import tqdm

  bars = []

  def start(state, phase):
    keep = phase.models is None if leave is None else leave
    bar = tqdm(desc=phase.name, unit="epoch", initial=state.epoch, total=phase.epochs, disable=None,
               dynamic_ncols=True, leave=keep)  # fmt: skip
    bars.append(bar)
    return state

  def after_epoch(state, phase, outcome):
    mean = lambda key: np.nanmean([np.nan if h[-1][key] is None else h[-1][key] for h in state.histories])  # noqa: E731
    bars[-1].update(1)
    bars[-1].set_postfix(loss=f"{mean('train_loss'):.4f}", val_acc=f"{mean('val_accuracy'):.4f}")
    return state

  def end(state, phase):
    bars.pop().close()

  return Policy(start, after_epoch, end)
