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


def paper_order(arch: str) -> tuple[int, str]:
  """Sort key: the paper's architectures in its order, then any other by name."""
  names = list(ARCHITECTURES)
  return (names.index(arch) if arch in names else len(names), arch)


def by_arch_model(runs: Sequence[RunRecord]) -> dict[str, dict[str, dict[int, RunRecord]]]:
  """``table[arch][model][seed] = run``, architectures in the paper's order."""
  table: dict[str, dict[str, dict[int, RunRecord]]] = defaultdict(lambda: defaultdict(dict))
  for run in runs:
    table[run.arch][run.model][run.seed] = run
  return {arch: dict(table[arch]) for arch in sorted(table, key=paper_order)}


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


@dataclasses.dataclass(frozen=True)
class Across:
  """A paired difference per architecture (over its seeds) and across architectures.

  The unit of a claim about architectures is the architecture: ``overall`` is
  over the architectures' seed means (its CI has one degree of freedom fewer
  than there are architectures), or over the seeds when there is only one.
  ``higher`` and ``lower`` name the architectures whose difference is
  significant by a paired t-test over seeds, Holm-corrected over the
  ``tested`` architectures.
  """

  per_arch: dict[str, Stat]
  overall: Stat
  higher: tuple[str, ...]
  lower: tuple[str, ...]
  tested: int

  @property
  def measured(self) -> tuple[str, ...]:
    """The architectures with at least one paired difference."""
    return tuple(arch for arch, stat in self.per_arch.items() if stat.n)

  @property
  def unit(self) -> str:
    """What ``overall``'s confidence interval is over."""
    return "architectures" if len(self.measured) > 1 else "seeds"


def across(per_arch: dict[str, Sequence[float]], alpha: float = 0.05) -> Across:
  """:class:`Across` from each architecture's per-seed differences."""
  stats = {arch: Stat(values) for arch, values in per_arch.items()}
  measured = [arch for arch, stat in stats.items() if stat.n]
  if len(measured) > 1:
    overall = Stat(stats[arch].mean for arch in measured)
  else:
    overall = Stat(per_arch[measured[0]] if measured else [])
  pvalues = {arch: paired_p(values) for arch, values in per_arch.items() if len(values) >= 2}
  significant = holm(pvalues, alpha)
  pick = lambda side: tuple(a for a in stats if a in significant and side * stats[a].mean > 0)  # noqa: E731
  return Across(stats, overall, pick(1), pick(-1), len(pvalues))


def paired(runs: Sequence[RunRecord], a, b) -> Across:
  """``a(run) - b(run)`` over SmartMixed runs, as :class:`Across` (``a``, ``b``: a run -> number or None)."""
  per_arch = {}
  for arch, models in by_arch_model(runs).items():
    pairs = [(a(run), b(run)) for run in models.get("smartmixed", {}).values()]
    per_arch[arch] = [x - y for x, y in pairs if x is not None and y is not None]
  return across(per_arch)


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


def across_words(diff: Across, scale: float = 100.0, digits: int = 2) -> str:
  """The paired difference across architectures, and on how many it is significant."""
  n = diff.overall.n
  if diff.unit == "seeds":
    return f"{diff.overall.fmt_ci(scale, digits)} points (95% CI over {n} seeds)"
  return (
    f"{diff.overall.fmt_ci(scale, digits)} points (mean of {n} architectures, 95% CI over architectures);"
    f" significantly higher on {len(diff.higher)} of {diff.tested} architectures, lower on"
    f" {len(diff.lower)} (paired t-tests over seeds, Holm-corrected)"
  )


def kept_start(run: RunRecord) -> RunRecord:
  """``run`` as if its Phase 2 could keep its starting model (``phase2_keeps_start``), from its record.

  Phase 2's epoch 0 is the frozen Phase 1 network when the weights carry over:
  the same function as Phase 1's selected epoch, so its test accuracy is
  Phase 1's. Where no trained Phase 2 epoch has a lower validation loss, that
  becomes Phase 2's selected model. Other runs are returned unchanged.
  """
  if run.model != "smartmixed" or run.phase2 is None or not run.main.endswith("/carry"):
    return run
  start, best = run.phase2.history[0], run.phase2.best
  if best.epoch == 0 or start.val_loss is None or best.val_loss is None or start.val_loss > best.val_loss:
    return run
  phase1 = run.phase1.best
  kept = type(best)(0, start.val_loss, start.val_accuracy, phase1.test_loss, phase1.test_accuracy)
  return dataclasses.replace(run, phases={**run.phases, "phase2": dataclasses.replace(run.phase2, best=kept)})


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


def _deep_enough(run: RunRecord, min_layers: int, learned_only: bool = True) -> bool:
  """A SmartMixed run with at least ``min_layers`` hidden layers that learned (or, without ``learned_only``,
  any: on random labels no run learns)."""
  deep = run.model == "smartmixed" and len(run.rule_counts["argmax"]) >= min_layers
  return deep and not (learned_only and failed(run))


def first_last_shares(
  runs: Sequence[RunRecord], group: Sequence[str], min_layers: int = 3
) -> dict[str, Stat]:
  """Share of the activations in ``group`` in the ``first`` and the ``last`` hidden layer of networks with
  at least ``min_layers`` hidden layers; one value per seed (averaged over architectures, failed runs left
  out), so the spread is over seeds."""
  per_seed: dict[str, dict[int, list[float]]] = {k: defaultdict(list) for k in ("first", "last")}
  for run in runs:
    if _deep_enough(run, min_layers):
      layers = run.rule_counts["argmax"]
      per_seed["first"][run.seed].append(_group_share(layers[0], group))
      per_seed["last"][run.seed].append(_group_share(layers[-1], group))
  return {where: Stat(statistics.fmean(v) for v in seeds.values()) for where, seeds in per_seed.items()}


def layer_shift(
  runs: Sequence[RunRecord],
  group: Sequence[str],
  *,
  rise: bool,
  min_layers: int = 3,
  learned_only: bool = True,
) -> Across:
  """How much more of ``group`` the last hidden layer holds than the first (``rise``), or the first than
  the last, paired within each run, as :class:`Across` (networks with >= ``min_layers`` hidden layers;
  with ``learned_only``, runs that failed are left out)."""
  per_arch = defaultdict(list)
  for run in runs:
    if _deep_enough(run, min_layers, learned_only):
      layers = run.rule_counts["argmax"]
      shift = _group_share(layers[-1], group) - _group_share(layers[0], group)
      per_arch[run.arch].append(shift if rise else -shift)
  return across({arch: per_arch[arch] for arch in sorted(per_arch, key=paper_order)})


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
