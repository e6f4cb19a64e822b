import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smartmixed_jax as sm


def _random_mixed_params(key, sizes, pool=sm.DEFAULT_POOL):
  params = sm.init_mlp(key, sizes, pool=pool)
  # Large random logits: every layer mixes many activations, in shuffled order.
  logits = [
    jax.random.normal(k, l.shape) for k, l in zip(jax.random.split(key, len(params.logits)), params.logits)
  ]
  return dataclasses.replace(params, logits=tuple(logits))


@pytest.mark.parametrize("seed", range(6))
def test_freeze_preserves_the_function(seed):
  rng = np.random.default_rng(seed)
  sizes = tuple(int(s) for s in rng.integers(1, 40, size=rng.integers(3, 7)))
  key = jax.random.key(seed)
  params = _random_mixed_params(key, sizes)
  x = jax.random.normal(jax.random.fold_in(key, 1), (2, 5, sizes[0])) * 3
  model = sm.freeze(params)
  chex.assert_trees_all_close(model(x), sm.apply_hard(params, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_freeze_equivalence_jit_and_eager(jit):
  params = _random_mixed_params(jax.random.key(1), (12, 30, 20, 4))
  model = sm.freeze(params)
  x = jax.random.normal(jax.random.key(2), (8, 12))
  if jit:
    out = jax.jit(lambda m, x: m(x))(model, x)
  else:
    with jax.disable_jit():
      out = model(x)
  chex.assert_trees_all_close(out, sm.apply_hard(params, x), atol=1e-5)


def test_permutation_segments_and_names():
  params = _random_mixed_params(jax.random.key(3), (6, 50, 40, 2))
  model = sm.freeze(params)
  for perm, segs, c, names in zip(
    model.permutations, model.segments, sm.choices(params), model.activation_names()
  ):
    n = len(c)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))  # a real permutation
    assert segs[0][1] == 0 and segs[-1][2] == n
    assert all(a[2] == b[1] for a, b in zip(segs, segs[1:]))  # contiguous
    order = [sm.DEFAULT_POOL.index(name) for name, _, _ in segs]
    assert order == sorted(order) and len(set(order)) == len(order)
    c = np.asarray(c)
    for name, start, stop in segs:
      assert all(sm.DEFAULT_POOL[i] == name for i in c[list(perm[start:stop])])
    assert names == [sm.DEFAULT_POOL[i] for i in c]
  assert [sum(d.values()) for d in model.counts()] == [50, 40]


def test_freeze_leaves_its_input_intact():
  params = _random_mixed_params(jax.random.key(4), (6, 10, 2))
  before = jax.tree.map(np.array, params)
  sm.freeze(params)
  chex.assert_trees_all_equal(jax.tree.map(np.array, params), before)


def test_frozen_apply_does_not_retrace():
  traces = []

  def counted_relu(x):
    traces.append(1)  # runs only while tracing
    return jnp.maximum(x, 0)

  pool = (("counted", counted_relu), "tanh")
  params = _random_mixed_params(jax.random.key(5), (6, 10, 2), pool=pool)
  model = sm.freeze(params)
  traces.clear()  # the pool's shape check traced it once already
  for i in range(5):
    model(jnp.full((3, 6), i, jnp.float32))
    jax.tree.map(lambda a, i=i: a + i, model)(jnp.ones((3, 6)))  # new weights, same structure
  assert len(traces) == 1


def test_train_step_through_frozen_model_traces_once():
  model = sm.freeze(_random_mixed_params(jax.random.key(6), (6, 10, 2)))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(model, x):
    return jax.tree.map(lambda p, g: p - 0.1 * g, model, jax.grad(lambda m: jnp.sum(m(x)))(model))

  p = model
  for _ in range(3):
    p = step(p, jnp.ones((4, 6)))
  chex.assert_tree_all_finite(p)


def test_freeze_with_explicit_choices_and_bad_choices():
  params = sm.init_mlp(jax.random.key(7), (4, 3, 2))
  model = sm.freeze(params, choices=[jnp.array([5, 0, 5])])
  assert model.segments == ((("relu", 0, 1), ("selu", 1, 3)),)
  with pytest.raises(ValueError, match=r"must index the pool"):
    sm.freeze(params, choices=[jnp.array([6, 0, 0])])
  with pytest.raises(ValueError, match="must be 3 integers"):
    sm.freeze(params, choices=[jnp.array([0, 0])])
  with pytest.raises(ValueError, match="1 hidden layers"):
    sm.freeze(params, choices=[])


def test_fixed_baseline_is_a_plain_mlp():
  model = sm.fixed_mlp(jax.random.key(8), (5, 7, 6, 3), "tanh")
  assert model.segments == ((("tanh", 0, 7),), (("tanh", 0, 6),))
  x = jax.random.normal(jax.random.key(9), (4, 5))
  h = x
  for layer in model.layers[:-1]:
    h = jnp.tanh(h @ layer.w + layer.b)
  last = model.layers[-1]
  chex.assert_trees_all_close(model(x), h @ last.w + last.b, atol=1e-6)
  # Same key, same initial weights as SmartMixed: a fair comparison.
  chex.assert_trees_all_equal(model.layers, sm.init_mlp(jax.random.key(8), (5, 7, 6, 3)).layers)


@pytest.mark.parametrize("traced", [False, True])
def test_apply_choices_computes_the_frozen_network(traced):
  """Unsorted choices, given as data (traced) or static: same as freeze()."""
  key = jax.random.key(12)
  params = sm.init_mlp(key, (5, 8, 6, 3))
  chosen = [jnp.array([5, 0, 3, 3, 1, 2, 4, 0]), jnp.array([2, 2, 5, 4, 0, 1])]
  x = jax.random.normal(key, (7, 5))
  model = sm.freeze(params, choices=chosen)
  apply = jax.jit(sm.apply_choices) if traced else sm.apply_choices
  chosen = chosen if traced else [np.asarray(c) for c in chosen]
  chex.assert_trees_all_close(apply(params, x, chosen), model(x), atol=1e-6)


def test_apply_choices_vmaps_over_models_with_different_choices():
  key = jax.random.key(13)
  params = [sm.init_mlp(k, (4, 6, 3)) for k in jax.random.split(key, 3)]
  chosen = [[jax.random.randint(k, (6,), 0, 6)] for k in jax.random.split(key, 3)]
  x = jax.random.normal(key, (5, 4))
  stack = lambda trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
  batched = jax.vmap(sm.apply_choices, in_axes=(0, None, 0))(stack(params), x, stack(chosen))
  for i in range(3):
    model = sm.freeze(params[i], choices=chosen[i])
    chex.assert_trees_all_close(batched[i], model(x), atol=1e-6)
  with pytest.raises(ValueError, match="1 hidden layers"):
    sm.apply_choices(params[0], x, [])
