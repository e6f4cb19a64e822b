import json

import pytest

from smartmixed_jax._src import cli

FAST = ["--phase1-epochs", "1", "--phase2-epochs", "1", "--train-limit", "1000", "--no-progress"]


def test_train_writes_every_artifact(tmp_path, mnist_cache, capsys):
  out = tmp_path / "run"
  code = cli.main(["train", "--arch", "32-16", *FAST, "--out", str(out), "--data-dir", str(mnist_cache)])
  assert code == 0
  for name in (
    "results.json",
    "choices.csv",
    "curves.png",
    "activation_shares.png",
    "activation_trajectory.png",
    "selection.png",
  ):
    assert (out / name).stat().st_size > 0, name
  results = json.loads((out / "results.json").read_text())
  assert results["config"]["hidden"] == [32, 16]
  assert set(results["phases"]) == {"phase1", "phase2"}
  assert 0.1 < results["final"]["test_accuracy"] <= 1.0
  rows = (out / "choices.csv").read_text().splitlines()
  assert rows[0] == "layer,neuron,activation,frozen_position" and len(rows) == 1 + 32 + 16
  captured = capsys.readouterr()
  assert "phase2" in captured.out and "test acc" in captured.out
  # A few steps under the old default decide nothing: the record says so, and so do the summary and stderr.
  assert results["decided"] == [0.0, 0.0]
  assert "selection: 0% of the hidden neurons decided when frozen (per layer: 0%, 0%)" in captured.out
  warning = "warning: the selection had not decided when it was frozen: 0% of the hidden neurons"
  assert warning in captured.out and captured.err.count(warning) == 1  # at the freeze, one plain line

  # The same directory refuses a different run unless told to overwrite.
  assert cli.main(["train", "--arch", "32", *FAST, "--out", str(out), "--data-dir", str(mnist_cache)]) != 0
  assert "already holds a run (config.json" in capsys.readouterr().err
  assert (
    cli.main(
      [
        "train",
        "--arch",
        "32",
        "--baseline",
        "relu",
        *FAST,
        "--out",
        str(out),
        "--data-dir",
        str(mnist_cache),
        "--overwrite",
      ]
    )
    == 0
  )
  assert json.loads((out / "results.json").read_text())["config"]["baseline"] == "relu"


@pytest.mark.parametrize(
  "args, message",
  [
    (["--arch", "wide_99layer"], "Unknown architecture 'wide_99layer'"),
    (["--arch", "512-x"], "Unknown architecture '512-x'"),
    (["--phase1-epochs", "-2"], "phase1_epochs must be an integer >= 0, got -2"),
    (["--lr", "0"], "learning_rate must be a finite number > 0, got 0.0"),
    (["--temperature", "-1"], "temperature must be a finite number > 0"),
  ],
)
def test_bad_arguments_fail_before_any_compute(args, message, tmp_path, capsys):
  assert cli.main(["train", *args, "--out", str(tmp_path)]) == 2
  assert message in capsys.readouterr().err
  assert not any(tmp_path.iterdir())


def test_archs_lists_all_eighteen(capsys):
  assert cli.main(["archs"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 18 and "wide_5layer" in lines[8]


def test_version_flag(capsys):
  import smartmixed_jax as sm

  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--version"])
  assert exit_info.value.code == 0
  assert capsys.readouterr().out.strip() == f"smartmixed_jax {sm.__version__}"


def test_pool_logits_lr_and_switch_flags_reach_the_run(tmp_path, mnist_cache):
  out = tmp_path / "run"
  argv = ["train", "--arch", "32", *FAST, "--pool", "relu,gelu,silu", "--logits-lr-scale", "20"]
  # Any argmax change below 100% for 1 epoch ends Phase 1: after 1 of at most 3 epochs.
  argv += ["--phase1-epochs", "3", "--switch-patience", "1", "--switch-threshold", "1", "--out", str(out)]
  assert cli.main([*argv, "--data-dir", str(mnist_cache)]) == 0
  results = json.loads((out / "results.json").read_text())
  assert results["config"]["pool"] == ["relu", "gelu", "silu"]
  assert results["config"]["logits_lr_scale"] == 20
  assert results["config"]["switch_patience"] == 1 and results["phases"]["phase1"]["epochs"] == 1
  assert list(results["activation_counts"][0]) == ["relu", "gelu", "silu"]
  assert sum(results["activation_counts"][0].values()) == 32


def test_bad_pool_is_refused_naming_the_choices(tmp_path, capsys):
  assert cli.main(["train", "--pool", "relu,swish", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "swish" in err and "gelu" in err
  assert not any(tmp_path.iterdir())


def test_dataset_flag_selects_the_data_set(tmp_path, capsys, fashion_mnist_cache):
  out = tmp_path / "run"
  argv = ["train", "--arch", "32", *FAST, "--dataset", "fashion_mnist", "--out", str(out)]
  assert cli.main([*argv, "--data-dir", str(fashion_mnist_cache)]) == 0
  assert "fashion_mnist from" in capsys.readouterr().out
  assert json.loads((out / "results.json").read_text())["config"]["dataset"] == "fashion_mnist"
