"""Deploying: load a finished run's frozen model, export it, run it without this library."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import smartmixed_jax as sm
from smartmixed_jax import app
from smartmixed_jax._src import cli

# Runs the artifact with jax and numpy only: importing smartmixed_jax fails in this process.
STANDALONE = """
import sys
sys.modules["smartmixed_jax"] = None
import jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
x, y = np.load(sys.argv[2])["x"], np.load(sys.argv[2])["y"]
for batch in (1, 37, 1000):
  logits = [exported.call(x[i:i + batch]) for i in range(0, len(y), batch)]
  predictions = np.concatenate([np.argmax(z, -1) for z in logits])
  print(batch, int(np.sum(predictions == y)))
"""


def test_exported_model_reproduces_the_runs_test_accuracy(tmp_path, mnist, mnist_cache):
  run = tmp_path / "run"
  args = ["train", "--arch", "32-16", "--phase1-epochs", "1", "--phase2-epochs", "1", "--train-limit", "2000",
          "--no-progress", "--out", str(run), "--data-dir", str(mnist_cache)]  # fmt: skip
  assert cli.main(args) == 0
  summary = json.loads((run / "results.json").read_text())
  model = app.load_run(run)
  assert model.counts() == summary["activation_counts"]
  correct = round(summary["final"]["test_accuracy"] * len(mnist.test.y))
  assert int(np.sum(np.argmax(model(mnist.test.x), -1) == mnist.test.y)) == correct

  artifact = tmp_path / "model.jax"
  done = subprocess.run(
    [str(Path(sys.executable).with_name("smartmixed")), "export", str(run), "--out", str(artifact)],
    capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert done.returncode == 0, done.stderr
  assert "float32[batch, 784] -> logits[batch, 10] for cpu, cuda, tpu" in done.stdout
  np.savez(tmp_path / "test.npz", x=mnist.test.x, y=mnist.test.y)
  ran = subprocess.run([sys.executable, "-c", STANDALONE, str(artifact), str(tmp_path / "test.npz")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
  assert ran.returncode == 0, ran.stderr
  assert ran.stdout.split() == ["1", str(correct), "37", str(correct), "1000", str(correct)]


def test_load_run_and_export_refuse_what_they_cannot_use(tmp_path, capsys):
  with pytest.raises(ValueError, match=r"holds no finished run \(results.json is missing\)"):
    app.load_run(tmp_path)
  model = sm.fixed_mlp(__import__("jax").random.key(0), (4, 3, 2), "relu")
  with pytest.raises(
    ValueError, match=r"Unknown platforms \['gpu'\]; choose from \['cpu', 'cuda', 'rocm', 'tpu'\]"
  ):
    sm.export_model(model, platforms=["cpu", "gpu"])
  assert cli.main(["export", str(tmp_path), "--out", str(tmp_path / "m.jax")]) == 2
  assert "holds no finished run" in capsys.readouterr().err
