"""Every bad input a user can give, answered with a clear error before any compute."""

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smartmixed_jax as sm
from smartmixed_jax import app
from smartmixed_jax._src import cli
from smartmixed_jax._src import data as data_lib
from smartmixed_jax._src.pool import resolve_pool


def _error(thunk):
  """The message of the error a thunk raises, or of a CLI call's non-zero exit."""
  try:
    result = thunk()
  except (ValueError, TypeError, app.DataError) as e:
    return str(e)
  raise AssertionError(f"no error raised (returned {result!r})")


def _cli(*args):
  def run(capsys):
    code = cli.main(list(args))
    err = capsys.readouterr().err
    if code == 0:
      raise AssertionError("the command succeeded")
    return err

  return run


def _tiny_data(mnist, dtype=np.float32, width=784):
  x = mnist.train.x[:500, :width].astype(dtype)
  return mnist._replace(train=app.Split(x, mnist.train.y[:500]))


KEY = jax.random.key(0)
CASES = [
  (
    "unknown architecture",
    lambda m, t, c: app.make_config("wide_99layer"),
    r"Unknown architecture 'wide_99layer'.*'simple_2layer'",
  ),
  (
    "unknown architecture (cli)",
    _cli("train", "--arch", "huge", "--out", "X"),
    r"Unknown architecture 'huge'",
  ),
  (
    "unknown activation",
    lambda m, t, c: sm.init_mlp(KEY, (4, 2, 1), pool=("relu", "swishy")),
    r"Unknown activation 'swishy'; valid names are \[.*'elu'",
  ),
  ("widths not positive", lambda m, t, c: app.make_config("512-0-64"), r"'512-0-64'.*positive integers"),
  ("widths not integers", lambda m, t, c: sm.init_mlp(KEY, (784, 2.5, 10)), r"positive integers, got 2.5"),
  ("empty layer sizes", lambda m, t, c: sm.init_mlp(KEY, ()), r"at least an input and an output"),
  (
    "negative epochs",
    lambda m, t, c: app.make_config(phase2_epochs=-1),
    r"phase2_epochs must be an integer >= 0, got -1",
  ),
  (
    "negative epochs (cli)",
    _cli("train", "--phase1-epochs", "-1", "--out", "X"),
    r"phase1_epochs must be an integer >= 0",
  ),
  (
    "temperature zero",
    lambda m, t, c: app.make_config(temperature=0.0),
    r"temperature must be a finite number > 0, got 0.0",
  ),
  (
    "temperature infinite",
    lambda m, t, c: sm.apply_selective(
      sm.init_mlp(KEY, (3, 2, 1)), jnp.ones((1, 3)), KEY, temperature=float("inf")
    ),
    r"temperature must be a finite number >= 0.001, got inf",
  ),
  (
    "learning rate zero",
    lambda m, t, c: app.make_config(learning_rate=0.0),
    r"learning_rate must be a finite number > 0, got 0.0",
  ),
  (
    "learning rate negative (cli)",
    _cli("train", "--lr=-1e-3", "--out", "X"),
    r"learning_rate must be a finite number > 0, got -0.001",
  ),
  (
    "batch larger than training set",
    lambda m, t, c: app.train_and_evaluate(
      app.make_config("8", batch_size=600), _tiny_data(m), progress=False
    ),
    r"batch_size 600 exceeds the 500 training examples",
  ),
  (
    "data of the wrong width",
    lambda m, t, c: app.train_and_evaluate(app.make_config("8"), _tiny_data(m, width=100), progress=False),
    r"train inputs are float32\[500, 100\].*784\]",
  ),
  (
    "data of the wrong dtype",
    lambda m, t, c: app.train_and_evaluate(app.make_config("8"), _tiny_data(m, np.uint8), progress=False),
    r"uint8\[500, 784\].*floating point",
  ),
  (
    "input of the wrong width",
    lambda m, t, c: sm.apply_hard(sm.init_mlp(KEY, (5, 3, 2)), jnp.ones((4, 6))),
    r"shape \(4, 6\).*input width 5",
  ),
  (
    "integer input",
    lambda m, t, c: sm.apply_hard(sm.init_mlp(KEY, (5, 3, 2)), jnp.ones((4, 5), jnp.int32)),
    r"floating point.*int32",
  ),
  (
    "duplicate pool names",
    lambda m, t, c: resolve_pool(("relu", "tanh", "relu")),
    r"duplicate names \['relu'\]",
  ),
  (
    "callable changes shape",
    lambda m, t, c: resolve_pool((("mean", lambda x: x.mean(-1)),)),
    r"'mean' must be elementwise.*\(2, 3\) to \(2,\)",
  ),
  (
    "pool mismatch",
    lambda m, t, c: sm.apply_hard(
      dataclasses.replace(sm.init_mlp(KEY, (3, 2, 1)), pool=("relu",)), jnp.ones((1, 3))
    ),
    r"6 candidates but the params' pool \['relu'\] has 1",
  ),
  (
    "unknown preset",
    lambda m, t, c: app.make_config(preset="fastest"),
    r"Unknown preset 'fastest'; valid presets are",
  ),
  (
    "resume without a run (cli)",
    _cli("train", "--resume", "/nonexistent/run"),
    r"no run to continue there .*config.json is missing",
  ),
]


@pytest.mark.parametrize("name, thunk, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_table(name, thunk, message, mnist, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  if thunk.__name__ == "run":  # a CLI case
    text = thunk(capsys)
  else:
    text = _error(lambda: thunk(mnist, tmp_path, capsys))
  assert __import__("re").search(message, text), text
  assert not (tmp_path / "X").exists()  # refused before writing anything


def test_output_dir_holding_another_run_is_refused(tmp_path, mnist_cache, capsys):
  fast = ["--phase1-epochs", "1", "--phase2-epochs", "0", "--train-limit", "500", "--no-progress",
          "--data-dir", str(mnist_cache), "--out", str(tmp_path)]  # fmt: skip
  assert cli.main(["train", "--arch", "8", *fast]) == 0
  before = (tmp_path / "results.json").read_text()
  assert cli.main(["train", "--arch", "16", *fast]) == 2
  assert "already holds a run (config.json" in capsys.readouterr().err
  assert (tmp_path / "results.json").read_text() == before


def test_data_file_failing_its_checksum(tmp_path, mnist_cache):
  idx = tmp_path / "idx"
  shutil.copytree(mnist_cache / "idx", idx)
  with open(idx / "train-images-idx3-ubyte", "r+b") as f:
    f.seek(5000)
    f.write(b"\xff")
  with pytest.raises(app.DataError, match=r"train-images-idx3-ubyte fails its checksum: sha256 [0-9a-f]{64}"):
    data_lib.verify_idx_dir(idx)
