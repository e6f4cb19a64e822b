"""The verdict rules (experiments/verdicts.py): each claim's verdict from hand-made numbers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))

import stats  # noqa: E402
import verdicts  # noqa: E402
from verdicts import DOES_NOT_HOLD, HOLDS, NOT_RESOLVED  # noqa: E402

# Per architecture, three seeds' paired differences (fractions: 0.01 is one point): about +1 point on each
# of five architectures, 95% CI over them about [+0.96, +1.20].
UP = {
  "a": [0.010, 0.012, 0.011], "b": [0.012, 0.011, 0.013], "c": [0.009, 0.010, 0.011],
  "d": [0.011, 0.011, 0.012], "e": [0.010, 0.009, 0.011],
}  # fmt: skip


def test_across_takes_the_architecture_as_the_unit():
  diff = stats.across(UP)
  assert diff.unit == "architectures" and diff.overall.n == 5
  assert diff.overall.mean == pytest.approx((0.011 + 0.012 + 0.010 + 0.011 + 0.010 + 1 / 3 * 0.001) / 5)
  assert diff.per_arch["b"].n == 3 and diff.tested == 5
  assert set(diff.higher) == set(UP) and diff.lower == ()
  # One architecture: the seeds are all there is.
  alone = stats.across({"a": UP["a"]})
  assert alone.unit == "seeds" and alone.overall.n == 3 and alone.overall.mean == pytest.approx(0.011)


def test_across_corrects_the_per_architecture_tests_with_holm():
  # Two architectures each at p = 0.044 alone: neither survives Holm (0.044 > 0.05 / 2).
  noisy = {"a": [0.01, 0.02, 0.012], "b": [0.01, 0.02, 0.012]}
  assert stats.paired_p(noisy["a"]) == pytest.approx(0.0445, abs=1e-3)
  assert stats.across(noisy).higher == ()
  assert stats.across({"a": noisy["a"]}).higher == ("a",)


@pytest.mark.parametrize(
  "per_arch, sign, word, reason",
  [
    (UP, 1, HOLDS, "lies above 0"),
    (UP, -1, DOES_NOT_HOLD, "lies on the other side of 0"),
    ({k: [-v for v in vs] for k, vs in UP.items()}, -1, HOLDS, "lies below 0"),
    ({"a": [0.01, 0.03, -0.02], "b": [-0.01, 0.02, 0.0]}, 1, NOT_RESOLVED, "includes 0"),
    # Positive on average, but one architecture goes significantly the other way: not consistent.
    ({"a": [0.30, 0.31, 0.29], "b": [0.20, 0.21, 0.22], "c": [-0.010, -0.011, -0.012]}, 1, DOES_NOT_HOLD,
     "c differs significantly the other way"),
    ({"a": [0.010, 0.011, 0.012]}, 1, HOLDS, "95% CI over 3 seeds"),
    ({"a": [0.01, 0.02]}, 1, NOT_RESOLVED, "includes 0"),
    ({"a": [0.01]}, 1, NOT_RESOLVED, "fewer than two seeds"),
  ],
)  # fmt: skip
def test_a_direction_across_architectures(per_arch, sign, word, reason):
  verdict = verdicts.direction(stats.across(per_arch), sign)
  assert verdict.word == word and reason in verdict.reason


@pytest.mark.parametrize(
  "per_arch, word, reason",
  [
    ({"a": [0.024, 0.025, 0.026], "b": [0.02, 0.022, 0.021], "c": [0.03, 0.028, 0.029]}, HOLDS, "meets 2–3"),
    (UP, DOES_NOT_HOLD, "lies below 2–3 points"),  # better, by about one point
    ({"a": [0.05, 0.051, 0.052], "b": [0.055, 0.056, 0.054], "c": [0.06, 0.059, 0.061]}, DOES_NOT_HOLD,
     "lies above 2–3 points"),
    ({"a": [0.08, -0.05, 0.01], "b": [-0.03, 0.06, 0.0]}, NOT_RESOLVED, "includes 0"),
    # Study 3's Phase 2 - Phase 1: +0.08 [-0.33, +0.49] excludes 2-3 points, though it includes 0.
    ({"a": [0.004, -0.003, 0.0], "b": [0.002, 0.001, -0.002], "c": [-0.001, 0.0, 0.003]}, DOES_NOT_HOLD,
     "lies below"),
  ],
)  # fmt: skip
def test_a_size_across_architectures(per_arch, word, reason):
  verdict = verdicts.size(stats.across(per_arch), 0.02, 0.03)
  assert verdict.word == word and reason in verdict.reason


@pytest.mark.parametrize(
  "top, archs, friedman_p, word, p",
  [
    (6, 18, 0.27, NOT_RESOLVED, "p = 0.48"),  # the audit's Study 2 figure, had rankings been independent
    (9, 18, 0.16, NOT_RESOLVED, "p = 0.64"),
    (14, 18, 0.01, HOLDS, "p = 0.0034"),
    (14, 18, 0.30, NOT_RESOLVED, "p = 0.0034"),  # the models themselves cannot be told apart
    (2, 18, 0.30, DOES_NOT_HOLD, "p = 0.0071"),  # below chance, Friedman or not
  ],
)
def test_a_rank_is_compared_with_chance(top, archs, friedman_p, word, p):
  verdict = verdicts.rank(top, archs, 7, friedman_p)
  assert verdict.word == word and f"binomial {p}" in verdict.reason and "chance 3/7" in verdict.reason
  assert ("cannot be told apart" in verdict.reason) == (word == NOT_RESOLVED and friedman_p >= 0.05)


@pytest.mark.parametrize(
  "values, word",
  [
    ([0.9805, 0.9810, 0.9800], HOLDS),  # the mean reaches 98.03%
    ([0.9813, 0.9790, 0.9791], NOT_RESOLVED),  # mean 97.98%: below, but the CI reaches it
    ([0.9790, 0.9791, 0.9792], DOES_NOT_HOLD),  # the whole CI below
    ([0.9790], NOT_RESOLVED),  # one seed has no CI
  ],
)
def test_reaching_a_figure_means_the_mean_reaches_it(values, word):
  assert verdicts.reaches(stats.Stat(values), 0.9803).word == word


def test_all_of_budget_and_undecided_selection():
  holds, fails, open_ = (verdicts.Verdict(w, "why") for w in (HOLDS, DOES_NOT_HOLD, NOT_RESOLVED))
  assert verdicts.all_of({"x": holds, "y": holds}).word == HOLDS
  assert verdicts.all_of({"x": holds, "y": open_}).word == NOT_RESOLVED
  assert verdicts.all_of({"x": open_, "y": fails}).word == DOES_NOT_HOLD
  both = verdicts.all_of({"x": holds, "y": fails})
  assert str(both) == "does not hold: x holds (why); y does not hold (why)"
  for v in (holds, fails, open_):
    assert verdicts.at_budget(v, converged=True) == v
    assert verdicts.at_budget(v, converged=False).word == "not resolved at this budget"
  assert verdicts.undecided(holds, decided=False).word == "holds in the argmax only"
  assert verdicts.undecided(fails, decided=False).word == DOES_NOT_HOLD
  assert verdicts.undecided(holds, decided=True) == holds


def test_consistency_across_architectures_needs_several():
  one, many = stats.across({"a": UP["a"]}), stats.across(UP)
  holds, fails = (verdicts.Verdict(w, "why") for w in (HOLDS, DOES_NOT_HOLD))
  alone = verdicts.across_architectures(holds, one)
  assert alone.word == NOT_RESOLVED and "one architecture (a)" in alone.reason
  assert "(holds: why)" in alone.reason  # what held there
  assert verdicts.across_architectures(fails, one) == fails  # a counterexample is enough
  assert verdicts.across_architectures(holds, many) == holds


def test_a_study_still_training_resolves_nothing_but_a_failed_run():
  holds, fails, open_ = (verdicts.Verdict(w, "why") for w in (HOLDS, DOES_NOT_HOLD, NOT_RESOLVED))
  for v in (holds, fails, open_):
    assert verdicts.so_far(v, done=12, expected=12) == v
    assert verdicts.so_far(v, done=11, expected=12) == verdicts.Verdict(
      NOT_RESOLVED, f"11 of 12 runs trained so far ({v.word} on them)"
    )
  assert verdicts.so_far(fails, done=3, expected=12, every_run=True) == fails  # one failing run is enough
  assert verdicts.so_far(holds, done=3, expected=12, every_run=True).word == NOT_RESOLVED


def test_a_pattern_that_survives_random_labels_is_an_artefact():
  holds, fails, open_ = (verdicts.Verdict(w, "why") for w in (HOLDS, DOES_NOT_HOLD, NOT_RESOLVED))
  assert verdicts.survives(holds, holds, fails).word == HOLDS  # on random labels too: optimisation makes it
  assert verdicts.survives(holds, open_, holds).word == DOES_NOT_HOLD  # gone, and weaker: the labels make it
  assert verdicts.survives(holds, open_, open_).word == NOT_RESOLVED  # gone, but not shown weaker
  verdict = verdicts.survives(fails, fails, holds)  # no pattern on the true labels: nothing to explain
  assert verdict.word == NOT_RESOLVED and "nothing to explain" in verdict.reason


@pytest.mark.parametrize(
  "per_arch, word, reason",
  [
    (UP, HOLDS, "no architecture of 5 is below"),
    # Slightly lower on one architecture, noisy: no significant drop anywhere.
    ({**UP, "f": [-0.01, 0.02, -0.005]}, HOLDS, "no architecture of 6 is below"),
    # Clearly lower on one, consistently: significant even after Holm over three.
    ({"a": UP["a"], "b": UP["b"], "c": [-0.050, -0.051, -0.049]}, DOES_NOT_HOLD, "c is significantly below"),
    # Each below at its own 95% CI (p = 0.044), neither after Holm over two.
    ({"b": [-0.01, -0.02, -0.012], "c": [-0.01, -0.02, -0.012]}, NOT_RESOLVED,
     "of b, c lie below 0, though not after Holm's correction over 2"),
    ({"a": [0.01]}, NOT_RESOLVED, "no architecture has two seeds"),
  ],
)  # fmt: skip
def test_not_below_a_reference_on_any_architecture(per_arch, word, reason):
  verdict = verdicts.not_below(stats.across(per_arch))
  assert verdict.word == word and reason in verdict.reason, verdict


def test_every_run_must_reach_a_threshold():
  assert verdicts.every_run({"a/0": 0.95, "a/1": 0.92}, 0.9, "decided").word == HOLDS
  short = verdicts.every_run({"a/0": 0.95, "b/0": 0.42, "b/1": 0.89}, 0.9, "decided")
  assert short.word == DOES_NOT_HOLD
  assert short.reason == "2 of 3 runs stay below 90% decided: b/0 (42.0%), b/1 (89.0%)"
  assert verdicts.every_run({}, 0.9, "decided").word == NOT_RESOLVED


def test_a_direction_on_each_unit_is_corrected_over_the_units():
  # "a" is clearly up and "c" clearly down; "b" and "e" alone would each be significant (p = 0.0445),
  # but not after Holm over four units (0.0445 > 0.05 / 2); "d" has one seed.
  noisy = [0.01, 0.02, 0.012]
  diff = stats.across({"a": UP["a"], "b": noisy, "c": [-0.030, -0.031, -0.029], "d": [0.5], "e": noisy})
  words = {unit: v.word for unit, v in verdicts.in_each(diff, 1).items()}
  assert words == {"a": HOLDS, "b": NOT_RESOLVED, "c": DOES_NOT_HOLD, "d": NOT_RESOLVED, "e": NOT_RESOLVED}
  below = verdicts.in_each(diff, -1)
  assert below["c"].word == HOLDS and below["a"].word == DOES_NOT_HOLD and "Holm over 4" in below["c"].reason
  alone = verdicts.in_each(stats.across({"b": [0.01, 0.02, 0.012]}), 1)
  assert alone["b"].word == HOLDS  # the same seeds, tested alone
