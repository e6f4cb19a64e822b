"""The architecture sweep (experiments/sweep.py) and its report (experiments/report.py)."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from smartmixed_jax import app

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))

import records  # noqa: E402
import report  # noqa: E402
import stats  # noqa: E402
import sweep  # noqa: E402

MODELS = records.MODELS


def _phase(test, val):
  return app.PhaseRecord(app.Metrics(1, 0.1, val, 0.1, test), history=[], seconds=1.0)


def _run(arch, model, seed, test, val=None, phase1=None, **fields):
  """A hand-made record: ``test`` is the final test accuracy; SmartMixed's Phase 1 reaches ``phase1``."""
  val = test if val is None else val
  phases, main = {model: _phase(test, val)}, None
  if model == "smartmixed":
    phases, main = {"phase1": _phase(phase1 or test, val), "phase2": _phase(test, val)}, "argmax/carry"
  config = {"arch": arch, "seed": seed}
  return app.RunRecord(model, config, phases, main=main, cohort=app.Cohort(1, 1.0), **fields)


# Test accuracies: two architectures x two seeds x seven models.
HAND = {
  ("small_3layer", 0): dict(
    smartmixed=0.97, relu=0.96, sigmoid=0.90, tanh=0.95, leaky_relu=0.98, elu=0.94, selu=0.93
  ),
  ("small_3layer", 1): dict(
    smartmixed=0.95, relu=0.96, sigmoid=0.90, tanh=0.95, leaky_relu=0.97, elu=0.94, selu=0.93
  ),
  ("wide_2layer", 0): dict(
    smartmixed=0.99, relu=0.98, sigmoid=0.91, tanh=0.97, leaky_relu=0.96, elu=0.95, selu=0.94
  ),
  ("wide_2layer", 1): dict(
    smartmixed=0.99, relu=0.97, sigmoid=0.91, tanh=0.96, leaky_relu=0.98, elu=0.95, selu=0.94
  ),
}


def _hand_runs():
  return [_run(arch, m, seed, acc) for (arch, seed), accs in HAND.items() for m, acc in accs.items()]


def test_rank_ties_share_the_better_rank():
  assert stats.rank({"a": 0.9, "b": 0.95, "c": 0.9, "d": 0.8}) == {"a": 2, "b": 1, "c": 2, "d": 4}


def test_rankings_of_hand_made_results():
  ranks = stats.rankings(_hand_runs())
  assert ranks["rankings"] == 4 and ranks["archs"] == 2
  models = ranks["models"]
  # smartmixed: ranks 2 (small, seed 0), 3 (tie with tanh behind relu and leaky_relu), 1, 1.
  assert models["smartmixed"]["counts"] == [2, 1, 1, 0, 0, 0, 0]
  assert models["smartmixed"]["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 + 1) / 4)
  assert models["smartmixed"]["mrr_by_seed"] == pytest.approx([(1 / 2 + 1) / 2, (1 / 3 + 1) / 2])
  assert models["smartmixed"]["top3"] == 1.0
  assert models["tanh"]["counts"] == [0, 0, 2, 2, 0, 0, 0]
  assert models["sigmoid"]["counts"] == [0, 0, 0, 0, 0, 0, 4] and models["sigmoid"]["mrr"] == pytest.approx(
    1 / 7
  )
  assert sum(sum(m["counts"]) for m in models.values()) == 4 * 7
  # On seed means: small_3layer leaky_relu 0.975 > smartmixed = relu 0.96 (tied 2nd);
  # wide_2layer: smartmixed 1st.
  assert ranks["on_means"]["smartmixed"]["counts"] == [1, 1, 0, 0, 0, 0, 0]
  assert ranks["on_means"]["relu"]["counts"] == [0, 2, 0, 0, 0, 0, 0]


def test_incomplete_architectures_are_not_ranked():
  runs = [r for r in _hand_runs() if not (r.arch == "wide_2layer" and r.model == "selu")]
  ranks = stats.rankings(runs)
  assert ranks["rankings"] == 2 and ranks["archs"] == 1


def test_accuracy_table_and_paired_spread():
  table = stats.accuracy_table(_hand_runs())
  assert list(table) == ["small_3layer", "wide_2layer"]  # the paper's order
  stat = table["small_3layer"]["smartmixed"]
  assert stat.n == 2 and stat.mean == pytest.approx(0.96) and stat.std == pytest.approx(math.sqrt(2) * 0.01)
  assert stat.fmt() == "96.00 ± 1.41"
  # 95% CI with t(0.975, 1 dof) = 12.71: [0.02, 0.021] excludes 0; [0.02, -0.01] does not.
  narrow = stats.Stat([0.02, 0.021])
  assert narrow.ci95() == pytest.approx(12.7062 * 0.0005, rel=1e-4) and narrow.excludes_zero()
  assert narrow.fmt_ci() == "+2.05 [+1.41, +2.69]"
  assert not stats.Stat([0.02, -0.01]).excludes_zero() and not stats.Stat([0.3]).excludes_zero()
  assert stats.Stat([0.5]).fmt() == "50.00 (n = 1)"


def test_holm_and_paired_counts():
  # Holm: the i-th smallest p (from 0) is compared with 0.05 / (m - i), stopping at the first failure.
  assert stats.holm({"a": 0.01, "b": 0.02, "c": 0.06}) == {"a", "b"}
  assert stats.holm({"a": 0.01, "b": 0.02, "c": 0.04}) == {"a", "b", "c"}
  assert stats.holm({"a": 0.03, "b": 0.03}) == set()  # 0.03 > 0.05 / 2
  assert stats.paired_p([0.01, 0.01, 0.01]) == 0.0 and stats.paired_p([0.0, 0.0]) == 1.0
  assert stats.paired_p([0.01, 0.02, 0.03]) == pytest.approx(0.0742, abs=1e-3)


def test_friedman_on_hand_made_results():
  fr = stats.friedman(_hand_runs(), records.MODELS)
  assert fr["archs"] == 2
  # small_3layer means: leaky 0.975 > smartmixed = relu 0.96 (both rank 2.5) > tanh > elu > selu > sigmoid.
  assert fr["mean_ranks"]["sigmoid"] == 7.0 and fr["mean_ranks"]["smartmixed"] == pytest.approx((2.5 + 1) / 2)
  assert fr["cd"] == pytest.approx(2.949 * math.sqrt(7 * 8 / 12)) and 0 < fr["p"] < 1


def _smart(seed, p1, val=0.97, first=(3, 0, 0, 1, 0, 0)):
  layers = [first, (0, 0, 0, 0, 1, 1), (0, 0, 0, 0, 0, 2)]
  counts = [{a: n for a, n in zip(records.ACTIVATIONS, layer) if n} for layer in layers]
  return _run("wide_2layer", "smartmixed", seed, 0.98, val=val, phase1=p1, rule_counts={"argmax": counts})


def test_phase_gain_and_depth_shares():
  runs = [_smart(0, 0.95), _smart(1, 0.96)]
  gain = stats.paired(runs, stats.phase_test("phase2"), stats.phase_test("phase1"))
  assert gain.overall.mean == pytest.approx(0.025) and gain.overall.n == 2 and gain.unit == "seeds"
  shares, counts = stats.depth_shares(runs, bins=3)  # layer centres 1/6, 1/2, 5/6: one bin each
  np.testing.assert_allclose(shares[:, 0], [0.75, 0, 0, 0.25, 0, 0])
  np.testing.assert_allclose(shares[:, 1], [0, 0, 0, 0, 0.5, 0.5])
  np.testing.assert_allclose(shares[:, 2], [0, 0, 0, 0, 0, 1])
  assert counts.tolist() == [2, 2, 2]
  early = stats.first_last_shares(runs, records.EARLY)
  assert early["first"].mean == pytest.approx(1.0) and early["last"].mean == 0.0
  falls = stats.layer_shift(runs, records.EARLY, rise=False)
  assert falls.per_arch["wide_2layer"].mean == pytest.approx(1.0) and falls.per_arch["wide_2layer"].n == 2
  assert stats.layer_shift(runs, records.EARLY, rise=True).overall.mean == pytest.approx(-1.0)


def test_failed_runs_are_left_out_of_the_preferences():
  runs = [_smart(0, 0.95), _smart(1, 0.96), _smart(2, 0.1, val=0.11, first=(0, 0, 0, 0, 4, 0))]
  assert [records.failed(r) for r in runs] == [False, False, True]
  shares, counts = stats.depth_shares(runs, bins=3)
  assert counts.tolist() == [2, 2, 2] and shares[4, 0] == 0.0  # the failed run's elu layer is not counted
  assert stats.first_last_shares(runs, records.EARLY)["first"].n == 2


def test_architecture_by_number_or_name():
  assert sweep.architecture("1") == "simple_2layer"
  assert sweep.architecture("18") == "wide_14layer"
  assert sweep.architecture("wide_5layer") == "wide_5layer"
  for bad in ("0", "19", "huge"):
    with pytest.raises(ValueError, match="number 1-18"):
      sweep.architecture(bad)


def test_tiny_sweep_end_to_end_resumes_and_reports(mnist_1k, tmp_path, monkeypatch):
  mnist = mnist_1k
  monkeypatch.setitem(sweep.BUDGETS, "tiny", sweep.Budget(1, 1, 512))
  monkeypatch.setitem(sweep.BUDGETS, "tiny2", sweep.Budget(2, 1, 512))
  archs, seeds = ["simple_2layer", "small_3layer"], [0, 1]
  kwargs = dict(archs=archs, seeds=seeds, budget="tiny", group_baselines=True, progress=False,
                logits_lr_scale=1.0)  # fmt: skip
  assert sweep.sweep(tmp_path, mnist, **kwargs) == 2 * 7 * 2
  runs = records.load_runs(tmp_path)
  assert len(runs) == 28 + 4  # and the random-mixture control of each SmartMixed run
  assert sum(r.model == records.CONTROL for r in runs) == 4
  path = sweep.run_path(tmp_path, "small_3layer", "smartmixed", 1)
  assert json.loads(path.read_text())["schema_version"] == app.SCHEMA_VERSION
  smart = app.read_record(path)
  assert smart.arch == "small_3layer" and smart.seed == 1 and smart.config["train_limit"] == 512
  assert list(smart.phase2_variants()) == ["argmax/carry", "most_frequent/carry", "argmax/reinit",
                                           "shuffled/carry", "random/carry"]  # fmt: skip
  assert smart.continued.epochs == 1
  epoch = smart.phase1.history[1]
  assert epoch.selection[0].argmax_changed is not None and 0 <= epoch.selection[0].entropy <= 1
  assert [sum(layer.values()) for layer in epoch.activation_counts] == [256, 128]
  assert [len(layer) for layer in epoch.sample_shares] == [6, 6]
  assert [sum(layer.values()) for layer in smart.rule_counts["most_frequent"]] == [256, 128]
  assert smart.activation_counts == smart.rule_counts["argmax"] and len(smart.rule_agreement) == 2
  assert 0.3 < smart.final.test_accuracy <= 1 and smart.final == smart.phase2_variants()["argmax/carry"].best
  # A rerun does nothing; a lost run is redone alone; other settings are refused.
  assert sweep.sweep(tmp_path, mnist, **kwargs) == 0
  sweep.run_path(tmp_path, "simple_2layer", "tanh", 1).unlink()
  assert sweep.sweep(tmp_path, mnist, **kwargs) == 1

  # A variant study: faster logits, SmartMixed only, ranked against the baselines above.
  variant = tmp_path / "variant"
  vargs = dict(kwargs, archs=["small_3layer"], logits_lr_scale=300.0, baselines_from=tmp_path)
  assert sweep.sweep(variant, mnist, **vargs) == 2
  assert json.loads((variant / "sweep.json").read_text())["baselines_from"] == ".."
  fast = app.read_record(sweep.run_path(variant, "small_3layer", "smartmixed", 1))
  assert fast.config["logits_lr_scale"] == 300.0
  last = lambda run: run.phase1.history[-1].selection[0].entropy  # noqa: E731
  assert last(fast) < last(smart) - 0.03  # 300x faster logits decide sooner (4 steps here)
  vtext = report.write_report(variant).read_text()
  assert (
    "logits learning 300x faster" in vtext
    and "--baselines-from" in vtext
    and "| simple_2layer |" not in vtext
  )
  assert stats.rankings(records.load_runs(variant))["rankings"] == 2  # baselines came from the reference
  own = [r for r in records.load_runs(variant) if not r.borrowed]
  assert stats.compute_seconds(records.load_runs(variant)) == stats.compute_seconds(own) > 0
  with pytest.raises(SystemExit, match="phase1_epochs: 1 there, 2 here"):
    sweep.sweep(tmp_path / "other", mnist, **dict(vargs, budget="tiny2"))

  monkeypatch.setitem(sweep.BUDGETS, "tiny", sweep.Budget(2, 1, 512))
  with pytest.raises(SystemExit, match="phase1_epochs: 1 there, 2 now"):
    sweep.sweep(tmp_path, mnist, **kwargs)

  path = report.write_report(tmp_path)
  text = path.read_text()
  for heading in ("four claims", "Accuracy per architecture", "Rankings", "Phase 1 vs Phase 2",
                  "Layer-wise preferences", "Has the selection happened?", "Freeze rules",
                  "Controls: do the learned choices help?", "Convergence", "Compute"):  # fmt: skip
    assert f"## {heading}" in text or heading in text
  for png in (
    "accuracy",
    "rank_counts",
    "phase1_vs_phase2",
    "depth_heatmap",
    "phase1_trajectories",
    "convergence",
  ):
    assert (tmp_path / f"{png}.png").stat().st_size > 1000
  assert "| small_3layer |" in text and "nan" not in text.lower()
  assert "not resolved at this budget" in text and "Friedman's test" in text and "random_mixture" in text
  assert "ranks the 7 models" in text and "top three of 7" in text  # the paper's seven; not the control
  assert "| P1 train, sampled | P1 val, argmax |" in text


def test_selection_study_trains_phase1_only_and_reports_it(mnist_1k, tmp_path, monkeypatch):
  mnist = mnist_1k
  monkeypatch.setitem(sweep.BUDGETS, "tiny_selection", sweep.Budget(2, 0, 512))
  kwargs = dict(archs=["small_3layer"], seeds=[0, 1], budget="tiny_selection", progress=False)
  assert sweep.sweep(tmp_path, mnist, **kwargs) == 2  # SmartMixed only: no baselines, no Phase 2
  run = app.read_record(sweep.run_path(tmp_path, "small_3layer", "smartmixed", 0))
  assert run.main is None and run.phase2 is None and run.phase1.epochs == 2 and run.activation_counts is None
  assert run.final == run.phase1.best and set(run.rule_counts) == {"argmax", "most_frequent"}
  assert len(run.phase1.history[2].selection) == 2
  text = report.write_report(tmp_path).read_text()
  parts = ("Has the selection settled?", "Preferences by depth", "Gumbel-max", "no SmartMixed network with")
  for part in parts:
    assert part in text, part
  # Phase 1's accuracy at each seed's selected epoch, evaluated with the argmax (the recommended preset).
  runs = [app.read_record(sweep.run_path(tmp_path, "small_3layer", "smartmixed", s)) for s in (0, 1)]
  test = stats.Stat(r.phase1.best.test_accuracy for r in runs).fmt()
  epochs = ", ".join(str(r.phase1.best.epoch) for r in runs)
  assert "| train, sampled | val, argmax | test, argmax |" in text
  assert f"| small_3layer | {epochs} |" in text
  assert "decays to zero over Phase 1 (cosine)" in text  # why argmax changes fade near the end
  assert f"| {test} |" in text
  assert (tmp_path / "selection_curves.png").stat().st_size > 1000


def test_adaptive_switch_study_pairs_runs_and_reports(mnist_1k, tmp_path, monkeypatch):
  mnist = mnist_1k
  import adaptive_switch

  monkeypatch.setitem(sweep.BUDGETS, "tiny", sweep.Budget(3, 1, 512))
  # Threshold 1: any epoch changing fewer than all argmaxes counts as stable, so patience 1 stops after 1.
  kwargs = dict(archs=["small_3layer"], scales=[1.0], seeds=[0], patience=1, thresholds=[1.0], budget="tiny")
  assert adaptive_switch.run_all(tmp_path, mnist, **kwargs, progress=False) == 2
  assert adaptive_switch.run_all(tmp_path, mnist, **kwargs, progress=False) == 0  # resumable per run
  runs = adaptive_switch.load(tmp_path)[("small_3layer", 1.0, 0)]
  assert runs["fixed"].phase1.epochs == 3 and runs["adaptive_p1_t1"].switch_epoch == 1
  text = adaptive_switch.write_report(tmp_path).read_text()
  assert "| small_3layer | 1 | 1 / 1 | 1 | 67 (n = 1) | " in text and "--budget tiny" in text, text
  assert "--thresholds 1" in text and (tmp_path / "argmax_changed.png").stat().st_size > 1000
