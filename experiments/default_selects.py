"""Which default makes the selection select? Phase 1 under candidate settings, on all 18 architectures.

    python experiments/default_selects.py             # 6 candidates x 18 architectures x 3 seeds
    python experiments/default_selects.py --report    # rewrite REPORT.md from the records alone
    python experiments/default_selects.py --smoke     # a tiny version, to check that it runs (in the tests)

Under the library's old default (the ``recommended`` preset, logits learning
at the weights' rate) Phase 1 ends with every neuron undecided: entropy near
log 6, a uniform draw frozen in place. Each candidate here changes one thing
the literature on Gumbel selection varies (the logits' learning rate, as
DARTS and GDAS give the architecture parameters their own; GDAS's annealed
temperature) and trains Phase 1 alone for the medium budget's 10 epochs on
full MNIST, every architecture x seed, through ``sweep.py --budget screen``.
A candidate is judged on three criteria, each a rule of ``verdicts.py``:

- decided: every run ends Phase 1 with >= 90% of its hidden neurons
  decided (softmax entropy below half of log k);
- no worse: Phase 1 test accuracy of the argmax network not below the old
  default's in any architecture (the paired difference over seeds is not
  significantly negative after Holm's correction across architectures);
- robust: every run learns (Phase 1 validation accuracy >= 50%);

and holds only if all three hold. Of the candidates that hold, the one with
the highest mean Phase 1 test accuracy is the default. A candidate is
trained one architecture at a time and dropped at its first undecided run.

Every candidate is a sweep directory ``OUT/<candidate>/`` whose runs are
written as they finish (``runs/<arch>/smartmixed/seed<N>.json``): a rerun
trains only what is missing.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import stats
import sweep
import verdicts
from records import FAILED_VAL_ACCURACY, read_records, shown
from report import markdown_table, study_parser, write_markdown
from stats import Stat, paper_order
from verdicts import DOES_NOT_HOLD, HOLDS, Verdict

from smartmixed_jax import app
from smartmixed_jax.app import RunRecord
from smartmixed_jax.artifacts import pyplot, save_figure

OUT = Path(__file__).parent / "results" / "default_selects"
SEEDS = (0, 1, 2)
DECIDED = 0.9  # of hidden neurons, in every run
REFERENCE = "old"


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A Phase 1 setting: the logits' learning-rate scale and further Config fields."""

  logits_lr_scale: float = 1.0
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
  note: str = ""


CANDIDATES = {
  "old": Candidate(note="the old default: the recommended preset as it was"),
  "logits100": Candidate(100.0, note="logits learn 100x faster (Study 3)"),
  "logits30": Candidate(30.0, note="logits learn 30x faster"),
  "logits10": Candidate(10.0, note="logits learn 10x faster"),
  "logits30_anneal": Candidate(
    30.0, {"final_temperature": 0.03}, note="30x, and the temperature annealed 0.3 -> 0.03 (GDAS)"
  ),
  "anneal": Candidate(1.0, {"final_temperature": 0.03}, note="the temperature annealed 0.3 -> 0.03 alone"),
}
"""In the order they are trained: the old default first, the comparison every criterion needs."""


def run_all(
  out: Path,
  data: app.Dataset,
  *,
  candidates: Sequence[str],
  archs: Sequence[str],
  seeds: Sequence[int],
  budget: str = "screen",
  progress: bool = True,
) -> int:
  """Trains whatever of each candidate's sweep is missing, candidate by candidate; returns runs written.

  A candidate is trained one architecture at a time and dropped at the first
  run that ends undecided: *decided* must hold in every run, so that run
  alone rules the candidate out, and its remaining runs would not change any
  verdict (the report shows the runs it has).
  """
  written = 0
  for name in candidates:
    candidate = CANDIDATES[name]
    for arch in archs:
      failed = eliminated(out / name)
      if failed and name != REFERENCE:
        print(f"{name}: {failed}; its remaining runs are not trained")
        break
      written += sweep.sweep(
        out / name, data, archs=[arch], seeds=seeds, budget=budget, ablation=False, controls=False,
        progress=progress, logits_lr_scale=candidate.logits_lr_scale, overrides=candidate.overrides,
      )  # fmt: skip
  return written


def eliminated(out: Path) -> Optional[str]:
  """Why the candidate whose sweep is ``out`` cannot hold (a run ended undecided), or None."""
  runs = {(r.arch, r.seed): r for r in read_records(out)} if (out / "runs").is_dir() else {}
  verdict = decided_verdict(runs)
  return None if verdict.word != DOES_NOT_HOLD else f"decided does not hold ({verdict.reason})"


# ----------------------------------------------------------------------------
# The report.


def decided_share(run: RunRecord) -> float:
  """The share of all hidden neurons decided at Phase 1's last epoch (layers weighted by their width)."""
  layers = run.phase1.history[-1].selection
  widths = run.config["hidden"]
  return sum(w * layer.decided for w, layer in zip(widths, layers)) / sum(widths)


def phase1_test(run: RunRecord) -> float:
  """Phase 1's test accuracy at its selected epoch, evaluated with each neuron's argmax."""
  return run.phase1.best.test_accuracy


@dataclasses.dataclass(frozen=True)
class Judged:
  """A candidate's runs and its verdict on each criterion."""

  name: str
  runs: dict[tuple[str, int], RunRecord]
  decided: Verdict
  no_worse: Verdict
  robust: Verdict
  overall: Verdict
  versus: Optional[stats.Across]  # Phase 1 test accuracy, candidate - reference, per architecture

  @property
  def mean_test(self) -> float:
    """The mean over architectures of each architecture's seed-mean Phase 1 test accuracy."""
    per_arch = {}
    for (arch, _), run in self.runs.items():
      per_arch.setdefault(arch, []).append(phase1_test(run))
    return statistics.fmean(statistics.fmean(v) for v in per_arch.values())


def _label(key: tuple[str, int]) -> str:
  return f"{key[0]}/seed{key[1]}"


def decided_verdict(runs: dict[tuple[str, int], RunRecord]) -> Verdict:
  """Does every run end Phase 1 with at least ``DECIDED`` of its hidden neurons decided?"""
  return verdicts.every_run({_label(k): decided_share(r) for k, r in runs.items()}, DECIDED, "decided")


def judge(name: str, runs: dict[tuple[str, int], RunRecord], reference, expected: int) -> Judged:
  """A candidate against the criteria; with fewer than ``expected`` runs its verdicts are not resolved
  (``verdicts.so_far``), but for a criterion on every run that one of them already fails."""
  decided = decided_verdict(runs)
  robust = verdicts.every_run(
    {_label(k): r.phase1.best.val_accuracy for k, r in runs.items()},
    FAILED_VAL_ACCURACY,
    "validation accuracy",
  )
  versus = None
  if name == REFERENCE:
    no_worse = Verdict(HOLDS, "the reference itself")
  else:
    per_arch = {}
    for (arch, seed), run in runs.items():
      if (arch, seed) in reference:
        per_arch.setdefault(arch, []).append(phase1_test(run) - phase1_test(reference[(arch, seed)]))
    versus = stats.across(per_arch)
    no_worse = verdicts.not_below(versus)
  decided, robust = (verdicts.so_far(v, len(runs), expected, every_run=True) for v in (decided, robust))
  no_worse = verdicts.so_far(no_worse, len(runs), expected)
  overall = verdicts.all_of({"decided": decided, "no worse": no_worse, "robust": robust})
  return Judged(name, runs, decided, no_worse, robust, overall, versus)


def choose(judged: Sequence[Judged]) -> Optional[Judged]:
  """The default: of the candidates that hold on every criterion, the highest mean Phase 1 test accuracy."""
  passing = [j for j in judged if j.overall.word == HOLDS and j.name != REFERENCE]
  return max(passing, key=lambda j: j.mean_test, default=None)


def plot(path: Path, judged: Sequence[Judged], archs: Sequence[str]) -> str:
  """Per architecture: the share of neurons decided, and Phase 1's test accuracy against the old default."""
  plt = pyplot()
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(archs)), 7), sharex=True)
  xs = np.arange(len(archs))
  for j in judged:
    share = [Stat(decided_share(r) for (a, _), r in j.runs.items() if a == arch) for arch in archs]
    style = dict(marker="o", ms=4, label=j.name, lw=2.5 if j.name == REFERENCE else 1.2)
    top.plot(xs, [100 * s.mean if s.n else np.nan for s in share], **style)
    if j.versus is not None:
      diff = [j.versus.per_arch.get(arch, Stat([])) for arch in archs]
      bottom.errorbar(xs, [100 * d.mean if d.n else np.nan for d in diff],
                      yerr=[100 * d.ci95() if d.n > 1 else 0 for d in diff], capsize=2, **style)  # fmt: skip
  top.axhline(100 * DECIDED, color="grey", ls="--", lw=1)
  top.set_ylabel("neurons decided at Phase 1's end (%)")
  top.legend(ncol=len(judged), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
  bottom.axhline(0, color="grey", lw=1)
  bottom.set_ylabel("Phase 1 test accuracy − old default's\n(points, mean ± 95% CI over seeds)")
  bottom.set_xticks(xs, [str(sweep.arch_number(a)) for a in archs])
  bottom.set_xlabel("architecture (number in PAPER.md)")
  for ax in (top, bottom):
    ax.grid(alpha=0.3)
  return save_figure(fig, path, dpi=110)


def write_report(out: Path, seeds: Sequence[int] = SEEDS) -> Path:
  """``out/REPORT.md`` and ``out/default_selects.png`` from every candidate's records."""
  archs = sorted(app.ARCHITECTURES, key=paper_order)
  expected = len(archs) * len(seeds)
  found = {
    name: {(r.arch, r.seed): r for r in read_records(out / name) if r.model == "smartmixed"}
    for name in CANDIDATES
    if (out / name / "runs").is_dir()
  }
  reference = found.get(REFERENCE, {})
  judged = [judge(name, runs, reference, expected) for name, runs in found.items() if runs]
  chosen = choose(judged)
  figure = plot(out / "default_selects.png", judged, archs)
  rows = []
  for j in judged:
    versus = "—" if j.versus is None else stats.across_words(j.versus)
    shares = [decided_share(r) for r in j.runs.values()]
    hours = stats.compute_seconds(list(j.runs.values())) / 3600
    rows.append([
      f"`{j.name}`", CANDIDATES[j.name].note, f"{len(j.runs)}/{expected}",
      f"{100 * min(shares):.1f} / {100 * statistics.fmean(shares):.1f}", f"{100 * j.mean_test:.2f}", versus,
      j.decided.word, j.no_worse.word, j.robust.word, f"**{j.overall.word}**", f"{hours:.2f}",
    ])  # fmt: skip
  per_arch = []
  for arch in archs:
    cells = []
    for j in judged:
      runs = [r for (a, _), r in j.runs.items() if a == arch]
      cells.append(
        "—" if not runs else
        f"{100 * statistics.fmean(map(decided_share, runs)):.0f}% / {Stat(map(phase1_test, runs)).fmt()}"
      )  # fmt: skip
    per_arch.append([f"{sweep.arch_number(arch)} {arch}", *cells])
  verdict_lines = [
    f"- **`{j.name}`**: {j.overall.word}. Decided: {j.decided}. No worse: {j.no_worse}. Robust: {j.robust}."
    for j in judged
  ]
  pending = [  # still training: neither complete nor ruled out
    name
    for name in CANDIDATES
    if len(found.get(name, {})) < expected and decided_verdict(found.get(name, {})).word != DOES_NOT_HOLD
  ]
  if chosen and not pending:
    answer = (
      f"**The default: `{chosen.name}`** ({CANDIDATES[chosen.name].note}): of the candidates that hold on"
      " every criterion, the highest mean Phase 1 test accuracy."
    )
  elif chosen:
    answer = (
      f"**Provisional: `{chosen.name}`** ({CANDIDATES[chosen.name].note}) holds on every criterion and"
      f" leads so far; {', '.join(f'`{n}`' for n in pending)} still have runs to train, so no default is"
      " chosen yet."
    )
  else:
    answer = "**No candidate holds on every criterion yet**: the default stays undecided by this study."
  lines = [
    "# Which default makes the selection select?",
    "",
    "Phase 1 alone, 10 epochs of the full 54,000-example training set (the medium budget's Phase 1),"
    f" every architecture of PAPER.md x seeds {', '.join(map(str, seeds))}, the `recommended` preset with"
    " one change per candidate. Written by `python experiments/default_selects.py` from the records in"
    f" `{shown(out)}/<candidate>/runs/` (`--report` rewrites it alone).",
    "",
    "Criteria, each a rule of `experiments/verdicts.py`: **decided**, every run ends Phase 1 with at least"
    f" {100 * DECIDED:g}% of its hidden neurons decided (softmax entropy below half of log 6); **no worse**,"
    " Phase 1's test accuracy (the argmax network, at Phase 1's selected epoch) is not below the old"
    " default's on any architecture (paired over seeds; Holm-corrected over architectures); **robust**,"
    f" every run learns (Phase 1 validation accuracy at least {100 * FAILED_VAL_ACCURACY:g}%). A candidate"
    " is trained one architecture at a time and dropped at its first undecided run, which alone rules it"
    " out; its other verdicts then rest on the runs it has.",
    "",
    "Not candidates: a logit parametrised as c·θ moves c times as fast under Adam, which is the"
    " learning-rate scale again; a random initialisation of the logits would decide by the draw, not by"
    " learning.",
    "",
    answer,
    "",
    *markdown_table(
      [
        "candidate",
        "what",
        "runs",
        "decided % (min / mean)",
        "P1 test %",
        "P1 test vs old (points)",
        "decided",
        "no worse",
        "robust",
        "all",
        "compute (h)",
      ],
      rows,
    ),  # fmt: skip
    "",
    *verdict_lines,
    "",
    f"![decided share and accuracy per architecture]({figure})",
    "",
    "Per architecture: the share of hidden neurons decided (mean over seeds) / Phase 1 test accuracy"
    " (mean ± std over seeds):",
    "",
    *markdown_table(["architecture", *(f"`{j.name}`" for j in judged)], per_arch),
    "",
  ]
  path = out / "REPORT.md"
  return write_markdown(path, lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = study_parser(__doc__, OUT, SEEDS, "2 epochs of 512 examples, to check that it runs")
  parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
  parser.add_argument("--archs", nargs="+", default=None, help="numbers 1-18 or names (default: all 18)")
  args = parser.parse_args(argv)
  try:
    archs = [sweep.architecture(a) for a in (args.archs or list(app.ARCHITECTURES))]
  except ValueError as e:
    parser.error(str(e))
  if not args.report:
    data = app.load_mnist(args.data_dir)
    budget = "screen"
    if args.smoke:
      budget = "smoke"
      sweep.BUDGETS[budget] = sweep.Budget(2, 0, 512)
    written = run_all(args.out, data, candidates=args.candidates, archs=archs, seeds=args.seeds,
                      budget=budget, progress=args.progress)  # fmt: skip
    print(f"wrote {written} runs under {args.out}")
  print(write_report(args.out, args.seeds))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
