"""The record of one trained model: what ``results.json`` and every study's per-run file hold.

One type, :class:`RunRecord`, for a ``smartmixed train`` run, a sweep's
SmartMixed model or fixed-activation baseline, and a control (a Phase 2
whose choices were not learned). Its JSON carries ``schema_version``;
:meth:`RunRecord.from_json` is the one place older shapes are migrated, on
read (files are never rewritten). Version 1 is every record written before
the version existed: ``results.json`` (``phases``), the sweep's SmartMixed
record (``phase1`` / ``phase2{rule/init}`` / ``main``) and its baseline record
(``phase``). Version 3 adds ``decided``, absent (None) from older records.

Example:
  >>> record = read_record("runs/demo/results.json")          # doctest: +SKIP
  >>> record.final.test_accuracy, record.phase1.best.epoch    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
  from smartmixed_jax._src.loop import PhaseResult

SCHEMA_VERSION = 3
"""The version :meth:`RunRecord.to_json` writes; :meth:`RunRecord.from_json` reads it and every older one."""

SMARTMIXED = "smartmixed"
"""``RunRecord.model`` of a SmartMixed run; a baseline's is its activation's name."""


def _known(cls: type, data: Mapping[str, Any], where: str) -> None:
  """Refuses entries that are not fields of ``cls``: reading on would silently lose them."""
  unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise ValueError(
      f"{where} holds {unknown}, which a {cls.__name__} (record schema {SCHEMA_VERSION}) does not know;"
      " it was written by another version of smartmixed_jax."
    )


def _strict(cls: type, data: Mapping[str, Any], where: str) -> Any:
  """``cls(**data)``, refusing entries that are not its fields (:func:`_known`)."""
  _known(cls, data, where)
  return cls(**data)


def _set(record: Any) -> dict[str, Any]:
  """A dataclass's fields, less those at their default (absent from the JSON reads as the default)."""
  out = {}
  for f in dataclasses.fields(record):
    value = getattr(record, f.name)
    if f.default is not dataclasses.MISSING:
      default = f.default
    elif f.default_factory is not dataclasses.MISSING:
      default = f.default_factory()
    else:
      out[f.name] = value
      continue
    if type(value) is not type(default) or value != default:
      out[f.name] = value
  return out


@dataclasses.dataclass(frozen=True)
class Metrics:
  """A phase's selected epoch (its lowest validation loss) and the test metrics of its parameters."""

  epoch: int
  val_loss: Optional[float]
  val_accuracy: Optional[float]
  test_loss: Optional[float] = None
  test_accuracy: Optional[float] = None

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> Metrics:
    return _strict(cls, data, "a selected epoch")

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LayerSelection:
  """One hidden layer's selection diagnostics at the end of a Phase 1 epoch
  (see :func:`smartmixed_jax.selection_diagnostics`)."""

  entropy: float  # mean entropy of softmax(logits) over log k: 1 is uniform
  decided: float  # share of neurons whose normalised entropy is below 1/2
  p_argmax: float
  logit_gap: float
  logit_gap_max: float
  argmax_changed: Optional[float] = None
  sample_agreement: Optional[float] = None

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> LayerSelection:
    return _strict(cls, data, "a layer's selection diagnostics")


@dataclasses.dataclass(frozen=True)
class Epoch:
  """One model's epoch: its metrics (None where not finite), timings and, in Phase 1, the selection.

  Epoch 0 is the model before training: validation metrics only.
  """

  epoch: int
  val_loss: Optional[float]
  val_accuracy: Optional[float]
  train_loss: Optional[float] = None
  train_accuracy: Optional[float] = None
  train_seconds: Optional[float] = None
  eval_seconds: Optional[float] = None
  skipped_steps: int = 0  # non-finite updates skipped (``Config.skip_nonfinite``)
  activation_counts: Optional[list[dict[str, int]]] = None  # per layer, neurons per argmax activation
  argmax_changed: Optional[float] = None  # share of all hidden neurons whose argmax changed this epoch
  sample_shares: Optional[list[list[float]]] = None  # per layer, the share of steps' samples per activation
  selection: Optional[list[LayerSelection]] = None
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # what a ``fit(epoch_stats=)`` added

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> Epoch:
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    if known.get("selection") is not None:
      known["selection"] = [LayerSelection.from_json(layer) for layer in known["selection"]]
    return cls(**known, extra={k: v for k, v in data.items() if k not in names})

  def to_json(self) -> dict[str, Any]:
    out = {k: v for k, v in _set(self).items() if k != "extra"}
    out.update(val_loss=self.val_loss, val_accuracy=self.val_accuracy)  # kept when None: not finite
    if self.selection is not None:
      out["selection"] = [_set(layer) for layer in self.selection]
    return {**out, **self.extra}


@dataclasses.dataclass(frozen=True)
class PhaseRecord:
  """One model's phase: every epoch (epoch 0 first), the selected one and the phase's wall time.

  ``seconds`` is the wall time of the program that trained it, shared by the
  models of a cohort.
  """

  best: Metrics
  history: list[Epoch]
  seconds: float

  @classmethod
  def of(cls, result: PhaseResult, m: int = 0) -> PhaseRecord:
    """Model ``m``'s phase from what :func:`smartmixed_jax.fit` returned."""
    return cls(Metrics(**result.best(m)), [Epoch.from_json(e) for e in result.histories[m]], result.seconds)

  @property
  def epochs(self) -> int:
    """Epochs trained (epoch 0 is the starting point)."""
    return len(self.history) - 1

  def median_seconds(self, kind: str) -> Optional[float]:
    """The median epoch's ``"train"`` or ``"eval"`` seconds; None before any epoch."""
    values = [getattr(e, f"{kind}_seconds") for e in self.history[1:]]
    return float(statistics.median(values)) if values else None

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> PhaseRecord:
    # epochs and the medians are written for readers of the file; they follow from the history
    data = {k: v for k, v in data.items() if k not in _DERIVED_PHASE}
    _known(cls, data, "a phase")
    return cls(
      Metrics.from_json(data["best"]), [Epoch.from_json(e) for e in data["history"]], data["seconds"]
    )

  def to_json(self) -> dict[str, Any]:
    return {
      "best": self.best.to_json(),
      "epochs": self.epochs,
      "seconds": self.seconds,
      "median_epoch_train_seconds": self.median_seconds("train"),
      "median_epoch_eval_seconds": self.median_seconds("eval"),
      "history": [e.to_json() for e in self.history],
    }


_DERIVED_PHASE = ("epochs", "median_epoch_train_seconds", "median_epoch_eval_seconds")


@dataclasses.dataclass(frozen=True)
class Cohort:
  """The vmapped program a record's model trained in: how many models it held and its wall time."""

  runs: int
  seconds: float


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """One trained model: a SmartMixed run, a fixed-activation baseline, or a control.

  Attributes:
    model: ``"smartmixed"``, a baseline's activation, or a control's name.
    config: the run's settings (``Config.to_dict()``).
    phases: the model's phases in training order: ``phase1`` and ``phase2``
      for SmartMixed (``phase1`` alone when Phase 2 was not trained), the
      activation's name for a baseline. The last one is the run's result.
    main: SmartMixed's Phase 2 as ``"rule/init"``: the freeze rule and
      whether Phase 1's weights were carried over or re-initialised.
    variants: other Phase 2s trained from the same Phase 1, by ``"rule/init"``
      (a study's ablations and controls).
    continued: a study's control: Phase 1 continued unfrozen for Phase 2's epochs.
    activation_counts: per hidden layer, the result model's neurons per
      activation (None where a study did not freeze one).
    decided: per hidden layer, the share of neurons whose choice was decided
      (normalised entropy below 1/2) at Phase 1's selected epoch, the one a
      freeze takes; None for a baseline and for records before schema 3.
    rule_counts: per freeze rule a study compared, per hidden layer, the
      neurons per activation that rule chose.
    rule_agreement: per hidden layer, the share of neurons where the argmax
      and the most-frequent-sample rules agree.
    train_examples: training examples seen per epoch.
    switch_epoch: the Phase 1 epoch the adaptive switch froze after.
    resumes: the resumes that changed a setting (checkpoint and changes).
    environment: versions and hardware.
    cohort: the vmapped program the model trained in, when it shared one.
    borrowed: read from another study (never written): a variant study's
      baselines come from its reference sweep, whose compute they were.
  """

  model: str
  config: dict[str, Any]
  phases: dict[str, PhaseRecord]
  main: Optional[str] = None
  variants: dict[str, PhaseRecord] = dataclasses.field(default_factory=dict)
  continued: Optional[PhaseRecord] = None
  activation_counts: Optional[list[dict[str, int]]] = None
  decided: Optional[list[float]] = None
  rule_counts: dict[str, list[dict[str, int]]] = dataclasses.field(default_factory=dict)
  rule_agreement: Optional[list[float]] = None
  train_examples: Optional[int] = None
  switch_epoch: Optional[int] = None
  resumes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  environment: Optional[dict[str, Any]] = None
  cohort: Optional[Cohort] = None
  borrowed: bool = False

  def __post_init__(self):
    if not self.phases:
      raise ValueError(f"A run record needs at least one phase; the {self.model} record has none.")
    if (self.main is None) != ("phase2" not in self.phases):
      raise ValueError(f"main names Phase 2's rule and init, so it is set exactly when phases holds phase2;"
                       f" got main={self.main!r} and phases {list(self.phases)}.")  # fmt: skip

  @property
  def arch(self) -> str:
    return self.config["arch"]

  @property
  def seed(self) -> int:
    return self.config["seed"]

  @property
  def phase1(self) -> Optional[PhaseRecord]:
    return self.phases.get("phase1")

  @property
  def phase2(self) -> Optional[PhaseRecord]:
    return self.phases.get("phase2")

  @property
  def last(self) -> PhaseRecord:
    """The phase whose selected epoch is the run's result."""
    return list(self.phases.values())[-1]

  @property
  def final(self) -> Metrics:
    """The run's result: its last phase's selected epoch."""
    return self.last.best

  def phase2_variants(self) -> dict[str, PhaseRecord]:
    """Every Phase 2 trained from this run's Phase 1, by ``"rule/init"``, its own (``main``) first."""
    return {self.main: self.phase2, **self.variants} if self.main else {}

  def to_json(self) -> dict[str, Any]:
    """The record as JSON data, with ``schema_version`` and the final metrics for readers of the file."""
    out = {"schema_version": SCHEMA_VERSION, **_set(self)}
    out["phases"] = {name: p.to_json() for name, p in self.phases.items()}
    out["final"] = {
      k: getattr(self.final, k) for k in ("val_accuracy", "test_accuracy", "val_loss", "test_loss")
    }
    if self.variants:
      out["variants"] = {name: p.to_json() for name, p in self.variants.items()}
    if self.continued is not None:
      out["continued"] = self.continued.to_json()
    if self.cohort is not None:
      out["cohort"] = dataclasses.asdict(self.cohort)
    return out

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
    """A record from its JSON data, of this schema version or any older one.

    Raises:
      ValueError: the data is of a newer version, or holds entries this version does not know.
    """
    data = dict(data)
    version = data.pop("schema_version", 1)
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
      raise ValueError(
        f"Record schema_version {version!r}: this smartmixed_jax reads versions 1 to {SCHEMA_VERSION};"
        " upgrade it to read newer records."
      )
    if version == 1:
      data = _from_version_1(data)
    data.pop("final")  # the last phase's selected epoch, written for readers of the file
    _known(cls, data, "a run record")
    phase = PhaseRecord.from_json
    return cls(**{
      **data,
      "phases": {name: phase(p) for name, p in data["phases"].items()},
      "variants": {name: phase(p) for name, p in data.get("variants", {}).items()},
      "continued": phase(data["continued"]) if data.get("continued") else None,
      "cohort": Cohort(**data["cohort"]) if data.get("cohort") else None,
    })  # fmt: skip


def read_record(path: os.PathLike) -> RunRecord:
  """The :class:`RunRecord` in a JSON file (a run's ``results.json``, a study's per-run file).

  Raises:
    ValueError: the file is not JSON, or not a record this version reads (the message names the file).
  """
  try:
    return RunRecord.from_json(json.loads(open(path, encoding="utf-8").read()))
  except (ValueError, KeyError, TypeError) as e:
    detail = f"missing entry {e}" if isinstance(e, KeyError) else str(e)
    raise ValueError(f"{path} is not a run record smartmixed_jax reads: {detail}") from e


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
  """Version 1's three shapes as version 2.

  - ``results.json``: ``phases`` as now; the model is the config's baseline
    or SmartMixed, whose Phase 2 was the argmax freeze (``resumed_with_changes``
    is now ``resumes``). The adaptive-switch study added ``arch`` (the
    config's) and ``budget`` (a label of the epochs its config holds).
  - A sweep's baseline: its one ``phase``.
  - A sweep's SmartMixed model: ``phase1``, every Phase 2 variant in
    ``phase2`` (``main`` is the model's own), ``phase1_continued``, and
    ``choices`` (per freeze rule, per layer, neurons per pool position).
    Phase 1 epochs held ``argmax_counts`` (per layer, neurons per pool
    position) where they now hold ``activation_counts`` (by name).
  The sweep's ``arch``, ``arch_number`` and ``seed`` are the config's.
  """
  data = copy.deepcopy(data)  # the caller's data stays as read
  config = data["config"]
  pool = config["pool"]
  by_name = lambda layers: [dict(zip(pool, layer)) for layer in layers]  # noqa: E731
  in_use = lambda layers: [{n: c for n, c in zip(pool, layer) if c} for layer in layers]  # noqa: E731
  for key in ("arch", "seed"):
    if key in data and data.pop(key) != config[key]:
      raise ValueError(f"A version 1 record's {key} is not its config's {config[key]!r}.")
  data.pop("arch_number", None)
  data.pop("budget", None)
  if "resumed_with_changes" in data:
    data["resumes"] = data.pop("resumed_with_changes")
  if "phases" in data:
    data["model"] = config.get("baseline") or SMARTMIXED
    if "phase2" in data["phases"]:
      data["main"] = "argmax/" + ("reinit" if config.get("reinit_phase2") else "carry")
  elif "phase" in data:
    data["phases"] = {data["model"]: data.pop("phase")}
    data["activation_counts"] = [{data["model"]: width} for width in config["hidden"]]
  else:
    variants, main = data.pop("phase2"), data.pop("main")
    data["phases"] = {"phase1": data.pop("phase1"), **({"phase2": variants.pop(main)} if main else {})}
    data.update(main=main, variants=variants)
    if "phase1_continued" in data:
      data["continued"] = data.pop("phase1_continued")
    data["rule_counts"] = {rule: in_use(layers) for rule, layers in data.pop("choices").items()}
    if main:
      data["activation_counts"] = data["rule_counts"][main.split("/")[0]]
  for phase in [*data["phases"].values(), *data.get("variants", {}).values()]:
    for epoch in phase["history"]:
      if "argmax_counts" in epoch:
        epoch["activation_counts"] = by_name(epoch.pop("argmax_counts"))
  return data


def counts_by_name(per_neuron: Sequence[Any], pool: Sequence[str]) -> list[dict[str, int]]:
  """Per hidden layer, the neurons per activation in use (pool order), from per-neuron pool indices."""
  out = []
  for layer in per_neuron:
    indices = [int(i) for i in layer]
    out.append({name: indices.count(j) for j, name in enumerate(pool) if j in indices})
  return out
