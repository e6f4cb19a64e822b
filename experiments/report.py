"""REPORT.md and figures from a sweep's results files.

    python experiments/report.py experiments/results/sweep_quick_recommended

Reads ``OUT/runs/*/*/seed*.json`` (written by ``experiments/sweep.py``) and
writes ``OUT/REPORT.md`` with its PNG figures. Every number is a mean +- std
over seeds; a paired difference (same seed, same data order) whose mean is
no larger than its standard deviation over seeds is reported as "within the
seed spread". Rankings follow the reference: per architecture the seven models
are ranked by test accuracy (ties share the better rank), and a model's mean
reciprocal rank is the mean of 1/rank.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from smartmixed_jax import ARCHITECTURES, DEFAULT_POOL, pool_names
from smartmixed_jax.artifacts import atomic_write_bytes, pyplot, save_figure

ACTIVATIONS = pool_names(DEFAULT_POOL)
MODELS = ("smartmixed", *ACTIVATIONS)
EARLY, DEEP = ("relu", "leaky_relu"), ("elu", "selu")
DEPTH_BINS = 5
# The paper's figures (PAPER.md).
PAPER = {"val": 98.22, "test": 98.03, "phase_gain": (2.0, 3.0)}


def load_runs(out: Path) -> list[dict[str, Any]]:
  """Every run record under ``out/runs``."""
  return [json.loads(p.read_text()) for p in sorted(Path(out).glob("runs/*/*/seed*.json"))]


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

  def within_spread(self) -> bool:
    """For a paired difference: is its mean no larger than its spread over seeds?"""
    return self.n < 2 or abs(self.mean) <= self.std

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


def paired(runs: Sequence[dict], a, b) -> dict[str, Any]:
  """``a(run) - b(run)`` over SmartMixed runs (``a``, ``b`` map a run to a number or None).

  Returns ``per_arch`` (a :class:`Stat` over seeds per architecture), ``all``
  (over seeds, of each seed's mean over architectures: the spread is the seed
  spread, not the spread between architectures), and ``higher`` / ``lower``:
  how many architectures differ beyond their seed spread either way.
  """
  per_arch, per_seed = {}, defaultdict(list)
  for arch, models in by_arch_model(runs).items():
    diffs = []
    for seed, run in models.get("smartmixed", {}).items():
      x, y = a(run), b(run)
      if x is not None and y is not None:
        diffs.append(x - y)
        per_seed[seed].append(x - y)
    per_arch[arch] = Stat(diffs)
  beyond = [s for s in per_arch.values() if s.n and not s.within_spread()]
  return {
    "per_arch": per_arch,
    "all": Stat(statistics.fmean(d) for d in per_seed.values()),
    "higher": sum(s.mean > 0 for s in beyond),
    "lower": sum(s.mean < 0 for s in beyond),
  }


def _overall(diff: dict[str, Any]) -> str:
  """The overall paired difference and how many architectures it holds on."""
  archs = len(diff["per_arch"])
  return (
    f"{_points(diff['all'])}, averaged over architectures; higher beyond the seed spread on"
    f" {diff['higher']} of {archs} architectures, lower on {diff['lower']}"
  )


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


def depth_shares(runs: Sequence[dict], bins: int = DEPTH_BINS, rule: str = "argmax") -> np.ndarray:
  """``[activations, bins]``: mean share of each activation among the frozen
  choices of the hidden layers whose relative depth falls in each bin (every
  layer of every SmartMixed run weighs the same)."""
  sums, counts = np.zeros((len(ACTIVATIONS), bins)), np.zeros(bins)
  for run in runs:
    if run["model"] != "smartmixed":
      continue
    layers = run["choices"][rule]
    for i, layer_counts in enumerate(layers):
      b = min(int(relative_depth(i, len(layers)) * bins), bins - 1)
      sums[:, b] += np.asarray(layer_counts) / sum(layer_counts)
      counts[b] += 1
  with np.errstate(invalid="ignore"):
    return sums / counts


def first_last_shares(runs: Sequence[dict], group: Sequence[str], min_layers: int = 3) -> dict[str, Stat]:
  """Share of the activations in ``group`` in the first and the last hidden
  layer of networks with at least ``min_layers`` hidden layers; one value per
  seed (averaged over architectures), so the spread is over seeds."""
  idx = [ACTIVATIONS.index(g) for g in group]
  per_seed: dict[str, dict[int, list[float]]] = {"first": defaultdict(list), "last": defaultdict(list)}
  for run in runs:
    if run["model"] != "smartmixed" or len(run["choices"]["argmax"]) < min_layers:
      continue
    layers = run["choices"]["argmax"]
    for where, counts in (("first", layers[0]), ("last", layers[-1])):
      per_seed[where][run["seed"]].append(sum(counts[i] for i in idx) / sum(counts))
  return {where: Stat(statistics.fmean(v) for v in seeds.values()) for where, seeds in per_seed.items()}


def compute_seconds(runs: Sequence[dict]) -> float:
  """Wall time of the sweep: each cohort's time, shared among the runs it wrote."""
  return sum(run["cohort"]["seconds"] / run["cohort"]["runs"] for run in runs)


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
  counts = np.array([ranks["models"][m]["counts"] for m in MODELS])
  fig, ax = plt.subplots(figsize=(6.5, 3.8))
  im = ax.imshow(counts, cmap="Blues")
  for i in range(counts.shape[0]):
    for j in range(counts.shape[1]):
      ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=8,
              color="white" if counts[i, j] > counts.max() / 2 else "black")  # fmt: skip
  ax.set_xticks(range(counts.shape[1]), [f"{k}" for k in range(1, counts.shape[1] + 1)])
  ax.set_yticks(range(len(MODELS)), MODELS)
  ax.set_xlabel("rank by test accuracy (1 = best)")
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


def plot_depth_heatmap(path: Path, shares: np.ndarray) -> str:
  plt = pyplot()
  bins = shares.shape[1]
  fig, ax = plt.subplots(figsize=(6.5, 3.6))
  im = ax.imshow(shares, cmap="viridis", aspect="auto", vmin=0)
  for i in range(shares.shape[0]):
    for j in range(bins):
      if np.isfinite(shares[i, j]):
        dark = shares[i, j] > 0.6 * np.nanmax(shares)
        ax.text(
          j,
          i,
          f"{shares[i, j]:.2f}",
          ha="center",
          va="center",
          fontsize=8,
          color="black" if dark else "white",
        )
  ax.set_xticks(range(bins), [f"{j / bins:.1f}–{(j + 1) / bins:.1f}" for j in range(bins)])
  ax.set_yticks(range(len(ACTIVATIONS)), ACTIVATIONS)
  ax.set_xlabel("relative depth of the hidden layer (0 = input side, 1 = output side)")
  ax.set_title("share of neurons choosing each activation (frozen, argmax)", fontsize=9)
  fig.colorbar(im, ax=ax, shrink=0.8)
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
      for k, name in enumerate(ACTIVATIONS):
        curves = []
        for run in seeds:
          history = [e for e in run["phase1"]["history"] if "argmax_counts" in e]
          curves.append([e["argmax_counts"][layer][k] / sum(e["argmax_counts"][layer]) for e in history])
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


def _row(cells: Iterable[Any]) -> str:
  return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
  return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def write_report(
  out: Path, trajectory_archs: Sequence[str] = ("medium_5layer", "wide_8layer", "wide_14layer")
) -> Path:
  """Writes ``out/REPORT.md`` and its figures; returns the report's path."""
  out = Path(out)
  runs = load_runs(out)
  if not runs:
    raise SystemExit(f"No results under {out / 'runs'}: run experiments/sweep.py first.")
  settings = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else {}
  table = by_arch_model(runs)
  test, val = accuracy_table(runs, "test"), accuracy_table(runs, "val")
  ranks = rankings(runs)
  smart = [r for r in runs if r["model"] == "smartmixed"]
  seeds = sorted({r["seed"] for r in runs})
  gain = paired(runs, phase_test("phase2"), phase_test("phase1"))
  early = first_last_shares(runs, EARLY)
  deep = first_last_shares(runs, DEEP)
  shares = depth_shares(runs)
  figures = {
    "accuracy": plot_accuracy(out / "accuracy.png", test),
    "ranks": plot_rank_counts(out / "rank_counts.png", ranks),
    "phases": plot_phases(out / "phase1_vs_phase2.png", runs),
    "depth": plot_depth_heatmap(out / "depth_heatmap.png", shares),
    "trajectories": plot_trajectories(out / "phase1_trajectories.png", runs, trajectory_archs),
  }
  config = runs[0]["config"]
  lines = [
    "# SmartMixed on MNIST: the 18-architecture study",
    "",
    f"Command: `python experiments/sweep.py --budget {settings.get('budget', '?')} --preset"
    f" {settings.get('preset', '?')} --seeds {' '.join(map(str, seeds))}` (then `python experiments/report.py"
    f" {out.as_posix()}` rewrites this report from the results files).",
    "",
    f"Budget `{settings.get('budget', '?')}`: Phase 1 {config['phase1_epochs']} + Phase 2"
    f" {config['phase2_epochs']} epochs, baselines {config['phase1_epochs'] + config['phase2_epochs']};"
    f" {settings.get('train_examples', config['train_limit'] or 54000)} training examples, the full 6k"
    f" validation and 10k test sets; preset `{settings.get('preset', '?')}`"
    f" (Adam lr {config['learning_rate']},"
    f" {config['schedule']} schedule, batch {config['batch_size']}, reference quirks"
    f" {'on' if config.get('softmax_output', config.get('reference_quirks')) else 'off'}, Phase 2 weights"
    f" {'re-initialised' if config['reinit_phase2'] else 'carried over'}). Seeds {seeds};"
    f" {len(table)} architectures; {len(runs)} runs. Accuracy is that of the epoch with the lowest validation"
    " loss, in %, mean ± std over seeds. A paired difference (same seed, same initial weights and data order)"
    " is *within the seed spread* when its mean is no larger than its standard deviation over seeds.",
    "",
    f"Compute: {compute_seconds(runs) / 60:.1f} min of wall time on {settings.get('backend', '?')}"
    f" ({settings.get('device', '?')}), compilation included.",
    "",
  ]
  lines += _claims(table, ranks, gain, early, deep, settings)
  lines += [
    "",
    "## Accuracy per architecture",
    "",
    f"![test accuracy per architecture]({figures['accuracy']})",
    "",
  ]
  lines += ["Test accuracy (%):", ""]
  lines += _table(
    ["#", "architecture", *MODELS, "SmartMixed − best baseline"],
    (
      [list(ARCHITECTURES).index(a) + 1, a, *(_bold_best(test[a], m) for m in MODELS), _vs_best(table[a])]
      for a in table
    ),
  )
  lines += ["", "Validation accuracy (%):", ""]
  lines += _table(
    ["#", "architecture", *MODELS],
    ([list(ARCHITECTURES).index(a) + 1, a, *(val[a].get(m, Stat([])).fmt() for m in MODELS)] for a in table),
  )
  lines += _rank_section(ranks, figures["ranks"])
  lines += ["", "## Phase 1 vs Phase 2", "", f"![Phase 1 vs Phase 2]({figures['phases']})", ""]
  lines += [
    f"Phase 2 minus Phase 1, test accuracy: {_overall(gain)}. Phase 2 continues where Phase 1 stopped, so"
    " it has also trained longer; the baselines train for both phases' epochs.",
    "",
  ]
  rows = []
  for a, models in table.items():
    if "smartmixed" in models:
      phases = [
        Stat(phase_test(p)(r) for r in models["smartmixed"].values()).fmt() for p in ("phase1", "phase2")
      ]
      rows.append([a, *phases, _points(gain["per_arch"][a])])
  lines += _table(["architecture", "Phase 1", "Phase 2", "Phase 2 − Phase 1"], rows)
  lines += _depth_section(shares, early, deep, figures)
  lines += _ablation_section(runs, smart)
  lines += _compute_section(runs, out)
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
  note = " (within spread)" if diff.within_spread() else ""
  return f"{100 * diff.mean:+.2f} ± {100 * diff.std:.2f} vs {best}{note}"


def _claims(table, ranks, gain, early, deep, settings) -> list[str]:
  smart = {a: models["smartmixed"] for a, models in table.items() if "smartmixed" in models}
  best_arch = max(
    smart, key=lambda a: statistics.fmean(r["final"]["val_accuracy"] for r in smart[a].values())
  )
  best_val = Stat(r["final"]["val_accuracy"] for r in smart[best_arch].values())
  best_test = Stat(r["final"]["test_accuracy"] for r in smart[best_arch].values())
  sm_rank = ranks["models"]["smartmixed"]
  top3 = Stat(sm_rank["top3_by_seed"])
  lo, hi = PAPER["phase_gain"]
  archs = len(gain["per_arch"])
  gains = [100 * s.mean for s in gain["per_arch"].values() if s.n]
  if gain["higher"] == archs:
    gain_verdict = "Phase 2 is better on every architecture, beyond the seed spread"
  elif gain["higher"] > gain["lower"]:
    gain_verdict = f"Phase 2 is better on {gain['higher']} of {archs} architectures, beyond the seed spread"
  else:
    gain_verdict = "does not hold here"
  gain_verdict += (
    f"; by 2–3 points on {sum(lo <= g <= hi for g in gains)} of {archs} (median gain"
    f" {statistics.median(gains):.1f} points)"
  )
  reached = best_test.mean + best_test.std >= PAPER["test"] / 100
  top3_verdict = (
    "holds"
    if sm_rank["top3"] >= 0.8
    else "holds for most architectures"
    if sm_rank["top3"] >= 0.5
    else "does not hold"
  )
  lines = [
    "## The paper's four claims",
    "",
    *_table(
      ["claim (paper)", "here", "verdict"],
      [
        [
          "Phase 2 beats Phase 1 by 2–3 points",
          f"Phase 2 − Phase 1 (test): {_overall(gain)}",
          gain_verdict,
        ],
        [
          f"SmartMixed reaches {PAPER['val']}% val / {PAPER['test']}% test",
          f"best architecture by mean val ({best_arch}): {best_val.fmt()} val, {best_test.fmt()} test",
          ("reached" if reached else "not reached") + f" at the `{settings.get('budget', '?')}` budget",
        ],
        [
          "SmartMixed ranks in the top three of seven models",
          f"top three in {_pct(sm_rank['top3'])} of {ranks['rankings']} (architecture, seed) rankings"
          f" (per seed {top3.fmt(100, 1)}%); mean reciprocal rank {sm_rank['mrr']:.2f};"
          f" ranked on seed means: top three in {_pct(ranks['on_means']['smartmixed']['top3'])}"
          f" of {ranks['archs']} architectures",
          top3_verdict + " (≥ 80% of rankings counts as consistently)",
        ],
        [
          "early layers prefer relu / leaky_relu, deep layers elu / selu",
          f"relu + leaky_relu share: first hidden layer {early['first'].fmt(100, 1)}%, last"
          f" {early['last'].fmt(100, 1)}%; elu + selu: first {deep['first'].fmt(100, 1)}%, last"
          f" {deep['last'].fmt(100, 1)}% (networks with ≥ 3 hidden layers; spread over seeds)",
          _depth_verdict(early, deep),
        ],
      ],
    ),
  ]
  return lines


def _depth_verdict(early: dict[str, Stat], deep: dict[str, Stat]) -> str:
  """Two parts: do shares shift from relu/leaky_relu to elu/selu with depth, and
  do the first layers actually favour relu/leaky_relu over elu/selu?"""
  shift = early["first"].mean > early["last"].mean and deep["last"].mean > deep["first"].mean
  if not shift:
    return "does not hold here: relu / leaky_relu do not give way to elu / selu with depth"
  beyond = early["first"].mean - early["last"].mean > max(early["first"].std, early["last"].std) and (
    deep["last"].mean - deep["first"].mean > max(deep["first"].std, deep["last"].std)
  )
  spread = "beyond" if beyond else "within"
  if early["first"].mean > deep["first"].mean:
    return f"holds (the shift with depth is {spread} the seed spread)"
  return (
    f"partly: deeper layers shift further to elu / selu ({spread} the seed spread), but the first layer"
    " already favours elu / selu over relu / leaky_relu"
  )


def _rank_section(ranks, figure) -> list[str]:
  lines = ["", "## Rankings", "", f"![rank counts]({figure})", ""]
  lines += [
    f"Each of the {ranks['rankings']} (architecture, seed) pairs ranks the seven models by test accuracy"
    " (ties share the better rank). Mean reciprocal rank (MRR) over all rankings, and its mean ± std over"
    f" seeds; then the reference's procedure, one ranking per architecture ({ranks['archs']}) by the"
    " seed-mean accuracy.",
    "",
  ]
  n = len(MODELS)
  header = ["model", *(f"#{k}" for k in range(1, n + 1)), "MRR", "MRR per seed", "top 3", "MRR on means"]
  order = sorted(MODELS, key=lambda m: -ranks["models"][m]["mrr"])
  lines += _table(
    header,
    (
      [m, *ranks["models"][m]["counts"], f"{ranks['models'][m]['mrr']:.3f}",
       Stat(ranks["models"][m]["mrr_by_seed"]).fmt(1, 3), _pct(ranks["models"][m]["top3"]),
       f"{ranks['on_means'][m]['mrr']:.3f}"]
      for m in order
    ),
  )  # fmt: skip
  return lines


def _depth_section(shares, early, deep, figures) -> list[str]:
  lines = [
    "",
    "## Layer-wise preferences",
    "",
    f"![activation share by relative depth]({figures['depth']})",
    "",
  ]
  lines += [
    "Each hidden layer of every SmartMixed run (frozen choices, argmax rule) is placed at its relative depth"
    " (layer centre, 0 = input side) and binned; a cell is the mean share over the layers in its bin.",
    "",
  ]
  bins = shares.shape[1]
  lines += _table(
    ["activation", *(f"{j / bins:.1f}–{(j + 1) / bins:.1f}" for j in range(bins))],
    (
      [name, *(f"{v:.3f}" if np.isfinite(v) else "–" for v in shares[i])]
      for i, name in enumerate(ACTIVATIONS)
    ),
  )
  lines += [
    "",
    f"First vs last hidden layer (≥ 3 hidden layers): relu + leaky_relu {early['first'].fmt(100, 1)}% →"
    f" {early['last'].fmt(100, 1)}%; elu + selu {deep['first'].fmt(100, 1)}% → {deep['last'].fmt(100, 1)}%.",
    "",
    f"![Phase 1 activation shares per epoch]({figures['trajectories']})",
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
  lines += _table(["comparison (test accuracy)", "difference"], rows)
  lines += ["", "Test accuracy (%) per architecture:", ""]
  rows = []
  for arch, models in by_arch_model(runs).items():
    seeds = models.get("smartmixed", {}).values()
    rows.append([arch, *(Stat(phase_test("phase2", v)(r) for r in seeds).fmt() for v in (main, *compared))])
  lines += _table(["architecture", main, *compared], rows)
  return lines


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
    lines += _table([*header, "speed-up"], rows)
  return lines


if __name__ == "__main__":
  if len(sys.argv) != 2:
    raise SystemExit(f"usage: {sys.argv[0]} SWEEP_DIR")
  print(write_report(Path(sys.argv[1])))
