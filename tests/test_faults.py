"""Runs never lose data: the faults an adversarial run found (issue 27), each reproduced."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smartmixed_jax import app
from smartmixed_jax._src import rundir
from smartmixed_jax._src.checkpoint import Checkpoints


def _abstract(meta):
  return {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}


def _store(tmp_path, **kwargs):
  return Checkpoints(tmp_path / "checkpoints", **kwargs)


def test_a_checkpoint_replaced_by_one_of_the_same_step_survives_a_crash_mid_write(tmp_path, monkeypatch):
  store = _store(tmp_path)
  store.save(4, {"w": jnp.ones(3)}, {"epoch": 4})
  # The replacement (--phase2-epochs 0 reuses Phase 1's last step) fails half-way: disk full, kill.
  monkeypatch.setattr(store._manager, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space")))
  with pytest.raises(OSError):
    store.save(4, {"w": jnp.zeros(3)}, {"epoch": 4, "phase": "phase2"})
  restored = _store(tmp_path).restore_latest(_abstract)
  assert restored.step == 4 and restored.meta["epoch"] == 4 and "phase" not in restored.meta
  np.testing.assert_array_equal(restored.arrays["w"], np.ones(3))
  # A kill -9 leaves the old one aside: the next open puts it back.
  (tmp_path / "checkpoints" / "4").rename(tmp_path / "checkpoints" / "4.replaced")
  assert _store(tmp_path).restore_latest(_abstract).step == 4
  # And a finished replacement wins over what was set aside.
  monkeypatch.undo()
  store = _store(tmp_path)
  store.save(4, {"w": jnp.zeros(3)}, {"epoch": 4, "phase": "phase2"})
  assert _store(tmp_path).restore_latest(_abstract).meta["phase"] == "phase2"
  assert not list((tmp_path / "checkpoints").glob("*.replaced"))


def _meta_file(step_dir):
  return next(p for p in step_dir.rglob("*") if p.is_file() and b'"choices"' in p.read_bytes())


def test_damaged_metadata_is_caught_by_its_digest(tmp_path, capfd):
  store = _store(tmp_path)
  for step, choices in ((1, [[0, 1, 2]]), (2, [[2, 1, 0]])):
    store.save(step, {"w": jnp.full(3, step, jnp.float32)}, {"epoch": step, "choices": choices})
  path = _meta_file(tmp_path / "checkpoints" / "2")
  path.write_bytes(path.read_bytes().replace(b"[2, 1, 0]", b"[2, 1, 1]").replace(b"[2,1,0]", b"[2,1,1]"))
  assert _store(tmp_path).latest_meta()[0] == 1  # the CLI's settings come from an intact one
  restored = _store(tmp_path).restore_latest(_abstract)
  assert restored.step == 1 and restored.meta["choices"] == [[0, 1, 2]]
  assert "checkpoint 2 is damaged (its metadata" in capfd.readouterr().err


def test_a_second_damaged_copy_of_a_step_is_kept_beside_the_first(tmp_path):
  for _ in range(2):
    store = _store(tmp_path)
    store.save(1, {"w": jnp.ones(3)}, {"epoch": 1, "choices": [[0]]})
    store.save(2, {"w": jnp.ones(3)}, {"epoch": 2, "choices": [[0]]})
    path = _meta_file(tmp_path / "checkpoints" / "2")
    path.write_bytes(path.read_bytes().replace(b'"epoch"', b'"epoch_"'))
    assert _store(tmp_path).restore_latest(_abstract).step == 1
  assert (tmp_path / "checkpoints" / "2.damaged").is_dir() and (
    tmp_path / "checkpoints" / "2.damaged.1"
  ).is_dir()


def test_a_checkpoints_file_or_lock_directory_is_refused_clearly(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "checkpoints").write_text("mine")
  with pytest.raises(ValueError, match="is a file; a run keeps its checkpoints in a directory"):
    Checkpoints(tmp_path / "a" / "checkpoints")
  (tmp_path / "b" / ".lock").mkdir(parents=True)
  with pytest.raises(ValueError, match=r"\.lock is a directory; a run needs it as its lock file"):
    with rundir.locked(tmp_path / "b"):
      pass


def _tiny(**overrides):
  values = dict(phase1_epochs=1, phase2_epochs=1, train_limit=512, eval_batch_size=1000, seed=3)
  return app.make_config("16", "recommended", **{**values, **overrides})


def test_overwrite_refuses_a_folder_no_run_of_ours_wrote(tmp_path, mnist_1k):
  (tmp_path / "config.json").write_text('{"my": "experiment"}')
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "checkpoints" / "weights.npz").write_bytes(b"precious")
  with pytest.raises(ValueError, match="no smartmixed run wrote them .* refusing to delete them"):
    app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, overwrite=True, progress=False)
  assert (tmp_path / "checkpoints" / "weights.npz").read_bytes() == b"precious"
  assert json.loads((tmp_path / "config.json").read_text()) == {"my": "experiment"}


def test_overwrite_removes_every_output_of_the_old_run(tmp_path, mnist_1k):
  app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, progress=False)
  assert (tmp_path / "selection.png").exists() and (tmp_path / rundir.MARKER).exists()
  app.train_and_evaluate(_tiny(baseline="relu"), mnist_1k, workdir=tmp_path, overwrite=True, progress=False)
  assert not (tmp_path / "selection.png").exists() and not (tmp_path / "activation_trajectory.png").exists()
  assert app.read_record(tmp_path / "results.json").model == "relu"


def test_a_phase1_of_zero_epochs_finishes_and_resumes(tmp_path, mnist_1k):
  result = app.train_and_evaluate(_tiny(phase1_epochs=0), mnist_1k, workdir=tmp_path, progress=False)
  record = app.read_record(tmp_path / "results.json")
  assert record.phase1.epochs == 0 and record.phase2.epochs == 1 and record == result.record
  assert not (tmp_path / "selection.png").exists()  # nothing to plot
  again = app.train_and_evaluate(
    _tiny(phase1_epochs=0), mnist_1k, workdir=tmp_path, resume=True, progress=False
  )
  assert again.record.final == record.final


def test_a_phase2_of_zero_epochs_keeps_a_checkpoint_to_resume_from(tmp_path, mnist_1k):
  config = _tiny(phase2_epochs=0)
  first = app.train_and_evaluate(config, mnist_1k, workdir=tmp_path, checkpoint_every=1, progress=False)
  steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  assert steps == ["1"]  # Phase 2's checkpoint replaced Phase 1's of the same step, nothing set aside
  again = app.train_and_evaluate(config, mnist_1k, workdir=tmp_path, resume=True, progress=False)
  assert again.record.final == first.record.final


def test_load_run_and_export_take_only_the_final_checkpoint_and_change_nothing(tmp_path, mnist_1k, capsys):
  from smartmixed_jax._src import cli

  app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, checkpoint_every=1, progress=False)
  assert app.load_run(tmp_path) is not None
  before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  final = tmp_path / "checkpoints" / before[-1]
  path = _meta_file(final)
  path.write_bytes(path.read_bytes().replace(b'"epoch"', b'"epoch_"'))
  with pytest.raises(ValueError, match="The run's final checkpoint 2 .* cannot be loaded exactly"):
    app.load_run(tmp_path)
  artifact = tmp_path / "m 1.jax"
  assert cli.main(["export", str(tmp_path), "--out", str(artifact)]) == 2
  err = capsys.readouterr().err
  assert "cannot be loaded exactly" in err and "--resume" not in err  # not a training hint
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before  # nothing moved or renamed
  assert not artifact.exists()


@pytest.mark.parametrize("replace", [False, True], ids=["removed", "replaced"])
def test_a_run_whose_lock_file_is_removed_stops_without_writing(tmp_path, mnist_1k, replace):
  lock = tmp_path / rundir.LOCK_FILE

  def meddle():  # what `rm .lock` (and a second run taking a new one) does mid-run
    lock.unlink(missing_ok=True)
    if replace:
      lock.write_text("99999\n")
    return False

  with pytest.raises(app.RunBusyError, match="was removed or replaced while this run held it"):
    app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, should_stop=meddle, progress=False)
  assert not (tmp_path / "results.json").exists() and not (tmp_path / "checkpoints" / "1").exists()


def test_a_learning_rate_float32_cannot_hold_is_refused():
  with pytest.raises(ValueError, match="learning_rate 1e-320 is below float32's smallest normal number"):
    _tiny(learning_rate=1e-320)


def test_a_sweep_rerun_with_other_variants_is_refused(tmp_path):
  import sys
  from pathlib import Path

  sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
  import sweep

  settings = dict(budget="quick", preset="recommended", phase1_epochs=3, phase2_epochs=3, train_limit=8192,
                  logits_lr_scale=1.0, ablation=True, controls=True, seeds=[0])  # fmt: skip
  sweep.check_settings(tmp_path, settings)
  with pytest.raises(SystemExit, match="controls: True there, False now"):
    sweep.check_settings(tmp_path, {**settings, "controls": False})
  with pytest.raises(SystemExit, match="overrides: {} there, {'final_temperature': 0.03} now"):
    sweep.check_settings(tmp_path, {**settings, "overrides": {"final_temperature": 0.03}})
  assert json.loads((tmp_path / "sweep.json").read_text())["controls"] is True  # unchanged


def test_a_run_killed_before_its_first_checkpoint_is_started_again_not_resumed(tmp_path, mnist_1k, capsys):
  from smartmixed_jax._src import cli

  with rundir.locked(tmp_path):  # what a run leaves when killed between its lock and its config.json
    rundir.mark(tmp_path)
    (tmp_path / "checkpoints").mkdir()
  assert cli.main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert (
    "stopped before its first one. Start it again: smartmixed train --out" in err and "--overwrite" in err
  )
  app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, overwrite=True, progress=False)
  assert (tmp_path / "results.json").exists()


def test_resuming_a_finished_run_whose_final_checkpoint_metadata_was_changed_keeps_its_results(
  tmp_path, mnist_1k
):
  """Fault 3: one value changed in the final checkpoint's metadata (a frozen choice) must not become a
  results.json with other numbers: the digest sets that checkpoint aside and the run resumes before it."""
  from _results import without_timings

  app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, checkpoint_every=1, progress=False)
  results = lambda: without_timings(json.loads((tmp_path / "results.json").read_text()), drop={"resumes"})  # noqa: E731
  before = results()
  final = max(
    (p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
  )
  path = _meta_file(final)
  data = path.read_bytes()
  i = data.index(b'"choices": [[') + len(b'"choices": [[')  # the first neuron's frozen activation
  path.write_bytes(data[:i] + (b"2" if data[i : i + 1] != b"2" else b"3") + data[i + 1 :])
  app.train_and_evaluate(_tiny(), mnist_1k, workdir=tmp_path, resume=True, progress=False)
  assert results() == before
  assert (final.parent / f"{final.name}.damaged").exists()
