import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import smartmixed_jax as sm
from smartmixed_jax import app


def _tiny(arch="48", **overrides):
  values = dict(phase1_epochs=2, phase2_epochs=2, train_limit=1500, eval_batch_size=1000, seed=1)
  values.update(overrides)
  return app.make_config(arch, "recommended", **values)


def test_epoch_sees_every_example_once_and_learns():
  """The padded last batch is masked: mean accuracy counts every example once."""
  x = jax.random.normal(jax.random.key(0), (300, 4))
  y = (x[:, 0] > 0).astype(jnp.int32)
  model = sm.fixed_mlp(jax.random.key(1), (4, 16, 2), "relu")
  apply = lambda m, x, key, step: m(x)
  opt = sm.make_optimizer(1e-2, 1.0)
  epoch = sm.make_train_epoch(apply, opt, batch_size=128)  # 300 = 128 + 128 + 44
  evaluate = sm.make_evaluate(apply, batch_size=128)
  params, state = model, opt.init(model)
  before = evaluate(params, x, y, jax.random.key(2), 0)
  for i in range(20):
    params, state, metrics = epoch(params, state, x, y, jax.random.key(i), 3 * i)
  after = evaluate(params, x, y, jax.random.key(2), 0)
  assert float(after.loss) < float(before.loss) and float(after.accuracy) > 0.95
  # Evaluation over padded chunks equals one full batch.
  full = sm.cross_entropy(params(x), y).mean()
  np.testing.assert_allclose(float(after.loss), float(full), rtol=1e-5)
  n_correct = float(metrics.accuracy) * 300
  assert abs(n_correct - round(n_correct)) < 1e-3


def test_training_is_deterministic(mnist):
  a = app.train_and_evaluate(_tiny(), mnist, progress=False)
  b = app.train_and_evaluate(_tiny(), mnist, progress=False)
  chex.assert_trees_all_equal(a.model, b.model)
  assert a.summary()["final"] == b.summary()["final"]
  c = app.train_and_evaluate(_tiny(seed=2), mnist, progress=False)
  assert a.summary()["final"] != c.summary()["final"]


def test_end_to_end_on_real_mnist(mnist):
  """A short real run: well above chance, freeze keeps the function, records complete."""
  config = _tiny("64-32", phase1_epochs=3, phase2_epochs=3, train_limit=3000)
  result = app.train_and_evaluate(config, mnist, progress=False)
  phase1, phase2 = result.phases
  assert [p.name for p in result.phases] == ["phase1", "phase2"]
  history1, history2 = phase1.histories[0], phase2.histories[0]
  assert len(history1) == 4 and len(history2) == 4
  assert phase2.best()["test_accuracy"] > 0.85  # chance is 0.10
  # Phase 2 starts from the frozen best Phase 1 model: same function, same loss.
  np.testing.assert_allclose(history2[0]["val_loss"], phase1.best()["val_loss"], rtol=1e-4)
  # The selected epoch is the lowest validation loss among the trained epochs (never epoch 0).
  assert phase1.best()["epoch"] == 1 + int(np.argmin([r["val_loss"] for r in history1[1:]]))
  counts = history1[-1]["activation_counts"]
  assert [sum(c.values()) for c in counts] == [64, 32]
  summary = result.summary()
  assert summary["activation_counts"] == result.model.counts()
  assert set(summary["phases"]) == {"phase1", "phase2"}
  assert summary["final"]["test_accuracy"] == phase2.best()["test_accuracy"]


def test_reference_mode_and_baseline_run(mnist):
  paper = _tiny(train_limit=3000, learning_rate=3e-3, schedule="constant")
  paper = dataclasses.replace(
    paper, softmax_output=True, clip_activations=10.0, noisy_eval=True, reinit_phase2=True
  )
  result = app.train_and_evaluate(paper, mnist, progress=False)
  assert result.phases[1].best()["test_accuracy"] > 0.7  # measured 0.86; chance is 0.10
  # Re-initialised at the switch: Phase 2's start is far from Phase 1's best.
  assert result.phases[1].histories[0][0]["val_accuracy"] < 0.5
  baseline = app.train_and_evaluate(_tiny(baseline="elu"), mnist, progress=False)
  assert [p.name for p in baseline.phases] == ["elu"]
  assert len(baseline.phases[0].histories[0]) == 5
  assert baseline.model.segments == ((("elu", 0, 48),),)


def test_batch_larger_than_training_set(mnist):
  with pytest.raises(ValueError, match="batch_size 4096 exceeds the 1500 training examples"):
    app.train_and_evaluate(_tiny(batch_size=4096), mnist, progress=False)


def test_wrong_data_width(mnist):
  bad = mnist._replace(train=app.Split(mnist.train.x[:, :100], mnist.train.y))
  with pytest.raises(ValueError, match=r"float32\[54000, 100\].*784\]"):
    app.train_and_evaluate(_tiny(), bad, progress=False)


@pytest.mark.parametrize(
  "overrides, match",
  [
    (dict(phase1_epochs=-1), "phase1_epochs must be an integer >= 0, got -1"),
    (dict(learning_rate=0.0), "learning_rate must be a finite number > 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number > 0"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(baseline="swish"), "baseline 'swish' is not in the pool"),
    (dict(schedule="linear"), r"Unknown schedule 'linear'; valid schedules are \['constant', 'cosine', 'c"),
    (dict(phase2_keeps_start=1), "phase2_keeps_start must be True or False, got 1"),
    (dict(logits_lr_scale=0), "logits_lr_scale must be a finite number > 0, got 0"),
  ],
)
def test_bad_config(overrides, match):
  with pytest.raises(ValueError, match=match):
    _tiny(**overrides)


@pytest.mark.parametrize(
  "arch, preset, match",
  [
    ("wide_99layer", "recommended", "Unknown architecture 'wide_99layer'.*simple_2layer"),
    ("512-0", "recommended", "Unknown architecture"),
    ("medium_5layer", "fast", "Unknown preset 'fast'; valid presets are \\['paper', 'recommended'\\]"),
  ],
)
def test_bad_architecture_or_preset(arch, preset, match):
  with pytest.raises(ValueError, match=match):
    app.make_config(arch, preset)


def test_presets():
  paper = app.make_config("wide_14layer", "paper")
  assert (paper.learning_rate, paper.phase1_epochs, paper.phase2_epochs) == (1e-4, 50, 350)
  assert paper.softmax_output and paper.noisy_eval and paper.clip_activations == 10.0
  assert paper.reinit_phase2 and paper.seed == 42
  assert paper.schedule == "constant" and app.make_config().schedule == "cosine"
  assert paper.layer_sizes == (784, 768, 512, 512, 256, 256, 128, 128, 64, 64, 32, 32, 16, 16, 10)
  assert len(app.ARCHITECTURES) == 18


def test_an_override_of_none_is_taken_as_given():
  assert app.make_config("8", "paper", clip_activations=None).clip_activations is None  # clipping off
  assert app.make_config("8", "paper", final_temperature=None).final_temperature is None
  with pytest.raises(ValueError, match="learning_rate must be a finite number > 0, got None"):
    app.make_config("8", learning_rate=None)


def test_logits_lr_scale_moves_only_the_logits_faster():
  """Adam's first step moves every parameter by about lr; the logits by S * lr."""
  params = sm.init_mlp(jax.random.key(0), (8, 16, 4))
  x, y = jax.random.normal(jax.random.key(1), (32, 8)), jnp.arange(32) % 4

  def loss(p):
    return sm.cross_entropy(sm.apply_selective(p, x, jax.random.key(2), temperature=1.0), y).mean()

  grads = jax.grad(loss)(params)
  moved = {}
  for scale in (1.0, 10.0):
    config = _tiny(logits_lr_scale=scale, learning_rate=1e-2, schedule="constant")
    opt = config.optimizer(10)
    updates, _ = opt.update(grads, opt.init(params), params)
    moved[scale] = updates
  chex.assert_trees_all_close(moved[10.0].layers, moved[1.0].layers)
  chex.assert_trees_all_close(
    moved[10.0].logits, jax.tree.map(lambda u: 10 * u, moved[1.0].logits), rtol=1e-5
  )
  assert float(jnp.abs(moved[1.0].logits[0]).max()) == pytest.approx(1e-2, rel=1e-3)
  # Frozen (logit-free) parameters, as in Phase 2: the scale touches nothing.
  weights = dataclasses.replace(params, logits=())
  opt = _tiny(logits_lr_scale=10.0).optimizer(10)
  opt.update(dataclasses.replace(grads, logits=()), opt.init(weights), weights)


def _first_step_sizes(optimizer, n=3):
  """The learning rate at each of the optimizer's first ``n`` steps: Adam moves a parameter whose gradient
  never changes by exactly the learning rate (after bias correction)."""
  params, grads = jnp.zeros(1), jnp.full(1, 1e-3)  # well under the clipping norm
  state, sizes = optimizer.init(params), []
  for _ in range(n):
    updates, state = optimizer.update(grads, state, params)
    sizes.append(float(-updates[0]))
  return np.array(sizes)


def test_cosine_run_continues_one_schedule_across_the_phases():
  """Phase 1 and Phase 2 follow the baseline's one cosine over both phases' steps; "cosine" restarts it."""
  run, phases = _tiny(schedule="cosine_run"), _tiny(schedule="cosine")
  p1, p2 = 40, 60  # steps per phase
  baseline = _first_step_sizes(run.optimizer(p1 + p2), p1 + p2)
  np.testing.assert_allclose(_first_step_sizes(run.optimizer(p1, after=p2)), baseline[:3], rtol=1e-4)
  phase2 = _first_step_sizes(run.optimizer(p2, before=p1))
  np.testing.assert_allclose(phase2, baseline[p1 : p1 + 3], rtol=1e-4)
  assert baseline[p1] < 0.8 * baseline[0]  # the run's schedule has decayed by Phase 2
  restart = _first_step_sizes(phases.optimizer(p2, before=p1))  # "cosine" starts each phase at the peak
  np.testing.assert_allclose(restart, _first_step_sizes(phases.optimizer(p2)))
  assert restart[0] == pytest.approx(1e-3, rel=1e-4)


def test_configs_written_before_logits_lr_scale_still_load():
  d = _tiny(logits_lr_scale=3.0).to_dict()
  assert app.Config.from_dict(d).logits_lr_scale == 3.0
  del d["logits_lr_scale"]
  assert app.Config.from_dict(d).logits_lr_scale == 1.0
  del d["seed"]
  with pytest.raises(ValueError, match=r"missing \['seed'\]"):
    app.Config.from_dict(d)


def test_step_stats_count_the_sampled_activations():
  """Summed over an epoch: one sample per neuron per step; training is unchanged."""
  x = jax.random.normal(jax.random.key(0), (300, 4))
  y = (x[:, 0] > 0).astype(jnp.int32)
  params = sm.init_mlp(jax.random.key(1), (4, 5, 2))
  opt = sm.make_optimizer(1e-2, 1.0)

  def apply(p, xb, key, step):
    return sm.apply_selective(p, xb, key)

  def stats(p, key):
    return [jax.nn.one_hot(c, 6, dtype=jnp.int32) for c in sm.sample_choices(p, key)]

  counted = sm.make_train_epoch(apply, opt, batch_size=128, step_stats=stats)
  after, _, metrics = counted(params, opt.init(params), x, y, jax.random.key(2), 0)
  (counts,) = metrics.step_stats
  assert counts.shape == (5, 6) and np.all(np.asarray(counts).sum(-1) == 3)  # 3 steps
  plain = sm.make_train_epoch(apply, opt, batch_size=128)
  plain_after, _, plain_metrics = plain(params, opt.init(params), x, y, jax.random.key(2), 0)
  assert plain_metrics.step_stats is None
  chex.assert_trees_all_equal(after, plain_after)


def _with(mnist, split, x=None, y=None):
  old = getattr(mnist, split)
  return mnist._replace(**{split: app.Split(old.x if x is None else x, old.y if y is None else y)})


def _nan_pixel(m):
  x = m.validation.x.copy()
  x[3, 5] = np.nan
  return _with(m, "validation", x=x)


@pytest.mark.parametrize(
  "bad, match",
  [
    (_nan_pixel, r"validation inputs hold non-finite values \(in 1 examples\)"),
    (lambda m: _with(m, "train", y=np.where(np.arange(len(m.train.y)) == 7, 10, m.train.y)),
     r"train labels must be integers in \[0, 10\); got int\d+ in \[0, 10\]"),
    (lambda m: _with(m, "test", y=m.test.y[:-1]),
     r"test split has 10000 inputs but labels of shape \[9999\]"),
    (lambda m: _with(m, "validation", x=m.validation.x[:0], y=m.validation.y[:0]),
     "validation split is empty"),
    (lambda m: _with(m, "train", y=m.train.y.astype(np.float32)), r"train labels must be integers"),
  ],
  ids=["nan-in-validation", "label-out-of-range", "length-mismatch", "empty-validation", "float-labels"],
)  # fmt: skip
def test_bad_data_is_refused_before_training(bad, match, mnist, tmp_path):
  with pytest.raises(ValueError, match=match):
    app.train_and_evaluate(_tiny(), bad(mnist), workdir=tmp_path / "run", progress=False)
  assert not (tmp_path / "run").exists()  # a refused run writes nothing


@pytest.mark.parametrize(
  "overrides, match",
  [
    (dict(seed=2**32), r"seed must be an integer in \[0, 2\*\*32\), got 4294967296"),
    (dict(seed=2**64), r"seed must be an integer in \[0, 2\*\*32\)"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*32\), got -1"),
    (dict(temperature=1e-30), r"temperature must be >= 0.001 \(softmax overflows below\), got 1e-30"),
    (dict(final_temperature=1e-30), r"final_temperature must be >= 0.001"),
  ],
)
def test_seeds_and_temperatures_out_of_range(overrides, match):
  with pytest.raises(ValueError, match=match):
    _tiny(**overrides)


def test_a_pool_entry_returning_nan_is_refused():
  with pytest.raises(ValueError, match=r"Activation 'bad' is not finite on \[-3, 3\]"):
    sm.init_mlp(jax.random.key(0), (4, 3, 2), pool=("relu", ("bad", lambda x: jnp.log(x))))


def test_nan_logits_are_refused_by_freeze():
  params = sm.init_mlp(jax.random.key(0), (4, 3, 2))
  params = dataclasses.replace(params, logits=(params.logits[0].at[1, 2].set(jnp.nan),))
  with pytest.raises(ValueError, match=r"logits\[0\] are not finite"):
    sm.freeze(params)


def test_bfloat16_compute_trains_and_keeps_float32_state(mnist):
  config = _tiny(dtype="bfloat16")
  result = app.train_and_evaluate(config, mnist, progress=False)
  summary = result.summary()
  assert summary["config"]["dtype"] == "bfloat16" and summary["final"]["test_accuracy"] > 0.5
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(result.model))  # mixed precision
  float32 = app.train_and_evaluate(_tiny(), mnist, progress=False).summary()
  assert abs(summary["final"]["test_accuracy"] - float32["final"]["test_accuracy"]) < 0.05
  with pytest.raises(
    ValueError, match=r"Unknown dtype 'float16'; valid dtypes are \['float32', 'bfloat16'\]"
  ):
    _tiny(dtype="float16")


def test_the_application_names_moved_to_app_still_resolve_with_a_warning():
  with pytest.warns(FutureWarning, match=r"make_config moved to smartmixed_jax.app.make_config"):
    assert sm.make_config is app.make_config
  with pytest.raises(AttributeError, match="no attribute 'make_configs'"):
    sm.make_configs  # noqa: B018
  assert set(sm.__all__).isdisjoint(app.__all__) and all(hasattr(app, name) for name in app.__all__)


@pytest.mark.parametrize("select_start", [False, True])
def test_a_phase_keeps_its_starting_model_only_if_asked(select_start):
  """Gradient ascent makes every epoch worse than the start: only ``select_start`` keeps the start."""
  x = jax.random.normal(jax.random.key(0), (256, 4))
  y = (x[:, 0] > 0).astype(jnp.int32)
  model = sm.fixed_mlp(jax.random.key(1), (4, 16, 2), "relu")
  splits = {"train": (x, y), "val": (x, y), "test": (x, y)}
  result = sm.fit(
    model, apply=lambda m, x, key, step: m(x), optimizer=optax.sgd(-0.1), splits=splits, epochs=3,
    key=jax.random.key(2), batch_size=64, select_start=select_start, policies=(),
  )  # fmt: skip
  losses = [e["val_loss"] for e in result.histories[0]]
  assert losses == sorted(losses)  # ascent: each epoch worse
  assert result.best_epochs == [0 if select_start else 1]
  if select_start:
    chex.assert_trees_all_equal(result.best_params, model)
    assert result.best()["val_loss"] == losses[0]


BUILD_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
from _synthetic import prototypes_dataset
from smartmixed_jax import app
data = prototypes_dataset(512)
config = app.make_config("32-16-8", phase1_epochs=2, phase2_epochs=1, batch_size=64)
result = app.train_and_evaluate(config, data, progress=False)
print(json.dumps([e["val_loss"] for phase in result.phases for e in phase.histories[0]]))
"""


def test_the_suites_fast_compiling_build_computes_what_the_default_build_does():
  """conftest compiles the suite's programs for compile speed (LLVM -O0, classic emitters); the same runs in a
  process with XLA's default build give the same losses, to float32's last bit or two."""
  import json
  import os
  import subprocess
  import sys
  from pathlib import Path

  from conftest import FAST_COMPILE

  assert FAST_COMPILE in os.environ["XLA_FLAGS"]
  default = dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"].replace(FAST_COMPILE, ""))
  runs = [
    subprocess.run(
      [sys.executable, "-c", BUILD_CHECK, str(Path(__file__).parent)],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
    )
    for env in (os.environ, default)
  ]
  assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
  fast, usual = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
  np.testing.assert_allclose(fast, usual, rtol=1e-6)
