"""The task panel: a tiny version of every task, the controls, the report's rules and the text corpus."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))

import panel  # noqa: E402
import shakespeare  # noqa: E402
from panel_tasks import TASKS  # noqa: E402

CACHES = {"mnist": "mnist_cache", "fashion": "fashion_mnist_cache"}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_smartmixed_through_both_phases(name, tmp_path, request):
  """SmartMixed, 1 + 1 epochs on the task's small subset: Phase 1, freeze, Phase 2 and the record."""
  cache = next((request.getfixturevalue(f) for prefix, f in CACHES.items() if name.startswith(prefix)), None)
  if name == "deep_narrow":
    cache = request.getfixturevalue("mnist_cache")
  assert panel.run_all(tmp_path, [name], [0], smoke=True, models=["smartmixed"], data_dir=cache,
                       progress=False) == 1  # fmt: skip
  record = json.loads(panel.run_path(tmp_path, name, "smartmixed", 0).read_text())
  task = TASKS[name]
  assert record["epochs"] == 2 and record["phase1_epochs"] == 1 and np.isfinite(record["metric"])
  assert len(record["val_loss"]) == 2  # Phase 2's start (kept if best) and its one epoch
  choices = [c for layer in record["choices"].values() for c in layer]
  assert choices and 0 <= min(choices) and max(choices) < len(task.pool)
  assert len(record["decided"]) == len(record["choices"])


def test_controls_change_the_choices_as_named_and_nothing_else():
  learned = {"acts/0": [0, 0, 1, 2, 3, 3, 3, 5], "acts/1": [4, 4, 1, 1]}
  same = panel.control_choices("learned_choices", learned, 0, 6)
  shuffled = panel.control_choices("shuffled_choices", learned, 0, 6)
  uniform = panel.control_choices("random_choices", learned, 0, 6)
  for path, layer in learned.items():
    assert same[path].tolist() == layer
    assert sorted(shuffled[path].tolist()) == sorted(layer) and shuffled[path].tolist() != layer
    assert uniform[path].shape == (len(layer),) and 0 <= uniform[path].min() and uniform[path].max() < 6
  again = panel.control_choices("shuffled_choices", learned, 0, 6)
  assert all((again[p] == shuffled[p]).all() for p in learned)  # a seed's control is reproducible


def _write(out, task, model, seed, metric):
  path = panel.run_path(out, task, model, seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  record = {"task": task, "model": model, "seed": seed, "metric": metric, "seconds": 1.0, "epochs": 4,
            "phase1_epochs": 2}  # fmt: skip
  path.write_text(json.dumps(record))


def test_the_report_signs_every_difference_so_that_positive_is_better(tmp_path):
  """An error: lower is better. SmartMixed (0.9-1.1) beats the median fixed activation and trails the best."""
  task = TASKS["sine_fit"]
  for seed in range(3):
    for i, act in enumerate(task.pool):
      _write(tmp_path, "sine_fit", act, seed, 1.0 + 0.5 * i + 0.01 * seed)  # relu best, selu worst
    _write(tmp_path, "sine_fit", "smartmixed", seed, 1.2 + 0.02 * seed)
    for control, value in (("learned", 1.3), ("shuffled", 1.5), ("random", 1.6)):
      _write(tmp_path, "sine_fit", f"{control}_choices", seed, value + 0.01 * seed)
  _write(tmp_path, "poisson_pinn", "relu", 0, 50.0)  # a task with unfinished models is left out
  answer = panel.answer(TASKS["sine_fit"], panel.read_runs(tmp_path)["sine_fit"])
  assert answer.best == "relu" and answer.worst == "selu" and answer.seeds == [0, 1, 2]
  assert np.mean(answer.diffs["regret"]) == pytest.approx(-0.21) and min(answer.diffs["learned_random"]) > 0
  text = panel.write_report(tmp_path).read_text()
  assert "| `sine_fit` | test RMSE | 4 (2 + 2) | 3 | relu" in text and "poisson_pinn" not in text
  # Below the best fixed, above the median, learned above shuffled and random: each significantly.
  assert "| `sine_fit` | holds | holds | holds | holds |" in text


def test_the_corpus_is_verified(tmp_path):
  corpus = shakespeare.load()
  assert len(corpus.alphabet) == 84 and corpus.alphabet[0] == "\n"
  assert len(corpus.train) + len(corpus.validation) + len(corpus.test) == shakespeare.CORPUS_CHARS
  assert corpus.train.max() < 84 and corpus.train.dtype == np.uint8
  bad = tmp_path / shakespeare.ARCHIVE
  bad.write_bytes(b"not the archive")
  with pytest.raises(shakespeare.CorpusError, match="fails its checksum: sha256 "):
    shakespeare.load(bad)
