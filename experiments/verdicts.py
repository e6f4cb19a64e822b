"""The verdicts on the paper's claims: one rule per kind of claim, written once here and tested.

A verdict is *holds*, *does not hold* or *not resolved*, with its reason; the
data decide it, and where they cannot tell it reads *not resolved*. The rules:

- **A direction** (claim 2's "Phase 2 beats Phase 1", claim 4's depth shifts),
  judged on the unit the claim is about, the architecture (:class:`Across`):
  it holds when the 95% CI over architectures lies on the claimed side of 0 and
  no architecture differs significantly the other way (paired t over seeds,
  Holm-corrected); it does not hold when the CI lies on the other side, or an
  architecture goes significantly the other way.
- **A size** (claim 2's 2-3 points): it holds when the difference is positive
  (as above) and its CI meets the claimed range; it does not hold when the CI
  misses the range or an architecture goes significantly the other way.
- **A rank** (claim 3's top three of seven): one ranking per architecture, by
  the seed-mean accuracy. It holds when SmartMixed is in the top three more
  often than chance (3 of 7; two-sided binomial test) and Friedman's test tells
  the models apart; it does not hold when it is there less often than chance.
- **Reaching a figure** (claim 1): it holds when the mean reaches it; it does not
  hold when the CI's upper end stays below it.
- **A direction on each of several units** (the task panel: each task's own answer): a unit's
  verdict holds when its paired t-test over seeds is significant on the claimed side after Holm's
  correction over all the units tested together, does not hold when it is significant on the other
  side, and is not resolved otherwise.
- **Not below a reference, on every architecture** (a new default against the
  old): it does not hold when an architecture is significantly below (paired
  t over seeds, Holm-corrected); it holds when none is below even at the
  uncorrected per-architecture 95% level; in between it is not resolved.
- **Every run at least a threshold** (a measured share, not an estimate): it
  holds when every run reaches it; it does not hold when one does not.
- **All of several parts** (claim 4's two shifts): holds when every part holds,
  does not hold when one does not.
- **Consistently across architectures** (claim 4) needs several: on one
  architecture a CI over its seeds speaks for that architecture alone, so
  what holds there is not resolved as a claim about architectures (what
  does not hold there still breaks it).
- **A budget that has not converged** answers nothing about a converged claim:
  every verdict there is *not resolved at this budget*.
- **A study still training** answers nothing yet: its verdicts are *not
  resolved* until every run is in, except that a claim about every run fails
  for good on the first run that fails it.

Every test is at ``ALPHA = 0.05``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import scipy.stats
from stats import Across, Stat

ALPHA = 0.05
HOLDS, DOES_NOT_HOLD, NOT_RESOLVED = "holds", "does not hold", "not resolved"


@dataclasses.dataclass(frozen=True)
class Verdict:
  """A claim's verdict (:data:`HOLDS`, :data:`DOES_NOT_HOLD` or :data:`NOT_RESOLVED`) and why."""

  word: str
  reason: str

  def __str__(self) -> str:
    return f"{self.word}: {self.reason}"


def _interval(stat: Stat) -> tuple[float, float]:
  half = stat.ci95()
  return stat.mean - half, stat.mean + half


def _points(x: float) -> str:
  return f"{100 * x:+.2f}"


def _ci_words(diff: Across) -> str:
  lo, hi = _interval(diff.overall)
  return f"95% CI over {diff.overall.n} {diff.unit} [{_points(lo)}, {_points(hi)}] points"


def _against(diff: Across, sign: int) -> Verdict | None:
  """Does not hold if an architecture differs significantly against the claimed sign."""
  against = diff.lower if sign > 0 else diff.higher
  if not against:
    return None
  verb = "differs" if len(against) == 1 else "differ"
  return Verdict(DOES_NOT_HOLD, f"{', '.join(against)} {verb} significantly the other way (paired t, Holm)")


def direction(diff: Across, sign: int = 1) -> Verdict:
  """Is the difference on the side of 0 that ``sign`` claims, across architectures?"""
  if diff.overall.n < 2:
    return Verdict(NOT_RESOLVED, f"fewer than two {diff.unit} measured")
  lo, hi = _interval(diff.overall)
  if (hi < 0) if sign > 0 else (lo > 0):
    return Verdict(DOES_NOT_HOLD, f"the {_ci_words(diff)} lies on the other side of 0")
  if against := _against(diff, sign):
    return against
  if (lo > 0) if sign > 0 else (hi < 0):
    return Verdict(HOLDS, f"the {_ci_words(diff)} lies {'above' if sign > 0 else 'below'} 0")
  return Verdict(NOT_RESOLVED, f"the {_ci_words(diff)} includes 0")


def in_each(diff: Across, sign: int = 1) -> dict[str, Verdict]:
  """Per unit of ``diff`` (e.g. a task), is its difference on the side of 0 that ``sign`` claims?

  Each unit is its own claim, so none borrows strength from the others: the
  test is each unit's paired t over its seeds, and Holm's correction over the
  ``diff.tested`` units keeps the family of claims at :data:`ALPHA`.
  """
  verdicts, test = {}, f"(paired t, Holm over {diff.tested})"
  for unit, stat in diff.per_arch.items():
    if stat.n < 2:
      verdicts[unit] = Verdict(NOT_RESOLVED, f"{stat.n} seed measured")
    elif unit in (diff.higher if sign > 0 else diff.lower):
      verdicts[unit] = Verdict(HOLDS, f"significant on the claimed side {test}")
    elif unit in (diff.lower if sign > 0 else diff.higher):
      verdicts[unit] = Verdict(DOES_NOT_HOLD, f"significant the other way {test}")
    else:
      verdicts[unit] = Verdict(NOT_RESOLVED, f"not significant {test}")
  return verdicts


def size(diff: Across, low: float, high: float) -> Verdict:
  """Is the difference positive and within ``[low, high]``, across architectures?"""
  if diff.overall.n < 2:
    return Verdict(NOT_RESOLVED, f"fewer than two {diff.unit} measured")
  lo, hi = _interval(diff.overall)
  claimed = f"{100 * low:g}–{100 * high:g} points"
  if hi < low or lo > high:
    return Verdict(DOES_NOT_HOLD, f"the {_ci_words(diff)} lies {'below' if hi < low else 'above'} {claimed}")
  if against := _against(diff, 1):
    return against
  if lo > 0:
    return Verdict(HOLDS, f"the {_ci_words(diff)} lies above 0 and meets {claimed}")
  return Verdict(NOT_RESOLVED, f"the {_ci_words(diff)} includes 0")


def rank(top: int, archs: int, models: int, friedman_p: float, k: int = 3) -> Verdict:
  """Is a model in the top ``k`` of ``models`` more often than chance, over ``archs`` architectures?"""
  if archs < 1:
    return Verdict(NOT_RESOLVED, "no architecture has every model")
  chance = k / models
  p = scipy.stats.binomtest(top, archs, chance).pvalue
  reason = (
    f"top {k} on {top} of {archs} architectures, chance {k}/{models} ({chance * archs:.1f} expected),"
    f" binomial p = {p:.2g}; Friedman p = {friedman_p:.2g}"
  )
  if top / archs > chance and p < ALPHA and friedman_p < ALPHA:
    return Verdict(HOLDS, reason)
  if top / archs < chance and p < ALPHA:
    return Verdict(DOES_NOT_HOLD, reason)
  apart = "" if friedman_p < ALPHA else ": the models cannot be told apart"
  return Verdict(NOT_RESOLVED, reason + apart)


def not_below(diff: Across) -> Verdict:
  """Is the difference (candidate - reference) not negative on any architecture?"""
  if diff.tested == 0:
    return Verdict(NOT_RESOLVED, "no architecture has two seeds to compare")
  if diff.lower:
    verb = "is" if len(diff.lower) == 1 else "are"
    return Verdict(DOES_NOT_HOLD, f"{', '.join(diff.lower)} {verb} significantly below (paired t, Holm)")
  below = [arch for arch, stat in diff.per_arch.items() if stat.n >= 2 and _interval(stat)[1] < 0]
  if below:
    verb = "lies" if len(below) == 1 else "lie"
    return Verdict(
      NOT_RESOLVED,
      f"the per-seed 95% CI of {', '.join(below)} {verb} below 0, though not after Holm's correction over"
      f" {diff.tested} architectures",
    )
  return Verdict(HOLDS, f"no architecture of {diff.tested} is below, even at its uncorrected 95% CI")


def every_run(values: Mapping[str, float], threshold: float, what: str) -> Verdict:
  """Does every run (``{run name: value}``) reach ``threshold``? ``what`` names the value."""
  if not values:
    return Verdict(NOT_RESOLVED, "no run measured")
  short = sorted((name for name, v in values.items() if v < threshold), key=values.get)
  lowest = min(values.values())
  if short:
    shown = ", ".join(f"{name} ({100 * values[name]:.1f}%)" for name in short[:4])
    more = f" and {len(short) - 4} more" if len(short) > 4 else ""
    return Verdict(
      DOES_NOT_HOLD,
      f"{len(short)} of {len(values)} runs stay below {100 * threshold:g}% {what}: {shown}{more}",
    )
  return Verdict(
    HOLDS, f"every run of {len(values)} reaches {100 * threshold:g}% {what} (lowest {100 * lowest:.1f}%)"
  )


def reaches(values: Stat, target: float) -> Verdict:
  """Does the mean of ``values`` reach ``target``?"""
  if values.n == 0:
    return Verdict(NOT_RESOLVED, "nothing measured")
  mean = f"the mean {100 * values.mean:.2f}%"
  if values.mean >= target:
    return Verdict(HOLDS, f"{mean} reaches {100 * target:.2f}%")
  hi = _interval(values)[1]
  if values.n >= 2 and hi < target:
    return Verdict(
      DOES_NOT_HOLD, f"{mean} and its 95% CI (to {100 * hi:.2f}%) stay below {100 * target:.2f}%"
    )
  return Verdict(NOT_RESOLVED, f"{mean} stays below {100 * target:.2f}%, but its 95% CI reaches it")


def all_of(parts: Mapping[str, Verdict]) -> Verdict:
  """Every part must hold; one that does not hold decides; otherwise not resolved."""
  words = {v.word for v in parts.values()}
  word = HOLDS if words == {HOLDS} else DOES_NOT_HOLD if DOES_NOT_HOLD in words else NOT_RESOLVED
  return Verdict(word, "; ".join(f"{name} {v.word} ({v.reason})" for name, v in parts.items()))


def across_architectures(verdict: Verdict, diff: Across) -> Verdict:
  """A claim of consistency across architectures, judged on ``diff``: on one architecture it is not
  resolved unless it fails there."""
  if len(diff.measured) != 1 or verdict.word == DOES_NOT_HOLD:
    return verdict
  (arch,) = diff.measured
  return Verdict(
    NOT_RESOLVED, f"one architecture ({arch}) cannot show consistency across architectures ({verdict})"
  )


def at_budget(verdict: Verdict, converged: bool) -> Verdict:
  """A verdict at a budget that has not converged is not resolved, whatever the data show there."""
  if converged:
    return verdict
  return Verdict(f"{NOT_RESOLVED} at this budget", f"the budget has not converged ({verdict})")


def so_far(verdict: Verdict, done: int, expected: int, *, every_run: bool = False) -> Verdict:
  """A verdict on ``done`` of ``expected`` runs: not resolved while runs are missing, which can change it;
  a claim about ``every_run`` that already fails stays failed."""
  if done >= expected or (every_run and verdict.word == DOES_NOT_HOLD):
    return verdict
  return Verdict(NOT_RESOLVED, f"{done} of {expected} runs trained so far ({verdict.word} on them)")


def undecided(verdict: Verdict, decided: bool) -> Verdict:
  """A preference read from a selection that has not settled is the argmax of nearly uniform logits."""
  if decided:
    return verdict
  word = f"{HOLDS} in the argmax only" if verdict.word == HOLDS else verdict.word
  return Verdict(
    word, f"{verdict.reason}; the selection has not settled (fewer than half the neurons decided)"
  )


def survives(true: Verdict, shuffled: Verdict, weaker: Verdict) -> Verdict:
  """Is a pattern an artefact of optimisation? It is if it holds on labels that carry no information
  (``shuffled``); it is not if it holds on the ``true`` labels, not on shuffled ones, and is significantly
  ``weaker`` there; with no pattern on the true labels there is nothing to explain."""
  if shuffled.word == HOLDS:
    return Verdict(
      HOLDS, f"the pattern holds on shuffled labels, so optimisation alone makes it ({shuffled})"
    )
  if true.word != HOLDS:
    return Verdict(NOT_RESOLVED, f"the pattern {true.word} on the true labels: nothing to explain")
  if weaker.word == HOLDS:
    reason = (
      f"on shuffled labels the pattern {shuffled.word}, and is weaker than on the true labels ({weaker})"
    )
    return Verdict(DOES_NOT_HOLD, reason + ": the labels make it")
  return Verdict(
    NOT_RESOLVED, f"on shuffled labels the pattern {shuffled.word}; against the true labels: {weaker}"
  )
