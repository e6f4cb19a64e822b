"""REPORT.md and figures from a sweep's results files.

    python experiments/report.py experiments/results/sweep_quick_recommended

Reads ``OUT/runs/*/*/seed*.json`` (written by ``experiments/sweep.py`` and
committed with the report) and writes ``OUT/REPORT.md`` with its PNG figures.
Accuracies are mean +- std over seeds. A paired difference (same seed, same
initial weights) is given with its 95% confidence interval (Student's t,
n - 1 dof); a per-architecture count of differences uses paired t-tests with
Holm's correction over the architectures. Rankings follow the reference (per
architecture, models ranked by test accuracy, ties sharing the better rank;
mean reciprocal rank), tested with Friedman's test and Nemenyi's critical
difference.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.stats

from smartmixed_jax import ARCHITECTURES, DEFAULT_POOL, pool_names
from smartmixed_jax.artifacts import atomic_write_bytes, pyplot, save_figure

ACTIVATIONS = pool_names(DEFAULT_POOL)
CONTROL = "random_mixture"
MODELS = ("smartmixed", *ACTIVATIONS)
FINAL = ("val_loss", "val_accuracy", "test_loss", "test_accuracy")
FAILED_VAL_ACCURACY = 0.5
"""A SmartMixed run whose Phase 1 or Phase 2 ends below this validation accuracy has failed."""
DIAGNOSTICS = ("entropy", "decided", "p_argmax", "argmax_changed", "sample_agreement")
NEMENYI_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
"""Studentised range / sqrt(2) at alpha 0.05, for k models (Demšar 2006, table 5)."""
EARLY, DEEP = ("relu", "leaky_relu"), ("elu", "selu")
DEPTH_BINS = 5
# The paper's figures (PAPER.md).
PAPER = {"val": 98.22, "test": 98.03, "phase_gain": (2.0, 3.0)}
REPO = Path(__file__).absolute().parent.parent


def shown(path: Path) -> str:
  """``path`` as a command in a report shows it: relative to the repository when inside it."""
  path = Path(os.path.normpath(Path(path).absolute()))
  return (path.relative_to(REPO) if path.is_relative_to(REPO) else path).as_posix()


def read_records(out: Path) -> list[dict[str, Any]]:
  """The per-run records under ``out/runs``, migrated to the current shape (see :func:`migrate`)."""
  return [migrate(json.loads(p.read_text())) for p in sorted(Path(out).glob("runs/*/*/seed*.json"))]


def migrate(record: dict[str, Any]) -> dict[str, Any]:
  """A record as the current sweep writes it; older records are migrated on read, never rewritten.

  Before the sweep trained through the library's engine, its Phase 1 epochs
  held ``argmax_counts`` (per layer, a count per pool position) where the
  engine writes ``activation_counts`` (per layer, a count per activation name).
  """
  names = record["config"]["pool"]
  for epoch in record.get("phase1", {}).get("history", []):
    if "argmax_counts" in epoch:
      epoch["activation_counts"] = [dict(zip(names, layer)) for layer in epoch.pop("argmax_counts")]
  return record


def read_settings(out: Path) -> dict[str, Any]:
  path = Path(out) / "sweep.json"
  return json.loads(path.read_text()) if path.exists() else {}


def reference_dir(out: Path, settings: dict[str, Any]) -> Optional[Path]:
  """The sweep a variant study took its baselines from (``sweep.py --baselines-from``), if any."""
  source = settings.get("baselines_from")
  return (Path(out) / source).resolve() if source else None


def load_runs(out: Path) -> list[dict[str, Any]]:
  """Every run record under ``out/runs``, plus the random-mixture control as a model of its own.

  The control is SmartMixed's Phase 2 trained with uniformly random choices
  (the sweep's ``random/<init>`` variant): a mixed network whose choices were
  not learned. A variant study (``sweep.py --baselines-from``) gets the
  baselines of its architectures and seeds from that sweep.
  """
  runs = read_records(out)
  reference = reference_dir(out, read_settings(out))
  if reference:
    have = {(r["arch"], r["seed"]) for r in runs}
    runs += [
      dict(r, borrowed=True)  # trained by the reference sweep: not this sweep's compute
      for r in read_records(reference)
      if r["model"] != "smartmixed" and (r["arch"], r["seed"]) in have
    ]
  for run in [r for r in runs if r["model"] == "smartmixed" and r["main"]]:
    control = run["phase2"].get(f"random/{run['main'].split('/')[1]}")
    if control is not None:
      runs.append({
        "arch": run["arch"], "seed": run["seed"], "model": CONTROL, "config": run["config"], "control": True,
        "phase": control, "final": {k: control["best"][k] for k in FINAL},
      })  # fmt: skip
  return runs


def models_of(runs: Sequence[dict]) -> tuple[str, ...]:
  """The models present: SmartMixed, the baselines, and the control when the sweep ran it."""
  present = {r["model"] for r in runs}
  return tuple(m for m in (*MODELS, CONTROL) if m in present)


def failed(run: dict) -> bool:
  """A SmartMixed run that did not learn (a selected validation accuracy below 50%)."""
  phases = [run["phase1"]["best"]] + ([run["phase2"][run["main"]]["best"]] if run["main"] else [])
  return any(p["val_accuracy"] < FAILED_VAL_ACCURACY for p in phases)


# ----------------------------------------------------------------------------
# Statistics.


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


def by_arch_model(runs: Sequence[dict]) -> dict[str, dict[str, dict[int, dict]]]:
  """``table[arch][model][seed] = run``, architectures in the paper's order."""
  table: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
  for run in runs:
    table[run["arch"]][run["model"]][run["seed"]] = run
  order = {name: i for i, name in enumerate(ARCHITECTURES)}
  return {arch: dict(table[arch]) for arch in sorted(table, key=lambda a: order.get(a, len(order)))}


def accuracy_table(runs: Sequence[dict], split: str = "test") -> dict[str, dict[str, Stat]]:
  """Per architecture and model: accuracy on ``split`` over seeds."""
  return {
    arch: {
      model: Stat(r["final"][f"{split}_accuracy"] for r in seeds.values()) for model, seeds in models.items()
    }
    for arch, models in by_arch_model(runs).items()
  }


def rank(scores: dict[str, float]) -> dict[str, int]:
  """Competition ranking, highest score first: ties share the better rank (1, 2, 2, 4)."""
  return {m: 1 + sum(other > s for other in scores.values()) for m, s in scores.items()}


def rankings(runs: Sequence[dict], models: Sequence[str] = MODELS) -> dict[str, Any]:
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
      per_seed[seed].append(rank({m: models_runs[m][seed]["final"]["test_accuracy"] for m in models}))
    if seeds:
      on_means.append(
        rank(
          {m: statistics.fmean(models_runs[m][s]["final"]["test_accuracy"] for s in seeds) for m in models}
        )
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


def paired(runs: Sequence[dict], a, b) -> dict[str, Any]:
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


def phase_gain(runs: Sequence[dict]) -> PhaseGain:
  """Phase 2 − Phase 1 over the runs that learned, and over every run."""
  gain = lambda rs: paired(rs, phase_test("phase2"), phase_test("phase1"))  # noqa: E731
  learned = [r for r in runs if r["model"] != "smartmixed" or not failed(r)]
  return PhaseGain(gain(learned), gain(runs), len(runs) - len(learned))


def _overall(diff: dict[str, Any]) -> str:
  """The overall paired difference and on how many architectures it is significant."""
  return (
    f"{diff['all'].fmt_ci()} points (mean over architectures, 95% CI over seeds); significantly higher on"
    f" {diff['higher']} of {diff['tested']} architectures, lower on {diff['lower']} (paired t-tests,"
    " Holm-corrected)"
  )


def friedman(runs: Sequence[dict], models: Sequence[str]) -> dict[str, Any]:
  """Friedman's test over architectures (seed-mean test accuracy), and Nemenyi's critical difference.

  Returns mean ranks (average ranks for ties; 1 = best), the statistic, its
  p-value, the critical difference of mean ranks at alpha 0.05, and the
  number of architectures with every model.
  """
  rows = []
  for models_runs in by_arch_model(runs).values():
    if all(m in models_runs for m in models):
      rows.append(
        [statistics.fmean(r["final"]["test_accuracy"] for r in models_runs[m].values()) for m in models]
      )
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
      return run["phase1"]["best"]["test_accuracy"]
    entry = run["phase2"].get(variant or run["main"])
    return None if entry is None else entry["best"]["test_accuracy"]

  return get


def relative_depth(layer: int, layers: int) -> float:
  """Centre of hidden layer ``layer`` (0-based) of ``layers`` on [0, 1]: 0 = input side."""
  return (layer + 0.5) / layers


def depth_shares(
  runs: Sequence[dict], bins: int = DEPTH_BINS, rule: str = "argmax"
) -> tuple[np.ndarray, np.ndarray]:
  """``([activations, bins], [bins])``: mean share of each activation among the
  frozen choices of the hidden layers whose relative depth falls in each bin
  (every layer of every SmartMixed run that did not fail weighs the same),
  and how many layers each bin holds."""
  sums, counts = np.zeros((len(ACTIVATIONS), bins)), np.zeros(bins)
  for run in runs:
    if run["model"] != "smartmixed" or failed(run):
      continue
    layers = run["choices"][rule]
    for i, layer_counts in enumerate(layers):
      b = min(int(relative_depth(i, len(layers)) * bins), bins - 1)
      sums[:, b] += np.asarray(layer_counts) / sum(layer_counts)
      counts[b] += 1
  with np.errstate(invalid="ignore"):
    return sums / counts, counts


def _group_share(counts: Sequence[int], group: Sequence[str]) -> float:
  return sum(counts[ACTIVATIONS.index(g)] for g in group) / sum(counts)


def first_last_shares(runs: Sequence[dict], group: Sequence[str], min_layers: int = 3) -> dict[str, Stat]:
  """Share of the activations in ``group`` in the first and the last hidden
  layer of networks with at least ``min_layers`` hidden layers, ``shift``
  (first minus last, paired within each run) and ``rise`` (last minus
  first); one value per seed (averaged
  over architectures, failed runs left out), so the spread is over seeds."""
  per_seed: dict[str, dict[int, list[float]]] = {
    k: defaultdict(list) for k in ("first", "last", "shift", "rise")
  }
  for run in runs:
    if run["model"] != "smartmixed" or failed(run) or len(run["choices"]["argmax"]) < min_layers:
      continue
    layers = run["choices"]["argmax"]
    first, last = _group_share(layers[0], group), _group_share(layers[-1], group)
    for where, value in (("first", first), ("last", last), ("shift", first - last), ("rise", last - first)):
      per_seed[where][run["seed"]].append(value)
  return {where: Stat(statistics.fmean(v) for v in seeds.values()) for where, seeds in per_seed.items()}


def decisiveness(runs: Sequence[dict]) -> dict[str, dict[str, Stat]]:
  """Per architecture, Phase 1's last-epoch selection diagnostics (mean over layers; spread over seeds)."""
  keys = DIAGNOSTICS
  out = {}
  for arch, models in by_arch_model(runs).items():
    rows = [r["phase1"]["history"][-1].get("selection") for r in models.get("smartmixed", {}).values()]
    rows = [r for r in rows if r]
    if rows:
      out[arch] = {
        k: Stat(statistics.fmean(layer[k] for layer in row if k in layer) for row in rows) for k in keys
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


def phase1_accuracy(runs: Sequence[dict]) -> list[list[str]]:
  """Per architecture: Phase 1's selected epochs (per seed), then its training, validation and test
  accuracy there (mean ± std over seeds)."""
  rows = []
  for arch, models in by_arch_model(runs).items():
    seeds = list(models.get("smartmixed", {}).values())
    if not seeds:
      continue
    best = [r["phase1"]["best"] for r in seeds]
    trained = Stat(r["phase1"]["history"][b["epoch"]].get("train_accuracy") for r, b in zip(seeds, best))
    rows.append([
      arch, ", ".join(str(b["epoch"]) for b in best), trained.fmt(),
      *(Stat(b[k] for b in best).fmt() for k in ("val_accuracy", "test_accuracy")),
    ])  # fmt: skip
  return rows


def compute_seconds(runs: Sequence[dict]) -> float:
  """Wall time of the sweep: each cohort's time, shared among the runs it wrote (not borrowed baselines)."""
  return sum(
    run["cohort"]["seconds"] / run["cohort"]["runs"]
    for run in runs
    if not run.get("control") and not run.get("borrowed")
  )


def paper_budget_seconds(runs: Sequence[dict], full_train: int = 54_000) -> dict[str, float]:
  """What the reference budget (50 + 350 epochs, baselines 400) would take on the
  machine that ran this sweep, from its measured epoch times: training time
  scaled by ``full_train / train_examples``, evaluation (full validation set)
  as measured; each cohort's epoch time shared among the runs it wrote."""

  def epoch_time(history, train_examples):
    epochs = history[1:]
    train = statistics.median(e["train_seconds"] for e in epochs)
    evaluate = statistics.median(e["eval_seconds"] for e in epochs)
    return train * full_train / train_examples + evaluate

  total = defaultdict(float)
  for run in runs:
    if run.get("control"):
      continue
    n = run["config"]["train_limit"] or full_train
    share = 1 / run["cohort"]["runs"]
    if run["model"] == "smartmixed":
      phase2 = run["phase2"][run["main"]]["history"]  # the cohort trained every variant at once
      total["smartmixed"] += share * (
        50 * epoch_time(run["phase1"]["history"], n) + 350 * epoch_time(phase2, n)
      )
    else:
      total["baselines"] += share * 400 * epoch_time(run["phase"]["history"], n)
  total["all"] = total["smartmixed"] + total["baselines"]
  return dict(total)


# ----------------------------------------------------------------------------
# Figures.


def plot_accuracy(path: Path, table: dict[str, dict[str, Stat]]) -> str:
  """Test accuracy per architecture and model; far-off points (e.g. a sigmoid
  network that has not learned yet) are drawn as triangles on the bottom edge."""
  plt = pyplot()
  archs = list(table)
  means = [100 * s.mean for row in table.values() for s in row.values() if s.n]
  floor = max(min(means), float(np.median(means)) - 4) - 0.2
  fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(archs)), 4.5))
  width = 0.8 / len(MODELS)
  for j, model in enumerate(MODELS):
    stats = [table[a].get(model, Stat([])) for a in archs]
    xs = np.arange(len(archs)) + (j - len(MODELS) / 2 + 0.5) * width
    ys = np.array([100 * s.mean for s in stats])
    shown = ys >= floor
    line = ax.errorbar(xs[shown], ys[shown], yerr=[100 * s.std for s, ok in zip(stats, shown) if ok],
                       fmt="D" if model == "smartmixed" else "o", ms=6 if model == "smartmixed" else 4,
                       capsize=2, label=model, color="black" if model == "smartmixed" else None)  # fmt: skip
    ax.plot(xs[~shown], np.full((~shown).sum(), floor), "v", color=line[0].get_color(), ms=5)
  ax.set_xticks(range(len(archs)), [f"{list(ARCHITECTURES).index(a) + 1}" for a in archs])
  ax.set_xlabel("architecture (number in PAPER.md); ▼ = below the axis, see the table")
  ax.set_ylabel("test accuracy (%), mean ± std over seeds")
  ax.set_ylim(bottom=floor - 0.3)
  ax.legend(ncol=7, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
  ax.grid(axis="y", alpha=0.3)
  return save_figure(fig, path, dpi=110)


def plot_rank_counts(path: Path, ranks: dict[str, Any]) -> str:
  plt = pyplot()
  models = list(ranks["models"])
  counts = np.array([ranks["models"][m]["counts"] for m in models])
  fig, ax = plt.subplots(figsize=(6.5, 3.8))
  im = ax.imshow(counts, cmap="Blues")
  for i in range(counts.shape[0]):
    for j in range(counts.shape[1]):
      ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=8,
              color="white" if counts[i, j] > counts.max() / 2 else "black")  # fmt: skip
  ax.set_xticks(range(counts.shape[1]), [f"{k}" for k in range(1, counts.shape[1] + 1)])
  ax.set_yticks(range(len(models)), models)
  ax.set_xlabel("rank by test accuracy (1 = best; ties share the better rank)")
  ax.set_title(f"rank counts over {ranks['rankings']} (architecture, seed) rankings", fontsize=9)
  fig.colorbar(im, ax=ax, shrink=0.8)
  return save_figure(fig, path, dpi=110)


def plot_phases(path: Path, runs: Sequence[dict]) -> str:
  plt = pyplot()
  table = by_arch_model(runs)
  archs = [a for a in table if "smartmixed" in table[a]]
  fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(archs)), 4))
  for label, getter, marker in (
    ("Phase 1", phase_test("phase1"), "o"),
    ("Phase 2", phase_test("phase2"), "s"),
  ):
    stats = [Stat(getter(r) for r in table[a]["smartmixed"].values()) for a in archs]
    ax.errorbar(range(len(archs)), [100 * s.mean for s in stats], yerr=[100 * s.std for s in stats],
                fmt=marker, capsize=2, label=label)  # fmt: skip
  ax.set_xticks(range(len(archs)), [f"{list(ARCHITECTURES).index(a) + 1}" for a in archs])
  ax.set_xlabel("architecture")
  ax.set_ylabel("SmartMixed test accuracy (%)")
  ax.legend()
  ax.grid(axis="y", alpha=0.3)
  return save_figure(fig, path, dpi=110)


def plot_convergence(path: Path, runs: Sequence[dict]) -> str:
  """Per architecture, validation accuracy per epoch of every model (mean over seeds).

  SmartMixed's Phase 2 (the preset's variant) follows its Phase 1; the
  dotted line marks the switch.
  """
  plt = pyplot()
  table = by_arch_model(runs)
  cols = min(3, len(table))
  rows = math.ceil(len(table) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
  tab10 = plt.get_cmap("tab10").colors  # skips brown and pink, too close to red at a line's width
  colors = dict(zip(("smartmixed", *ACTIVATIONS), (tab10[i] for i in (0, 1, 2, 3, 4, 8, 9))))
  for ax, (arch, models) in zip(axes.flat, table.items()):
    lowest, highest = [], []
    for model, seeds in models.items():
      if model not in colors:
        continue
      curves = [_val_curve(run) for run in seeds.values()]
      length = min(len(c) for c in curves)
      mean = 100 * np.mean([c[:length] for c in curves], axis=0)
      style = dict(linewidth=2.0, zorder=3) if model == "smartmixed" else dict(linewidth=1.0)
      ax.plot(range(length), mean, color=colors[model], label=model, **style)
      lowest.append(mean[min(2, length - 1) :].min())
      highest.append(mean.max())
      if model == "smartmixed" and seeds:
        ax.axvline(next(iter(seeds.values()))["config"]["phase1_epochs"], color="grey", linestyle=":")
    if highest:  # zoom on the last few points of accuracy, where the models differ
      top = max(highest)
      ax.set_ylim(max(min(lowest), top - 5) - 0.2, top + 0.3)
    ax.set_title(f"{list(ARCHITECTURES).index(arch) + 1}. {arch}", fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(table) :]:
    ax.set_visible(False)
  axes.flat[0].legend(fontsize=7)
  fig.tight_layout()
  return save_figure(fig, path, dpi=100)


def _val_curve(run: dict) -> list[float]:
  """A run's validation accuracy per epoch (0 = before training); SmartMixed's Phase 2 after Phase 1."""
  if run["model"] != "smartmixed":
    return [e["val_accuracy"] for e in run["phase"]["history"]]
  phase2 = run["phase2"].get(run["main"], {}).get("history", []) if run["main"] else []
  return [e["val_accuracy"] for e in run["phase1"]["history"]] + [e["val_accuracy"] for e in phase2[1:]]


def plot_depth_heatmap(path: Path, shares: np.ndarray, counts: np.ndarray) -> str:
  """Shares by relative depth, coloured around the uniform share 1/6 (white): red above, blue below."""
  from matplotlib.colors import TwoSlopeNorm

  plt = pyplot()
  bins, uniform = shares.shape[1], 1 / len(ACTIVATIONS)
  fig, ax = plt.subplots(figsize=(7, 3.8))
  top = float(np.max(shares[np.isfinite(shares)], initial=0.0))
  norm = TwoSlopeNorm(vmin=0, vcenter=uniform, vmax=max(top, 2 * uniform))
  im = ax.imshow(shares, cmap="RdBu_r", norm=norm, aspect="auto")
  for i in range(shares.shape[0]):
    for j in range(bins):
      if np.isfinite(shares[i, j]):
        ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=8)
  ax.set_xticks(
    range(bins), [f"{j / bins:.1f}–{(j + 1) / bins:.1f}\n{int(counts[j])} layers" for j in range(bins)]
  )
  ax.set_yticks(range(len(ACTIVATIONS)), ACTIVATIONS)
  ax.set_xlabel("relative depth of the hidden layer (0 = input side, 1 = output side)")
  ax.set_title("share of neurons choosing each activation (frozen, argmax); white = 1/6, uniform", fontsize=9)
  bar = fig.colorbar(im, ax=ax, shrink=0.8)
  bar.ax.axhline(uniform, color="black", linewidth=1.5)
  bar.ax.text(1.6, uniform, "1/6", va="center", fontsize=8, transform=bar.ax.get_yaxis_transform())
  return save_figure(fig, path, dpi=110)


def plot_trajectories(path: Path, runs: Sequence[dict], archs: Sequence[str]) -> str:
  """Phase 1: per epoch, the argmax share of each activation in the first and
  last hidden layer, mean over seeds."""
  plt = pyplot()
  table = by_arch_model(runs)
  present = [a for a in table if "smartmixed" in table[a]]
  archs = [a for a in archs if a in present] or present[-3:]
  fig, axes = plt.subplots(
    2, len(archs), figsize=(3.2 * len(archs), 5.5), squeeze=False, sharey=True, layout="constrained"
  )
  for col, arch in enumerate(archs):
    seeds = list(table[arch]["smartmixed"].values())
    layers = len(seeds[0]["choices"]["argmax"])
    for row, layer in enumerate((0, layers - 1)):
      ax = axes[row][col]
      for name in ACTIVATIONS:
        curves = []
        for run in seeds:
          history = [e for e in run["phase1"]["history"] if "activation_counts" in e]
          curves.append(
            [
              e["activation_counts"][layer].get(name, 0) / sum(e["activation_counts"][layer].values())
              for e in history
            ]
          )
        ax.plot(range(1, len(curves[0]) + 1), np.mean(curves, axis=0), marker=".", label=name)
      ax.set_title(f"{arch}: layer {layer + 1}/{layers}", fontsize=8)
      ax.xaxis.get_major_locator().set_params(integer=True)
      ax.set_xlabel("Phase 1 epoch", fontsize=8)
      ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share (argmax)")
    axes[1][0].set_ylabel("share (argmax)")
  axes[0][-1].legend(fontsize=7)
  return save_figure(fig, path, dpi=110)


# ----------------------------------------------------------------------------
# REPORT.md


def _pct(x: float) -> str:
  return f"{100 * x:.1f}%"


def _points(stat: Stat) -> str:
  """A paired difference in accuracy points, with its spread verdict."""
  verdict = "within the seed spread" if stat.within_spread() else "beyond the seed spread"
  return f"{100 * stat.mean:+.2f} ± {100 * stat.std:.2f} points ({verdict}; n = {stat.n} seeds)"


def markdown_row(cells: Iterable[Any]) -> str:
  return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
  return [markdown_row(header), markdown_row(["---"] * len(header)), *(markdown_row(r) for r in rows)]


def write_report(
  out: Path, trajectory_archs: Sequence[str] = ("medium_5layer", "wide_8layer", "wide_14layer")
) -> Path:
  """Writes ``out/REPORT.md`` and its figures; returns the report's path."""
  out = Path(out)
  runs = load_runs(out)
  if not runs:
    raise SystemExit(f"No results under {out / 'runs'}: run experiments/sweep.py first.")
  settings = read_settings(out)
  if all(r["main"] is None for r in runs if r["model"] == "smartmixed"):
    return write_selection_report(out, runs, settings)
  table = by_arch_model(runs)
  models = models_of(runs)
  ranked = tuple(m for m in MODELS if m in models)  # the paper's seven; the control has its own section
  test, val = accuracy_table(runs, "test"), accuracy_table(runs, "val")
  ranks = rankings(runs, ranked)
  ranks["friedman"] = friedman(runs, ranked)
  smart = [r for r in runs if r["model"] == "smartmixed"]
  p1_eval = phase1_eval(smart[0]["config"]) if smart else "argmax"
  seeds = sorted({r["seed"] for r in runs})
  gain = phase_gain(runs)
  early = first_last_shares(runs, EARLY)
  deep = first_last_shares(runs, DEEP)
  shares, bin_counts = depth_shares(runs)
  settled, decided = converged(test), selection_decided(runs)
  figures = {
    "accuracy": plot_accuracy(out / "accuracy.png", test),
    "ranks": plot_rank_counts(out / "rank_counts.png", ranks),
    "phases": plot_phases(out / "phase1_vs_phase2.png", runs),
    "depth": plot_depth_heatmap(out / "depth_heatmap.png", shares, bin_counts),
    "trajectories": plot_trajectories(
      out / "phase1_trajectories.png", runs, [a for a in trajectory_archs if a in table]
    ),
    "convergence": plot_convergence(out / "convergence.png", runs),
  }
  config = runs[0]["config"]
  lines = [
    f"# SmartMixed on MNIST: the {len(table)}-architecture study",
    "",
    f"Command: `{_command(out, settings, runs)}` (then `python experiments/report.py {shown(out)}`"
    " rewrites this report from the committed per-run records).",
    "",
    f"Budget `{settings.get('budget', '?')}`: Phase 1 {config['phase1_epochs']} + Phase 2"
    f" {config['phase2_epochs']} epochs, baselines {config['phase1_epochs'] + config['phase2_epochs']};"
    f" {settings.get('train_examples', config['train_limit'] or 54000)} training examples, the full 6k"
    f" validation and 10k test sets; preset `{settings.get('preset', '?')}`"
    f" (Adam lr {config['learning_rate']},"
    f" {config['schedule']} schedule, batch {config['batch_size']}, reference quirks"
    f" {'on' if config.get('softmax_output', config.get('reference_quirks')) else 'off'}, Phase 2 weights"
    f" {'re-initialised' if config['reinit_phase2'] else 'carried over'}). Seeds {seeds};"
    f" {len(table)} architectures; {sum(not r.get('control') for r in runs)} runs. Accuracy is that of the"
    " epoch with the lowest validation loss (never the untrained epoch 0), in %, mean ± std over seeds."
    " SmartMixed and the baselines of a seed share their initial weights, not their data order (Phase 1"
    " and the baselines shuffle with different keys); Phase 2 variants and controls of a seed share both."
    " A paired difference is given with its 95% confidence interval (t, n − 1 dof); with 3 seeds only"
    " large differences are significant.",
    "",
    f"Compute: {compute_seconds(runs) / 60:.1f} min of wall time on {settings.get('backend', '?')}"
    f" ({settings.get('device', '?')}), compilation included.",
    "",
  ]
  if not settled:
    lines += [
      "**This study measures an unconverged selection at an unconverged budget** (no fixed-activation"
      " baseline reaches 98% test accuracy on the shallowest network, and few neurons have decided: see"
      " *Has the selection happened?*). Its claim verdicts are not evidence for or against the paper; a"
      " claim not borne out here reads *not resolved at this budget*.",
      "",
    ]
  lines += _claims(table, ranks, gain, early, deep, settings, settled, decided)
  lines += [
    "",
    "## Accuracy per architecture",
    "",
    f"![test accuracy per architecture]({figures['accuracy']})",
    "",
    "*Figure: test accuracy per architecture and model, mean over seeds (error bars: std).*",
    "",
  ]
  lines += ["Test accuracy (%):", ""]
  lines += markdown_table(
    ["#", "architecture", *models, "SmartMixed − best baseline (95% CI)"],
    (
      [list(ARCHITECTURES).index(a) + 1, a, *(_bold_best(test[a], m) for m in models), _vs_best(table[a])]
      for a in table
    ),
  )
  lines += ["", "Validation accuracy (%):", ""]
  lines += markdown_table(
    ["#", "architecture", *models],
    ([list(ARCHITECTURES).index(a) + 1, a, *(val[a].get(m, Stat([])).fmt() for m in models)] for a in table),
  )
  lines += _convergence_section(runs, test, figures["convergence"])
  lines += _rank_section(ranks, figures["ranks"])
  lines += ["", "## Phase 1 vs Phase 2", "", f"![Phase 1 vs Phase 2]({figures['phases']})", ""]
  lines += ["*Figure: per architecture, Phase 1 and Phase 2 test accuracy (mean over seeds).*", ""]
  lines += [
    f"Phase 2 minus Phase 1, test accuracy: {_overall(gain.every)}"
    + (
      f"; without the {gain.left_out} runs whose training failed, {gain.learned['all'].fmt_ci()}"
      if gain.left_out
      else ""
    )
    + ". Phase 2 continues where Phase 1 stopped, so it has also trained longer; the baselines train for"
    " both phases' epochs. Phase 1 trains a network that samples each neuron's activation at every step"
    + (
      f" and is evaluated with {phase1_eval_words(p1_eval)}: the last two columns (Phase 1's last epoch)"
      " compare the two samples."
      if p1_eval == "sampled"
      else f" but is evaluated with {phase1_eval_words(p1_eval)}: while the logits are undecided these are"
      " different networks, and the last two columns (Phase 1's last epoch) show how far apart."
    ),
    "",
  ]
  rows = []
  for a, arch_models in table.items():
    if "smartmixed" in arch_models:
      seed_runs = list(arch_models["smartmixed"].values())
      phases = [Stat(phase_test(p)(r) for r in seed_runs).fmt() for p in ("phase1", "phase2")]
      epochs = [
        ", ".join(str(r["phase1"]["best"]["epoch"]) for r in seed_runs),
        ", ".join(str(r["phase2"][r["main"]]["best"]["epoch"]) for r in seed_runs),
      ]
      last = [r["phase1"]["history"][-1] for r in seed_runs]
      sampled_vs_argmax = [Stat(h[k] for h in last).fmt() for k in ("train_accuracy", "val_accuracy")]
      rows.append([a, *phases, gain.every["per_arch"][a].fmt_ci(), *epochs, *sampled_vs_argmax])
  lines += markdown_table(
    ["architecture", "Phase 1", "Phase 2", "Phase 2 − Phase 1 (95% CI)", "best epoch P1 (per seed)",
     "best epoch P2", "P1 train, sampled", f"P1 val, {p1_eval}"], rows,
  )  # fmt: skip
  lines += _depth_section(runs, shares, bin_counts, early, deep, figures, decided)
  lines += _ablation_section(runs, smart)
  lines += _controls_section(runs, smart)
  lines += _variant_section(out, runs, settings)
  lines += _compute_section(runs, out)
  path = out / "REPORT.md"
  atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
  return path


def plot_selection_curves(path: Path, runs: Sequence[dict]) -> str:
  """Per architecture, Phase 1's diagnostics per epoch, averaged over layers and seeds."""
  plt = pyplot()
  panels = (("entropy", "entropy / log 6 (1 = undecided)"), ("p_argmax", "P(argmax) (1/6 = undecided)"),
            ("argmax_changed", "share of argmaxes changed"))  # fmt: skip
  fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.6))
  cmap = plt.get_cmap("viridis")
  archs = by_arch_model(runs)
  for n, (arch, models) in enumerate(archs.items()):
    seeds = list(models.get("smartmixed", {}).values())
    if not seeds:
      continue
    for ax, (key, label) in zip(axes, panels):
      epochs = [e["epoch"] for e in seeds[0]["phase1"]["history"] if "selection" in e]
      values = [
        statistics.fmean(
          statistics.fmean(layer[key] for layer in run["phase1"]["history"][e]["selection"]) for run in seeds
        )
        for e in epochs
      ]
      ax.plot(epochs, values, color=cmap(n / max(len(archs) - 1, 1)), linewidth=1, label=arch)
      ax.set_title(label, fontsize=9)
      ax.set_xlabel("Phase 1 epoch")
      ax.grid(alpha=0.3)
  axes[1].axhline(1 / len(ACTIVATIONS), color="grey", linestyle=":")
  axes[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
  fig.tight_layout()
  return save_figure(fig, path, dpi=110)


def write_selection_report(out: Path, runs: Sequence[dict], settings: dict[str, Any]) -> Path:
  """REPORT.md of a Phase-1-only study: which activations each depth selects, and whether it has settled."""
  smart = [r for r in runs if r["model"] == "smartmixed"]
  seeds = sorted({r["seed"] for r in smart})
  config = smart[0]["config"]
  early, deep = first_last_shares(runs, EARLY), first_last_shares(runs, DEEP)
  shares, bin_counts = depth_shares(runs)
  per_seed = [depth_shares([r for r in smart if r["seed"] == s])[0] for s in seeds]
  decided = decisiveness(runs)
  settled = selection_decided(runs)
  figures = {
    "depth": plot_depth_heatmap(out / "depth_heatmap.png", shares, bin_counts),
    "selection": plot_selection_curves(out / "selection_curves.png", runs),
    "trajectories": plot_trajectories(
      out / "phase1_trajectories.png",
      runs,
      [a for a in ("medium_5layer", "wide_8layer", "wide_14layer") if any(r["arch"] == a for r in smart)],
    ),
  }
  steps = math.ceil(settings.get("train_examples", 54000) / config["batch_size"]) * config["phase1_epochs"]
  kind = phase1_eval(config)
  lines = [
    f"# Which activations does Phase 1 select? (`{settings.get('budget', '?')}` study, preset"
    f" `{settings.get('preset', '?')}`)",
    "",
    f"Command: `{_command(out, settings, runs)}` (then `python experiments/report.py {shown(out)}`"
    " rewrites this report from the committed per-run records).",
    "",
    f"Phase 1 only: {config['phase1_epochs']} epochs of {settings.get('train_examples', '?')} examples,"
    f" {steps:,} steps of batch {config['batch_size']} (the paper's Phase 1 is 21,100), Adam lr"
    f" {config['learning_rate']} ({config['schedule']}), temperature {config['temperature']}; seeds {seeds};"
    f" {len({r['arch'] for r in smart})} architectures; {len(smart)} runs;"
    f" {compute_seconds(runs) / 3600:.1f} h of wall time on {settings.get('backend', '?')}. Choices are the"
    " argmax of each neuron's logits at the lowest-validation-loss epoch.",
    "",
    TEMPERATURE_NOTE,
    "",
    "## Has the selection settled?",
    "",
    f"![selection diagnostics per epoch]({figures['selection']})",
    "",
    "*Figure: per architecture (colour: position in the paper's list), Phase 1's diagnostics per epoch,"
    " mean over hidden layers and seeds; dotted: 1/6.*",
    "",
    "Last epoch, mean over hidden layers (mean ± std over seeds):",
    "",
    *markdown_table(
      ["architecture", "entropy", "decided", "P(argmax)", "argmax changed", "argmax = most sampled"],
      ([a, *(d[k].fmt(1, 3) for k in DIAGNOSTICS)] for a, d in decided.items()),
    ),
    "",
    (
      "On average at least half of the neurons are decided (entropy below half of log 6): the selection has"
      " settled enough to read preferences."
      if settled
      else "On average fewer than half of the neurons are decided (entropy below half of log 6): the"
      " preferences below are those of a selection that has not settled."
    ),
    *(
      [
        "",
        "The learning rate decays to zero over Phase 1 (cosine), so the share of argmaxes that change per"
        " epoch falls towards 0 near the end whether or not the logits have separated: read the entropy and"
        " P(argmax) for how decided the selection is.",
      ]
      if config["schedule"] == "cosine"
      else []
    ),
    "",
    "## Phase 1's accuracy",
    "",
    f"At each run's selected (lowest-validation-loss) epoch, mean ± std over seeds. Training accuracy is"
    f" the epoch's running accuracy of the network with activations sampled at every step; validation and"
    f" test accuracy are those of the network evaluated with {phase1_eval_words(kind)}. For scale, the"
    f" paper's best SmartMixed (after Phase 2): {PAPER['val']}% validation, {PAPER['test']}% test.",
    "",
    *markdown_table(
      ["architecture", "selected epoch (per seed)", "train, sampled", f"val, {kind}", f"test, {kind}"],
      phase1_accuracy(runs),
    ),
    "",
    "## Preferences by depth",
    "",
    f"![activation share by relative depth]({figures['depth']})",
    "",
    "*Figure: mean share of each activation among the hidden layers at each relative depth (layer count per"
    " bin below the axis); white = 1/6. Failed runs (validation accuracy below 50%) are left out.*",
    "",
    "Share per depth bin, mean ± std over seeds:",
    "",
    *markdown_table(
      ["activation", *(f"{j / DEPTH_BINS:.1f}–{(j + 1) / DEPTH_BINS:.1f}" for j in range(DEPTH_BINS))],
      (
        [
          name,
          *(
            Stat(float(sh[i, j]) for sh in per_seed if np.isfinite(sh[i, j])).fmt(100, 1)
            for j in range(DEPTH_BINS)
          ),
        ]
        for i, name in enumerate(ACTIVATIONS)
      ),
    ),  # fmt: skip
    "",
    f"Claim 4 (early relu / leaky_relu, deep elu / selu), paired within each run (≥ 3 hidden layers): relu +"
    f" leaky_relu first − last {early['shift'].fmt_ci(100, 1)} points; elu + selu last − first"
    f" {deep['rise'].fmt_ci(100, 1)} (95% CI over seeds). Verdict: {_depth_verdict(early, deep, settled)}.",
    "",
    f"![Phase 1 activation shares per epoch]({figures['trajectories']})",
    "",
    "*Figure: per epoch, the argmax share of each activation in the first and last hidden layer.*",
  ]
  path = out / "REPORT.md"
  atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
  return path


def _bold_best(row: dict[str, Stat], model: str) -> str:
  stat = row.get(model, Stat([]))
  best = max((s.mean for s in row.values() if s.n), default=math.nan)
  return f"**{stat.fmt()}**" if stat.n and stat.mean == best else stat.fmt()


def _vs_best(models: dict[str, dict[int, dict]]) -> str:
  """SmartMixed minus the baseline with the best mean test accuracy, paired by seed."""
  baselines = [m for m in ACTIVATIONS if m in models]
  if "smartmixed" not in models or not baselines:
    return "–"
  best = max(
    baselines, key=lambda m: statistics.fmean(r["final"]["test_accuracy"] for r in models[m].values())
  )
  seeds = set(models["smartmixed"]) & set(models[best])
  diff = Stat(
    models["smartmixed"][s]["final"]["test_accuracy"] - models[best][s]["final"]["test_accuracy"]
    for s in seeds
  )
  return f"{diff.fmt_ci()} vs {best}"


def converged(test: dict[str, dict[str, Stat]]) -> bool:
  """Has the budget converged: does a fixed baseline reach 98% test on the shallowest network run?"""
  first = next(iter(test.values()), {})
  return max((first[m].mean for m in ACTIVATIONS if m in first), default=0.0) >= 0.98


def _unsupported(settled: bool) -> str:
  return "does not hold" if settled else "not resolved at this budget"


def _claims(table, ranks, gain: PhaseGain, early, deep, settings, settled, decided) -> list[str]:
  smart = {a: models["smartmixed"] for a, models in table.items() if "smartmixed" in models}
  best_arch = max(
    smart, key=lambda a: statistics.fmean(r["final"]["val_accuracy"] for r in smart[a].values())
  )
  best_val = Stat(r["final"]["val_accuracy"] for r in smart[best_arch].values())
  best_test = Stat(r["final"]["test_accuracy"] for r in smart[best_arch].values())
  sm_rank = ranks["models"]["smartmixed"]
  top3 = Stat(sm_rank["top3_by_seed"])
  lo, hi = PAPER["phase_gain"]
  gains = [100 * s.mean for s in gain.learned["per_arch"].values() if s.n]
  if gains:
    gain_verdict = _gain_verdict(gain.learned["all"], settled) + (
      f"; gain of 2–3 points on {sum(lo <= g <= hi for g in gains)} of {len(gains)} architectures (median"
      f" {statistics.median(gains):.1f})"
    )
  else:
    gain_verdict = f"{_unsupported(settled)}: no SmartMixed run learned (each has a phase below 50% val)"
  reached = best_test.mean + best_test.std >= PAPER["test"] / 100
  val_reached = best_val.mean + best_val.std >= PAPER["val"] / 100
  top3_verdict = (
    "holds" if sm_rank["top3"] >= 0.8 else "holds for most architectures" if sm_rank["top3"] >= 0.5
    else _unsupported(settled)
  )  # fmt: skip
  fr = ranks.get("friedman") or {}
  if fr:
    best_rank = min(fr["mean_ranks"].values())
    top3_verdict += (
      f"; Friedman p = {fr['p']:.2g}, SmartMixed mean rank {fr['mean_ranks']['smartmixed']:.2f} (best"
      f" {best_rank:.2f}, Nemenyi CD {fr['cd']:.2f})"
    )
  n_models = len(ranks["models"])
  config = next(iter(next(iter(smart.values())).values()))["config"]
  steps = math.ceil(settings.get("train_examples", 54000) / config["batch_size"]) * config["phase1_epochs"]
  return [
    "## The paper's four claims",
    "",
    f"Budget of every answer below: `{settings.get('budget', '?')}`, Phase 1 {config['phase1_epochs']} +"
    f" Phase 2 {config['phase2_epochs']} epochs on {settings.get('train_examples', '?')} examples"
    f" ({steps:,} Phase 1 steps at lr {config['learning_rate']}); the paper: 50 + 350 epochs on 54,000"
    " examples (21,100 Phase 1 steps at lr 1e-4, baselines 400 epochs).",
    "",
    *markdown_table(
      ["claim (paper)", "here", "verdict"],
      [
        [
          "Phase 2 beats Phase 1 by 2–3 points",
          f"Phase 2 − Phase 1 (test): {_overall(gain.learned)}{_left_out(gain)}",
          gain_verdict,
        ],
        [
          f"SmartMixed reaches {PAPER['val']}% val / {PAPER['test']}% test",
          f"best architecture by mean val ({best_arch}): {best_val.fmt()} val, {best_test.fmt()} test",
          (
            "holds: test accuracy reaches the paper's (within one std)"
            if reached
            else f"{_unsupported(settled)}: test accuracy stays below the paper's"
          )
          + f"; val {'reaches' if val_reached else 'stays below'} its {PAPER['val']}%",
        ],
        [
          "SmartMixed ranks in the top three of seven models",
          f"top three of {n_models} in {_pct(sm_rank['top3'])} of {ranks['rankings']} (architecture, seed)"
          f" rankings (per seed {top3.fmt(100, 1)}%); mean reciprocal rank {sm_rank['mrr']:.2f}",
          top3_verdict,
        ],
        [
          "early layers prefer relu / leaky_relu, deep layers elu / selu",
          f"relu + leaky_relu, first − last hidden layer: {early['shift'].fmt_ci(100, 1)} points; elu + selu,"
          f" last − first: {deep['rise'].fmt_ci(100, 1)} (paired within"
          " each run; networks with ≥ 3 hidden layers; 95% CI over seeds)",
          _depth_verdict(early, deep, decided),
        ],
      ],
    ),
  ]


def _left_out(gain: PhaseGain) -> str:
  if not gain.left_out:
    return ""
  return (
    f"; {gain.left_out} runs whose training failed (a phase below 50% validation accuracy) are left out:"
    f" with them, {gain.every['all'].fmt_ci()} points"
  )


def _gain_verdict(gain: Stat, settled: bool) -> str:
  """Does Phase 2 beat Phase 1 by the paper's 2–3 points? Direction and size from the 95% CI."""
  lo, hi = (x / 100 for x in PAPER["phase_gain"])
  low, high = gain.mean - gain.ci95(), gain.mean + gain.ci95()
  if not (gain.excludes_zero() and gain.mean > 0):
    return _unsupported(settled) + ": the 95% CI includes 0 or is below it"
  if lo <= high and low <= hi:
    return "holds: Phase 2 is better, and the 95% CI meets 2–3 points"
  size = "less than 2" if high < lo else "more than 3"
  return f"{_unsupported(settled)} for the size: Phase 2 is better (95% CI above 0), by {size} points"


def _depth_verdict(early: dict[str, Stat], deep: dict[str, Stat], decided: bool) -> str:
  """Paired per-seed verdict: relu/leaky_relu fall and elu/selu rise from the first to the last layer.

  ``decided``: has the selection settled (at least half the neurons decided)? If not, a shift is
  a preference of the argmax of nearly uniform logits, and no shift is no evidence.
  """
  falls = early["shift"].excludes_zero() and early["shift"].mean > 0
  rises = deep["rise"].excludes_zero() and deep["rise"].mean > 0
  if falls and rises:
    prefer = early["first"].mean > deep["first"].mean
    verdict = (
      "holds"
      if prefer
      else "partly: the shift is significant, but the first layer already favours elu / selu"
    )
    if not decided:
      verdict += (
        " in the argmax, but the selection has not settled (fewer than half the neurons decided): a weak"
        " preference, consistent across seeds"
      )
    return verdict
  return (
    _unsupported(decided)
    + ": the paired shift's 95% CI includes 0 for "
    + ("both groups" if not (falls or rises) else "relu / leaky_relu" if not falls else "elu / selu")
  )


def selection_decided(runs: Sequence[dict]) -> bool:
  """Has Phase 1's selection settled: are at least half the neurons decided, on average over architectures?"""
  decided = decisiveness(runs)
  return bool(decided) and statistics.fmean(d["decided"].mean for d in decided.values()) >= 0.5


def _rank_section(ranks, figure) -> list[str]:
  models = list(ranks["models"])
  lines = ["", "## Rankings", "", f"![rank counts]({figure})", ""]
  lines += [
    f"*Figure: how often each model ranked 1st, 2nd, ... over the {ranks['rankings']} (architecture, seed)"
    " rankings.*",
    "",
    f"Each of the {ranks['rankings']} (architecture, seed) pairs ranks the {len(models)} models by test"
    " accuracy. Column #k counts the rankings in which a model placed k-th; tied models share the better"
    " rank (1, 2, 2, 4), so a row can skip a rank and columns need not sum to the number of rankings per"
    " rank. Mean reciprocal rank (MRR) over all rankings, and its mean ± std over seeds; then the"
    f" reference's procedure, one ranking per architecture ({ranks['archs']}) by the seed-mean accuracy."
    " The random-mixture control is not ranked: *Controls* compares it with SmartMixed directly.",
    "",
  ]
  header = [
    "model",
    *(f"#{k}" for k in range(1, len(models) + 1)),
    "MRR",
    "MRR per seed",
    "top 3",
    "MRR on means",
  ]
  order = sorted(models, key=lambda m: -ranks["models"][m]["mrr"])
  lines += markdown_table(
    header,
    (
      [m, *ranks["models"][m]["counts"], f"{ranks['models'][m]['mrr']:.3f}",
       Stat(ranks["models"][m]["mrr_by_seed"]).fmt(1, 3), _pct(ranks["models"][m]["top3"]),
       f"{ranks['on_means'][m]['mrr']:.3f}"]
      for m in order
    ),
  )  # fmt: skip
  fr = ranks.get("friedman")
  if fr:
    sm_rank = fr["mean_ranks"]["smartmixed"]
    apart = [m for m, r in fr["mean_ranks"].items() if m != "smartmixed" and abs(r - sm_rank) > fr["cd"]]
    lines += [
      "",
      f"Friedman's test over the {fr['archs']} architectures (seed-mean test accuracy): χ² ="
      f" {fr['statistic']:.1f}, p = {fr['p']:.2g}. Mean ranks (1 = best): "
      + ", ".join(f"{m} {r:.2f}" for m, r in sorted(fr["mean_ranks"].items(), key=lambda x: x[1]))
      + f". Nemenyi's critical difference at α = 0.05 is {fr['cd']:.2f}: SmartMixed's mean rank differs by"
      f" more than that from {', '.join(apart) if apart else 'no other model'}.",
    ]
  return lines


TEMPERATURE_NOTE = (
  "The temperature does not change which activation a training step samples: the hard forward pass"
  " takes argmax(logits + Gumbel noise), which picks activation i with probability softmax(logits)_i at"
  " any temperature (the Gumbel-max trick); τ only scales the straight-through gradient. How decided a"
  " neuron is shows in P(argmax) = max softmax(logits) (1/6 = undecided) and in the entropy of"
  " softmax(logits) over log 6 (1 = undecided)."
)


def _depth_section(runs, shares, bin_counts, early, deep, figures, decided) -> list[str]:
  smart = [r for r in runs if r["model"] == "smartmixed"]
  dropped = [r for r in smart if failed(r)]
  lines = [
    "",
    "## Layer-wise preferences",
    "",
    f"![activation share by relative depth]({figures['depth']})",
    "",
  ]
  lines += [
    "*Figure: mean share of each activation among the frozen (argmax) choices of the hidden layers at each"
    " relative depth (layer centre, 0 = input side), with the number of layers per bin; white is the"
    f" uniform share 1/6, red above it, blue below. {len(dropped)} of {len(smart)} SmartMixed runs failed"
    f" (selected validation accuracy below {FAILED_VAL_ACCURACY:.0%}) and are left out.*",
    "",
  ]
  bins = shares.shape[1]
  lines += markdown_table(
    ["activation", *(f"{j / bins:.1f}–{(j + 1) / bins:.1f} ({int(bin_counts[j])})" for j in range(bins))],
    (
      [name, *(f"{v:.3f}" if np.isfinite(v) else "–" for v in shares[i])]
      for i, name in enumerate(ACTIVATIONS)
    ),
  )
  lines += [
    "",
    f"First vs last hidden layer (≥ 3 hidden layers): relu + leaky_relu {early['first'].fmt(100, 1)}% →"
    f" {early['last'].fmt(100, 1)}% (paired shift {early['shift'].fmt_ci(100, 1)}); elu + selu"
    f" {deep['first'].fmt(100, 1)}% → {deep['last'].fmt(100, 1)}%"
    f" (paired rise {deep['rise'].fmt_ci(100, 1)})."
    f" Verdict: {_depth_verdict(early, deep, decided)}.",
    "",
    "### Has the selection happened?",
    "",
    TEMPERATURE_NOTE,
    "",
  ]
  decided = decisiveness(runs)
  if decided:
    lines += [
      "Phase 1's last epoch, mean over hidden layers (mean ± std over seeds): entropy / log 6, share of"
      " neurons with entropy below half of log 6, P(argmax), share of argmaxes changed in the last epoch,"
      " and agreement of the argmax with the most-sampled activation (1/6 by chance).",
      "",
    ]
    lines += markdown_table(
      ["architecture", "entropy", "decided", "P(argmax)", "argmax changed", "argmax = most sampled"],
      ([a, *(d[k].fmt(1, 3) for k in DIAGNOSTICS)]
       for a, d in decided.items()),
    )  # fmt: skip
    lines += [""]
  lines += [
    f"![Phase 1 activation shares per epoch]({figures['trajectories']})",
    "",
    "*Figure: Phase 1, per epoch, the argmax share of each activation in the first and last hidden layer"
    " (mean over seeds).*",
  ]
  return lines


def _ablation_section(runs, smart) -> list[str]:
  variants = sorted({v for r in smart for v in r["phase2"]})
  if len(variants) < 2:
    return []
  main = smart[0]["main"]
  rule, init = main.split("/")
  other_rule = f"most_frequent/{init}"
  other_init = f"{rule}/{'reinit' if init == 'carry' else 'carry'}"
  agreement = Stat(statistics.fmean(r["rule_agreement"]) for r in smart)
  lines = [
    "",
    "## Freeze rules and Phase 2 initialisation",
    "",
    "Phase 2 variants trained side by side from the same Phase 1 (same seed and data order). Freeze"
    " rules: argmax of the logits of the best Phase 1 epoch (the reference) vs the activation each neuron"
    " sampled most often during the last Phase 1 epoch. Initialisation: Phase 1 weights carried over vs"
    " re-initialised.",
    "",
    f"The two rules pick the same activation for {agreement.fmt(100, 1)}% of neurons (mean over runs;"
    f" {100 / len(ACTIVATIONS):.1f}% if the samples were independent of the argmax).",
    "",
  ]
  compared = [v for v in (other_rule, other_init) if v in variants]
  rows = [
    [f"{v} − {main}", _overall(paired(runs, phase_test("phase2", v), phase_test("phase2", main)))]
    for v in compared
  ]
  lines += markdown_table(["comparison (test accuracy)", "difference"], rows)
  lines += ["", "Test accuracy (%) per architecture:", ""]
  rows = []
  for arch, models in by_arch_model(runs).items():
    seeds = models.get("smartmixed", {}).values()
    rows.append([arch, *(Stat(phase_test("phase2", v)(r) for r in seeds).fmt() for v in (main, *compared))])
  lines += markdown_table(["architecture", main, *compared], rows)
  return lines


def _controls_section(runs, smart) -> list[str]:
  """Do the learned choices help? Phase 2 against shuffled and random choices, and against not freezing."""
  variants = {v for r in smart for v in r["phase2"]}
  main = smart[0]["main"]
  init = main.split("/")[1]
  rows = []
  for name, label in (("shuffled", "choices shuffled within each layer (same proportions)"),
                      ("random", "uniformly random choices (the random-mixture control)")):  # fmt: skip
    if f"{name}/{init}" in variants:
      diff = paired(runs, phase_test("phase2"), phase_test("phase2", f"{name}/{init}"))
      rows.append([f"learned − {label}", _overall(diff)])
  if any("phase1_continued" in r for r in smart):
    continued = paired(
      runs, phase_test("phase2"), lambda r: r.get("phase1_continued", {}).get("best", {}).get("test_accuracy")
    )
    rows.append(
      ["frozen Phase 2 − Phase 1 continued unfrozen (same epochs, schedule, data order)", _overall(continued)]
    )
  if not rows:
    return []
  return [
    "",
    "## Controls: do the learned choices help?",
    "",
    "Phase 2 (the preset's variant) against the same Phase 2 from the same weights with choices that were"
    " not learned, and against continuing Phase 1 without freezing for Phase 2's epochs. Positive: the"
    " learned, frozen choices do better. Test accuracy:",
    "",
    *markdown_table(["comparison", "difference (points)"], rows),
  ]


def _convergence_section(runs, test, figure) -> list[str]:
  """Has the budget converged? The best baseline's accuracy, best epochs and late gains per architecture."""
  rows = []
  for arch, models in by_arch_model(runs).items():
    baselines = [m for m in ACTIVATIONS if m in models]
    if not baselines:
      continue
    best = max(baselines, key=lambda m: test[arch][m].mean)
    seeds = list(models[best].values())
    epochs = len(seeds[0]["phase"]["history"]) - 1
    late = round(0.75 * epochs)
    gain = Stat(
      r["phase"]["history"][-1]["val_accuracy"] - r["phase"]["history"][late]["val_accuracy"] for r in seeds
    )
    rows.append([
      arch, best, test[arch][best].fmt(), ", ".join(str(r["phase"]["best"]["epoch"]) for r in seeds),
      f"{gain.fmt(100, 2)} (epochs {late}–{epochs})",
    ])  # fmt: skip
  return [
    "",
    "## Convergence",
    "",
    f"![validation accuracy per epoch]({figure})",
    "",
    "*Figure: validation accuracy per epoch, mean over seeds; SmartMixed (thick) is Phase 1, then after the"
    " dotted line its Phase 2.*",
    "",
    *markdown_table(
      [
        "architecture",
        "best baseline",
        "its test accuracy",
        "its best epoch (per seed)",
        "its val accuracy gain over the last quarter (points)",
      ],
      rows,
    ),  # fmt: skip
  ]


def _variant_section(out: Path, runs, settings) -> list[str]:
  """A variant study (``--logits-lr-scale``) against the preset's SmartMixed of the sweep it took its
  baselines from: same seeds, initial weights and data order; only the logits' learning rate differs."""
  reference = reference_dir(out, settings)
  scale = settings.get("logits_lr_scale", 1.0)
  if reference is None or scale == 1.0:
    return []
  ref = {(r["arch"], r["seed"]): r for r in read_records(reference) if r["model"] == "smartmixed"}
  mine = [r for r in runs if r["model"] == "smartmixed" and (r["arch"], r["seed"]) in ref]
  if not mine:
    return []

  def of_reference(getter):
    return lambda run: getter(ref[(run["arch"], run["seed"])])

  phase2 = paired(mine, phase_test("phase2"), of_reference(phase_test("phase2")))
  phase1 = paired(mine, phase_test("phase1"), of_reference(phase_test("phase1")))
  theirs = decisiveness([ref[(r["arch"], r["seed"])] for r in mine])
  ours = decisiveness(mine)
  rows = []
  for arch in ours:
    seeds = [ref[(r["arch"], r["seed"])] for r in mine if r["arch"] == arch]
    rows.append([
      arch,
      *(f"{theirs[arch][k].fmt(1, 2)} → {ours[arch][k].fmt(1, 2)}" for k in ("entropy", "decided")),
      Stat(phase_test("phase2")(r) for r in seeds).fmt(),
      Stat(phase_test("phase2")(r) for r in mine if r["arch"] == arch).fmt(),
      phase2["per_arch"][arch].fmt_ci(),
    ])  # fmt: skip
  name = Path(settings["baselines_from"]).name
  return [
    "",
    f"## The variant: logits learning {scale:g}x faster, against the preset's SmartMixed",
    "",
    f"Beyond the paper: the logits' Adam updates are scaled by {scale:g} (`--logits-lr-scale {scale:g}`);"
    f" everything else, seeds, initial weights and data order included, is as in `{name}`, whose baselines"
    " this report ranks against.",
    "",
    "Last Phase 1 epoch, mean over hidden layers (reference → variant), and Phase 2 test accuracy (%):",
    "",
    *markdown_table(
      [
        "architecture",
        "entropy / log 6",
        "share decided",
        f"Phase 2 ({name})",
        "Phase 2 (variant)",
        "variant − reference (95% CI)",
      ],
      rows,
    ),  # fmt: skip
    "",
    f"Variant − reference, test accuracy: Phase 2 {_overall(phase2)}; Phase 1 {_overall(phase1)}.",
  ]


def _command(out: Path, settings: dict[str, Any], runs: Sequence[dict]) -> str:
  """The sweep command that writes (or resumes) this study."""
  seeds = sorted({r["seed"] for r in runs if r["model"] == "smartmixed"} or settings.get("seeds", []))
  archs = sorted({r["arch_number"] for r in runs if "arch_number" in r})
  parts = ["python experiments/sweep.py", f"--budget {settings.get('budget', '?')}"]
  parts.append(f"--preset {settings.get('preset', '?')}")
  if archs and len(archs) < len(ARCHITECTURES):
    parts.append("--archs " + " ".join(map(str, archs)))
  parts.append("--seeds " + " ".join(map(str, seeds)))
  parts += [
    flag
    for flag, on in (("--no-ablation", "ablation"), ("--no-controls", "controls"))
    if not settings.get(on, True)
  ]
  if settings.get("logits_lr_scale", 1.0) != 1.0:
    parts.append(f"--logits-lr-scale {settings['logits_lr_scale']:g}")
  if settings.get("baselines_from"):
    parts.append(f"--baselines-from {shown(Path(out, settings['baselines_from']))}")
  return " ".join(parts)


def _compute_section(runs, out: Path) -> list[str]:
  cost = paper_budget_seconds(runs)
  seeds, archs = len({r["seed"] for r in runs}), len({r["arch"] for r in runs})
  lines = [
    "",
    "## Compute",
    "",
    f"This sweep: {compute_seconds(runs) / 3600:.2f} h of wall time. The reference budget (Phase 1 50"
    f" + Phase 2 350 epochs, baselines 400, full 54k training set) for the same {archs}"
    f" architectures and {seeds} seed(s) would take about {cost['all'] / 3600:.0f} h on the same machine"
    f" (SmartMixed {cost['smartmixed'] / 3600:.0f} h including its Phase 2 variants, baselines"
    f" {cost['baselines'] / 3600:.0f} h): the median measured epoch times of this sweep, training time"
    " scaled to 54k examples, times the epochs.",
  ]
  speedups = sorted(out.parent.glob("speedup_*.json"))
  for path in speedups:
    data = json.loads(path.read_text())
    lines += [
      "",
      f"Training models that share shapes as one vmapped program ({path.name}: budget `{data['budget']}`,"
      f" seeds {data['seeds']}, {data['backend']} {data['device']}); wall time of one architecture's"
      " whole study, compilation included:",
      "",
    ]
    rows = []
    for r in data["rows"]:
      row = [r["arch"], f"{r['sequential']:.0f} s"]
      for mode in ("vmap_seeds", "vmap_seeds_and_baselines"):
        row += [f"{r[mode]:.0f} s", f"{r['sequential'] / r[mode]:.2f}x"]
      rows.append(row)
    header = ["architecture", "one model at a time", "seeds vmapped", "speed-up", "seeds + baselines vmapped"]
    lines += markdown_table([*header, "speed-up"], rows)
  return lines


if __name__ == "__main__":
  if len(sys.argv) != 2:
    raise SystemExit(f"usage: {sys.argv[0]} SWEEP_DIR")
  print(write_report(Path(sys.argv[1])))
