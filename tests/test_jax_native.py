"""The library's objects behave as JAX values; one training loop; Flax conventions."""

import dataclasses
import pickle

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import smartmixed_jax as sm
import smartmixed_jax.nnx as snx

KEY = jax.random.key(0)


def _mixed(key, sizes):
  params = sm.init_mlp(key, sizes)
  logits = [jax.random.normal(k, lg.shape) for k, lg in zip(jax.random.split(key, 8), params.logits)]
  return dataclasses.replace(params, logits=tuple(logits))


def test_frozen_model_is_a_pytree_of_its_weights():
  params = _mixed(KEY, (6, 12, 8, 3))
  model = sm.freeze(params)
  x = jax.random.normal(KEY, (4, 6))
  assert len(jax.tree.leaves(model)) == 6  # w and b of three layers; segments etc. are static
  chex.assert_trees_all_close(jax.jit(lambda m, x: m(x))(model, x), sm.apply_hard(params, x), atol=1e-5)
  chex.assert_trees_all_close(jax.device_put(model)(x), model(x))
  doubled = jax.tree.map(lambda a: 2 * a, model)
  assert isinstance(doubled, sm.FrozenMLP) and doubled.segments == model.segments
  model(x)  # pickling works after a call: no compiled function is kept on the instance
  restored = pickle.loads(pickle.dumps(model))
  chex.assert_trees_all_equal(restored(x), model(x))
  text = repr(model)
  assert "float32[6, 12]" in text and "relu:" in text and len(text) < 400
  assert "float32[12, 6]" in repr(params) and len(repr(params)) < 400


def test_frozen_model_does_not_retrace_per_call():
  model = sm.freeze(_mixed(KEY, (6, 10, 2)))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(model, x):
    return model(x)

  for i in range(4):
    forward(jax.tree.map(lambda a, i=i: a + i, model), jnp.full((3, 6), float(i)))


def test_traced_temperature_needs_no_retrace():
  params = sm.init_mlp(KEY, (5, 8, 3))
  x = jnp.ones((2, 5))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(params, temperature):
    return sm.apply_selective(params, x, KEY, temperature=temperature, hard=False)

  outs = [forward(params, jnp.float32(t)) for t in (2.0, 1.0, 0.3)]
  assert not np.allclose(outs[0], outs[2])  # the soft mixture depends on the temperature


def test_forward_mode_autodiff_through_apply_hard():
  params = _mixed(KEY, (4, 7, 3))
  x = jax.random.normal(KEY, (4,))
  f = lambda x: sm.apply_hard(params, x)
  _, tangent = jax.jvp(f, (x,), (jnp.ones(4),))
  chex.assert_trees_all_close(tangent, jax.jacrev(f)(x) @ jnp.ones(4), atol=1e-5)
  hessian = jax.hessian(lambda x: jnp.sum(f(x) ** 2))(x)
  chex.assert_shape(hessian, (4, 4))
  chex.assert_tree_all_finite(hessian)


@pytest.mark.parametrize("sizes", [np.array([784, 16, 10]), (np.int64(5), np.int32(4), 2)])
def test_numpy_integer_layer_sizes(sizes):
  params = sm.init_mlp(KEY, sizes)
  assert params.layer_sizes == tuple(int(s) for s in sizes)
  assert all(type(s) is int for s in params.layer_sizes)


def test_param_labels_drive_a_separate_logits_learning_rate():
  params = sm.init_mlp(KEY, (5, 8, 3))
  optimizer = optax.multi_transform({"weights": optax.sgd(0.0), "logits": optax.sgd(1.0)}, sm.param_labels)
  grads = jax.grad(lambda p: jnp.sum(sm.apply_selective(p, jnp.ones((2, 5)), KEY)))(params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates.layers))
  assert float(jnp.abs(updates.logits[0]).max()) > 0


def _tiny_splits(key, n=96):
  x = jax.random.uniform(key, (n, 6))
  y = (x[:, 0] > 0.5).astype(jnp.int32)
  return {"train": (x, y), "val": (x[:32], y[:32]), "test": (x[32:64], y[32:64])}


def test_fit_on_stacked_models_equals_fitting_each_alone():
  splits = _tiny_splits(KEY)
  keys = jax.random.split(KEY, 2)
  models = [sm.fixed_mlp(k, (6, 8, 2), "tanh") for k in keys]
  fit = lambda params, key, models=None: sm.fit(
    params, apply=lambda m, x, k, s: m(x), optimizer=optax.adam(1e-2), splits=splits, epochs=3, key=key,
    batch_size=16, models=models, policies=[sm.raise_on_nonfinite()],
  )  # fmt: skip
  stacked = fit(jax.tree.map(lambda *a: jnp.stack(a), *models), keys, models=2)
  for m in range(2):
    alone = fit(models[m], keys[m])
    assert stacked.best_epochs[m] == alone.best_epochs[0]
    np.testing.assert_allclose(stacked.test[m]["test_accuracy"], alone.test[0]["test_accuracy"], atol=1e-6)
    chex.assert_trees_all_close(
      jax.tree.map(lambda a, m=m: a[m], stacked.best_params), alone.best_params, atol=1e-5
    )


def test_fit_trains_the_float_leaves_and_carries_the_rest_as_data():
  """Per-model choices as integers in the model: untouched, and each model runs its own activations."""
  splits = _tiny_splits(KEY)
  init = lambda k: dataclasses.replace(sm.init_mlp(k, (6, 8, 2)), logits=())  # noqa: E731
  weights = jax.vmap(init)(jax.random.split(KEY, 2))
  chosen = [jnp.stack([jnp.zeros(8, jnp.int32), jnp.full(8, 2, jnp.int32)])]  # relu, then tanh everywhere
  result = sm.fit(
    (weights, chosen), apply=lambda m, x, k, s: sm.apply_choices(m[0], x, m[1]), optimizer=optax.adam(1e-2),
    splits=splits, epochs=2, key=jax.random.split(KEY, 2), batch_size=16, models=2, policies=(),
  )  # fmt: skip
  trained, carried = result.best_params
  chex.assert_trees_all_equal(carried, chosen)
  assert not np.allclose(trained.layers[0].w, weights.layers[0].w)
  x, y = splits["test"]
  for m in range(2):
    logits = sm.apply_choices(jax.tree.map(lambda a, m=m: a[m], trained), x, [chosen[0][m]])
    accuracy = np.mean(np.argmax(logits, -1) == y)
    np.testing.assert_allclose(result.test[m]["test_accuracy"], accuracy, atol=1e-6)


def test_fit_never_selects_the_untrained_epoch_zero():
  splits = _tiny_splits(KEY)
  model = sm.fixed_mlp(KEY, (6, 8, 2), "relu")
  # A learning rate so large that validation loss only gets worse than at epoch 0.
  result = sm.fit(
    model, apply=lambda m, x, k, s: m(x), optimizer=optax.sgd(50.0), splits=splits, epochs=2, key=KEY,
    batch_size=16, policies=(),
  )  # fmt: skip
  assert result.best_epochs[0] in (1, 2)
  assert result.best()["epoch"] >= 1


def test_nnx_rngs_dtype_and_eval_without_a_stream():
  x = jax.random.normal(KEY, (4, 6))
  layer = snx.MixedActivation(6, rngs=nnx.Rngs(params=0))  # no gumbel stream: fine for evaluation
  chex.assert_shape(layer(x, deterministic=True), (4, 6))
  with pytest.raises(ValueError, match="no 'gumbel' RNG stream"):
    layer(x)
  assert layer(x.astype(jnp.bfloat16), rngs=jax.random.key(1)).dtype == jnp.bfloat16
  chex.assert_trees_all_equal(layer(x, rngs=jax.random.key(2)), layer(x, rngs=jax.random.key(2)))
  chex.assert_trees_all_equal(layer(x, rngs=nnx.Rngs(gumbel=3)), layer(x, rngs=nnx.Rngs(gumbel=3)))
  named = snx.MixedActivation(6, rng_collection="noise", rngs=nnx.Rngs(params=0, noise=1))
  chex.assert_shape(named(x), (4, 6))
  assert (
    snx.MixedActivation(6, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))(x, deterministic=True).dtype == jnp.bfloat16
  )


def test_nnx_logits_are_selectable_by_type():
  model = nnx.Sequential(nnx.Linear(6, 8, rngs=nnx.Rngs(0)), snx.MixedActivation(8, rngs=nnx.Rngs(1)))
  logits = jax.tree.leaves(nnx.state(model, snx.Logits))
  assert [a.shape for a in logits] == [(8, 6)]
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=snx.Logits)
  assert len(jax.tree.leaves(optimizer.opt_state)) > 0


def _randomise(model):
  for i, (_, node) in enumerate(nnx.iter_graph(model)):
    if isinstance(node, snx.MixedActivation):
      node.logits.set_value(jax.random.normal(jax.random.key(i), node.logits.shape))
  model.eval()
  return model


def test_nnx_freeze_keeps_lora_and_shared_layers_exact():
  x = jax.random.normal(KEY, (5, 6)) * 2
  lora = nnx.Sequential(
    nnx.LoRALinear(6, 10, lora_rank=2, rngs=nnx.Rngs(0)), snx.MixedActivation(10, rngs=nnx.Rngs(1)),
    nnx.Linear(10, 3, rngs=nnx.Rngs(2)),
  )  # fmt: skip
  lora.layers[0].lora.lora_b.set_value(jax.random.normal(KEY, lora.layers[0].lora.lora_b.shape))
  shared_linear = nnx.Linear(6, 10, rngs=nnx.Rngs(3))

  class ReadTwice(nnx.Module):
    def __init__(self):
      self.seq = nnx.Sequential(
        shared_linear, snx.MixedActivation(10, rngs=nnx.Rngs(4)), nnx.Linear(10, 10, rngs=nnx.Rngs(5))
      )
      self.skip = shared_linear

    def __call__(self, x):
      return self.seq(x) + self.skip(x)

  act = snx.MixedActivation(10, rngs=nnx.Rngs(6))
  shared_act = nnx.Sequential(
    nnx.Linear(6, 10, rngs=nnx.Rngs(7)), act, nnx.Linear(10, 10, rngs=nnx.Rngs(8)), act
  )
  for model in (lora, ReadTwice(), shared_act):
    model = _randomise(model)
    frozen = snx.freeze(model)
    chex.assert_trees_all_close(frozen(x), model(x), atol=1e-5)
  assert frozen.layers[1] is frozen.layers[3]  # a shared activation stays shared


def test_nnx_freeze_of_a_vmapped_stack_keeps_each_layers_choices():
  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return snx.MixedActivation(8, rngs=nnx.Rngs(params=key))

  stacked = _randomise(make(jax.random.split(KEY, 3)))
  stacked.eval()
  frozen = snx.freeze(stacked)
  np.testing.assert_array_equal(frozen.choices[...], np.argmax(stacked.logits[...], -1))  # [3, 8]
  x = jax.random.normal(KEY, (3, 4, 8))
  each = nnx.vmap(lambda layer, x: layer(x), in_axes=(0, 0))
  chex.assert_trees_all_close(each(frozen, x), each(stacked, x), atol=1e-6)
  with pytest.raises(ValueError, match="stacked choices"):
    frozen(x[0])
  assert len(snx.counts(frozen)) == 3
