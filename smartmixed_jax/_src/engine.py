"""The two-phase engine: Phase 1, freeze, Phase 2 (or a fixed baseline), for one model or a cohort.

Every SmartMixed training in the project runs through here:
:func:`~smartmixed_jax._src.run.train_and_evaluate` trains one model (with
checkpoints), the sweep and the experiments train *cohorts*, ``M`` seeds
stacked on a leading axis as one ``jax.vmap``-ed program. Both get one key
derivation (:func:`run_keys`), the same forward passes built from the
:class:`Config` (temperature schedule, compute dtype, activation clipping,
evaluation mode), the same optimizer and one Phase 1 statistics function, so
a cohort of one trains what a run trains.

One model trains Phase 2 as a :class:`FrozenMLP` (static grouped segments,
the fast path). A cohort's Phase 2 variants differ in their choices, so they
carry them as data (:func:`apply_choices`), which computes the same function.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smartmixed_jax._src import loop, policies
from smartmixed_jax._src.config import Config
from smartmixed_jax._src.diagnostics import (
  UndecidedSelectionWarning,
  selection_diagnostics,
  undecided_message,
)
from smartmixed_jax._src.frozen import fixed_mlp, freeze
from smartmixed_jax._src.mlp import (
  MLPParams,
  apply_choices,
  apply_hard,
  apply_selective,
  choices,
  init_mlp,
  sample_choices,
)
from smartmixed_jax._src.pool import pool_names
from smartmixed_jax._src.record import SMARTMIXED, Cohort, PhaseRecord, RunRecord, counts_by_name

RULES = ("argmax", "most_frequent", "shuffled", "random", "reversed")
"""Freeze rules: each neuron's argmax; its most frequent sample in Phase 1's last epoch; and three
controls: the argmax choices shuffled within each layer (same proportions), uniformly random ones, and
the argmax choices with the layers' order reversed (:func:`depth_reversed`)."""

INITS = ("carry", "reinit", "scratch")
"""Phase 2's initial weights: Phase 1's, carried over; re-initialised (the reference code); or a control
trained from scratch: SmartMixed's initial weights (a baseline's) with the rule's choices, trained for
both phases' epochs on a baseline's schedule, as a fixed network of the same budget would be."""


class RunKeys(NamedTuple):
  """The PRNG keys a run derives from its seed; ``[M]`` each for a cohort."""

  init: jax.Array  # the weights and logits
  phase1: jax.Array  # Phase 1's shuffling and Gumbel noise
  reinit: jax.Array  # Phase 2's re-initialised weights, and the controls' choices
  phase2: jax.Array  # Phase 2's (or a baseline's) shuffling


def run_keys(seeds: int | Sequence[int]) -> RunKeys:
  """The keys of the run with seed ``seeds``, or stacked ``[M]`` for a sequence of seeds."""
  if isinstance(seeds, (int, np.integer)):
    return RunKeys(*jax.random.split(jax.random.key(int(seeds)), 4))
  return RunKeys(*jnp.stack([jax.random.split(jax.random.key(s), 4) for s in seeds]).T)


def preset_variant(config: Config) -> tuple[str, str]:
  """The run's own Phase 2: the argmax freeze, with the weights its config says."""
  return ("argmax", "reinit" if config.reinit_phase2 else "carry")


# ----------------------------------------------------------------------------
# Forward passes and statistics, from the config.


def temperature_schedule(config: Config, steps: int) -> optax.Schedule:
  """Phase 1's temperature per step: constant, or geometric from ``temperature`` to ``final_temperature``."""
  if config.final_temperature is None:
    return optax.constant_schedule(config.temperature)
  rate = config.final_temperature / config.temperature
  return optax.exponential_decay(config.temperature, max(steps, 1), rate, end_value=config.final_temperature)


def phase1_forward(config: Config, steps: int) -> tuple[loop.ApplyFn, loop.ApplyFn]:
  """Phase 1's training and evaluation passes over ``steps`` steps, in the config's compute dtype.

  Training samples each neuron's activation (Gumbel straight-through at the
  scheduled temperature); evaluation takes each neuron's argmax, or samples
  too under the reference's ``noisy_eval``.
  """
  temperature = temperature_schedule(config, steps)
  clip = config.clip_activations

  @config.compute
  def selective(params, x, key, step):
    return apply_selective(params, x, key, temperature=temperature(step), clip=clip)

  @config.compute
  def hard(params, x, key, step):
    return apply_hard(params, x, clip=clip)

  return selective, selective if config.noisy_eval else hard


def phase2_forward(config: Config, *, choices_as_data: bool) -> loop.ApplyFn:
  """Phase 2's pass in the config's compute dtype: a frozen model's, or ``(weights, choices)``'s."""
  if choices_as_data:
    return config.compute(lambda model, x, key, step: apply_choices(model[0], x, model[1]))
  return config.compute(lambda model, x, key, step: model(x))


def sampled_activations(params: MLPParams, key: jax.Array) -> list[jax.Array]:
  """Per layer ``[neurons, k]``: the one-hot activation each neuron draws in a step (summed over an epoch)."""
  k = len(params.pool)
  return [jax.nn.one_hot(c, k, dtype=jnp.int32) for c in sample_choices(params, key)]


def phase1_stats(params: MLPParams, samples, before: MLPParams) -> dict[str, Any]:
  """One model's Phase 1 epoch: per layer its argmax counts and sample shares, and the selection diagnostics.

  Args:
    params: the parameters after the epoch.
    samples: the epoch's sum of :func:`sampled_activations`, or None.
    before: the parameters before the epoch.
  """
  names = pool_names(params.pool)
  picks = [np.asarray(c) for c in choices(params)]
  changed = sum(int(np.sum(a != np.asarray(b))) for a, b in zip(picks, choices(before)))
  samples = None if samples is None else [np.asarray(s) for s in jax.device_get(samples)]
  return {
    "activation_counts": [dict(zip(names, np.bincount(c, minlength=len(names)).tolist())) for c in picks],
    "argmax_changed": round(changed / sum(len(c) for c in picks), 6),  # over all hidden neurons
    **({"sample_shares": [(s.sum(0) / s.sum()).round(5).tolist() for s in samples]} if samples else {}),
    "selection": selection_diagnostics(params.logits, previous=before.logits, samples=samples),
  }


def settled(patience: int, threshold: float) -> Callable[[loop.PhaseState], bool]:
  """The adaptive switch: in every model the share of argmaxes that changed stayed below
  ``threshold`` for the last ``patience`` epochs."""

  def stop(state: loop.PhaseState) -> bool:
    recent = [history[1:][-patience:] for history in state.histories]
    return all(len(r) == patience and all(e["argmax_changed"] < threshold for e in r) for r in recent)

  return stop


# ----------------------------------------------------------------------------
# Devices.


def data_parallel_mesh(devices: Optional[int] = None) -> Optional[jax.sharding.Mesh]:
  """A one-axis ``("data",)`` mesh over the first ``devices`` devices (all if None); None for one device.

  Raises:
    ValueError: more devices than there are, or fewer than 1.
  """
  available = jax.device_count()
  devices = available if devices is None else devices
  if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= available:
    raise ValueError(
      f"devices must be an integer in [1, {available}] (the devices jax sees), got {devices!r}."
    )
  if devices == 1:
    return None
  return jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",))


def models_mesh(models: int, devices: int) -> Optional[jax.sharding.Mesh]:
  """A ``("models",)`` mesh over the most devices (at most ``devices``) that ``models`` splits over evenly."""
  used = max(d for d in range(1, min(devices, models) + 1) if models % d == 0)
  return None if used == 1 else jax.sharding.Mesh(np.array(jax.devices()[:used]), ("models",))


# ----------------------------------------------------------------------------
# The engine.


@dataclasses.dataclass(frozen=True)
class Checkpointing:
  """How a run directory keeps one model's training resumable (a cohort trains without).

  Attributes:
    on_epoch: ``on_epoch(phase, first_step, arrays, meta)`` returns the phase's
      callback for :func:`~smartmixed_jax._src.policies.each_epoch`, or None;
      ``arrays`` and ``meta`` are what the phase must store beside its state
      to be resumed.
    resume: the state phase ``name`` continues from, or None.
    phase1: Phase 1's result, when it finished before the run was interrupted.
  """

  on_epoch: Callable[[str, int, dict[str, Any], dict[str, Any]], Optional[Callable]] = lambda *args: None
  resume: Callable[[str], Optional[loop.PhaseState]] = lambda name: None
  phase1: Optional[loop.PhaseResult] = None


@dataclasses.dataclass
class TwoPhaseResult:
  """What :func:`two_phase` trained.

  Attributes:
    phase1: Phase 1 (model ``i`` is seed ``i``).
    phase2: Phase 2, or None without variants; in a cohort model
      ``v * M + i`` is variant ``v`` (of those not from scratch) of seed ``i``.
    variants: Phase 2's ``(rule, init)`` pairs.
    choices: per freeze rule, per hidden layer, the ``[M, neurons]`` (one
      model: ``[neurons]``) pool indices.
    continued: the Phase 1 control continued unfrozen for Phase 2's epochs, if asked for.
    seeds: a cohort's seeds; None for one model.
    scratch: the variants from scratch, if any: model ``v * M + i`` is the
      ``v``-th of them of seed ``i``.
  """

  phase1: loop.PhaseResult
  phase2: Optional[loop.PhaseResult]
  variants: tuple[tuple[str, str], ...]
  choices: dict[str, list[jax.Array]]
  continued: Optional[loop.PhaseResult] = None
  seeds: Optional[tuple[int, ...]] = None
  scratch: Optional[loop.PhaseResult] = None

  @property
  def seconds(self) -> float:
    phases = (self.phase1, self.phase2, self.continued, self.scratch)
    return sum(p.seconds for p in phases if p is not None)

  def variant(self, v: int, m: int) -> tuple[loop.PhaseResult, int]:
    """Where seed ``m``'s variant ``v`` (of :attr:`variants`) is: its phase and the model's index there."""
    scratch = self.variants[v][1] == "scratch"
    same = [i for i, (_, start) in enumerate(self.variants) if (start == "scratch") == scratch]
    models = 1 if self.seeds is None else len(self.seeds)
    return (self.scratch if scratch else self.phase2), same.index(v) * models + m


def _policies(*, progress: bool, guard: bool, stats=None, stop=None, callback=None) -> list[policies.Policy]:
  """The engine's policies, in the order they run: stop on divergence (one model; in a cohort a
  diverged model is a result), record Phase 1's statistics, show progress, stop early (the adaptive
  switch), then checkpoint, knowing whether the epoch is the last."""
  return [
    *([policies.raise_on_nonfinite()] if guard else []),
    *([policies.record_stats(stats)] if stats else []),
    *([policies.progress_bar()] if progress else []),
    *([policies.stop_when(stop)] if stop else []),
    *([policies.each_epoch(callback)] if callback else []),
  ]


def _fit(
  config: Config, splits: loop.Splits, params, *, epochs: int, models: Optional[int], phase: str, **kwargs
):
  """``loop.fit`` with the config's optimizer, batch sizes and loss, for ``phase``: ``"phase1"``,
  ``"phase2"`` (the run's schedule continued, its start a candidate if the config says so) or
  ``"baseline"`` (both phases' epochs in one)."""
  per_epoch = math.ceil(splits["train"][0].shape[0] / config.batch_size)
  before, after = {
    "phase1": (0, config.phase2_epochs), "phase2": (config.phase1_epochs, 0), "baseline": (0, 0)
  }[phase]  # fmt: skip
  optimizer = config.optimizer(epochs * per_epoch, before=before * per_epoch, after=after * per_epoch)
  return loop.fit(
    params, optimizer=optimizer, splits=splits, epochs=epochs, models=models,
    select_start=phase == "phase2" and config.phase2_keeps_start,
    batch_size=config.batch_size, eval_batch_size=config.eval_batch_size, loss_fn=config.loss_fn, **kwargs,
  )  # fmt: skip


def _warn_if_undecided(phase1: loop.PhaseResult, widths: Sequence[int]) -> None:
  """Warn (:class:`UndecidedSelectionWarning`) when the selection about to be frozen has not decided."""
  selection = phase1.histories[0][phase1.best_epochs[0]].get("selection")
  message = selection and undecided_message([layer["decided"] for layer in selection], widths)
  if message:
    warnings.warn(message, UndecidedSelectionWarning, stacklevel=3)


def depth_reversed(choices: Sequence[jax.Array], key: jax.Array) -> list[jax.Array]:
  """One model's choices with the layers' order reversed: hidden layer ``i`` of ``L`` takes the
  activation proportions of layer ``L - 1 - i`` at its own width (each activation's count within one
  neuron of its share), in a random order. The depth pattern turned upside down, nothing else changed."""
  out = []
  for i, mine in enumerate(choices):
    mirror = jnp.sort(choices[len(choices) - 1 - i])
    resampled = mirror[(jnp.arange(mine.shape[0]) * mirror.shape[0]) // mine.shape[0]]
    out.append(jax.random.permutation(jax.random.fold_in(key, i), resampled))
  return out


def _rules(phase1: loop.PhaseResult, keys: RunKeys, k: int) -> dict[str, list[jax.Array]]:
  """A cohort's choices under every freeze rule (:data:`RULES`)."""
  argmax = choices(phase1.best_params)
  control = jax.vmap(lambda key: jax.random.split(jax.random.fold_in(key, 7)))(keys.reinit)
  layer = lambda keys, i: jax.vmap(lambda key: jax.random.fold_in(key, i))(keys)  # noqa: E731
  uniform = lambda key, c: jax.random.randint(key, c.shape, 0, k)  # noqa: E731
  return {
    "argmax": argmax,
    "most_frequent": [jnp.argmax(counts, axis=-1) for counts in phase1.last_step_stats],
    "shuffled": [jax.vmap(jax.random.permutation)(layer(control[:, 0], i), c) for i, c in enumerate(argmax)],
    "random": [jax.vmap(uniform)(layer(control[:, 1], i), c) for i, c in enumerate(argmax)],
    "reversed": jax.vmap(depth_reversed)(argmax, layer(keys.reinit, 8)),
  }


def two_phase(
  config: Config,
  splits: loop.Splits,
  *,
  seeds: Optional[Sequence[int]] = None,
  variants: Optional[Sequence[tuple[str, str]]] = None,
  continue_phase1: bool = False,
  devices: Optional[int] = 1,
  checkpointing: Optional[Checkpointing] = None,
  progress: bool = True,
) -> TwoPhaseResult:
  """SmartMixed: Phase 1, then each Phase 2 variant of its lowest-validation-loss epoch.

  Args:
    config: the training settings (``config.seed`` for one model).
    splits: ``{"train", "val", "test"}`` ``(x, y)`` arrays.
    seeds: None trains one model with ``config.seed``; a sequence trains a
      cohort, one model per seed, as one vmapped program.
    variants: Phase 2's ``(rule, init)`` pairs (:data:`RULES` x :data:`INITS`);
      default the config's own (:func:`preset_variant`), the only one a single
      model takes. The first is the model's own Phase 2 (not from scratch).
      An empty sequence ends after Phase 1.
    continue_phase1: a cohort's control: Phase 1 continued unfrozen, on
      Phase 2's schedule and data order.
    devices: one model: data-parallel over this many devices (None: all); a
      cohort: its models split over up to this many.
    checkpointing: one model's checkpoint hooks (see :class:`Checkpointing`).
    progress: show progress bars.

  Returns:
    A :class:`TwoPhaseResult`.
  """
  cohort = seeds is not None
  variants = tuple(variants) if variants is not None else (preset_variant(config),)
  for rule, init in variants:
    if rule not in RULES or init not in INITS:
      raise ValueError(f"Unknown Phase 2 variant {(rule, init)}; rules are {RULES}, inits {INITS}.")
  if not cohort and (len(variants) != 1 or variants[0][0] != "argmax" or continue_phase1):
    raise ValueError(
      f"One model trains one argmax-frozen Phase 2 and no control, got variants {list(variants)} and"
      f" continue_phase1={continue_phase1}; give seeds for a cohort."
    )
  if variants and variants[0][1] == "scratch":
    raise ValueError(
      f"The first variant is the model's own Phase 2, which starts from Phase 1; got {variants[0]}."
    )
  if cohort and checkpointing is not None:
    raise ValueError("A cohort trains without checkpoints; checkpointing is for one model.")
  hooks = checkpointing or Checkpointing()
  keys = run_keys(seeds if cohort else config.seed)
  models = len(seeds) if cohort else None
  steps_per_epoch = math.ceil(splits["train"][0].shape[0] / config.batch_size)
  sizes, pool, k = config.layer_sizes, config.pool, len(config.pool)
  init = lambda key: init_mlp(key, sizes, pool=pool)  # noqa: E731
  if cohort:
    init = jax.vmap(init)
  mesh = (lambda m: models_mesh(m, devices or jax.device_count())) if cohort else (
    lambda m: data_parallel_mesh(devices)
  )  # fmt: skip
  plain = _policies(progress=progress, guard=not cohort)
  selective, evaluate = phase1_forward(config, config.phase1_epochs * steps_per_epoch)

  phase1 = hooks.phase1
  if phase1 is None:
    switch = config.switch_patience and settled(config.switch_patience, config.switch_threshold)
    phase1 = _fit(
      config, splits, init(keys.init), apply=selective, eval_apply=evaluate, epochs=config.phase1_epochs,
      models=models, phase="phase1", key=keys.phase1, step_stats=sampled_activations, name="phase1",
      policies=_policies(progress=progress, guard=not cohort, stats=phase1_stats, stop=switch or None,
                         callback=hooks.on_epoch("phase1", 0, {}, {})),
      resume=hooks.resume("phase1"), mesh=mesh(models),
    )  # fmt: skip
  selected = phase1.best_params

  def weights(start):
    """Phase 2's initial weights (:data:`INITS`)."""
    return selected if start == "carry" else init(keys.init if start == "scratch" else keys.reinit)

  if not cohort:
    _warn_if_undecided(phase1, config.hidden)
    picks = choices(selected)
    model = freeze(weights(variants[0][1]), choices=picks)
    phase1_record = {k: getattr(phase1, k) for k in ("histories", "best_epochs", "test", "seconds")}
    checkpoint = hooks.on_epoch(
      "phase2", config.phase1_epochs, {"phase1_best_params": selected},
      {"choices": [c.tolist() for c in model.choices()], "phase1": phase1_record},
    )  # fmt: skip
    phase2 = _fit(
      config, splits, model, apply=phase2_forward(config, choices_as_data=False),
      epochs=config.phase2_epochs, models=None, phase="phase2", key=keys.phase2, name="phase2",
      policies=_policies(progress=progress, guard=True, callback=checkpoint), resume=hooks.resume("phase2"),
      mesh=mesh(None),
    )  # fmt: skip
    return TwoPhaseResult(phase1, phase2, variants, {"argmax": picks})
  seeds = tuple(seeds)

  rules = _rules(phase1, keys, k)
  if not variants:
    return TwoPhaseResult(phase1, None, variants, rules, seeds=seeds)
  no_logits = lambda p: dataclasses.replace(p, logits=())  # noqa: E731
  cat = lambda trees: jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *trees)  # noqa: E731

  def train(group, *, epochs, phase, name):
    """A group of variants as one cohort: (weights, choices), the choices as data, not trained."""
    starts = {start: no_logits(weights(start)) for _, start in group}
    stacked = (cat([starts[start] for _, start in group]), cat([rules[rule] for rule, _ in group]))
    return _fit(
      config, splits, stacked, apply=phase2_forward(config, choices_as_data=True), epochs=epochs,
      models=len(group) * len(seeds), phase=phase, key=jnp.concatenate([keys.phase2] * len(group)),
      name=name, mesh=mesh(len(group) * len(seeds)), policies=plain,
    )  # fmt: skip

  phase2 = train([v for v in variants if v[1] != "scratch"], epochs=config.phase2_epochs, phase="phase2",
                 name="phase2")  # fmt: skip
  from_scratch = [v for v in variants if v[1] == "scratch"]
  scratch = from_scratch and train(
    from_scratch, epochs=config.phase1_epochs + config.phase2_epochs, phase="baseline", name="from scratch"
  )
  continued = None
  if continue_phase1:
    continued = _fit(
      config, splits, selected, apply=selective, eval_apply=evaluate, epochs=config.phase2_epochs,
      models=models, phase="phase2", key=keys.phase2, name="phase1 continued", mesh=mesh(models),
      policies=plain,
    )  # fmt: skip
  return TwoPhaseResult(phase1, phase2, variants, rules, continued, seeds, scratch or None)


def baselines(
  config: Config,
  splits: loop.Splits,
  *,
  pairs: Optional[Sequence[tuple[str, int]]] = None,
  devices: Optional[int] = 1,
  checkpointing: Optional[Checkpointing] = None,
  progress: bool = True,
) -> loop.PhaseResult:
  """Fixed-activation MLPs for ``phase1_epochs + phase2_epochs`` epochs, from SmartMixed's initial weights.

  Args:
    config: the training settings; one model trains ``config.baseline`` with ``config.seed``.
    splits: ``{"train", "val", "test"}`` ``(x, y)`` arrays.
    pairs: a cohort's ``(activation, seed)`` pairs, one model each, as one
      vmapped program. With a single activation its choices are static and
      only it runs; with several, each model selects its own from choices as data.
    devices: as for :func:`two_phase`.
    checkpointing: one model's checkpoint hooks.
    progress: show a progress bar.
  """
  epochs = config.phase1_epochs + config.phase2_epochs
  if pairs is None:
    if config.baseline is None:
      raise ValueError("config.baseline names no activation; set it, or give pairs.")
    keys, hooks = run_keys(config.seed), checkpointing or Checkpointing()
    model = fixed_mlp(keys.init, config.layer_sizes, config.baseline)
    checkpoint = hooks.on_epoch(config.baseline, 0, {}, {"choices": [c.tolist() for c in model.choices()]})
    return _fit(
      config, splits, model, apply=phase2_forward(config, choices_as_data=False), epochs=epochs, models=None,
      phase="baseline", key=keys.phase2, name=config.baseline, resume=hooks.resume(config.baseline),
      policies=_policies(progress=progress, guard=True, callback=checkpoint),
      mesh=data_parallel_mesh(devices),
    )  # fmt: skip
  if checkpointing is not None:
    raise ValueError("A cohort trains without checkpoints; checkpointing is for one model.")
  names = pool_names(config.pool)
  unknown = sorted({act for act, _ in pairs} - set(names))
  if unknown:
    raise ValueError(f"Baselines {unknown} are not in the pool {list(names)}.")
  keys = run_keys([seed for _, seed in pairs])
  params = jax.vmap(lambda key: init_mlp(key, config.layer_sizes, pool=config.pool))(keys.init)
  params = dataclasses.replace(params, logits=())
  hidden = config.layer_sizes[1:-1]
  activations = sorted({act for act, _ in pairs}, key=names.index)
  if len(activations) == 1:
    static = [np.full(n, names.index(activations[0])) for n in hidden]
    apply = config.compute(lambda p, x, key, step: apply_choices(p, x, static))
  else:  # each model selects its own activation: (weights, choices), the choices as data
    params = (params, [jnp.asarray([[names.index(act)] * n for act, _ in pairs], jnp.int32) for n in hidden])
    apply = phase2_forward(config, choices_as_data=True)
  return _fit(
    config, splits, params, apply=apply, epochs=epochs, models=len(pairs), phase="baseline", key=keys.phase2,
    name="+".join(activations), mesh=models_mesh(len(pairs), devices or jax.device_count()),
    policies=_policies(progress=progress, guard=False),
  )  # fmt: skip


# ----------------------------------------------------------------------------
# Records.

FREEZE_RULES = ("argmax", "most_frequent")
"""The rules a record counts choices for: the two ways to freeze a learned selection (not the controls)."""


def record(config: Config, result: TwoPhaseResult | loop.PhaseResult, m: int = 0) -> RunRecord:
  """Model ``m``'s :class:`RunRecord`: seed ``m`` of :func:`two_phase`, or pair ``m`` of :func:`baselines`.

  Args:
    config: that model's own settings: its seed, and a baseline's activation.
    result: what :func:`two_phase` or :func:`baselines` returned.
    m: the model's position in a cohort (0 for one model).
  """
  if isinstance(result, loop.PhaseResult):
    if config.baseline is None:
      raise ValueError("A baseline's record needs its config; config.baseline names no activation.")
    return RunRecord(
      config.baseline, config.to_dict(), {config.baseline: PhaseRecord.of(result, m)},
      activation_counts=[{config.baseline: n} for n in config.layer_sizes[1:-1]],
      cohort=Cohort(len(result.histories), result.seconds),
    )  # fmt: skip
  models = 1 if result.seeds is None else len(result.seeds)
  pool = pool_names(config.pool)
  per_rule = {
    rule: [np.asarray(c if result.seeds is None else c[m]) for c in layers]
    for rule, layers in result.choices.items()
  }
  variants = {
    f"{rule}/{init}": PhaseRecord.of(*result.variant(v, m)) for v, (rule, init) in enumerate(result.variants)
  }
  main = next(iter(variants), None)  # the first variant is the model's own Phase 2
  phases = {"phase1": PhaseRecord.of(result.phase1, m), **({"phase2": variants.pop(main)} if main else {})}
  phase1 = phases["phase1"]
  frozen = phase1.history[phase1.best.epoch].selection
  agree = None
  if all(rule in per_rule for rule in FREEZE_RULES):
    agree = [float(np.mean(a == b)) for a, b in zip(*(per_rule[rule] for rule in FREEZE_RULES))]
  return RunRecord(
    SMARTMIXED, config.to_dict(), phases, main=main, variants=variants,
    continued=result.continued and PhaseRecord.of(result.continued, m),
    activation_counts=counts_by_name(per_rule[main.split("/")[0]], pool) if main else None,
    decided=[layer.decided for layer in frozen] if frozen else None,
    rule_counts={} if result.seeds is None else {r: counts_by_name(per_rule[r], pool) for r in FREEZE_RULES},
    rule_agreement=agree, cohort=Cohort(models, result.seconds),
  )  # fmt: skip
