"""A sweep's per-run records: reading them, migrating old ones, and what they hold."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from smartmixed_jax import DEFAULT_POOL, pool_names
from smartmixed_jax.app import RunRecord, read_record

ACTIVATIONS = pool_names(DEFAULT_POOL)
SMARTMIXED = "smartmixed"
CONTROL = "random_mixture"
MODELS = (SMARTMIXED, *ACTIVATIONS)
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


def read_records(out: Path) -> list[RunRecord]:
  """The per-run records under ``out/runs`` (older shapes migrated on read by :class:`RunRecord`)."""
  return [read_record(p) for p in sorted(Path(out).glob("runs/*/*/seed*.json"))]


def read_settings(out: Path) -> dict[str, Any]:
  path = Path(out) / "sweep.json"
  return json.loads(path.read_text()) if path.exists() else {}


def reference_dir(out: Path, settings: dict[str, Any]) -> Optional[Path]:
  """The sweep a variant study took its baselines from (``sweep.py --baselines-from``), if any."""
  source = settings.get("baselines_from")
  return (Path(out) / source).resolve() if source else None


def load_runs(out: Path) -> list[RunRecord]:
  """Every run record under ``out/runs``, plus the random-mixture control as a model of its own.

  The control is SmartMixed's Phase 2 trained with uniformly random choices
  (the sweep's ``random/<init>`` variant): a mixed network whose choices were
  not learned; its compute is its SmartMixed run's (no cohort of its own). A
  variant study (``sweep.py --baselines-from``) gets the baselines of its
  architectures and seeds from that sweep, marked ``borrowed``.
  """
  runs = read_records(out)
  reference = reference_dir(out, read_settings(out))
  if reference:
    have = {(r.arch, r.seed) for r in runs}
    runs += [
      dataclasses.replace(r, borrowed=True)
      for r in read_records(reference)
      if r.model != SMARTMIXED and (r.arch, r.seed) in have
    ]
  for run in [r for r in runs if r.model == SMARTMIXED and r.main]:
    name = f"random/{run.main.split('/')[1]}"
    if name in run.variants:
      runs.append(RunRecord(CONTROL, run.config, {"phase2": run.variants[name]}, main=name))
  return runs


def models_of(runs: Sequence[RunRecord]) -> tuple[str, ...]:
  """The models present: SmartMixed, the baselines, and the control when the sweep ran it."""
  present = {r.model for r in runs}
  return tuple(m for m in (*MODELS, CONTROL) if m in present)


def failed(run: RunRecord) -> bool:
  """A SmartMixed run that did not learn (a selected validation accuracy below 50%)."""
  return any(p.best.val_accuracy < FAILED_VAL_ACCURACY for p in run.phases.values())
