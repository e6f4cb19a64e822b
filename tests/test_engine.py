"""The two-phase engine: a sweep's cohort of one trains what ``train_and_evaluate`` trains.

Every training-relevant Config field is changed from a small default, in groups
of fields; each group must change the run (so it is not ignored by both), and
the sweep's cohort of that one seed must reproduce the run epoch by epoch: a
field that reached only one of them would break the equality. The data are
synthetic (a random linear teacher), so the compile dominates and each case
takes seconds.
"""

import dataclasses
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))

import sweep  # noqa: E402
from _synthetic import prototypes_dataset  # noqa: E402

from smartmixed_jax import (
  app,  # noqa: E402
  engine,  # noqa: E402
)

ARCH = "24-12"
LOSSES = ("train_loss", "val_loss")
METRICS = (*LOSSES, "train_accuracy", "val_accuracy")


@pytest.fixture(scope="module")
def data():
  return prototypes_dataset(384)


def make(arch, seed=3, **overrides):
  values = dict(phase1_epochs=3, phase2_epochs=2, batch_size=64, eval_batch_size=128, seed=seed)
  return app.make_config(arch, "recommended", **{**values, **overrides})


FIELDS = {  # every training-relevant Config field, grouped so that each group changes the run
  "selection": dict(final_temperature=0.05, temperature=1.5, logits_lr_scale=50.0, clip_activations=0.2),
  "optimizer": dict(
    schedule="cosine_run", learning_rate=3e-3, clip_norm=0.01, skip_nonfinite=True, phase2_keeps_start=True
  ),
  "data": dict(batch_size=48, train_limit=200, pool=("relu", "tanh", "gelu")),
  "reference quirks": dict(reinit_phase2=True, softmax_output=True, noisy_eval=True),
  "switch": dict(switch_patience=1, switch_threshold=1.0),
  "dtype": dict(dtype="bfloat16"),
}


SET_BY_EVERY_CASE = {"hidden", "arch", "phase1_epochs", "phase2_epochs", "seed", "eval_batch_size", "dataset"}
"""Fields every case shares (``dataset`` only names the data, which are given); ``baseline`` has a test."""


def test_every_config_field_is_covered():
  grouped = {name for group in FIELDS.values() for name in group}
  fields = {f.name for f in dataclasses.fields(app.Config)}
  assert grouped | SET_BY_EVERY_CASE | {"baseline"} == fields, "a new Config field needs a group here"


def _histories(phases, metrics=METRICS):
  """Per phase, per epoch, the ``metrics`` it has (epoch 0 has no training metrics)."""
  pick = lambda e: {k: getattr(e, k) for k in metrics if getattr(e, k) is not None}  # noqa: E731
  return [[pick(e) for e in p.history] for p in phases]


def _run(data, **overrides):
  record = app.train_and_evaluate(make(ARCH, **overrides), data, progress=False).record
  return record, _histories(record.phases.values())


@pytest.fixture(scope="module")
def default_run(data):
  return _run(data)


@pytest.mark.parametrize("group", FIELDS)
def test_a_cohort_of_one_trains_what_the_run_trains(group, data, default_run):
  overrides = FIELDS[group]
  record, run = _run(data, **overrides)
  assert run != default_run[1], f"{group} changed nothing: the test could not tell it is ignored"
  limit = overrides.get("train_limit")
  splits = app.device_splits(data, limit)
  cohort = sweep.run_smartmixed(
    ARCH, [3], lambda arch, **kw: make(arch, **{**overrides, **kw}), splits, ablation=False,
    controls=False, progress=False,
  )[3]  # fmt: skip
  assert cohort.config == record.config
  # Phase 1 is the same program, vmapped over one model; Phase 2 computes the frozen, grouped network
  # with its choices as data, which permutes no neurons: the same function up to float round-off.
  # In bfloat16 that round-off is ~1e-3 and moves single examples across the argmax: losses only.
  metrics, rtol = (LOSSES, 1e-2) if group == "dtype" else (METRICS, 2e-5)
  assert list(cohort.phases) == list(record.phases) == ["phase1", "phase2"] and cohort.main == record.main
  together = _histories(cohort.phases.values(), metrics)
  chex.assert_trees_all_close(together, _histories(record.phases.values(), metrics), rtol=rtol, atol=2e-5)
  assert [len(h) for h in together] == [len(h) for h in run]
  for phases in (cohort.phases, record.phases):  # the selected epochs, by the config's rule
    for name, phase in phases.items():
      first = 0 if name == "phase2" and overrides.get("phase2_keeps_start") else 1
      losses = [e.val_loss for e in phase.history[first:]]
      assert phase.best.epoch == first + int(np.argmin(losses))
  names = record.config["pool"]
  if group != "dtype":
    assert cohort.activation_counts == record.activation_counts
  else:  # a logit tie within bfloat16's round-off may flip one neuron's argmax
    for ours, theirs in zip(cohort.activation_counts, record.activation_counts):
      assert sum(abs(ours.get(n, 0) - theirs.get(n, 0)) for n in names) <= 2


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_baseline_cohort_of_one_trains_what_the_baseline_run_trains(data, dtype):
  config = make(ARCH, baseline="tanh", dtype=dtype)
  alone = app.train_and_evaluate(config, data, progress=False).record.phases["tanh"]
  splits = app.device_splits(data)
  cohort = engine.baselines(config, splits, pairs=[("tanh", 3)], progress=False).record(0)
  metrics, rtol = (LOSSES, 1e-3) if dtype == "bfloat16" else (METRICS, 1e-5)
  chex.assert_trees_all_close(
    _histories([cohort], metrics), _histories([alone], metrics), rtol=rtol, atol=1e-5
  )


def test_grouped_baselines_train_as_they_would_alone(data):
  """Two seeds as one program, and relu next to elu (choices as data), train as they would alone."""
  splits, pairs = app.device_splits(data), [("relu", 0), ("elu", 0), ("relu", 1)]
  together = engine.baselines(make(ARCH), splits, pairs=pairs, progress=False)
  for m, pair in enumerate(pairs):
    alone = engine.baselines(make(ARCH), splits, pairs=[pair], progress=False)
    ours, theirs = _histories([together.record(m)]), _histories([alone.record(0)])
    chex.assert_trees_all_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_a_control_from_scratch_is_a_fixed_network_of_the_baselines_budget(data):
  """From scratch means the baselines' initial weights, data order, schedule and epochs: with a pool of
  one activation the random-mixture control is that activation's baseline, epoch by epoch."""
  splits = app.device_splits(data)
  config = make(ARCH, pool=("tanh",), schedule="cosine_run", phase2_keeps_start=True)
  variants = [("argmax", "carry"), ("random", "scratch"), ("reversed", "scratch")]
  result = engine.two_phase(config, splits, seeds=[0, 1], variants=variants, progress=False)
  baseline = engine.baselines(config, splits, pairs=[("tanh", 0), ("tanh", 1)], progress=False)
  for m in range(2):
    record = engine.record(dataclasses.replace(config, seed=m), result, m)
    assert record.main == "argmax/carry" and set(record.variants) == {"random/scratch", "reversed/scratch"}
    scratch = record.variants["random/scratch"]
    assert len(scratch.history) == 1 + config.phase1_epochs + config.phase2_epochs
    chex.assert_trees_all_close(_histories([scratch]), _histories([baseline.record(m)]), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"first variant is the model's own Phase 2.*\('random', 'scratch'\)"):
    engine.two_phase(config, splits, seeds=[0], variants=[("random", "scratch")])


def test_depth_reversed_choices_turn_the_layers_proportions_upside_down():
  first, last = jnp.array([0, 0, 0, 1, 1, 1, 2, 2]), jnp.array([3, 3, 4, 5])  # widths 8 and 4
  flipped = engine.depth_reversed([first, jnp.zeros(6, jnp.int32), last], jax.random.key(0))
  assert [c.shape for c in flipped] == [(8,), (6,), (4,)]
  assert sorted(flipped[0].tolist()) == [3, 3, 3, 3, 4, 4, 5, 5]  # the last layer's shares, at width 8
  assert sorted(flipped[2].tolist()) == [0, 0, 1, 2]  # the first's at width 4, each within one neuron
  assert flipped[1].tolist() == [0] * 6


def test_run_keys_are_one_derivation_for_runs_and_cohorts():
  one, many = engine.run_keys(5), engine.run_keys([4, 5])
  for a, b in zip(one, many):
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b[1]))


def test_variants_and_cohort_options_are_checked(data):
  splits = app.device_splits(data)
  with pytest.raises(ValueError, match="Unknown Phase 2 variant"):
    engine.two_phase(make(ARCH), splits, seeds=[0], variants=[("median", "carry")])
  for variants in ([("argmax", "carry"), ("random", "carry")], [("random", "carry")], []):
    with pytest.raises(ValueError, match="One model trains one argmax-frozen Phase 2 and no control"):
      engine.two_phase(make(ARCH), splits, variants=variants)
  with pytest.raises(ValueError, match="not in the pool"):
    engine.baselines(make(ARCH), splits, pairs=[("gelu", 0)])
  with pytest.raises(ValueError, match="names no activation"):
    engine.baselines(make(ARCH), splits)
