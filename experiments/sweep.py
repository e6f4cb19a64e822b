"""The paper's study: 18 architectures x (SmartMixed + six fixed activations) x seeds.

    python experiments/sweep.py --budget quick --seeds 0 1 2    # ~35 min on 2 CPU cores
    python experiments/sweep.py --budget paper --preset paper --seeds 0 1 2   # on a GPU
    python experiments/sweep.py --budget long --preset paper --archs 1 4 3 --no-ablation --no-group-baselines
    python experiments/sweep.py --budget quick --archs 1 3 wide_14layer      # some architectures
    python experiments/sweep.py --speedup --archs 4 9 --seeds 0 1 2          # vmap vs one by one

Models of one architecture that share shapes train together as one
``jax.vmap``-ed program (a *cohort*): the seeds of SmartMixed's Phase 1; its
Phase 2 variants (freeze rule x carried-over / re-initialised weights) of all
seeds; and the six fixed-activation baselines of all seeds. Grouped, each
model evaluates every activation and selects its own (the choices are data);
``--no-group-baselines`` trains one cohort per activation instead, which runs
only that activation but compiles six programs. ``--speedup`` measures both
against one model at a time.

Every finished run writes ``OUT/runs/<arch>/<model>/seed<N>.json``; a rerun
skips what is done, so an interrupted sweep loses at most the cohort in
flight. ``experiments/report.py OUT`` turns the files into REPORT.md and
figures; the sweep calls it at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import jax
from tqdm.auto import tqdm

import smartmixed_jax as sm
from smartmixed_jax import app, engine
from smartmixed_jax.artifacts import write_json

RESULTS = Path(__file__).parent / "results"
BASELINES = sm.pool_names(sm.DEFAULT_POOL)
MODELS = ("smartmixed", *BASELINES)
MAIN_RULE = "argmax"


@dataclasses.dataclass(frozen=True)
class Budget:
  """Epochs per phase (baselines train for their sum) and training examples used."""

  phase1_epochs: int
  phase2_epochs: int
  train_limit: Optional[int] = None


BUDGETS = {
  "quick": Budget(3, 3, 8192),  # all 18 architectures x 3 seeds in ~35 min on 2 CPU cores
  # Phase 1 alone at the paper's step count (50 epochs x 422 steps = 21,100): where selection settles.
  "selection": Budget(50, 0),
  "medium": Budget(10, 20),  # full training set
  # Phase 1 alone at the medium budget's 10 epochs: a screen of selection settings.
  "screen": Budget(10, 0),
  "paper": Budget(50, 350),  # the reference: 50 + 350 epochs, baselines 400
  # The paper's Phase 1 (21,100 steps), then 100 epochs: at lr 1e-4 long enough for the curves to flatten,
  # at 3/8 of the paper's compute (issue 24's study b: ~5 h for 3 architectures x 3 seeds on 2 CPU cores).
  "long": Budget(50, 100),
}


def architecture(spec: str) -> str:
  """An architecture name from its name or its number (1-18) in PAPER.md."""
  names = list(app.ARCHITECTURES)
  if spec.isdigit() and 1 <= int(spec) <= len(names):
    return names[int(spec) - 1]
  if spec in app.ARCHITECTURES:
    return spec
  raise ValueError(f"Unknown architecture {spec!r}: give a number 1-{len(names)} or one of {names}.")


def arch_number(arch: str) -> int:
  return list(app.ARCHITECTURES).index(arch) + 1


def preset_logits_lr_scale(preset: str) -> float:
  """The logits' learning-rate scale a preset trains with (``recommended``: the library's default)."""
  return app.make_config("simple_2layer", preset).logits_lr_scale


def make_configs(arch: str, preset: str, budget: Budget, seed: int, **overrides) -> app.Config:
  return app.make_config(
    arch,
    preset,
    phase1_epochs=budget.phase1_epochs,
    phase2_epochs=budget.phase2_epochs,
    train_limit=budget.train_limit,
    seed=seed,
    **overrides,
  )


# ----------------------------------------------------------------------------
# SmartMixed and the baselines of one architecture, each a cohort through the library's engine.


def run_smartmixed(
  arch: str,
  seeds: Sequence[int],
  make: Callable[..., app.Config],
  splits: dict[str, tuple[jax.Array, jax.Array]],
  *,
  ablation: bool = True,
  controls: bool = True,
  scratch: bool = False,
  progress: bool = True,
  devices: int = 1,
) -> dict[int, app.RunRecord]:
  """Phase 1 of every seed as one program, then every Phase 2 variant as one.

  The variants: the preset's Phase 2 (argmax freeze; weights carried over or
  re-initialised as the preset says); with ``ablation``, the most frequent
  Phase 1 sample of the last epoch as freeze rule, and the other weight
  initialisation; with ``controls``, the learned choices shuffled within each
  layer (same proportions) and uniformly random choices (the random-mixture
  control), plus Phase 1 continued unfrozen for Phase 2's epochs; with
  ``scratch``, the learned, random and depth-reversed choices trained from
  scratch for both phases' epochs, as the baselines are. All variants of a
  seed share its Phase 2 data order.
  """
  config = make(arch, seed=seeds[0])
  preset_init = engine.preset_variant(config)[1]
  other_init = "carry" if preset_init == "reinit" else "reinit"
  variants = [(MAIN_RULE, preset_init)]
  if ablation:
    variants += [("most_frequent", preset_init), (MAIN_RULE, other_init)]
  if controls:
    variants += [("shuffled", preset_init), ("random", preset_init)]
  if scratch:
    variants += [(rule, "scratch") for rule in SCRATCH_RULES]
  if config.phase2_epochs == 0:  # a selection study: Phase 1 is the object
    variants = []
  result = engine.two_phase(
    config, splits, seeds=seeds, variants=variants, continue_phase1=controls and bool(variants),
    devices=devices, progress=progress,
  )  # fmt: skip
  return {seed: engine.record(make(arch, seed=seed), result, i) for i, seed in enumerate(seeds)}


SCRATCH_RULES = ("argmax", "random", "reversed")
"""The controls trained from scratch: the learned choices, uniformly random ones, and the learned
choices with the layers' order reversed (``engine.depth_reversed``)."""


def run_baselines(
  arch: str,
  pairs: Sequence[tuple[str, int]],
  make: Callable[..., app.Config],
  splits: dict[str, tuple[jax.Array, jax.Array]],
  *,
  progress: bool = True,
  devices: int = 1,
) -> dict[tuple[str, int], app.RunRecord]:
  """Fixed-activation MLPs, one per ``(activation, seed)`` pair, as one program (the same initial
  weights as SmartMixed's for the same seed)."""
  result = engine.baselines(
    make(arch, seed=pairs[0][1]), splits, pairs=pairs, devices=devices, progress=progress
  )
  return {
    (act, seed): engine.record(make(arch, seed=seed, baseline=act), result, m)
    for m, (act, seed) in enumerate(pairs)
  }


# ----------------------------------------------------------------------------
# The sweep: work units, resumption, data.


def run_path(out: Path, arch: str, model: str, seed: int) -> Path:
  return out / "runs" / arch / model / f"seed{seed}.json"


def _write_run(out: Path, record: app.RunRecord) -> None:
  path = run_path(out, record.arch, record.model, record.seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  write_json(path, record.to_json())


def check_settings(out: Path, settings: dict[str, Any]) -> None:
  """Records the sweep's settings in ``out/sweep.json``; refuses to mix in a different sweep."""
  path = out / "sweep.json"
  if path.exists():
    # Sweeps from before an option ran with its default.
    defaults = {"logits_lr_scale": 1.0, "overrides": {}, "ablation": True, "controls": True, "scratch": False}
    saved = {**defaults, **json.loads(path.read_text())}
    fixed = (
      "budget", "preset", "phase1_epochs", "phase2_epochs", "train_limit", "logits_lr_scale", "overrides",
      "ablation", "controls", "scratch",
    )  # fmt: skip
    current = {**defaults, **settings}
    diff = {k: (saved.get(k), current[k]) for k in fixed if saved.get(k) != current[k]}
    if diff:
      changes = ", ".join(f"{k}: {a} there, {b} now" for k, (a, b) in diff.items())
      raise SystemExit(f"{out} holds a sweep with other settings ({changes}); choose another --out.")
    settings = {**settings, "seeds": sorted(set(saved.get("seeds", [])) | set(settings["seeds"]))}
  out.mkdir(parents=True, exist_ok=True)
  write_json(path, settings)


def check_baselines_from(path: Path, settings: dict[str, Any]) -> None:
  """Refuses a ``--baselines-from`` sweep whose baselines were trained differently."""
  source = path / "sweep.json"
  if not source.exists():
    raise SystemExit(f"--baselines-from {path}: no sweep there (no sweep.json).")
  saved = json.loads(source.read_text())
  keys = ("budget", "preset", "phase1_epochs", "phase2_epochs", "train_limit", "train_examples")
  diff = [f"{k}: {saved.get(k)} there, {settings[k]} here" for k in keys if saved.get(k) != settings[k]]
  if diff:
    raise SystemExit(f"--baselines-from {path} trained its baselines differently ({', '.join(diff)}).")


def sweep(
  out: Path,
  data: app.Dataset,
  *,
  archs: Sequence[str],
  seeds: Sequence[int],
  budget: str = "quick",
  preset: str = "recommended",
  group_baselines: bool = True,
  ablation: bool = True,
  controls: bool = True,
  scratch: bool = False,
  progress: bool = True,
  devices: int = 1,
  logits_lr_scale: Optional[float] = None,
  overrides: Optional[dict[str, Any]] = None,
  baselines_from: Optional[Path] = None,
) -> int:
  """Runs whatever of the study is not in ``out`` yet; returns how many runs it wrote.

  ``logits_lr_scale`` defaults to the preset's (:func:`preset_logits_lr_scale`).
  ``overrides`` are further :class:`Config` fields for every run (see
  :func:`parse_overrides`). With ``baselines_from`` (a sweep of the same
  budget and preset) the baselines are not trained: the report takes them
  from there. They have no logits, so ``logits_lr_scale`` does not change them.
  """
  plan = BUDGETS[budget]
  overrides = dict(overrides or {})
  if logits_lr_scale is None:
    logits_lr_scale = preset_logits_lr_scale(preset)
  make = functools.partial(
    make_configs, preset=preset, budget=plan, logits_lr_scale=logits_lr_scale, **overrides
  )
  splits = app.device_splits(data, plan.train_limit)
  settings = {
    "budget": budget,
    "preset": preset,
    "seeds": list(seeds),
    **dataclasses.asdict(plan),
    "train_examples": int(splits["train"][1].shape[0]),
    "group_baselines": group_baselines,
    "ablation": ablation,
    "controls": controls,
    "scratch": scratch,
    "backend": jax.default_backend(),
    "device": str(jax.devices()[0].device_kind),
    "devices": devices,
    "logits_lr_scale": logits_lr_scale,
    "overrides": overrides,
    # Relative to ``out``, so the committed study reads from any checkout.
    **({"baselines_from": Path(os.path.relpath(baselines_from, out)).as_posix()} if baselines_from else {}),
  }
  if baselines_from:
    check_baselines_from(baselines_from, settings)
  check_settings(out, settings)
  todo = []
  for arch in archs:
    # A selection study has no baselines; a variant may take them from another sweep.
    models = MODELS if plan.phase2_epochs and not baselines_from else ("smartmixed",)
    missing = [(m, s) for m in models for s in seeds if not run_path(out, arch, m, s).exists()]
    smart = [s for m, s in missing if m == "smartmixed"]
    if smart:
      todo.append((arch, "smartmixed", smart))
    pairs = [(m, s) for m, s in missing if m != "smartmixed"]
    groups = [pairs] if group_baselines else [[p for p in pairs if p[0] == a] for a in BASELINES]
    todo += [(arch, "baselines", group) for group in groups if group]
  written = 0
  units = tqdm(todo, desc="sweep", unit="cohort", disable=not progress or None)
  for arch, kind, items in units:
    units.set_postfix_str(
      f"{arch} {kind if kind == 'smartmixed' else '+'.join(sorted({a for a, _ in items}))}"
    )
    if kind == "smartmixed":
      for record in run_smartmixed(
        arch,
        items,
        make,
        splits,
        ablation=ablation,
        controls=controls,
        scratch=scratch,
        progress=progress,
        devices=devices,
      ).values():
        _write_run(out, record)
        written += 1
    else:
      baselines = run_baselines(arch, items, make, splits, progress=progress, devices=devices)
      for record in baselines.values():
        _write_run(out, record)
        written += 1
  return written


def measure_speedup(
  data: app.Dataset, *, archs: Sequence[str], seeds: Sequence[int], budget: str, preset: str
) -> dict[str, Any]:
  """Wall time of one architecture's whole study (SmartMixed with its Phase 2
  variants and six baselines, every seed) run one model at a time vs vmapped.

  Same code either way: "sequential" runs cohorts of one model each.
  Compilation is included, as a sweep pays it.
  """
  plan = BUDGETS[budget]
  make = functools.partial(make_configs, preset=preset, budget=plan)
  splits = app.device_splits(data, plan.train_limit)
  smart = functools.partial(run_smartmixed, make=make, splits=splits, progress=False)
  fixed = functools.partial(run_baselines, make=make, splits=splits, progress=False)

  def one_at_a_time(arch, pairs):
    return [smart(arch, [s]) for s in seeds], [fixed(arch, [p]) for p in pairs]

  def seeds_together(arch, pairs):
    return smart(arch, seeds), [fixed(arch, [p for p in pairs if p[0] == a]) for a in BASELINES]

  def all_together(arch, pairs):
    return smart(arch, seeds), fixed(arch, pairs)

  modes = {
    "sequential": one_at_a_time,
    "vmap_seeds": seeds_together,
    "vmap_seeds_and_baselines": all_together,
  }
  rows = []
  for arch in archs:
    row = {"arch": arch}
    for mode, run in modes.items():
      start = time.perf_counter()
      run(arch, [(a, s) for a in BASELINES for s in seeds])
      row[mode] = time.perf_counter() - start
      print(f"{arch}: {mode} {row[mode]:.1f} s", flush=True)
    rows.append(row)
  return {
    "budget": budget, "preset": preset, "seeds": list(seeds), "backend": jax.default_backend(),
    "device": str(jax.devices()[0].device_kind), "rows": rows,
  }  # fmt: skip


SWEEP_FIELDS = (
  "hidden", "arch", "phase1_epochs", "phase2_epochs", "train_limit", "seed", "baseline", "logits_lr_scale"
)  # fmt: skip
"""Config fields the sweep sets itself (architectures, budget, seeds, models, ``--logits-lr-scale``)."""


def parse_overrides(pairs: Sequence[str], preset: str) -> dict[str, Any]:
  """``["final_temperature=0.03", ...]`` as Config overrides, values read as JSON (``null`` is None).

  Raises ValueError naming the bad pair: an unknown field, one the sweep sets
  itself, or a value the Config refuses.
  """
  fields = [f.name for f in dataclasses.fields(app.Config)]
  overrides = {}
  for pair in pairs:
    name, sep, text = pair.partition("=")
    if not sep or name not in fields:
      raise ValueError(f"--set {pair!r}: give FIELD=VALUE with FIELD one of {fields}.")
    if name in SWEEP_FIELDS:
      raise ValueError(
        f"--set {pair!r}: the sweep sets {name} itself (see --archs, --budget, --seeds, --logits-lr-scale)."
      )
    try:
      value = json.loads(text)
    except json.JSONDecodeError:
      value = text  # a bare word: a schedule, a dtype
    overrides[name] = value
  app.make_config("simple_2layer", preset, **overrides)  # refuses bad values before any training
  return overrides


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--budget", choices=list(BUDGETS), default="quick")
  parser.add_argument("--preset", choices=list(app.PRESETS), default="recommended")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--archs", nargs="+", default=None, help="numbers 1-18 or names (default: all 18)")
  parser.add_argument(
    "--out", type=Path, default=None, help="default: experiments/results/sweep_<budget>_<preset>"
  )
  parser.add_argument(
    "--group-baselines",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="train all six baselines of an architecture as one program (default: yes)",
  )
  parser.add_argument(
    "--no-ablation",
    dest="ablation",
    action="store_false",
    help="skip the freeze-rule and weight-initialisation variants of Phase 2",
  )
  parser.add_argument(
    "--no-controls",
    dest="controls",
    action="store_false",
    help="skip the controls: shuffled and random choices in Phase 2, Phase 1 continued unfrozen",
  )
  parser.add_argument(
    "--scratch-controls",
    dest="scratch",
    action="store_true",
    help="also train the learned, random and depth-reversed choices from scratch for both phases' epochs"
    " (the baselines' initial weights, schedule and data order)",
  )
  parser.add_argument(
    "--speedup", action="store_true", help="time vmapped vs one-by-one training; no results"
  )
  parser.add_argument(
    "--devices", type=int, default=None, help="split each cohort's models over N devices (default: all)"
  )
  parser.add_argument(
    "--logits-lr-scale",
    type=float,
    metavar="S",
    help="SmartMixed's logits learn S times faster than its weights (beyond the paper; default: the"
    " preset's, 100 for recommended and 1 for paper); a scale other than 1 names the output directory",
  )
  parser.add_argument(
    "--set",
    dest="overrides",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="a further Config field for every run, e.g. --set final_temperature=0.03 (repeatable)",
  )
  parser.add_argument(
    "--baselines-from",
    type=Path,
    metavar="DIR",
    help="train no baselines; the report takes them from the sweep in DIR (same budget and preset)",
  )
  parser.add_argument("--no-report", dest="report", action="store_false")
  parser.add_argument("--data-dir", type=Path, default=None)
  parser.add_argument("--no-progress", dest="progress", action="store_false")
  args = parser.parse_args(argv)
  try:
    archs = [architecture(a) for a in (args.archs or list(app.ARCHITECTURES))]
  except ValueError as e:
    parser.error(str(e))
  if len(set(args.seeds)) != len(args.seeds):
    parser.error(f"--seeds has repeats: {args.seeds}")
  data = app.load_mnist(args.data_dir)
  if args.speedup:
    result = measure_speedup(data, archs=archs, seeds=args.seeds, budget=args.budget, preset=args.preset)
    path = args.out or RESULTS / f"speedup_{args.budget}_{result['backend']}.json"
    write_json(path, result)
    print(f"wrote {path}")
    return 0
  scale = preset_logits_lr_scale(args.preset) if args.logits_lr_scale is None else args.logits_lr_scale
  if scale <= 0 or not math.isfinite(scale):
    parser.error(f"--logits-lr-scale must be a finite number > 0, got {scale}")
  try:
    overrides = parse_overrides(args.overrides, args.preset)
  except ValueError as e:
    parser.error(str(e))
  variant = f"_logits{scale:g}" if scale != 1 else ""
  variant += "".join(f"_{name}{value}" for name, value in overrides.items())
  out = args.out or RESULTS / f"sweep_{args.budget}_{args.preset}{variant}"
  start = time.perf_counter()
  written = sweep(
    out, data, archs=archs, seeds=args.seeds, budget=args.budget, preset=args.preset,
    group_baselines=args.group_baselines, ablation=args.ablation, controls=args.controls,
    scratch=args.scratch,
    progress=args.progress, devices=args.devices or jax.device_count(),
    logits_lr_scale=scale, overrides=overrides, baselines_from=args.baselines_from,
  )  # fmt: skip
  print(f"{written} runs written to {out} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
  if args.report:
    from report import write_report

    print(f"report: {write_report(out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
