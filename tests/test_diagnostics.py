"""Selection diagnostics, and the adaptive switch that uses them."""

import numpy as np
import pytest

import smartmixed_jax as sm
from smartmixed_jax import app


def test_diagnostics_of_undecided_and_decided_layers():
  uniform = np.zeros((4, 6))
  decided = np.eye(6)[[0, 1, 2, 2]] * 20.0
  undecided_row, decided_row = sm.selection_diagnostics([uniform, decided])
  assert undecided_row["entropy"] == pytest.approx(1.0) and undecided_row["decided"] == 0.0
  assert undecided_row["p_argmax"] == pytest.approx(1 / 6, abs=1e-6) and undecided_row["logit_gap"] == 0.0
  assert decided_row["entropy"] < 1e-5 and decided_row["decided"] == 1.0
  assert decided_row["p_argmax"] == pytest.approx(1.0) and decided_row["logit_gap_max"] == pytest.approx(20.0)


def test_argmax_changes_and_sample_agreement():
  logits = np.eye(6)[[0, 1, 2, 3]]
  previous = np.eye(6)[[0, 1, 5, 5]]
  samples = np.eye(6)[[0, 4, 2, 4]] * 7
  (row,) = sm.selection_diagnostics([logits], previous=[previous], samples=[samples])
  assert row["argmax_changed"] == 0.5 and row["sample_agreement"] == 0.5


def _config(**overrides):
  values = dict(
    phase1_epochs=4, phase2_epochs=1, train_limit=2000, seed=2, switch_patience=1, switch_threshold=1.0
  )
  return app.make_config("32", "recommended", **{**values, **overrides})


def test_adaptive_switch_ends_phase1_early_and_resumes_stopped(mnist, tmp_path):
  # threshold 1.0: any epoch with fewer than all argmaxes changed counts as settled.
  summary = app.train_and_evaluate(_config(), mnist, progress=False).summary()
  assert summary["switch_epoch"] == 1 and summary["phases"]["phase1"]["epochs"] == 1
  history = summary["phases"]["phase1"]["history"]
  assert {"entropy", "p_argmax", "argmax_changed", "sample_agreement"} <= set(history[1]["selection"][0])
  assert summary["phases"]["phase2"]["epochs"] == 1
  # Stopped right at the switch: the resumed run must not train Phase 1 on.
  with pytest.raises(app.Stopped):
    app.train_and_evaluate(_config(), mnist, workdir=tmp_path, progress=False, should_stop=lambda: True)
  resumed = app.train_and_evaluate(_config(), mnist, workdir=tmp_path, resume=True, progress=False).summary()
  assert resumed["switch_epoch"] == 1 and resumed["final"] == summary["final"]


def test_switch_settings_are_validated():
  with pytest.raises(ValueError, match="switch_patience must be an integer >= 1 or None, got 0"):
    _config(switch_patience=0)
  with pytest.raises(ValueError, match=r"switch_threshold must be in \(0, 1\], got 2"):
    _config(switch_threshold=2)
