"""What a run leaves in its output directory: results, choices and plots.

- ``results.json``: config, per-phase best metrics and history, timings and
  the per-layer activation counts of the frozen model;
- ``choices.csv``: every hidden neuron's activation;
- ``activation_shares.png``: per-layer share of each activation;
- ``activation_trajectory.png``: Phase 1 per-epoch shares, per layer;
- ``selection.png``: Phase 1 per-epoch selection diagnostics, per layer;
- ``curves.png``: loss and accuracy per epoch, both phases.

Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartmixed_jax._src.files import atomic_write_bytes, write_json
from smartmixed_jax._src.pool import pool_names
from smartmixed_jax._src.rundir import RESULTS_FILE

if TYPE_CHECKING:
  from smartmixed_jax._src.run import RunResult

# One colour per pool member, stable across every plot.
_COLORS = [
  "#4C72B0",
  "#DD8452",
  "#55A868",
  "#C44E52",
  "#8172B3",
  "#937860",
  "#DA8BC3",
  "#8C8C8C",
  "#CCB974",
  "#64B5CD",
]


def write_choices_csv(path: os.PathLike, result: RunResult) -> None:
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["layer", "neuron", "activation", "frozen_position"])
  # Hidden layers numbered from 1, as in the console and the plots.
  for layer, (names, perm) in enumerate(zip(result.model.activation_names(), result.model.permutations), 1):
    position = {int(n): j for j, n in enumerate(perm)}
    for neuron, name in enumerate(names):
      writer.writerow([layer, neuron, name, position[neuron]])
  atomic_write_bytes(Path(path), out.getvalue().encode())


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend (imported on first use: an optional extra)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig, path: os.PathLike, *, dpi: int = 120) -> str:
  """Writes ``fig`` as a PNG atomically, closes it, and returns the file's name."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
  atomic_write_bytes(Path(path), buffer.getvalue())
  pyplot().close(fig)
  return Path(path).name


def plot_activation_shares(path: os.PathLike, counts: list[dict[str, int]], names, title: str) -> None:
  """Stacked horizontal bars: per hidden layer, the share of each activation."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 0.45 * len(counts) + 1.6))
  left = [0.0] * len(counts)
  layers = [f"layer {i + 1} ({sum(c.values())})" for i, c in enumerate(counts)]
  for k, name in enumerate(names):
    share = [c.get(name, 0) / max(sum(c.values()), 1) for c in counts]
    ax.barh(layers, share, left=left, color=_COLORS[k % len(_COLORS)], label=name)
    left = [a + b for a, b in zip(left, share)]
  ax.invert_yaxis()
  ax.set_xlim(0, 1)
  ax.set_xlabel("share of neurons")
  ax.set_title(title)
  ax.legend(
    ncol=min(len(names), 6),
    loc="upper center",
    bbox_to_anchor=(0.5, -0.18 - 0.02 * len(counts)),
    frameon=False,
    fontsize=8,
  )
  save_figure(fig, path)


def plot_activation_trajectory(path: os.PathLike, history: list[dict[str, Any]], names) -> None:
  """Phase 1: per layer, each activation's share at the end of every epoch."""
  plt = pyplot()
  from matplotlib.ticker import MaxNLocator

  history = [r for r in history if "activation_counts" in r]
  layers = len(history[0]["activation_counts"])
  cols = min(layers, 4)
  rows = -(-layers // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharey=True)
  epochs = [r["epoch"] for r in history]
  for layer, ax in enumerate(axes.flat):
    if layer >= layers:
      ax.axis("off")
      continue
    for k, name in enumerate(names):
      share = [
        r["activation_counts"][layer].get(name, 0) / max(sum(r["activation_counts"][layer].values()), 1)
        for r in history
      ]
      ax.plot(epochs, share, color=_COLORS[k % len(_COLORS)], marker=".", markersize=3, label=name)
    ax.set_title(f"layer {layer + 1}", fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch", fontsize=8)
  axes[0, 0].set_ylabel("share (argmax)")
  fig.legend(
    *axes[0, 0].get_legend_handles_labels(),
    loc="upper left",
    bbox_to_anchor=(1.0, 0.95),
    fontsize=7,
    frameon=False,
  )
  fig.suptitle("Phase 1: activation choices per epoch")
  fig.tight_layout()
  save_figure(fig, path)


SELECTION_PANELS = (
  ("entropy", "entropy of softmax(logits) / log k", "1 = undecided (uniform)"),
  ("p_argmax", "P(a step samples the argmax)", "1/k = undecided"),
  ("argmax_changed", "share of argmax changed since last epoch", "0 = settled"),
  ("sample_agreement", "argmax = most-sampled activation", "1/k by chance"),
)


def plot_selection(path: os.PathLike, history: list[dict[str, Any]], k: int, title: str) -> None:
  """Phase 1's selection diagnostics per epoch, one line per hidden layer."""
  from matplotlib.ticker import MaxNLocator

  plt = pyplot()
  rows = [r for r in history if "selection" in r]
  layers = len(rows[0]["selection"]) if rows else 0
  fig, axes = plt.subplots(1, len(SELECTION_PANELS), figsize=(4 * len(SELECTION_PANELS), 3.4))
  cmap = plt.get_cmap("viridis")
  for ax, (key, label, note) in zip(axes, SELECTION_PANELS):
    for layer in range(layers):
      points = [(r["epoch"], r["selection"][layer][key]) for r in rows if key in r["selection"][layer]]
      if points:
        xs, ys = zip(*points)
        ax.plot(
          xs, ys, marker="o", markersize=3, color=cmap(layer / max(layers - 1, 1)), label=f"layer {layer + 1}"
        )
    if key in ("p_argmax", "sample_agreement"):
      ax.axhline(1 / k, color="grey", linestyle=":", linewidth=1)
    ax.set_title(label, fontsize=9)
    ax.set_xlabel(f"Phase 1 epoch ({note})", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
  axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
  fig.suptitle(title)
  fig.tight_layout()
  save_figure(fig, path)


def plot_curves(path: os.PathLike, result: RunResult) -> None:
  """Loss and accuracy per epoch for every phase, phases laid end to end; the
  selected epochs marked, with their test accuracy."""
  plt = pyplot()
  from matplotlib.ticker import MaxNLocator

  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 3.8))
  offset = 0
  styles = {"train": (":", "."), "val": ("-", "o")}
  for i, phase in enumerate(result.phases):
    history = phase.histories[0]
    epochs = [offset + r["epoch"] for r in history]
    color = _COLORS[i]
    for split, (style, marker) in styles.items():
      pts = [
        (e, r[f"{split}_loss"], r[f"{split}_accuracy"])
        for e, r in zip(epochs, history)
        if r.get(f"{split}_loss")
      ]
      if not pts:
        continue
      xs, losses, accs = zip(*pts)
      kw = dict(color=color, marker=marker, markersize=3, label=f"{phase.name} {split}")
      loss_ax.plot(xs, losses, style, **kw)
      acc_ax.plot(xs, accs, style, **kw)
    best = phase.best()
    acc_ax.axvline(offset + best["epoch"], color=color, alpha=0.3)
    if best.get("test_accuracy") is not None:
      acc_ax.plot([offset + best["epoch"]], [best["test_accuracy"]], "*", color=color, markersize=10,
                  label=f"{phase.name} test (selected)")  # fmt: skip
    offset = epochs[-1]
  for ax in (loss_ax, acc_ax):
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
  loss_ax.set_yscale("log")
  loss_ax.set_ylabel("cross-entropy")
  acc_ax.set_ylabel("accuracy")
  acc_ax.set_ylim(0, 1.0)
  acc_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
  fig.suptitle(f"{result.config.arch}: loss and accuracy (vertical lines: selected epochs)")
  fig.tight_layout()
  save_figure(fig, path)


def write_run(out_dir: os.PathLike, result: RunResult) -> dict[str, Any]:
  """Writes every artifact of a run to ``out_dir``; returns the summary."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  summary = result.summary()
  names = pool_names(result.model.pool)
  write_choices_csv(out / "choices.csv", result)
  plot_curves(out / "curves.png", result)
  title = f"{result.config.arch}: frozen activation choices"
  plot_activation_shares(out / "activation_shares.png", result.model.counts(), names, title)
  phase1 = [p for p in result.phases if p.name == "phase1" and len(p.histories[0]) > 1]
  if phase1:  # a Phase 1 of 0 epochs has no trajectory to plot
    plot_activation_trajectory(out / "activation_trajectory.png", phase1[0].histories[0], names)
    plot_selection(out / "selection.png", phase1[0].histories[0], len(names),
                   f"{result.config.arch}: has the selection happened? (dotted: 1/k)")  # fmt: skip
  write_json(out / RESULTS_FILE, summary)  # last: its presence marks a finished run
  return summary
