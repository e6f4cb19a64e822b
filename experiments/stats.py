"""The statistics of a sweep's report: accuracy tables, rankings, paired differences and tests."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np
import scipy.stats
from records import ACTIVATIONS, DEPTH_BINS, DIAGNOSTICS, MODELS, NEMENYI_Q05, failed

from smartmixed_jax.app import ARCHITECTURES, RunRecord


class Stat(tuple):
  """``(mean, std, n)`` of some values; std is the sample std (0 for n = 1)."""

  def __new__(cls, values: Iterable[float]):
    values = [v for v in values if v is not None]
    if not values:
      return super().__new__(cls, (math.nan, math.nan, 0))
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return super().__new__(cls, (statistics.fmean(values), std, len(values)))

  mean = property(lambda self: self[0])
  std = property(lambda self: self[1])
  n = property(lambda self: self[2])

  def ci95(self) -> float:
    """Half-width of the 95% confidence interval of the mean (Student's t, n - 1 dof); nan for n < 2."""
    if self.n < 2:
      return math.nan
    return float(scipy.stats.t.ppf(0.975, self.n - 1)) * self.std / math.sqrt(self.n)

  def excludes_zero(self) -> bool:
    """For a paired difference: does its 95% confidence interval exclude 0?"""
    return self.n >= 2 and abs(self.mean) > self.ci95()

  def fmt_ci(self, scale: float = 100.0, digits: int = 2) -> str:
    """``mean [low, high]``: the 95% confidence interval, or the mean with n = 1."""
    if self.n < 2:
      return self.fmt(scale, digits)
    lo, hi = (self.mean - self.ci95()) * scale, (self.mean + self.ci95()) * scale
    return f"{self.mean * scale:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

  def fmt(self, scale: float = 100.0, digits: int = 2) -> str:
    if self.n == 0:
      return "–"
    if self.n == 1:
      return f"{self.mean * scale:.{digits}f} (n = 1)"
    return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


def by_arch_model(runs: Sequence[RunRecord]) -> dict[str, dict[str, dict[int, RunRecord]]]:
  """``table[arch][model][seed] = run``, architectures in the paper's order."""
  table: dict[str, dict[str, dict[int, RunRecord]]] = defaultdict(lambda: defaultdict(dict))
  for run in runs:
    table[run.arch][run.model][run.seed] = run
  order = {name: i for i, name in enumerate(ARCHITECTURES)}
  return {arch: dict(table[arch]) for arch in sorted(table, key=lambda a: order.get(a, len(order)))}


def accuracy_table(runs: Sequence[RunRecord], split: str = "test") -> dict[str, dict[str, Stat]]:
  """Per architecture and model: accuracy on ``split`` over seeds."""
  return {
    arch: {
      model: Stat(getattr(r.final, f"{split}_accuracy") for r in seeds.values())
      for model, seeds in models.items()
    }
    for arch, models in by_arch_model(runs).items()
  }


def rank(scores: dict[str, float]) -> dict[str, int]:
  """Competition ranking, highest score first: ties share the better rank (1, 2, 2, 4)."""
  return {m: 1 + sum(other > s for other in scores.values()) for m, s in scores.items()}


def rankings(runs: Sequence[RunRecord], models: Sequence[str] = MODELS) -> dict[str, Any]:
  """Rank counts and mean reciprocal rank of ``models`` by test accuracy.

  Each (architecture, seed) where all models have finished is one ranking.
  Returns, per model: ``counts`` (how often 1st, 2nd, ...), ``mrr`` over all
  rankings, ``mrr_by_seed`` (one value per seed, for a spread), ``top3``
  share; and ``on_means``: the same from ranking each architecture once by
  the seed-mean accuracy (the reference's single-seed procedure).
  """
  per_seed: dict[int, list[dict[str, int]]] = defaultdict(list)
  on_means: list[dict[str, int]] = []
  for models_runs in by_arch_model(runs).values():
    if not all(m in models_runs for m in models):
      continue
    seeds = sorted(set.intersection(*(set(models_runs[m]) for m in models)))
    for seed in seeds:
      per_seed[seed].append(rank({m: models_runs[m][seed].final.test_accuracy for m in models}))
    if seeds:
      on_means.append(
        rank({m: statistics.fmean(models_runs[m][s].final.test_accuracy for s in seeds) for m in models})
      )

  def summarise(ranks: list[dict[str, int]]) -> dict[str, dict[str, Any]]:
    return {
      m: {
        "counts": [sum(r[m] == k for r in ranks) for k in range(1, len(models) + 1)],
        "mrr": statistics.fmean(1 / r[m] for r in ranks) if ranks else math.nan,
        "top3": statistics.fmean(r[m] <= 3 for r in ranks) if ranks else math.nan,
      }
      for m in models
    }

  everything = [r for seed in sorted(per_seed) for r in per_seed[seed]]
  result = summarise(everything)
  for m in models:
    result[m]["mrr_by_seed"] = [summarise(per_seed[s])[m]["mrr"] for s in sorted(per_seed)]
    result[m]["top3_by_seed"] = [summarise(per_seed[s])[m]["top3"] for s in sorted(per_seed)]
  return {
    "models": result,
    "rankings": len(everything),
    "on_means": summarise(on_means),
    "archs": len(on_means),
  }


def holm(pvalues: dict[str, float], alpha: float = 0.05) -> set[str]:
  """The hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``."""
  order = sorted(pvalues, key=pvalues.get)
  rejected = set()
  for i, key in enumerate(order):
    if not pvalues[key] <= alpha / (len(order) - i):
      break
    rejected.add(key)
  return rejected


def paired_p(diffs: Sequence[float]) -> float:
  """Two-sided p-value of a paired t-test that the mean difference is 0."""
  if len(diffs) < 2:
    return math.nan
  if statistics.stdev(diffs) == 0:
    return 0.0 if diffs[0] != 0 else 1.0
  return float(scipy.stats.ttest_1samp(diffs, 0.0).pvalue)


def paired(runs: Sequence[RunRecord], a, b) -> dict[str, Any]:
  """``a(run) - b(run)`` over SmartMixed runs (``a``, ``b`` map a run to a number or None).

  Returns ``per_arch`` (a :class:`Stat` over seeds per architecture), ``all``
  (over seeds, of each seed's mean over architectures: its confidence
  interval is over seeds, not architectures), and ``higher`` / ``lower``: how
  many architectures differ by a paired t-test, Holm-corrected over them.
  """
  per_arch, per_seed, pvalues = {}, defaultdict(list), {}
  for arch, models in by_arch_model(runs).items():
    diffs = []
    for seed, run in models.get("smartmixed", {}).items():
      x, y = a(run), b(run)
      if x is not None and y is not None:
        diffs.append(x - y)
        per_seed[seed].append(x - y)
    per_arch[arch] = Stat(diffs)
    if len(diffs) >= 2:
      pvalues[arch] = paired_p(diffs)
  significant = holm(pvalues)
  return {
    "per_arch": per_arch,
    "all": Stat(statistics.fmean(d) for d in per_seed.values()),
    "higher": sum(per_arch[a].mean > 0 for a in significant),
    "lower": sum(per_arch[a].mean < 0 for a in significant),
    "tested": len(pvalues),
  }


@dataclasses.dataclass(frozen=True)
class PhaseGain:
  """Phase 2 − Phase 1 test accuracy, as :func:`paired` gives it.

  ``learned`` leaves out the ``left_out`` SmartMixed runs whose training failed
  (a phase below 50% validation accuracy): a failed Phase 1 would inflate the
  gain the paper claims. ``every`` counts them.
  """

  learned: dict[str, Any]
  every: dict[str, Any]
  left_out: int


def phase_gain(runs: Sequence[RunRecord]) -> PhaseGain:
  """Phase 2 − Phase 1 over the runs that learned, and over every run."""
  gain = lambda rs: paired(rs, phase_test("phase2"), phase_test("phase1"))  # noqa: E731
  learned = [r for r in runs if r.model != "smartmixed" or not failed(r)]
  return PhaseGain(gain(learned), gain(runs), len(runs) - len(learned))


def _overall(diff: dict[str, Any]) -> str:
  """The overall paired difference and on how many architectures it is significant."""
  return (
    f"{diff['all'].fmt_ci()} points (mean over architectures, 95% CI over seeds); significantly higher on"
    f" {diff['higher']} of {diff['tested']} architectures, lower on {diff['lower']} (paired t-tests,"
    " Holm-corrected)"
  )


def friedman(runs: Sequence[RunRecord], models: Sequence[str]) -> dict[str, Any]:
  """Friedman's test over architectures (seed-mean test accuracy), and Nemenyi's critical difference.

  Returns mean ranks (average ranks for ties; 1 = best), the statistic, its
  p-value, the critical difference of mean ranks at alpha 0.05, and the
  number of architectures with every model.
  """
  rows = []
  for models_runs in by_arch_model(runs).values():
    if all(m in models_runs for m in models):
      rows.append([statistics.fmean(r.final.test_accuracy for r in models_runs[m].values()) for m in models])
  if len(rows) < 2 or len(models) < 3:
    return {}
  ranks = np.array([scipy.stats.rankdata([-v for v in row]) for row in rows])
  stat, p = scipy.stats.friedmanchisquare(*np.array(rows).T)
  k, n = len(models), len(rows)
  return {
    "mean_ranks": dict(zip(models, ranks.mean(0).tolist())),
    "statistic": float(stat), "p": float(p), "archs": n,
    "cd": NEMENYI_Q05.get(k, math.nan) * math.sqrt(k * (k + 1) / (6 * n)),
  }  # fmt: skip


def phase_test(phase: str, variant: Optional[str] = None):
  """A getter of a SmartMixed run's test accuracy in Phase 1 or a Phase 2 variant."""

  def get(run):
    if phase == "phase1":
      return run.phase1.best.test_accuracy
    entry = run.phase2_variants().get(variant or run.main)
    return None if entry is None else entry.best.test_accuracy

  return get


def relative_depth(layer: int, layers: int) -> float:
  """Centre of hidden layer ``layer`` (0-based) of ``layers`` on [0, 1]: 0 = input side."""
  return (layer + 0.5) / layers


def depth_shares(
  runs: Sequence[RunRecord], bins: int = DEPTH_BINS, rule: str = "argmax"
) -> tuple[np.ndarray, np.ndarray]:
  """``([activations, bins], [bins])``: mean share of each activation among the
  frozen choices of the hidden layers whose relative depth falls in each bin
  (every layer of every SmartMixed run that did not fail weighs the same),
  and how many layers each bin holds."""
  sums, counts = np.zeros((len(ACTIVATIONS), bins)), np.zeros(bins)
  for run in runs:
    if run.model != "smartmixed" or failed(run):
      continue
    layers = run.rule_counts[rule]
    for i, layer_counts in enumerate(layers):
      b = min(int(relative_depth(i, len(layers)) * bins), bins - 1)
      sums[:, b] += np.asarray([layer_counts.get(a, 0) for a in ACTIVATIONS]) / sum(layer_counts.values())
      counts[b] += 1
  with np.errstate(invalid="ignore"):
    return sums / counts, counts


def _group_share(counts: dict[str, int], group: Sequence[str]) -> float:
  return sum(counts.get(g, 0) for g in group) / sum(counts.values())


def first_last_shares(
  runs: Sequence[RunRecord], group: Sequence[str], min_layers: int = 3
) -> dict[str, Stat]:
  """Share of the activations in ``group`` in the first and the last hidden
  layer of networks with at least ``min_layers`` hidden layers, ``shift``
  (first minus last, paired within each run) and ``rise`` (last minus
  first); one value per seed (averaged
  over architectures, failed runs left out), so the spread is over seeds."""
  per_seed: dict[str, dict[int, list[float]]] = {
    k: defaultdict(list) for k in ("first", "last", "shift", "rise")
  }
  for run in runs:
    if run.model != "smartmixed" or failed(run) or len(run.rule_counts["argmax"]) < min_layers:
      continue
    layers = run.rule_counts["argmax"]
    first, last = _group_share(layers[0], group), _group_share(layers[-1], group)
    for where, value in (("first", first), ("last", last), ("shift", first - last), ("rise", last - first)):
      per_seed[where][run.seed].append(value)
  return {where: Stat(statistics.fmean(v) for v in seeds.values()) for where, seeds in per_seed.items()}


def decisiveness(runs: Sequence[RunRecord]) -> dict[str, dict[str, Stat]]:
  """Per architecture, Phase 1's last-epoch selection diagnostics (mean over layers; spread over seeds)."""
  keys = DIAGNOSTICS
  out = {}
  for arch, models in by_arch_model(runs).items():
    rows = [r.phase1.history[-1].selection for r in models.get("smartmixed", {}).values()]
    rows = [r for r in rows if r]
    if rows:
      out[arch] = {
        k: Stat(
          statistics.fmean(getattr(layer, k) for layer in row if getattr(layer, k) is not None)
          for row in rows
        )
        for k in keys
      }
  return out


def phase1_eval(config: dict[str, Any]) -> str:
  """How Phase 1 was evaluated: each neuron's argmax, or (the reference code's quirk) sampled activations."""
  return "sampled" if config.get("noisy_eval") else "argmax"


def phase1_eval_words(kind: str) -> str:
  """`phase1_eval`'s answer in words, to follow "evaluated with"."""
  if kind == "sampled":
    return "activations sampled afresh (the reference code's evaluation, `noisy_eval`)"
  return "each neuron's argmax activation"


def phase1_accuracy(runs: Sequence[RunRecord]) -> list[list[str]]:
  """Per architecture: Phase 1's selected epochs (per seed), then its training, validation and test
  accuracy there (mean ± std over seeds)."""
  rows = []
  for arch, models in by_arch_model(runs).items():
    seeds = list(models.get("smartmixed", {}).values())
    if not seeds:
      continue
    best = [r.phase1.best for r in seeds]
    trained = Stat(r.phase1.history[b.epoch].train_accuracy for r, b in zip(seeds, best))
    rows.append([
      arch, ", ".join(str(b.epoch) for b in best), trained.fmt(),
      *(Stat(getattr(b, k) for b in best).fmt() for k in ("val_accuracy", "test_accuracy")),
    ])  # fmt: skip
  return rows


def compute_seconds(runs: Sequence[RunRecord]) -> float:
  """Wall time of the sweep: each cohort's time, shared among the runs it wrote (not borrowed baselines)."""
  return sum(run.cohort.seconds / run.cohort.runs for run in runs if run.cohort and not run.borrowed)


def paper_budget_seconds(runs: Sequence[RunRecord], full_train: int = 54_000) -> dict[str, float]:
  """What the reference budget (50 + 350 epochs, baselines 400) would take on the
  machine that ran this sweep, from its measured epoch times: training time
  scaled by ``full_train / train_examples``, evaluation (full validation set)
  as measured; each cohort's epoch time shared among the runs it wrote."""

  def epoch_time(history, train_examples):
    epochs = history[1:]
    train = statistics.median(e.train_seconds for e in epochs)
    evaluate = statistics.median(e.eval_seconds for e in epochs)
    return train * full_train / train_examples + evaluate

  total = defaultdict(float)
  for run in runs:
    if run.cohort is None:  # a control: its compute is its SmartMixed run's
      continue
    n = run.config["train_limit"] or full_train
    share = 1 / run.cohort.runs
    if run.model == "smartmixed":
      phase2 = run.phase2.history  # the cohort trained every variant at once
      total["smartmixed"] += share * (50 * epoch_time(run.phase1.history, n) + 350 * epoch_time(phase2, n))
    else:
      total["baselines"] += share * 400 * epoch_time(run.last.history, n)
  total["all"] = total["smartmixed"] + total["baselines"]
  return dict(total)
