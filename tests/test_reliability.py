"""Runs never lose or corrupt data: each fault a long run meets, tried on the real console script.

Every CLI case starts ``smartmixed`` in a fresh process (one resume bug only
ever showed in a new interpreter) and checks the exit code, the one-line
message, and that nothing the user ran was lost.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _results import without_timings

from smartmixed_jax import app
from smartmixed_jax._src import cli

SCRIPT = Path(sys.executable).with_name("smartmixed")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "smartmixed_jax"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")


def smartmixed(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
  """Runs the console script to completion."""
  return subprocess.run(
    [*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV, **kwargs
  )


def start(*args, **kwargs) -> subprocess.Popen:
  return subprocess.Popen(
    [*COMMAND, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, **kwargs
  )


def wait_for(predicate, process, seconds=240):
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline and process.poll() is None:
    if predicate():
      return
    time.sleep(0.02)
  raise AssertionError(f"process ended ({process.returncode}) or timed out: {process.stderr.read()[-2000:]}")


def snapshot(directory: Path) -> dict[str, str]:
  """Every file under ``directory`` with its content's digest."""
  return {
    str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(directory.rglob("*"))
    if p.is_file() and p.name != ".lock"
  }


def results(directory: Path) -> dict:
  return without_timings(json.loads((directory / "results.json").read_text()), drop={"environment"})


def one_line_error(stderr: str) -> str:
  assert "Traceback" not in stderr, stderr
  errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, stderr
  return errors[0]


@pytest.fixture
def data_args(mnist_cache):
  return ["--no-progress", "--data-dir", mnist_cache]


@pytest.fixture
def unfinished_run(tmp_path, mnist, mnist_cache):
  """A SmartMixed run stopped after Phase 1 epoch 2 (checkpointed), as SIGTERM leaves one."""
  out = tmp_path / "unfinished"
  config = app.make_config("32", "recommended", phase1_epochs=3, phase2_epochs=2, train_limit=2000, seed=4)
  epochs = iter(range(100))
  with pytest.raises(app.Stopped, match="after phase1 epoch 2"):
    app.train_and_evaluate(config, mnist, workdir=out, progress=False, should_stop=lambda: next(epochs) == 1)
  reference = tmp_path / "reference"
  args = ["train", "--arch", "32", "--phase1-epochs", "3", "--phase2-epochs", "2", "--train-limit", "2000",
          "--seed", "4", "--out", reference, "--no-progress", "--data-dir", mnist_cache]  # fmt: skip
  assert cli.main(list(map(str, args))) == 0
  return out, reference


def test_sigterm_checkpoints_the_last_epoch_and_a_fresh_process_resumes_a_baseline(tmp_path, mnist_cache):
  """Also the baseline resume bug: a fixed-activation run restored in a new interpreter."""
  args = ["train", "--arch", "256-128", "--baseline", "elu", "--phase1-epochs", "4", "--phase2-epochs", "4",
          "--train-limit", "5000", "--seed", "3", "--checkpoint-every", "2", "--no-progress",
          "--data-dir", mnist_cache]  # fmt: skip
  out = tmp_path / "run"
  process = start(*args, "--out", out)
  wait_for(lambda: (out / "checkpoints" / "2").is_dir(), process)
  process.send_signal(signal.SIGTERM)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 143, err
  assert "SIGTERM: stopping after the current epoch" in err and f"smartmixed train --resume {out}" in err
  stopped = int(err.split("stopped on request after elu epoch ")[1].split(";")[0])
  steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
  assert stopped == steps[-1] and 2 < stopped < 8, (stopped, steps)  # the epoch it finished is saved
  assert not (out / "results.json").exists()

  resumed = smartmixed("train", "--resume", out, "--no-progress", "--data-dir", mnist_cache)
  assert resumed.returncode == 0, resumed.stderr
  assert "damaged" not in resumed.stderr and "no intact checkpoint" not in resumed.stderr
  reference = tmp_path / "reference"
  assert cli.main([*map(str, args), "--out", str(reference)]) == 0
  assert results(out) == results(reference)


def test_combinations_that_would_destroy_a_run_are_refused(unfinished_run, tmp_path, data_args):
  out, _ = unfinished_run
  before = snapshot(out)
  other = tmp_path / "other"
  cases = [
    (["train", "--resume", out, "--overwrite"], "continues a run and --overwrite deletes it"),
    (["demo", "--out", out], "holds a run that is not the demo's; the demo would delete it"),
    (["train", "--out", out, "--arch", "32"], f"{out} already holds a run (config.json, checkpoints)"),
    (["train", "--resume", out, "--arch", "64", "--seed", "1"], "--arch, --seed cannot change them"),
    (["train", "--resume", out, "--out", other], "--out cannot change them. Allowed with --resume: --lr"),
  ]
  for args, message in cases:
    done = smartmixed(*args, *data_args)
    assert done.returncode == 2, (args, done.stderr)
    assert message in one_line_error(done.stderr), (args, done.stderr)
  assert snapshot(out) == before and not other.exists()


def test_the_demo_replaces_a_demo_run_of_an_earlier_version_only(tmp_path):
  demo = app.make_config(**cli.DEMO)
  for previous, replaced in [(demo, True), (dataclasses.replace(demo, logits_lr_scale=1.0), True),
                             (dataclasses.replace(demo, seed=1), False)]:  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(previous.to_dict()))
    if replaced:
      cli._check_demo_dir(tmp_path, demo)
    else:
      with pytest.raises(ValueError, match="holds a run that is not the demo's"):
        cli._check_demo_dir(tmp_path, demo)


def test_config_json_edited_or_damaged(unfinished_run, data_args):
  out, reference = unfinished_run
  config = json.loads((out / "config.json").read_text())
  (out / "config.json").write_text(json.dumps({**config, "phase2_epochs": 5}))
  before = snapshot(out)
  done = smartmixed("train", "--resume", out, *data_args)
  assert done.returncode == 2
  assert "phase2_epochs: 2 there, 5 given" in one_line_error(done.stderr)
  assert snapshot(out) == before  # nothing deleted, nothing rewritten

  (out / "config.json").write_text(json.dumps(config)[:40])  # truncated
  done = smartmixed("train", "--resume", out, *data_args)
  assert done.returncode == 0, done.stderr
  assert "is not valid JSON" in done.stderr and "Using the settings stored with checkpoint 2" in done.stderr
  assert json.loads((out / "config.json").read_text()) == config  # repaired
  assert results(out) == results(reference)


def test_divergence_then_resume_with_a_lower_learning_rate(tmp_path, data_args):
  out = tmp_path / "run"
  args = ["--arch", "32", "--phase1-epochs", "2", "--phase2-epochs", "1", "--train-limit", "1000"]
  diverged = smartmixed("train", *args, "--lr", "1e30", "--schedule", "constant", "--out", out, *data_args)
  assert diverged.returncode == 3
  assert "training diverged at epoch 1" in diverged.stderr and "--resume" in diverged.stderr
  resumed = smartmixed("train", "--resume", out, "--lr", "1e-3", *data_args)
  assert resumed.returncode == 0, resumed.stderr
  assert json.loads((out / "config.json").read_text())["learning_rate"] == 1e-3
  assert json.loads((out / "results.json").read_text())["config"]["learning_rate"] == 1e-3


def test_resume_may_change_the_learning_rate_and_records_it(unfinished_run, data_args):
  out, _ = unfinished_run
  done = smartmixed("train", "--resume", out, "--lr", "5e-4", "--skip-nonfinite", *data_args)
  assert done.returncode == 0, done.stderr
  summary = json.loads((out / "results.json").read_text())
  changed = {"learning_rate": [0.001, 0.0005], "skip_nonfinite": [False, True]}
  assert summary["resumes"] == [{"from_checkpoint": 2, "changed": changed}]


def test_a_second_run_into_a_busy_directory_is_refused_naming_the_pid(tmp_path, data_args):
  out = tmp_path / "run"
  args = ["--arch", "256-128", "--phase1-epochs", "2", "--phase2-epochs", "2", "--train-limit", "20000"]
  first = start("train", *args, "--out", out, *data_args)
  wait_for(lambda: (out / "config.json").exists(), first)
  for second in (["train", *args, "--out", out, "--overwrite"], ["train", "--resume", out]):
    done = smartmixed(*second, *data_args)
    assert done.returncode == 4, done.stderr
    assert f"is in use by another run (PID {first.pid})" in one_line_error(done.stderr)
  assert first.wait(timeout=240) == 0, first.stderr.read()
  assert json.loads((out / "results.json").read_text())["config"]["hidden"] == [256, 128]


def test_two_runs_started_together_one_wins(tmp_path, data_args):
  out = tmp_path / "run"
  args = ["--phase1-epochs", "1", "--phase2-epochs", "1", "--train-limit", "2000", "--out", out, *data_args]
  runs = [start("train", "--arch", width, *args) for width in ("16", "24")]
  codes = sorted(r.wait(timeout=240) for r in runs)
  assert codes[0] == 0 and codes[1] in (2, 4), codes
  config = json.loads((out / "config.json").read_text())
  assert json.loads((out / "results.json").read_text())["config"] == config  # never a mix of the two


def test_disk_full_exits_5_without_temp_files_and_resumes(tmp_path, data_args):
  out = tmp_path / "run"
  args = [
    "train",
    "--arch",
    "256-128",
    "--phase1-epochs",
    "2",
    "--phase2-epochs",
    "1",
    "--train-limit",
    "2000",
  ]
  command = shlex.join([*COMMAND, *map(str, [*args, "--checkpoint-every", "1", "--out", out, *data_args])])
  # Files over 100 KB fail with EFBIG (SIGXFSZ ignored), as a full disk fails with ENOSPC.
  limited = ["bash", "-c", f"trap '' XFSZ; ulimit -f 100; exec {command}"]
  done = subprocess.run(limited, capture_output=True, text=True, timeout=300, env=ENV)
  assert done.returncode == 5, done.stderr
  assert f"cannot write the run in {out}: file too large" in one_line_error(done.stderr)
  assert not [p for p in out.rglob("*") if "tmp" in p.name]  # no temp files left behind
  resumed = smartmixed("train", "--resume", out, *data_args)
  assert resumed.returncode == 0, resumed.stderr


@contextlib.contextmanager
def read_only_dir(path: Path):
  path.mkdir()
  if os.geteuid() != 0:
    path.chmod(0o555)
    yield path
    path.chmod(0o755)
    return
  if subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True
  ).returncode:
    pytest.skip("running as root without permission to mount a read-only file system")
  try:
    yield path
  finally:
    subprocess.run(["umount", str(path)], check=True)


def test_read_only_directory_exits_5(tmp_path, data_args):
  with read_only_dir(tmp_path / "ro") as ro:
    done = smartmixed("train", "--arch", "16", "--phase1-epochs", "1", "--out", ro / "run", *data_args)
  assert done.returncode == 5, done.stderr
  message = one_line_error(done.stderr)
  assert "read-only file system" in message or "permission denied" in message


def test_out_of_memory_is_refused_before_training(tmp_path, data_args):
  done = smartmixed("train", "--arch", "100000-100000", "--out", tmp_path / "run", *data_args)
  assert done.returncode == 6, done.stderr
  assert "needs at least" in one_line_error(done.stderr) and "GiB" in done.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
  "args, message",
  [
    (["--out", "FILE"], "--out FILE is a file, not a directory"),
    (["--seed", str(2**32)], "seed must be an integer in [0, 2**32), got 4294967296"),
    (["--seed", str(2**64)], "seed must be an integer in [0, 2**32)"),
    (["--temperature", "1e-30"], "temperature must be >= 0.001"),
    (["--batch-size", "5000", "--train-limit", "100"], "batch_size 5000 exceeds the 100 training examples"),
  ],
)
def test_bad_input_exits_2_and_writes_nothing(args, message, tmp_path, data_args, monkeypatch):
  monkeypatch.chdir(tmp_path)
  Path("FILE").write_text("not a run")
  done = smartmixed("train", "--arch", "16", "--out", "run", *args, *data_args)
  assert done.returncode == 2, done.stderr
  assert message in one_line_error(done.stderr)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]
