"""The figures of a sweep's report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from records import ACTIVATIONS, MODELS
from stats import Stat, by_arch_model, phase_test

from smartmixed_jax.app import ARCHITECTURES, RunRecord
from smartmixed_jax.artifacts import pyplot, save_figure


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


def plot_phases(path: Path, runs: Sequence[RunRecord]) -> str:
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


def plot_convergence(path: Path, runs: Sequence[RunRecord]) -> str:
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
        ax.axvline(next(iter(seeds.values())).config["phase1_epochs"], color="grey", linestyle=":")
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


def _val_curve(run: RunRecord) -> list[float]:
  """A run's validation accuracy per epoch (0 = before training); SmartMixed's Phase 2 after Phase 1."""
  if run.model != "smartmixed":
    return [e.val_accuracy for e in run.last.history]
  phase2 = run.phase2.history if run.phase2 else []
  return [e.val_accuracy for e in run.phase1.history] + [e.val_accuracy for e in phase2[1:]]


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


def plot_trajectories(path: Path, runs: Sequence[RunRecord], archs: Sequence[str]) -> str:
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
    layers = len(seeds[0].rule_counts["argmax"])
    for row, layer in enumerate((0, layers - 1)):
      ax = axes[row][col]
      for name in ACTIVATIONS:
        curves = []
        for run in seeds:
          history = [e for e in run.phase1.history if e.activation_counts is not None]
          curves.append(
            [
              e.activation_counts[layer].get(name, 0) / sum(e.activation_counts[layer].values())
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


def plot_selection_curves(path: Path, runs: Sequence[RunRecord]) -> str:
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
      epochs = [e.epoch for e in seeds[0].phase1.history if e.selection is not None]
      values = [
        statistics.fmean(
          statistics.fmean(getattr(layer, key) for layer in run.phase1.history[e].selection) for run in seeds
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
