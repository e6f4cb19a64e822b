"""Nothing lost to a crash: checkpoints, resume, fallback, divergence."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from _results import without_timings

import smartmixed_jax as sm
from smartmixed_jax import app
from smartmixed_jax._src import cli


def _config(**overrides):
  values = dict(phase1_epochs=3, phase2_epochs=3, train_limit=4000, seed=5, eval_batch_size=2000)
  values.update(overrides)
  return app.make_config("64-32", "recommended", **values)


def test_sigkill_mid_run_then_resume_gives_identical_results(tmp_path, mnist_cache):
  args = ["train", "--arch", "128-64", "--phase1-epochs", "4", "--phase2-epochs", "4",
          "--train-limit", "3000", "--seed", "7", "--checkpoint-every", "1", "--no-progress",
          "--data-dir", str(mnist_cache)]  # fmt: skip
  killed = tmp_path / "killed"
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  process = subprocess.Popen(
    [sys.executable, "-m", "smartmixed_jax", *args, "--out", str(killed)],
    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
  )  # fmt: skip
  checkpoints = killed / "checkpoints"
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and process.poll() is None:
    if checkpoints.is_dir() and any(p.name.isdigit() and int(p.name) >= 2 for p in checkpoints.iterdir()):
      break
    time.sleep(0.02)
  assert process.poll() is None, process.stderr.read().decode()[-2000:]
  process.send_signal(signal.SIGKILL)  # mid Phase 1, epoch 3: no chance to clean up
  process.wait()
  assert process.returncode == -signal.SIGKILL
  assert not (killed / "results.json").exists()

  assert cli.main(["train", "--resume", str(killed), "--no-progress", "--data-dir", str(mnist_cache)]) == 0
  reference = tmp_path / "reference"
  assert cli.main([*args, "--out", str(reference)]) == 0
  resumed = json.loads((killed / "results.json").read_text())
  uninterrupted = json.loads((reference / "results.json").read_text())
  assert without_timings(resumed) == without_timings(uninterrupted)
  assert (killed / "choices.csv").read_text() == (reference / "choices.csv").read_text()


def test_corrupt_newest_checkpoint_falls_back_to_an_older_one(tmp_path, mnist, capfd):
  config = _config()
  uninterrupted = app.train_and_evaluate(config, mnist, progress=False).summary()
  app.train_and_evaluate(config, mnist, workdir=tmp_path, checkpoint_every=1, max_to_keep=3, progress=False)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [4, 5, 6]  # bounded: the newest three
  newest = tmp_path / "checkpoints" / str(steps[-1])
  for path in newest.rglob("*"):
    if path.is_file():
      path.write_bytes(b"\0garbage")
  result = app.train_and_evaluate(config, mnist, workdir=tmp_path, resume=True, progress=False)
  err = capfd.readouterr().err
  assert err.count("\n") == 1 and f"checkpoint {steps[-1]} is damaged (unreadable" in err, err  # one line
  assert (tmp_path / "checkpoints" / f"{steps[-1]}.damaged").is_dir()  # set aside, not deleted
  assert without_timings(result.summary()) == without_timings(uninterrupted)


def test_a_flipped_bit_in_a_checkpoint_is_detected_by_its_digest(tmp_path, mnist, capfd):
  config = _config(phase2_epochs=1)
  uninterrupted = app.train_and_evaluate(config, mnist, progress=False).summary()
  app.train_and_evaluate(config, mnist, workdir=tmp_path, checkpoint_every=1, progress=False)
  newest = tmp_path / "checkpoints" / "4"
  data = max(
    (p for p in newest.rglob("*") if p.is_file() and "array" in str(p)), key=lambda p: p.stat().st_size
  )
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 0x10  # one bit, mid-file: the file still reads
  data.write_bytes(bytes(raw))
  result = app.train_and_evaluate(config, mnist, workdir=tmp_path, resume=True, progress=False)
  err = capfd.readouterr().err
  assert err.count("\n") == 1 and "checkpoint 4 is damaged (its arrays do not match the digest" in err, err
  assert without_timings(result.summary()) == without_timings(uninterrupted)


def test_checkpoints_without_resume_are_not_overwritten(tmp_path, mnist):
  app.train_and_evaluate(_config(phase1_epochs=1, phase2_epochs=0), mnist, workdir=tmp_path, progress=False)
  with pytest.raises(ValueError, match="already holds a run"):
    app.train_and_evaluate(_config(), mnist, workdir=tmp_path, progress=False)


def test_divergence_stops_naming_epoch_and_step_and_keeps_good_checkpoints(tmp_path, mnist):
  config = _config(learning_rate=1e30, schedule="constant")
  with pytest.raises(sm.NonFiniteError, match=r"phase1: training diverged at epoch 1, step \d+ of 32"):
    app.train_and_evaluate(config, mnist, workdir=tmp_path, checkpoint_every=1, progress=False)
  assert not any(p.name.isdigit() for p in (tmp_path / "checkpoints").iterdir())  # nothing non-finite saved


def test_divergence_in_the_cli_exits_non_zero(tmp_path, mnist_cache, capsys):
  code = cli.main(["train", "--arch", "32", "--lr", "1e30", "--schedule", "constant", "--phase1-epochs", "2",
                   "--train-limit", "1000", "--out", str(tmp_path), "--no-progress",
                   "--data-dir", str(mnist_cache)])  # fmt: skip
  assert code == 3
  err = capsys.readouterr().err
  assert "training diverged at epoch 1, step" in err and "--skip-nonfinite" in err
  # Epoch 1 wrote no checkpoint: the message does not send the user to one.
  assert "No checkpoint was written before it. Continue with: smartmixed train --resume" in err
  assert "hold the last good state" not in err


def test_skip_nonfinite_skips_exactly_the_bad_steps():
  """One poisoned training example: the one step a epoch that holds it is skipped, and recorded."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64).astype(np.int32)
  x[5, 0] = np.nan
  held_out = (x[6:], y[6:])
  splits = {"train": (x, y), "val": held_out, "test": held_out}
  model = sm.fixed_mlp(jax.random.key(0), (4, 8, 3), "relu")

  def fit(skip):
    return sm.fit(
      model, apply=lambda m, x, key, step: m(x), optimizer=sm.make_optimizer(1e-2, 1.0, skip_nonfinite=skip),
      splits=splits, epochs=3, key=jax.random.key(1), batch_size=16, policies=[sm.raise_on_nonfinite()],
    )  # fmt: skip

  result = fit(skip=True)
  epochs = result.histories[0][1:]
  assert [e["skipped_steps"] for e in epochs] == [1, 1, 1]  # of 4 steps an epoch
  assert all(np.isfinite(e["train_loss"]) for e in epochs) and result.best_epochs == [3]
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(result.best_params))
  assert epochs[-1]["val_loss"] < result.histories[0][0]["val_loss"]  # the other steps learned
  with pytest.raises(sm.NonFiniteError, match=r"diverged at epoch 1, step \d of 4"):
    fit(skip=False)


def test_skip_nonfinite_skips_the_bad_steps_and_stops_when_all_are_skipped(mnist):
  config = _config(
    learning_rate=1e30, schedule="constant", skip_nonfinite=True, phase1_epochs=2, phase2_epochs=1
  )
  # Every step after the first updates is non-finite and skipped: nothing can be learned, so it stops.
  with pytest.raises(sm.NonFiniteError, match=r"every step of epoch \d had a non-finite loss"):
    app.train_and_evaluate(config, mnist, progress=False)
