"""The one record type: every committed shape loads, the current one round-trips, bad records are refused."""

import json
from pathlib import Path

import pytest

from smartmixed_jax import app

RESULTS = Path(__file__).parents[1] / "experiments" / "results"
QUICK = RESULTS / "sweep_quick_recommended" / "runs" / "small_3layer"


def _load(path: Path) -> dict:
  return json.loads(path.read_text())


def test_a_version_1_sweep_record_of_smartmixed_migrates_to_typed_fields():
  raw = _load(QUICK / "smartmixed" / "seed1.json")
  record = app.RunRecord.from_json(raw)
  assert (record.model, record.arch, record.seed) == ("smartmixed", "small_3layer", 1)
  assert list(record.phases) == ["phase1", "phase2"] and record.main == raw["main"] == "argmax/carry"
  assert record.phase2 == app.PhaseRecord.from_json(raw["phase2"]["argmax/carry"])
  assert set(record.variants) == set(raw["phase2"]) - {"argmax/carry"}
  assert list(record.phase2_variants()) == list(raw["phase2"])  # its own first, then as written
  assert record.continued.epochs == raw["phase1_continued"]["epochs"]
  assert record.final.test_accuracy == raw["final"]["test_accuracy"]
  # Counts per pool position became counts per name, the unused ones left out.
  pool = raw["config"]["pool"]
  for rule, layers in raw["choices"].items():
    assert record.rule_counts[rule] == [{n: c for n, c in zip(pool, layer) if c} for layer in layers]
  assert record.activation_counts == record.rule_counts["argmax"]
  epoch = record.phase1.history[-1]
  old = raw["phase1"]["history"][-1]
  assert epoch.activation_counts == [dict(zip(pool, layer)) for layer in old["argmax_counts"]]
  assert [s.entropy for s in epoch.selection] == [s["entropy"] for s in old["selection"]]
  assert record.cohort == app.Cohort(raw["cohort"]["runs"], raw["cohort"]["seconds"])


def test_a_version_1_sweep_baseline_and_results_json_migrate():
  raw = _load(QUICK / "elu" / "seed0.json")
  baseline = app.RunRecord.from_json(raw)
  assert list(baseline.phases) == ["elu"] and baseline.main is None and baseline.last.best.epoch == 6
  assert baseline.activation_counts == [{"elu": n} for n in raw["config"]["hidden"]]
  assert baseline.final.val_accuracy == raw["final"]["val_accuracy"]

  raw = _load(RESULTS / "adaptive_switch/runs/medium_5layer/scale1/adaptive_p2_t0.01/seed0.json")
  run = app.RunRecord.from_json(raw)
  assert run.model == "smartmixed" and run.main == "argmax/carry" and run.switch_epoch == raw["switch_epoch"]
  assert run.activation_counts == raw["activation_counts"] and run.train_examples == 54_000
  assert run.phase1.epochs == raw["phases"]["phase1"]["epochs"] == len(run.phase1.history) - 1
  assert run.phase1.median_seconds("train") == raw["phases"]["phase1"]["median_epoch_train_seconds"]


def test_every_committed_record_loads_and_round_trips():
  # The task panel's records are another shape (an NNX model's task metric and choices by module path).
  paths = sorted(p for p in RESULTS.glob("*/runs/**/seed*.json") if p.parts[-5] != "panel")
  assert len(paths) > 600
  for path in paths[::25]:  # a spread of every study and shape
    record = app.read_record(path)
    text = json.dumps(record.to_json())
    assert app.RunRecord.from_json(json.loads(text)) == record, path


def test_the_current_record_round_trips_with_its_version():
  record = app.RunRecord.from_json(_load(QUICK / "smartmixed" / "seed0.json"))
  data = record.to_json()
  assert data["schema_version"] == app.SCHEMA_VERSION
  assert data["final"] == {k: getattr(record.final, k) for k in data["final"]}
  assert data["phases"]["phase1"]["epochs"] == record.phase1.epochs  # for readers of the file
  assert "borrowed" not in data and "arch" not in data  # the arch is the config's
  assert app.RunRecord.from_json(data) == record


def test_records_it_cannot_read_are_refused_with_the_reason(tmp_path):
  data = app.RunRecord.from_json(_load(QUICK / "relu" / "seed0.json")).to_json()
  with pytest.raises(ValueError, match="schema_version 4: this smartmixed_jax reads versions 1 to 3"):
    app.RunRecord.from_json({**data, "schema_version": 4})
  with pytest.raises(ValueError, match=r"holds \['lr_finder'\], which a RunRecord"):
    app.RunRecord.from_json({**data, "lr_finder": {}})
  bad = tmp_path / "results.json"
  bad.write_text("{not json")
  with pytest.raises(ValueError, match=f"{bad} is not a run record"):
    app.read_record(bad)
  bad.write_text(json.dumps({k: v for k, v in data.items() if k != "phases"}))
  with pytest.raises(ValueError, match="missing entry 'phases'"):
    app.read_record(bad)


def test_a_record_says_which_phase_2_it_trained():
  phase = app.RunRecord.from_json(_load(QUICK / "relu" / "seed0.json")).last
  with pytest.raises(ValueError, match="main names Phase 2's rule and init"):
    app.RunRecord("smartmixed", {}, {"phase1": phase, "phase2": phase})
  with pytest.raises(ValueError, match="needs at least one phase"):
    app.RunRecord("relu", {}, {})
  control = app.RunRecord("random_mixture", {"arch": "a", "seed": 0}, {"phase2": phase}, main="random/carry")
  assert control.final == phase.best and control.phase1 is None and control.cohort is None
