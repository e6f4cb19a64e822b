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
A candidate is judged on four criteria, each a rule of ``verdicts.py``:

- decided: >= 90% of hidden neurons decided (softmax entropy below half of
  log k) at Phase 1's end, in every architecture (the mean over its seeds)
  and in no seed under 80%;
- no worse: Phase 1 test accuracy of the argmax network not below the old
  default's in any architecture (the paired difference over seeds is not
  significantly negative after Holm's correction across architectures);
- robust: no architecture where it fails to learn (test accuracy >= 90% in
  every seed);
- the whole candidate holds only if all three hold.

Every candidate is a sweep directory ``OUT/<candidate>/`` whose runs are
written as they finish (``runs/<arch>/smartmixed/seed<N>.json``): a rerun
trains only what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import sweep

from smartmixed_jax import app

OUT = Path(__file__).parent / "results" / "default_selects"
SEEDS = (0, 1, 2)


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
  """Trains whatever of each candidate's sweep is missing, candidate by candidate; returns runs written."""
  written = 0
  for name in candidates:
    candidate = CANDIDATES[name]
    written += sweep.sweep(
      out / name, data, archs=archs, seeds=seeds, budget=budget, ablation=False, controls=False,
      progress=progress, logits_lr_scale=candidate.logits_lr_scale, overrides=candidate.overrides,
    )  # fmt: skip
  return written


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=Path, default=OUT)
  parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
  parser.add_argument("--archs", nargs="+", default=None, help="numbers 1-18 or names (default: all 18)")
  parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
  parser.add_argument("--report", action="store_true", help="only rewrite REPORT.md from the records")
  parser.add_argument("--smoke", action="store_true", help="2 epochs of 512 examples, to check that it runs")
  parser.add_argument("--no-progress", dest="progress", action="store_false")
  parser.add_argument("--data-dir", type=Path, default=None)
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
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
