"""Scale-out on JAX's own machinery: 4 virtual CPU devices give the single-device results."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _results import without_timings

ENV = dict(
  os.environ,
  XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
  JAX_PLATFORMS="cpu",
)

SCRIPT = """
import json, sys
import jax, numpy as np
from smartmixed_jax import app
assert jax.device_count() == 4
data = app.load_mnist(sys.argv[1])
cut = lambda split: app.Split(split.x[:1000], split.y[:1000])  # a run, not an accurate one
data = data._replace(validation=cut(data.validation), test=cut(data.test))
config = app.make_config("64-32", "recommended", phase1_epochs=2, phase2_epochs=1, train_limit=2048, seed=3)
out = {}
for devices in (1, 4):
  summary = app.train_and_evaluate(config, data, devices=devices, progress=False).summary()
  out[devices] = {"final": summary["final"], "counts": summary["activation_counts"],
                  "used": summary["environment"]["devices_used"],
                  "history": [r["val_loss"] for p in summary["phases"].values() for r in p["history"]]}
print(json.dumps(out))
"""


def test_four_devices_give_the_single_device_results(mnist_cache):
  done = subprocess.run([sys.executable, "-c", SCRIPT, str(mnist_cache)], capture_output=True, text=True,
                        env=ENV, timeout=600)  # fmt: skip
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  one, four = out["1"], out["4"]
  assert (one["used"], four["used"]) == (1, 4)
  assert one["counts"] == four["counts"]  # the same neurons chose the same activations
  for a, b in zip(one["history"], four["history"]):
    assert abs(a - b) <= 1e-4 * abs(a), (a, b)  # float round-off: the all-reduce sums in another order
  for key, value in one["final"].items():
    assert abs(value - four["final"][key]) <= 1e-4 * abs(value) + 2e-4, key


def test_devices_out_of_range_is_refused(mnist, tmp_path):
  import pytest

  from smartmixed_jax import app

  config = app.make_config("16", phase1_epochs=1, phase2_epochs=0, train_limit=500)
  with pytest.raises(
    ValueError, match=r"devices must be an integer in \[1, 1\] \(the devices jax sees\), got 4"
  ):
    app.train_and_evaluate(config, mnist, devices=4, workdir=tmp_path / "run", progress=False)
  assert not (tmp_path / "run").exists()


SWEEP = """
import json, sys
from pathlib import Path
sys.path.insert(0, "experiments")
import jax, sweep
from smartmixed_jax import app
sweep.BUDGETS["tiny"] = sweep.Budget(1, 1, 512)
data = app.load_mnist(sys.argv[1])
cut = lambda split: app.Split(split.x[:1000], split.y[:1000])  # a run, not an accurate one
data = data._replace(validation=cut(data.validation), test=cut(data.test))
for devices in (1, 4):  # 4 seeds: every cohort splits over all 4 devices
  sweep.sweep(Path(sys.argv[2]) / str(devices), data, archs=["simple_2layer"], seeds=[0, 1, 2, 3],
              budget="tiny", progress=False, devices=devices, ablation=False, controls=False)
"""


def _close(a, b, path="", tolerance=1e-4) -> None:
  if isinstance(a, dict):
    assert a.keys() == b.keys(), path
    for k in a:
      _close(a[k], b[k], f"{path}/{k}", tolerance)
  elif isinstance(a, list):
    assert len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      _close(x, y, f"{path}/{i}", tolerance)
  elif isinstance(a, float):
    assert abs(a - b) <= tolerance * (abs(a) + 1), (path, a, b)
  elif not isinstance(a, int) or tolerance == 1e-4:
    assert a == b, (path, a, b)


def test_sweep_on_four_devices_writes_the_single_device_records(mnist_cache, tmp_path):
  done = subprocess.run([sys.executable, "-c", SWEEP, str(mnist_cache), str(tmp_path)], capture_output=True,
                        text=True, env=ENV, timeout=600, cwd=Path(__file__).parents[1])  # fmt: skip
  assert done.returncode == 0, done.stderr[-3000:]
  one = sorted((tmp_path / "1" / "runs").rglob("*.json"))
  four = sorted((tmp_path / "4" / "runs").rglob("*.json"))
  assert len(one) == len(four) == 4 * 7
  for a, b in zip(one, four):
    # Round-off differs between the layouts; Phase 1's hard Gumbel samples can turn it into a different
    # draw now and then, so SmartMixed's records agree to 1% (one 4-step epoch, barely trained here).
    tolerance = 1e-2 if a.parent.name == "smartmixed" else 1e-4
    _close(*(without_timings(json.loads(f.read_text()), drop={"cohort"}) for f in (a, b)), str(a), tolerance)
  assert json.loads((tmp_path / "4" / "sweep.json").read_text())["devices"] == 4


def _port() -> int:
  import socket

  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _processes(command, env, *extra) -> list[subprocess.Popen]:
  return [subprocess.Popen([*command, *extra, "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip


def test_two_processes_joined_by_jax_distributed_stop_together_resume_and_match_one(mnist_cache, tmp_path):
  """A real multi-host run: two local processes (CPU collectives over gloo), one device each. SIGTERM to
  process 1 alone stops both after the same epoch, checkpointed (not JAX's preemption handler, which would
  swallow it); resumed, they finish with what one process trains."""
  import time

  args = ["train", "--arch", "64-32", "--phase1-epochs", "3", "--phase2-epochs", "2", "--train-limit",
          "2048", "--seed", "3", "--checkpoint-every", "1", "--no-progress"]  # fmt: skip
  args += ["--data-dir", str(mnist_cache)]
  command = [str(Path(sys.executable).with_name("smartmixed")), *args]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # The session's shared compilation cache is for single-process programs: collectives' do not reload.
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  two = tmp_path / "two"
  hosts = lambda: ["--coordinator", f"localhost:{_port()}", "--num-processes", "2"]  # noqa: E731
  processes = _processes(command, env, "--out", str(two), *hosts())
  deadline = time.monotonic() + 240
  while not (two / "checkpoints" / "1").is_dir() and time.monotonic() < deadline:
    assert all(p.poll() is None for p in processes), [p.communicate()[1][-2000:] for p in processes]
    time.sleep(0.02)
  processes[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=300) for p in processes]
  assert [p.returncode for p in processes] == [143, 143], [err[-2000:] for _, err in outputs]
  assert "SIGTERM: stopping after the current epoch" in outputs[1][1]
  stopped = {err.split("stopped on request after ")[1].split(";")[0] for _, err in outputs}
  assert len(stopped) == 1, stopped  # the same phase and epoch on both
  assert not (two / "results.json").exists()

  script = command[0]
  resume = [script, "train", "--resume", str(two), "--no-progress", "--data-dir", str(mnist_cache)]
  resumed = _processes(resume, env, *hosts())
  outputs = [p.communicate(timeout=300) for p in resumed]
  assert [p.returncode for p in resumed] == [0, 0], [err[-2000:] for _, err in outputs]
  assert "wrote" in outputs[0][0] and "wrote" not in outputs[1][0]  # only process 0 writes
  one = subprocess.run([*command, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
  assert one.returncode == 0, one.stderr[-2000:]
  two, single = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("two", "one"))
  assert two["environment"]["devices_used"] == 2 and two["activation_counts"] == single["activation_counts"]
  for key, value in single["final"].items():
    assert abs(value - two["final"][key]) <= 1e-5 * abs(value), key
  assert (
    sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.isdigit())[-1] == 5
  )


REFUSED = """
import sys
import numpy as np
from smartmixed_jax import app
from smartmixed_jax._src import cli
hosts = ["--coordinator", sys.argv[1], "--num-processes", "2", "--process-id", sys.argv[2]]
cli._join_processes(cli.build_parser().parse_args(["train", *hosts]))
rng = np.random.default_rng(0)
split = lambda n: app.Split(rng.uniform(size=(n, 784)).astype(np.float32), np.arange(n, dtype=np.int32) % 10)
data = app.Dataset(split(256), split(64), split(64), "synthetic")
config = app.make_config("16", phase1_epochs=1, phase2_epochs=1, batch_size=64)
try:
  app.train_and_evaluate(config, data, workdir=sys.argv[3], progress=False)  # devices=1: this process's own
except ValueError as e:
  print(e)
try:
  app.train_and_evaluate(config, data, workdir=sys.argv[3], progress=False, devices=None)
except ValueError as e:
  print(e)
  raise SystemExit(2)
"""


def test_a_refusal_by_process_0_reaches_every_process(tmp_path):
  """Only process 0 inspects the run directory; its refusal is every process's, at once (no process is
  left waiting at a barrier, and none reads the directory while process 0 prepares it)."""
  from smartmixed_jax._src import rundir

  held = tmp_path / "held"
  held.mkdir()
  rundir.mark(held)
  (held / "config.json").write_text("{}")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  port = _port()
  command = [sys.executable, "-c", REFUSED, f"localhost:{port}"]
  processes = [subprocess.Popen([*command, str(i), str(held)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip
  outputs = [p.communicate(timeout=120) for p in processes]
  assert [p.returncode for p in processes] == [2, 2], [err[-2000:] for _, err in outputs]
  for out, _ in outputs:
    assert "A run of 2 processes trains data-parallel on all 2 devices of all of them; got devices=1" in out
  assert f"{held} already holds a run" in outputs[0][0]
  assert f"process 0 refused the run: {held} already holds a run" in outputs[1][0]


def test_processes_with_different_flags_are_refused(mnist_cache, tmp_path):
  """``--seed 1`` on process 1 only would silently train two runs as one: every process exits 2."""
  port = _port()
  args = ["train", "--arch", "16", "--phase1-epochs", "1", "--phase2-epochs", "1", "--train-limit", "512",
          "--no-progress", "--data-dir", str(mnist_cache), "--out", str(tmp_path / "run"),
          "--coordinator", f"localhost:{port}", "--num-processes", "2"]  # fmt: skip
  command = [str(Path(sys.executable).with_name("smartmixed")), *args]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  extra = [[], ["--seed", "1"]]
  processes = [subprocess.Popen([*command, "--process-id", str(i), *extra[i]], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]  # fmt: skip
  outputs = [p.communicate(timeout=300) for p in processes]
  assert [p.returncode for p in processes] == [2, 2], [err[-2000:] for _, err in outputs]
  for _, err in outputs:
    assert "process(es) [1] run with other settings or flags than process 0" in err
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("killed", [0, 1])
def test_a_process_whose_peer_is_killed_says_so_and_the_run_resumes(mnist_cache, tmp_path, killed):
  """kill -9 of one process (its host gone) during training: the other exits 7 at once with what to do
  (not JAX's abort, exit 134, after a heartbeat timeout), and the run resumes from its newest checkpoint.
  Process 0 hosts JAX's coordination service: its loss is the case that used to abort from C++."""
  import time

  run = tmp_path / "run"
  args = ["train", "--arch", "32", "--phase1-epochs", "12", "--phase2-epochs", "1", "--train-limit", "8192",
          "--checkpoint-every", "3", "--no-progress", "--data-dir", str(mnist_cache), "--out", str(run),
          "--coordinator", f"localhost:{_port()}", "--num-processes", "2"]  # fmt: skip
  command = [str(Path(sys.executable).with_name("smartmixed")), *args]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  processes = [subprocess.Popen([*command, "--process-id", str(i)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
               for i in range(2)]  # fmt: skip
  deadline = time.monotonic() + 240
  while not (run / "checkpoints" / "3").is_dir() and time.monotonic() < deadline:
    assert all(p.poll() is None for p in processes), [p.communicate()[1][-2000:] for p in processes]
    time.sleep(0.02)
  time.sleep(0.2)  # into the next epochs' training, away from the checkpoint's barriers
  os.killpg(processes[killed].pid, signal.SIGKILL)  # the command and the process it supervises
  start = time.monotonic()
  survivor = processes[1 - killed]
  _, err = survivor.communicate(timeout=120)
  processes[killed].communicate()
  assert survivor.returncode == 7, err[-3000:]
  # At once when the survivor was exchanging gradients; at a barrier (saving a checkpoint), once JAX's
  # heartbeat timeout (100 s) has declared the other process dead.
  assert time.monotonic() - start < 150
  assert "error: another process of this run was lost (" in err
  assert (
    f"The newest checkpoint is kept. Start every process again with: smartmixed train --resume {run}" in err
  )
  assert not (run / "results.json").exists()
  if killed == 1:
    return  # one resume shows that nothing was lost
  # Resumed by one process (a run may change its devices on resume), it finishes.
  done = subprocess.run([command[0], "train", "--resume", str(run), "--no-progress", "--data-dir",
                         str(mnist_cache)], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
  assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads((run / "results.json").read_text())["phases"]["phase1"]["epochs"] == 12
