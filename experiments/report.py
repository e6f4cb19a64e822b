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

import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
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
  PhaseGain,
  Stat,
  _overall,
  accuracy_table,
  by_arch_model,
  compute_seconds,
  decisiveness,
  depth_shares,
  first_last_shares,
  friedman,
  paired,
  paper_budget_seconds,
  phase1_accuracy,
  phase1_eval,
  phase1_eval_words,
  phase_gain,
  phase_test,
  rankings,
)

from smartmixed_jax.app import ARCHITECTURES, RunRecord
from smartmixed_jax.artifacts import atomic_write_bytes

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
    f" {config['schedule']} schedule, batch {config['batch_size']}, reference quirks"
    f" {'on' if config.get('softmax_output', config.get('reference_quirks')) else 'off'}, Phase 2 weights"
    f" {'re-initialised' if config['reinit_phase2'] else 'carried over'}). Seeds {seeds};"
    f" {len(table)} architectures; {sum(r.model != CONTROL for r in runs)} runs. Accuracy is that of the"
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
        ", ".join(str(r.phase1.best.epoch) for r in seed_runs),
        ", ".join(str(r.phase2.best.epoch) for r in seed_runs),
      ]
      last = [r.phase1.history[-1] for r in seed_runs]
      sampled_vs_argmax = [
        Stat(getattr(h, k) for h in last).fmt() for k in ("train_accuracy", "val_accuracy")
      ]
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


def write_selection_report(out: Path, runs: Sequence[RunRecord], settings: dict[str, Any]) -> Path:
  """REPORT.md of a Phase-1-only study: which activations each depth selects, and whether it has settled."""
  smart = [r for r in runs if r.model == "smartmixed"]
  seeds = sorted({r.seed for r in smart})
  config = smart[0].config
  early, deep = first_last_shares(runs, EARLY), first_last_shares(runs, DEEP)
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
    f" {config['learning_rate']} ({config['schedule']}), temperature {config['temperature']}; seeds {seeds};"
    f" {len({r.arch for r in smart})} architectures; {len(smart)} runs;"
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
  best = max(baselines, key=lambda m: statistics.fmean(r.final.test_accuracy for r in models[m].values()))
  seeds = set(models["smartmixed"]) & set(models[best])
  diff = Stat(
    models["smartmixed"][s].final.test_accuracy - models[best][s].final.test_accuracy for s in seeds
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
  best_arch = max(smart, key=lambda a: statistics.fmean(r.final.val_accuracy for r in smart[a].values()))
  best_val = Stat(r.final.val_accuracy for r in smart[best_arch].values())
  best_test = Stat(r.final.test_accuracy for r in smart[best_arch].values())
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
  config = next(iter(next(iter(smart.values())).values())).config
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
  variants = {v for r in smart for v in r.phase2_variants()}
  main = smart[0].main
  init = main.split("/")[1]
  rows = []
  for name, label in (("shuffled", "choices shuffled within each layer (same proportions)"),
                      ("random", "uniformly random choices (the random-mixture control)")):  # fmt: skip
    if f"{name}/{init}" in variants:
      diff = paired(runs, phase_test("phase2"), phase_test("phase2", f"{name}/{init}"))
      rows.append([f"learned − {label}", _overall(diff)])
  if any(r.continued for r in smart):
    continued = paired(
      runs, phase_test("phase2"), lambda r: r.continued.best.test_accuracy if r.continued else None
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
  """A variant study (``--logits-lr-scale``) against the preset's SmartMixed of the sweep it took its
  baselines from: same seeds, initial weights and data order; only the logits' learning rate differs."""
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
  if settings.get("logits_lr_scale", 1.0) != 1.0:
    parts.append(f"--logits-lr-scale {settings['logits_lr_scale']:g}")
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
