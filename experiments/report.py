"""REPORT.md and figures from a sweep's results files.

    python experiments/report.py experiments/results/sweep_quick_recommended

Reads ``OUT/runs/*/*/seed*.json`` (written by ``experiments/sweep.py`` and
committed with the report) and writes ``OUT/REPORT.md`` with its PNG figures.
Accuracies are mean +- std over seeds. A paired difference (same seed, same
initial weights) across architectures is given with its 95% confidence
interval over the architectures' seed means (Student's t, n - 1 dof); a
per-architecture count of differences uses paired t-tests over seeds with
Holm's correction over the architectures. Rankings follow the reference (per
architecture, models ranked by test accuracy, ties sharing the better rank;
mean reciprocal rank), tested with Friedman's test and Nemenyi's critical
difference. Every verdict on a claim comes from ``verdicts.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import verdicts
from figures import (
  plot_accuracy,
  plot_convergence,
  plot_depth_heatmap,
  plot_phases,
  plot_rank_counts,
  plot_selection_curves,
  plot_trajectories,
)
from records import (
  ACTIVATIONS,
  CONTROL,
  DEEP,
  DEPTH_BINS,
  DIAGNOSTICS,
  EARLY,
  FAILED_VAL_ACCURACY,
  MODELS,
  PAPER,
  failed,
  load_runs,
  models_of,
  read_records,
  read_settings,
  reference_dir,
  shown,
)
from stats import (
  Across,
  PhaseGain,
  Stat,
  accuracy_table,
  across,
  across_words,
  by_arch_model,
  compute_seconds,
  decisiveness,
  depth_shares,
  first_last_shares,
  friedman,
  kept_start,
  layer_shift,
  paired,
  paper_budget_seconds,
  phase1_accuracy,
  phase1_eval,
  phase1_eval_words,
  phase_gain,
  phase_test,
  rankings,
)
from sweep import preset_logits_lr_scale

from smartmixed_jax.app import ARCHITECTURES, RunRecord
from smartmixed_jax.artifacts import atomic_write_bytes


def write_markdown(path: Path, lines: Sequence[str]) -> Path:
  """``lines`` as one Markdown file, written atomically; returns ``path``."""
  atomic_write_bytes(path, "\n".join(lines).encode())
  return path


def study_parser(doc: str, out: Path, seeds: Sequence[int], smoke: str) -> argparse.ArgumentParser:
  """A study's command line with the options every study has (``--out``, ``--seeds``, ``--report``,
  ``--smoke``, ``--no-progress``, ``--data-dir``); a study adds its own."""
  parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
  parser.add_argument("--out", type=Path, default=out)
  parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
  parser.add_argument("--report", action="store_true", help="only rewrite the report(s) from the records")
  parser.add_argument("--smoke", action="store_true", help=smoke)
  parser.add_argument("--no-progress", dest="progress", action="store_false")
  parser.add_argument("--data-dir", type=Path, default=None, help="the data cache (default: the library's)")
  return parser


# ----------------------------------------------------------------------------
# REPORT.md


def _pct(x: float) -> str:
  return f"{100 * x:.1f}%"


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
  if all(r.main is None for r in runs if r.model == "smartmixed"):
    return write_selection_report(out, runs, settings)
  table = by_arch_model(runs)
  models = models_of(runs)
  ranked = tuple(m for m in MODELS if m in models)  # the paper's seven; the control has its own section
  test, val = accuracy_table(runs, "test"), accuracy_table(runs, "val")
  ranks = rankings(runs, ranked)
  ranks["friedman"] = friedman(runs, ranked)
  smart = [r for r in runs if r.model == "smartmixed"]
  p1_eval = phase1_eval(smart[0].config) if smart else "argmax"
  seeds = sorted({r.seed for r in runs})
  gain = phase_gain(runs)
  early, deep = layer_shift(runs, EARLY, rise=False), layer_shift(runs, DEEP, rise=True)
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
  config = runs[0].config
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
    f" {config['schedule']} schedule{variant_words(config)}, batch {config['batch_size']}, reference quirks"
    f" {'on' if config.get('softmax_output', config.get('reference_quirks')) else 'off'}, Phase 2 weights"
    f" {'re-initialised' if config['reinit_phase2'] else 'carried over'}). Seeds {seeds};"
    f" {len(table)} architectures; {run_count(runs, settings)}. Accuracy is that of the epoch with the"
    " lowest validation loss (never the untrained epoch 0"
    + (", except Phase 2's, the frozen Phase 1 network" if config.get("phase2_keeps_start") else "")
    + "), in %, mean ± std over seeds."
    " SmartMixed and the baselines of a seed share their initial weights, not their data order (Phase 1"
    " and the baselines shuffle with different keys); Phase 2 variants and controls of a seed share both."
    " A paired difference (same seed) is given with its 95% confidence interval (t, n − 1 dof): over the"
    " architectures' seed means when it speaks for several architectures, over the seeds within one.",
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
  vs = vs_best_baseline(runs)
  lines += [
    "Test accuracy (%). The last column compares SmartMixed with the baseline of the best validation accuracy"
    " (picked after the fact), paired by seed; * marks a significant difference (paired t over seeds,"
    " Holm-corrected over the architectures).",
    "",
  ]
  lines += markdown_table(
    ["#", "architecture", *models, "SmartMixed − best baseline by val (95% CI)"],
    (
      [
        list(ARCHITECTURES).index(a) + 1,
        a,
        *(_bold_best(test[a], m) for m in models),
        _vs_best_cell(vs, a),
      ]
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
    f"Phase 2 minus Phase 1, test accuracy: {across_words(gain.every)}"
    + (
      f"; without the {gain.left_out} runs whose training failed, {gain.learned.overall.fmt_ci()}"
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
        ", ".join(str(r.phase1.best.epoch) for r in seed_runs),
        ", ".join(str(r.phase2.best.epoch) for r in seed_runs),
      ]
      last = [r.phase1.history[-1] for r in seed_runs]
      sampled_vs_argmax = [
        Stat(getattr(h, k) for h in last).fmt() for k in ("train_accuracy", "val_accuracy")
      ]
      rows.append([a, *phases, gain.every.per_arch[a].fmt_ci(), *epochs, *sampled_vs_argmax])
  lines += markdown_table(
    ["architecture", "Phase 1", "Phase 2", "Phase 2 − Phase 1 (95% CI)", "best epoch P1 (per seed)",
     "best epoch P2", "P1 train, sampled", f"P1 val, {p1_eval}"], rows,
  )  # fmt: skip
  lines += _kept_start_section(runs, ranked, settled)
  lines += _depth_section(runs, shares, bin_counts, early, deep, figures, decided)
  lines += _ablation_section(runs, smart)
  lines += _controls_section(runs, smart)
  lines += _scratch_section(runs, smart)
  lines += _variant_section(out, runs, settings)
  lines += _compute_section(runs, out)
  path = out / "REPORT.md"
  atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
  return path


def write_selection_report(out: Path, runs: Sequence[RunRecord], settings: dict[str, Any]) -> Path:
  """REPORT.md of a Phase-1-only study: which activations each depth selects, and whether it has settled."""
  smart = [r for r in runs if r.model == "smartmixed"]
  seeds = sorted({r.seed for r in smart})
  config = smart[0].config
  early, deep = layer_shift(runs, EARLY, rise=False), layer_shift(runs, DEEP, rise=True)
  shares, bin_counts = depth_shares(runs)
  per_seed = [depth_shares([r for r in smart if r.seed == s])[0] for s in seeds]
  decided = decisiveness(runs)
  settled = selection_decided(runs)
  figures = {
    "depth": plot_depth_heatmap(out / "depth_heatmap.png", shares, bin_counts),
    "selection": plot_selection_curves(out / "selection_curves.png", runs),
    "trajectories": plot_trajectories(
      out / "phase1_trajectories.png",
      runs,
      [a for a in ("medium_5layer", "wide_8layer", "wide_14layer") if any(r.arch == a for r in smart)],
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
    f" {config['learning_rate']} ({config['schedule']}), temperature {config['temperature']}"
    f"{variant_words(config)}; seeds {seeds}; {len({r.arch for r in smart})} architectures;"
    f" {run_count(smart, settings)};"
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
    f"Claim 4 (early relu / leaky_relu, deep elu / selu, consistently across architectures), paired within"
    f" each run: {depth_words(early, deep)}. Verdict: {depth_verdict(early, deep, settled)}.",
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


def best_baseline(models: dict[str, dict[int, RunRecord]], split: str = "val") -> str | None:
  """The baseline with the best seed-mean accuracy on ``split``: picked after the fact, so by validation."""
  baselines = [m for m in ACTIVATIONS if m in models]
  mean = lambda m: statistics.fmean(getattr(r.final, f"{split}_accuracy") for r in models[m].values())  # noqa: E731
  return max(baselines, key=mean, default=None)


def vs_best_baseline(runs: Sequence[RunRecord]) -> dict[str, tuple[str, Stat, bool]]:
  """Per architecture: the best baseline by validation, SmartMixed − it in test accuracy (paired by seed),
  and whether that differs significantly (paired t over seeds, Holm-corrected over the architectures)."""
  diffs = {}
  for arch, models in by_arch_model(runs).items():
    best = best_baseline(models)
    if "smartmixed" in models and best:
      ours, theirs = models["smartmixed"], models[best]
      diffs[arch] = (
        best,
        [ours[s].final.test_accuracy - theirs[s].final.test_accuracy for s in ours if s in theirs],
      )
  significant = across({arch: d for arch, (_, d) in diffs.items()})
  return {
    arch: (best, significant.per_arch[arch], arch in significant.higher + significant.lower)
    for arch, (best, _) in diffs.items()
  }


def _vs_best_cell(vs: dict[str, tuple[str, Stat, bool]], arch: str) -> str:
  if arch not in vs:
    return "–"
  best, diff, significant = vs[arch]
  return f"{diff.fmt_ci()}{' *' if significant else ''} vs {best}"


def converged(test: dict[str, dict[str, Stat]]) -> bool:
  """Has the budget converged: does a fixed baseline reach 98% test on the shallowest network run?"""
  first = next(iter(test.values()), {})
  return max((first[m].mean for m in ACTIVATIONS if m in first), default=0.0) >= 0.98


def _claims(
  table, ranks, gain: PhaseGain, early: Across, deep: Across, settings, settled, decided
) -> list[str]:
  smart = {a: models["smartmixed"] for a, models in table.items() if "smartmixed" in models}
  pick = lambda arch_runs: max(  # noqa: E731  # picked after the fact, by the mean validation accuracy
    arch_runs, key=lambda a: statistics.fmean(r.final.val_accuracy for r in arch_runs[a].values())
  )
  best_arch = pick(smart)
  best_val = Stat(r.final.val_accuracy for r in smart[best_arch].values())
  best_test = Stat(r.final.test_accuracy for r in smart[best_arch].values())
  reached = verdicts.all_of({
    "test": verdicts.reaches(best_test, PAPER["test"] / 100),
    "val": verdicts.reaches(best_val, PAPER["val"] / 100),
  })  # fmt: skip
  baseline_runs = {
    (a, m): runs for a, models in table.items() for m, runs in models.items() if m in ACTIVATIONS
  }
  their_best, theirs = (pick(baseline_runs) if baseline_runs else None), ""
  if their_best:
    their_test = Stat(r.final.test_accuracy for r in baseline_runs[their_best].values())
    their_val = Stat(r.final.val_accuracy for r in baseline_runs[their_best].values())
    theirs = (
      f"; the best baseline picked the same way ({their_best[1]} on {their_best[0]}): {their_val.fmt()} val,"
      f" {their_test.fmt()} test"
    )
  lo, hi = (x / 100 for x in PAPER["phase_gain"])
  gains = [s.mean for s in gain.learned.per_arch.values() if s.n]
  if gains:
    gain_verdict = verdicts.at_budget(verdicts.size(gain.learned, lo, hi), settled)
    gain_words = (
      f"; per architecture 2–3 points on {sum(lo <= g <= hi for g in gains)} of {len(gains)} (median"
      f" {100 * statistics.median(gains):+.2f})"
    )
  else:
    gain_verdict = verdicts.Verdict(verdicts.NOT_RESOLVED, "no SmartMixed run learned (each has a phase below"
                                    " 50% val)")  # fmt: skip
    gain_words = ""
  sm_rank = ranks["models"]["smartmixed"]
  fr = ranks.get("friedman") or {}
  top3_archs = round(ranks["on_means"]["smartmixed"]["top3"] * ranks["archs"]) if ranks["archs"] else 0
  rank_verdict = verdicts.at_budget(
    verdicts.rank(top3_archs, ranks["archs"], len(ranks["models"]), fr.get("p", math.nan)), settled
  )
  if fr:
    ranked = sorted(fr["mean_ranks"].items(), key=lambda x: x[1])
    rank_words = (
      f"; mean rank {fr['mean_ranks']['smartmixed']:.2f} of {len(ranked)} (best: {ranked[0][0]}"
      f" {ranked[0][1]:.2f}; Nemenyi CD {fr['cd']:.2f})"
    )
  else:
    rank_words = ""
  config = next(iter(next(iter(smart.values())).values())).config
  steps = math.ceil(settings.get("train_examples", 54000) / config["batch_size"]) * config["phase1_epochs"]
  return [
    "## The paper's four claims",
    "",
    f"Budget of every answer below: `{settings.get('budget', '?')}`, Phase 1 {config['phase1_epochs']} +"
    f" Phase 2 {config['phase2_epochs']} epochs on {settings.get('train_examples', '?')} examples"
    f" ({steps:,} Phase 1 steps at lr {config['learning_rate']}{variant_words(config)}); the paper: 50 + 350"
    " epochs on 54,000 examples (21,100 Phase 1 steps at lr 1e-4, baselines 400 epochs). Each verdict"
    " follows from a rule in `experiments/verdicts.py`: the unit of a claim about architectures is the"
    " architecture (95% CIs over the architectures' seed means; per-architecture tests Holm-corrected),"
    " and *not resolved* means the data cannot tell.",
    "",
    *markdown_table(
      ["claim (paper)", "here", "verdict"],
      [
        [
          "Phase 2 beats Phase 1 by 2–3 points",
          f"Phase 2 − Phase 1 (test): {across_words(gain.learned)}{_left_out(gain)}{gain_words}",
          str(gain_verdict),
        ],
        [
          f"SmartMixed reaches {PAPER['val']}% val / {PAPER['test']}% test",
          f"best of {len(smart)} architectures by mean val, picked after the fact ({best_arch}):"
          f" {best_val.fmt()} val, {best_test.fmt()} test{theirs}",
          str(verdicts.at_budget(reached, settled)),
        ],
        [
          "SmartMixed ranks in the top three of seven models",
          f"top three of {len(ranks['models'])} on {top3_archs} of {ranks['archs']} architectures (seed-mean"
          f" test accuracy) and in {_pct(sm_rank['top3'])} of {ranks['rankings']} (architecture, seed)"
          f" rankings; mean reciprocal rank {sm_rank['mrr']:.2f}{rank_words}",
          str(rank_verdict),
        ],
        [
          "early layers prefer relu / leaky_relu, deep layers elu / selu, consistently across architectures",
          depth_words(early, deep),
          str(depth_verdict(early, deep, decided)),
        ],
      ],
    ),
  ]


def variant_words(config: dict[str, Any]) -> str:
  """What a run's config changes beyond its preset's usual training, for every budget line it feeds."""
  words = []
  if config.get("logits_lr_scale", 1.0) != 1.0:
    words.append(f"logits learning {config['logits_lr_scale']:g}x faster")
  if config.get("final_temperature") is not None:
    words.append(f"temperature annealed from {config['temperature']:g} to {config['final_temperature']:g}")
  if config.get("schedule") == "cosine_run":
    words.append("one cosine schedule across both phases")
  if config.get("phase2_keeps_start"):
    words.append("Phase 2 may keep its starting model")
  return "".join(f"; {w}" for w in words)


def run_count(runs: Sequence[RunRecord], settings: dict[str, Any]) -> str:
  """How many runs a report reads: trained for it, and borrowed from another study (controls not counted)."""
  trained = sum(r.model != CONTROL and not r.borrowed for r in runs)
  borrowed = sum(r.borrowed for r in runs)
  if not borrowed:
    return f"{trained} runs"
  source = settings["baselines_from"]
  return f"{trained + borrowed} runs: {trained} trained here, {borrowed} borrowed from `{source}`"


def depth_words(early: Across, deep: Across) -> str:
  """Claim 4's measurements: both shifts across architectures, and per architecture."""
  if not early.overall.n:
    return "no SmartMixed network with ≥ 3 hidden layers learned"

  def tests(diff: Across, up: str, down: str) -> str:
    named = lambda archs: f" ({', '.join(archs)})" if 0 < len(archs) <= 4 else ""  # noqa: E731
    higher, lower = diff.higher, diff.lower
    return f"{up} on {len(higher)} of {diff.tested}{named(higher)}, {down} on {len(lower)}{named(lower)}"

  both = [a for a in early.higher if a in deep.higher]
  return (
    f"relu + leaky_relu, first − last hidden layer: {early.overall.fmt_ci(100, 1)} points; elu + selu, last −"
    f" first: {deep.overall.fmt_ci(100, 1)} (means of {early.overall.n} {early.unit} with ≥ 3 hidden layers,"
    f" 95% CIs over {early.unit}). Per architecture (paired t over seeds, Holm): relu + leaky_relu"
    f" {tests(early, 'fall', 'rise')}; elu + selu {tests(deep, 'rise', 'fall')}; both as claimed on"
    f" {len(both)}"
  )


def _left_out(gain: PhaseGain) -> str:
  if not gain.left_out:
    return ""
  return (
    f"; {gain.left_out} runs whose training failed (a phase below 50% validation accuracy) are left out:"
    f" with them, {gain.every.overall.fmt_ci()} points"
  )


def depth_verdict(early: Across, deep: Across, decided: bool) -> verdicts.Verdict:
  """Claim 4: relu/leaky_relu fall and elu/selu rise from the first to the last layer, across
  architectures; qualified when the selection has not settled (the argmax of nearly uniform logits)."""
  verdict = verdicts.all_of(
    {"relu + leaky_relu fall": verdicts.direction(early), "elu + selu rise": verdicts.direction(deep)}
  )
  return verdicts.undecided(verdicts.across_architectures(verdict, early), decided)


def selection_decided(runs: Sequence[RunRecord]) -> bool:
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
  smart = [r for r in runs if r.model == "smartmixed"]
  falls, rises = first_last_shares(runs, EARLY), first_last_shares(runs, DEEP)
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
    f"First vs last hidden layer (≥ 3 hidden layers; mean ± std over seeds): relu + leaky_relu"
    f" {falls['first'].fmt(100, 1)}% → {falls['last'].fmt(100, 1)}%, elu + selu {rises['first'].fmt(100, 1)}%"
    f" → {rises['last'].fmt(100, 1)}%. Paired within each run: {depth_words(early, deep)}."
    f" Verdict: {depth_verdict(early, deep, decided)}.",
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


def _kept_start_section(runs: Sequence[RunRecord], ranked: Sequence[str], settled: bool) -> list[str]:
  """What Phase 2 would have been had it been allowed to keep its starting model, from the records."""
  smart = [r for r in runs if r.model == "smartmixed" and r.phase2 is not None]
  if not smart or smart[0].config.get("phase2_keeps_start") or not smart[0].main.endswith("/carry"):
    return []
  worse = sum(kept_start(r) is not r for r in smart)
  diff = paired(runs, lambda r: kept_start(r).phase2.best.test_accuracy, phase_test("phase2"))
  kept = [kept_start(r) for r in runs]
  counts = {}
  for name, rs in (("as trained", runs), ("keeping the start", kept)):
    ranks = rankings(rs, ranked)
    top = round(ranks["on_means"]["smartmixed"]["top3"] * ranks["archs"])
    fr = friedman(rs, ranked)
    verdict = verdicts.at_budget(
      verdicts.rank(top, ranks["archs"], len(ranked), fr.get("p", math.nan)), settled
    )
    counts[name] = f"{top} of {ranks['archs']} architectures ({verdict})"
  return [
    "",
    "### Had Phase 2 kept its starting model",
    "",
    "Phase 2 starts from a trained model, the frozen Phase 1 network (its epoch 0), but selects among its"
    f" trained epochs only (as the paper's code does). {worse} of {len(smart)} SmartMixed runs end Phase 2"
    " with a higher validation loss than the model they started from. Computed from the records (the"
    " frozen network computes Phase 1's function, so its test accuracy is Phase 1's): letting Phase 2 keep"
    f" its start (`phase2_keeps_start`) would change SmartMixed's test accuracy by {across_words(diff)}. Top"
    f" three of {len(ranked)} as trained: {counts['as trained']}; keeping the start:"
    f" {counts['keeping the start']}.",
  ]


def _ablation_section(runs, smart) -> list[str]:
  variants = sorted({v for r in smart for v in r.phase2_variants()})
  if len(variants) < 2:
    return []
  main = smart[0].main
  rule, init = main.split("/")
  other_rule = f"most_frequent/{init}"
  other_init = f"{rule}/{'reinit' if init == 'carry' else 'carry'}"
  agreement = Stat(statistics.fmean(r.rule_agreement) for r in smart)
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
  if not compared:  # --no-ablation: no other Phase 2 trained, the rules' agreement alone
    return lines[:-1]
  rows = [
    [f"{v} − {main}", across_words(paired(runs, phase_test("phase2", v), phase_test("phase2", main)))]
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
  variants = {v for r in smart for v in r.phase2_variants()}
  main = smart[0].main
  init = main.split("/")[1]
  rows = []
  for name, label in (("shuffled", "choices shuffled within each layer (same proportions)"),
                      ("random", "uniformly random choices (the random-mixture control)")):  # fmt: skip
    if f"{name}/{init}" in variants:
      diff = paired(runs, phase_test("phase2"), phase_test("phase2", f"{name}/{init}"))
      rows.append([f"learned − {label}", across_words(diff)])
  if any(r.continued for r in smart):
    continued = paired(
      runs, phase_test("phase2"), lambda r: r.continued.best.test_accuracy if r.continued else None
    )
    what = "frozen Phase 2 − Phase 1 continued unfrozen (same epochs, schedule, data order)"
    rows.append([what, across_words(continued)])
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


SCRATCH_COMPARISONS = (
  ("SmartMixed (Phase 1, freeze, Phase 2) − its learned choices trained from scratch", None, "argmax"),
  ("learned choices − uniformly random ones, both from scratch", "argmax", "random"),
  ("learned choices − the same with the layers' order reversed, both from scratch", "argmax", "reversed"),
  ("SmartMixed − uniformly random choices from scratch", None, "random"),
)
"""``(what, a, b)``: a − b, each a rule's variant from scratch (None: SmartMixed's own Phase 2)."""


def _scratch_section(runs, smart) -> list[str]:
  """Controls trained from scratch for the whole budget: does the process help, does the choice matter,
  does the depth pattern matter? Each a paired difference with its verdict (``verdicts.direction``)."""
  variants = {v for r in smart for v in r.phase2_variants()}
  if not any(v.endswith("/scratch") for v in variants):
    return []
  getter = lambda rule: phase_test("phase2", rule and f"{rule}/scratch")  # noqa: E731
  rows = []
  for what, a, b in SCRATCH_COMPARISONS:
    if all(rule is None or f"{rule}/scratch" in variants for rule in (a, b)):
      diff = paired(runs, getter(a), getter(b))
      rows.append([what, across_words(diff), str(verdicts.direction(diff, 1))])
  return [
    "",
    "## Controls from scratch: does the process, the choice, the depth pattern matter?",
    "",
    "Mixed networks trained from scratch for both phases' epochs, as the baselines are (their initial"
    " weights, schedule and data order), with the choices SmartMixed learned, uniformly random choices, and"
    " the learned choices with the layers' order reversed (layer i takes the activation shares of layer"
    " L + 1 − i, at its own width). Test accuracy; the verdict is on the difference being positive:",
    "",
    *markdown_table(["comparison", "difference (points)", "verdict"], rows),
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
    epochs = len(seeds[0].last.history) - 1
    late = round(0.75 * epochs)
    gain = Stat(r.last.history[-1].val_accuracy - r.last.history[late].val_accuracy for r in seeds)
    rows.append([
      arch, best, test[arch][best].fmt(), ", ".join(str(r.last.best.epoch) for r in seeds),
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
  """A variant study (``--logits-lr-scale``) against SmartMixed of the sweep it took its baselines from
  (the logits at the weights' rate): same seeds, initial weights and data order; only the logits'
  learning rate differs."""
  reference = reference_dir(out, settings)
  scale = settings.get("logits_lr_scale", 1.0)
  if reference is None or scale == 1.0:
    return []
  ref = {(r.arch, r.seed): r for r in read_records(reference) if r.model == "smartmixed"}
  mine = [r for r in runs if r.model == "smartmixed" and (r.arch, r.seed) in ref]
  if not mine:
    return []

  def of_reference(getter):
    return lambda run: getter(ref[(run.arch, run.seed)])

  phase2 = paired(mine, phase_test("phase2"), of_reference(phase_test("phase2")))
  phase1 = paired(mine, phase_test("phase1"), of_reference(phase_test("phase1")))
  theirs = decisiveness([ref[(r.arch, r.seed)] for r in mine])
  ours = decisiveness(mine)
  rows = []
  for arch in ours:
    seeds = [ref[(r.arch, r.seed)] for r in mine if r.arch == arch]
    rows.append([
      arch,
      *(f"{theirs[arch][k].fmt(1, 2)} → {ours[arch][k].fmt(1, 2)}" for k in ("entropy", "decided")),
      Stat(phase_test("phase2")(r) for r in seeds).fmt(),
      Stat(phase_test("phase2")(r) for r in mine if r.arch == arch).fmt(),
      phase2.per_arch[arch].fmt_ci(),
    ])  # fmt: skip
  name = Path(settings["baselines_from"]).name
  return [
    "",
    f"## The variant: logits learning {scale:g}x faster, against the logits at the weights' rate",
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
    f"Variant − reference, test accuracy: Phase 2 {across_words(phase2)}; Phase 1 {across_words(phase1)}.",
  ]


def _command(out: Path, settings: dict[str, Any], runs: Sequence[RunRecord]) -> str:
  """The sweep command that writes (or resumes) this study."""
  seeds = sorted({r.seed for r in runs if r.model == "smartmixed"} or settings.get("seeds", []))
  archs = sorted({list(ARCHITECTURES).index(r.arch) + 1 for r in runs if r.arch in ARCHITECTURES})
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
  if settings.get("scratch"):
    parts.append("--scratch-controls")
  scale = settings.get("logits_lr_scale", 1.0)
  if "preset" in settings and scale != preset_logits_lr_scale(settings["preset"]):
    parts.append(f"--logits-lr-scale {scale:g}")
  parts += [f"--set {name}={json.dumps(value)}" for name, value in settings.get("overrides", {}).items()]
  if settings.get("baselines_from"):
    parts.append(f"--baselines-from {shown(Path(out, settings['baselines_from']))}")
  return " ".join(parts)


def _compute_section(runs, out: Path) -> list[str]:
  cost = paper_budget_seconds(runs)
  seeds, archs = len({r.seed for r in runs}), len({r.arch for r in runs})
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
