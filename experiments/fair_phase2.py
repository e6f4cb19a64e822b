"""A fair Phase 2, with controls trained from scratch: does the process, the choice, the depth pattern pay?

    python experiments/fair_phase2.py             # 2 arms x 6 architectures x 5 seeds (hours on 2 cores)
    python experiments/fair_phase2.py --report    # rewrite the reports from the records alone
    python experiments/fair_phase2.py --smoke     # a tiny version, to check that it runs (in the tests)

Study 2 and Study 3 gave SmartMixed a Phase 2 that restarts its cosine
schedule at the peak and may not keep the model it starts from, while a
baseline decays one schedule over the same total epochs; and their controls
(shuffled, random choices) start from Phase 1's weights. Here every
SmartMixed run continues one cosine schedule across both phases
(``schedule="cosine_run"``, the baselines' own) and Phase 2 may keep its
starting model (``phase2_keeps_start``); and three controls are trained from
scratch for the whole budget, from the baselines' initial weights, schedule
and data order: the learned choices, uniformly random ones, and the learned
choices with the layers' order reversed (``engine.depth_reversed``).

Study 2's 6 architectures at its ``medium`` budget (10 + 20 epochs, baselines
30), seeds 0-4, in two arms: the logits learning 100x faster (the library's
default) and at the weights' rate (the old default). The default arm trains
the six baselines; the other ranks against them (``--baselines-from``): the
baselines have no logits. Each arm is a sweep directory ``OUT/<arm>/`` with
its own REPORT.md; ``OUT/REPORT.md`` puts the arms side by side. It trains
architecture by architecture, both arms of one before the next, and writes
every finished cohort at once, so a rerun trains only what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import report
import stats
import sweep
import verdicts
from records import load_runs, read_settings, shown
from report import SCRATCH_COMPARISONS, markdown_table, study_parser, write_markdown

from smartmixed_jax import app

OUT = Path(__file__).parent / "results" / "fair_phase2"
ARCHS = ("simple_2layer", "medium_5layer", "small_3layer", "wide_4layer", "wide_8layer", "wide_14layer")
SEEDS = (0, 1, 2, 3, 4)
ARMS = {"logits100": 100.0, "logits1": 1.0}
"""Arm name -> the logits' learning-rate scale; the first arm trains the baselines."""
FAIR = {"schedule": "cosine_run", "phase2_keeps_start": True}


def run_all(
  out: Path,
  data: app.Dataset,
  *,
  archs: Sequence[str] = ARCHS,
  seeds: Sequence[int] = SEEDS,
  arms: Sequence[str] = tuple(ARMS),
  budget: str = "medium",
  progress: bool = True,
) -> int:
  """Trains whatever is missing, architecture by architecture (both arms of one before the next, so
  an unfinished study has whole architectures); returns how many runs it wrote.

  The baselines train one cohort per activation: an interruption loses at most that cohort.
  """
  first = next(iter(ARMS))
  written = 0
  for arch in archs:
    for arm in arms:
      written += sweep.sweep(
        out / arm, data, archs=[arch], seeds=seeds, budget=budget, group_baselines=False,
        ablation=False, controls=False, scratch=True, progress=progress, logits_lr_scale=ARMS[arm],
        overrides=FAIR, baselines_from=None if arm == first else out / first,
      )  # fmt: skip
  return written


def _comparisons(runs) -> list[tuple[str, stats.Across]]:
  """Phase 2 − Phase 1, then the controls from scratch (:data:`report.SCRATCH_COMPARISONS`)."""
  test = stats.phase_test
  rows = [("Phase 2 − Phase 1 (one schedule; Phase 2 may keep its start)",
           stats.paired(runs, test("phase2"), test("phase1")))]  # fmt: skip
  for what, a, b in SCRATCH_COMPARISONS:
    get = lambda rule: test("phase2", rule and f"{rule}/scratch")  # noqa: E731
    rows.append((what, stats.paired(runs, get(a), get(b))))
  return rows


def write_report(out: Path) -> Path:
  """Each arm's REPORT.md (``report.write_report``), and ``out/REPORT.md`` with the arms side by side."""
  arms = [arm for arm in ARMS if (out / arm / "runs").is_dir()]
  table, notes = [], []
  for arm in arms:
    report.write_report(out / arm)
    runs = load_runs(out / arm)
    smart = [r for r in runs if r.model == "smartmixed"]
    settings = read_settings(out / arm)
    expected = len(ARCHS) * len(settings.get("seeds", SEEDS))
    notes.append(
      f"- [`{arm}`]({arm}/REPORT.md): logits learning {ARMS[arm]:g}x the weights' rate;"
      f" {len(smart)} of {expected} SmartMixed runs trained,"
      f" {stats.compute_seconds([r for r in runs if not r.borrowed]) / 3600:.2f} h."
    )
    for what, diff in _comparisons(runs):
      verdict = verdicts.so_far(verdicts.direction(diff, 1), len(smart), expected)
      table.append([f"`{arm}`", what, stats.across_words(diff) if diff.overall.n else "—", str(verdict)])
  lines = [
    "# A fair Phase 2, with controls trained from scratch",
    "",
    f"Study 2's architectures ({', '.join(ARCHS)}) at the `medium` budget (Phase 1 10 + Phase 2 20"
    " epochs, baselines and controls from scratch 30), one cosine schedule across both phases, Phase 2"
    " allowed to keep its starting model. Written by `python experiments/fair_phase2.py` from the records"
    f" in `{shown(out)}/<arm>/runs/` (`--report` rewrites it alone). Each arm's own report ranks"
    " SmartMixed against the six baselines.",
    "",
    *notes,
    "",
    "Test accuracy, paired by seed; the difference is over the architectures' seed means; a verdict"
    " holds when the difference is positive (`verdicts.direction`); while an arm is still training, every"
    " verdict of it is not resolved:",
    "",
    *markdown_table(["arm", "comparison", "difference (points)", "verdict"], table),
    "",
  ]
  path = out / "REPORT.md"
  return write_markdown(path, lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = study_parser(__doc__, OUT, SEEDS, "1 + 1 epochs of 512 examples, 2 architectures")
  parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
  args = parser.parse_args(argv)
  if not args.report:
    data = app.load_mnist(args.data_dir)
    budget, archs = "medium", ARCHS
    if args.smoke:
      budget, archs = "smoke", ARCHS[:2]
      sweep.BUDGETS[budget] = sweep.Budget(1, 1, 512)
    written = run_all(args.out, data, archs=archs, seeds=args.seeds, arms=args.arms, budget=budget,
                      progress=args.progress)  # fmt: skip
    print(f"wrote {written} runs under {args.out}")
  print(write_report(args.out))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
