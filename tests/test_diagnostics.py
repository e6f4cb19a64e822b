"""Selection diagnostics, and the adaptive switch that uses them."""

import dataclasses
import warnings

import jax
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


def test_an_undecided_freeze_is_named_and_a_decided_one_is_not():
  assert sm.UndecidedSelectionWarning.__mro__[1] is UserWarning
  from smartmixed_jax._src.diagnostics import decided_share, undecided_message

  assert decided_share([1.0, 0.0], [300, 100]) == 0.75
  assert undecided_message([1.0, 0.0], [300, 100]) is None
  message = undecided_message([0.5, 0.0], [300, 100])
  assert message.startswith("the selection had not decided when it was frozen: 38% of the hidden neurons")
  assert "--logits-lr-scale" in message


def test_a_run_that_freezes_an_undecided_selection_warns_once(mnist_1k):
  config = app.make_config(
    "16", phase1_epochs=1, phase2_epochs=1, train_limit=256, batch_size=64, logits_lr_scale=1.0
  )
  with pytest.warns(sm.UndecidedSelectionWarning, match="0% of the hidden neurons") as caught:
    result = app.train_and_evaluate(config, mnist_1k, progress=False)
  assert len(caught) == 1 and result.record.decided == [0.0]
  # A decided selection: logits that learn 10^5 times faster settle within the epoch's four steps.
  decided = dataclasses.replace(config, logits_lr_scale=1e5)
  with warnings.catch_warnings():
    warnings.simplefilter("error", sm.UndecidedSelectionWarning)
    result = app.train_and_evaluate(decided, mnist_1k, progress=False)
  assert result.record.decided[0] > 0.5


def test_under_the_defaults_the_selection_selects(mnist_1k):
  """The functional API's optimizer, as a user calls it, decides most neurons in a short Phase 1; the
  paper's logits (at the weights' rate) decide none. The presets follow: recommended decides, paper not."""
  splits = app.device_splits(mnist_1k, 2048)
  params = sm.init_mlp(jax.random.key(0), (784, 64, 32, 10))

  def decided(optimizer):
    result = sm.fit(
      params, apply=lambda p, x, key, step: sm.apply_selective(p, x, key),
      eval_apply=lambda p, x, key, step: sm.apply_hard(p, x), optimizer=optimizer, splits=splits,
      epochs=3, key=jax.random.key(1), batch_size=64, policies=(),
    )  # fmt: skip
    layers = sm.selection_diagnostics(result.best_params.logits)
    return [layer["decided"] for layer in layers]

  assert min(decided(sm.make_optimizer(1e-3, 1.0))) > 0.5
  assert max(decided(sm.make_optimizer(1e-3, 1.0, logits_scale=1.0))) == 0
  assert app.make_config("16").logits_lr_scale == sm.LOGITS_LR_SCALE == 100
  assert app.make_config("16", "paper").logits_lr_scale == 1


def test_a_pool_of_one_activation_is_decided():
  (layer,) = sm.selection_diagnostics([np.zeros((3, 1))])
  assert (layer["entropy"], layer["decided"], layer["p_argmax"], layer["logit_gap"]) == (0, 1, 1, 0)
