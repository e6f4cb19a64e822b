"""Every experiment entry point runs: tiny versions of the benchmark and the Fashion-MNIST study.

The sweep, its report and the adaptive-switch study have their own tiny runs in test_sweep.py.
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))

import benchmark  # noqa: E402
import fashion_mnist  # noqa: E402


def test_benchmark_smoke_measures_every_variant_side_by_side(capsys):
  report = benchmark.main(["--smoke"])
  shape, random, *learned = report["shapes"]
  assert set(shape["seconds"]) == {
    "relu_step", "phase1_step", "naive_phase1_step", "phase2_step", "relu_inference", "elu_inference",
    "frozen_inference", "gather_scatter_inference", "where_mask_inference",
  }  # fmt: skip
  assert random["activations_in_use"] == [8, 8]  # the random selection uses the whole pool
  # With the panel's transformer trained, also the selection it learned.
  assert len(learned) == benchmark.PANEL_SELECTION.exists()
  for transformer in (random, *learned):
    assert set(transformer["seconds"]) == {"gelu_lm_inference", "frozen_lm_inference"}
    assert transformer["ratios"]["frozen_lm_inference / gelu_lm_inference"] > 0
  assert all(0 < s < 1 for s in shape["seconds"].values())
  assert all(math.isfinite(r) and r > 0 for r in shape["ratios"].values())
  assert shape["bytes"]["naive_phase1_peak_memory"] >= shape["bytes"]["relu_peak_memory"] > 0
  assert "phase1_step / relu_step" in capsys.readouterr().out


def test_fashion_mnist_smoke_writes_its_report(tmp_path, fashion_mnist_cache):
  fashion_mnist.main(["--smoke", "--out", str(tmp_path), "--data-dir", str(fashion_mnist_cache)])
  saved = json.loads((tmp_path / "results.json").read_text())
  assert [r["seed"] for r in saved["cnn"]] == [0]
  assert {r["model"] for r in saved["mlp"]} == {"smartmixed", "relu", "sigmoid", "tanh", "leaky_relu", "elu",
                                                "selu"}  # fmt: skip
  assert all(0 < r["test_accuracy"] <= 1 for r in saved["mlp"])
  assert [saved["cnn"][0][phase]["epochs"] for phase in ("phase1", "phase2", "relu")] == [1, 1, 2]
  text = (tmp_path / "REPORT.md").read_text()
  assert "| 32 |" in text and (tmp_path / "cnn_activation_shares.png").stat().st_size > 1000


def test_depth_origin_smoke_trains_both_label_sets_and_reports(tmp_path, mnist_1k):
  import depth_origin
  import numpy as np

  shuffled = depth_origin.shuffled_labels(mnist_1k)
  assert np.array_equal(np.bincount(shuffled.train.y), np.bincount(mnist_1k.train.y))
  assert np.mean(shuffled.train.y == mnist_1k.train.y) < 0.2  # about 1/10 agree by chance
  kwargs = dict(presets=["recommended"], seeds=[0], epochs=1, train_limit=256, progress=False)
  assert depth_origin.run_all(tmp_path, mnist_1k, **kwargs) == 2
  assert depth_origin.run_all(tmp_path, mnist_1k, **kwargs) == 0  # resumed: nothing left to train
  runs = depth_origin.load(tmp_path)
  assert sorted(runs) == [("recommended", "shuffled"), ("recommended", "true")]
  record, gradients = runs["recommended", "true"][0]
  assert record.config["hidden"] == [256] * 6 and record.phase1.epochs == 1 and record.phase2 is None
  assert np.asarray(gradients).shape == (6, 6) and 0 <= np.min(gradients) <= np.max(gradients) <= 1
  text = depth_origin.write_report(tmp_path).read_text()
  assert "| recommended | shuffled | 1 |" in text and "- `recommended`: " in text
  assert (tmp_path / "depth_origin.png").stat().st_size > 1000


def test_default_selects_smoke_screens_candidates_and_judges_them(tmp_path, mnist_1k, monkeypatch, capsys):
  import default_selects
  import sweep

  monkeypatch.setitem(sweep.BUDGETS, "smoke", sweep.Budget(2, 0, 512))
  kwargs = dict(candidates=["old", "logits100"], archs=["simple_2layer", "small_3layer"], seeds=[0, 1],
                budget="smoke", progress=False)  # fmt: skip
  # 8 steps decide nothing: the reference trains every run, a candidate stops at its first architecture.
  assert default_selects.run_all(tmp_path, mnist_1k, **kwargs) == 4 + 2
  assert "logits100: decided does not hold (2 of 2 runs stay below 90% decided" in capsys.readouterr().out
  assert default_selects.run_all(tmp_path, mnist_1k, **kwargs) == 0  # resumed: nothing left to train
  settings = json.loads((tmp_path / "logits100" / "sweep.json").read_text())
  assert settings["logits_lr_scale"] == 100 and settings["overrides"] == {} and settings["phase2_epochs"] == 0
  old, fast = (default_selects.read_records(tmp_path / name) for name in ("old", "logits100"))
  assert max(map(default_selects.decided_share, old)) == 0  # 8 steps: nothing decided yet
  entropy = lambda runs: max(r.phase1.history[-1].selection[0].entropy for r in runs)  # noqa: E731
  assert entropy(fast) < entropy(old) - 0.01  # but 100x faster logits have moved further from uniform
  text = default_selects.write_report(tmp_path, seeds=[0, 1]).read_text()
  # Two of 18 architectures trained: nothing may be declared to hold.
  assert "| `logits100` |" in text and "2/36" in text and "**holds**" not in text
  assert "No candidate holds on every criterion yet" in text
  assert (tmp_path / "default_selects.png").stat().st_size > 1000


def test_fair_phase2_smoke_trains_both_arms_and_puts_them_side_by_side(tmp_path, mnist_1k, monkeypatch):
  import fair_phase2
  import sweep

  monkeypatch.setitem(sweep.BUDGETS, "smoke", sweep.Budget(1, 1, 512))
  kwargs = dict(archs=["simple_2layer"], seeds=[0, 1], budget="smoke", progress=False)
  assert fair_phase2.run_all(tmp_path, mnist_1k, **kwargs) == 2 + 12 + 2  # the baselines once
  assert fair_phase2.run_all(tmp_path, mnist_1k, **kwargs) == 0
  for arm, scale in fair_phase2.ARMS.items():
    settings = json.loads((tmp_path / arm / "sweep.json").read_text())
    assert settings["logits_lr_scale"] == scale and settings["overrides"] == fair_phase2.FAIR
    assert settings["scratch"] and not settings["ablation"] and not settings["controls"]
  text = fair_phase2.write_report(tmp_path).read_text()
  assert "| `logits1` | learned choices − uniformly random ones, both from scratch |" in text
  assert "2 of 12 SmartMixed runs trained" in text and "| holds" not in text  # 1 of 6 architectures
  arm = (tmp_path / "logits1" / "REPORT.md").read_text()  # a sweep report, with its controls from scratch
  assert "--scratch-controls" in arm and "## Controls from scratch" in arm
  assert "| learned choices − the same with the layers' order reversed, both from scratch |" in arm
  record = json.loads(sweep.run_path(tmp_path / "logits1", "simple_2layer", "smartmixed", 0).read_text())
  scratch = {rule: record["variants"][f"{rule}/scratch"] for rule in sweep.SCRATCH_RULES}
  assert all(phase["epochs"] == 2 for phase in scratch.values())  # both phases' epochs, as a baseline's


def test_sweep_overrides_are_config_fields_the_sweep_does_not_set_itself():
  import pytest
  import sweep

  assert sweep.parse_overrides(["final_temperature=0.03", "schedule=constant"], "recommended") == {
    "final_temperature": 0.03, "schedule": "constant"
  }  # fmt: skip
  refused = [
    ("nonsense=1", "FIELD one of"),
    ("seed=3", "the sweep sets seed itself"),
    ("temperature=-1", "temperature must be a finite number > 0"),
    ("final_temperature", "FIELD=VALUE"),
  ]
  for bad, match in refused:
    with pytest.raises(ValueError, match=match):
      sweep.parse_overrides([bad], "recommended")
