import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smartmixed_jax as sm
from smartmixed_jax._src.pool import resolve_pool

KEY = jax.random.key(0)


def test_init_shapes_and_ranges():
  params = sm.init_mlp(KEY, (20, 16, 8, 3))
  chex.assert_shape([l.w for l in params.layers], [(20, 16), (16, 8), (8, 3)])
  chex.assert_shape([l.b for l in params.layers], [(16,), (8,), (3,)])
  chex.assert_shape(params.logits, [(16, 6), (8, 6)])
  for layer in params.layers:  # PyTorch Linear default: U(+-1/sqrt(fan_in))
    bound = 1 / np.sqrt(layer.w.shape[0])
    assert float(jnp.max(jnp.abs(layer.w))) <= bound
    assert float(jnp.max(jnp.abs(layer.b))) <= bound
  for logits in params.logits:  # zeros, one entry per neuron at 0.001
    np.testing.assert_array_equal(jnp.sum(logits > 0, axis=1), 1)
    np.testing.assert_allclose(jnp.max(logits, axis=1), 1e-3)


def test_init_logit_bumps_are_spread_over_the_pool():
  logits = sm.init_mlp(KEY, (4, 600, 2)).logits[0]
  counts = np.bincount(np.argmax(logits, 1), minlength=6)
  assert counts.min() > 60  # ~100 each


@pytest.mark.parametrize("jit", [False, True])
def test_straight_through_forward_is_exactly_one_hot(jit):
  logits = jax.random.normal(KEY, (50, 6))
  sample = lambda l, k: sm.gumbel_straight_through(l, k, temperature=0.3)
  if jit:
    sample = jax.jit(sample)
  y = sample(logits, jax.random.key(1))
  assert set(np.unique(np.asarray(y))) <= {0.0, 1.0}
  np.testing.assert_array_equal(jnp.sum(y, -1), 1.0)


def test_straight_through_gradient_reaches_logits():
  params = sm.init_mlp(KEY, (5, 7, 3))
  x = jax.random.normal(jax.random.key(2), (4, 5))

  def loss(p):
    return jnp.sum(sm.apply_selective(p, x, jax.random.key(3)) ** 2)

  grads = jax.grad(loss)(params)
  chex.assert_tree_all_finite(grads)
  assert float(jnp.abs(grads.logits[0]).sum()) > 0


def test_straight_through_gradient_is_the_soft_gradient():
  """d out / d logits equals the gradient of the soft relaxation's weights."""
  logits = jax.random.normal(KEY, (3, 6))
  key = jax.random.key(4)
  f = jnp.arange(1.0, 7.0)  # stand-in for the six activation values
  hard = jax.grad(lambda l: jnp.sum(sm.gumbel_straight_through(l, key, temperature=0.5) * f))(logits)
  soft = jax.grad(lambda l: jnp.sum(sm.gumbel_straight_through(l, key, temperature=0.5, hard=False) * f))(
    logits
  )
  chex.assert_trees_all_close(hard, soft)


def test_soft_weights_sum_to_one():
  y = sm.gumbel_straight_through(jax.random.normal(KEY, (9, 6)), KEY, temperature=1.0, hard=False)
  np.testing.assert_allclose(jnp.sum(y, -1), 1.0, rtol=1e-6)
  assert float(jnp.min(y)) > 0


def test_one_sample_shared_by_the_batch_and_leading_axes():
  params = sm.init_mlp(KEY, (5, 32, 3))
  x = jax.random.normal(jax.random.key(5), (2, 3, 5))
  key = jax.random.key(6)
  out = sm.apply_selective(params, x, key)
  chex.assert_shape(out, (2, 3, 3))
  for i in range(2):  # every example saw the same sampled network
    chex.assert_trees_all_close(sm.apply_selective(params, x[i, 1], key), out[i, 1], atol=1e-6)


def test_determinism_for_a_fixed_key():
  params = sm.init_mlp(KEY, (5, 64, 3))
  x = jnp.ones((4, 5))
  a = sm.apply_selective(params, x, jax.random.key(7))
  np.testing.assert_array_equal(a, sm.apply_selective(params, x, jax.random.key(7)))
  assert not np.array_equal(a, sm.apply_selective(params, x, jax.random.key(8)))
  np.testing.assert_array_equal(sm.init_mlp(KEY, (5, 64, 3)).layers[0].w, params.layers[0].w)


def test_apply_hard_uses_the_argmax_and_ties_go_low():
  params = sm.init_mlp(KEY, (3, 4, 2), pool=("relu", "tanh"))
  params = dataclasses.replace(params, logits=(jnp.array([[0.0, 1.0], [2.0, 1.0], [0.5, 0.5], [0.0, 0.0]]),))
  np.testing.assert_array_equal(sm.choices(params)[0], [1, 0, 0, 0])
  x = jax.random.normal(KEY, (6, 3))
  z = x @ params.layers[0].w + params.layers[0].b
  h = jnp.where(jnp.array([False, True, True, True]), jnp.maximum(z, 0), jnp.tanh(z))
  expected = h @ params.layers[1].w + params.layers[1].b
  chex.assert_trees_all_close(sm.apply_hard(params, x), expected, atol=1e-6)


def test_reference_clip():
  params = sm.init_mlp(KEY, (2, 3, 1), pool=("relu",))
  layers = (sm.Dense(jnp.full((2, 3), 100.0), params.layers[0].b), sm.Dense(jnp.ones((3, 1)), jnp.zeros(1)))
  params = dataclasses.replace(params, layers=layers)
  x = jnp.ones((1, 2))
  hidden = lambda p, x: sm.apply_hard(p, x, clip=10.0)
  assert float(hidden(params, x)[0, 0]) == pytest.approx(30.0)


@pytest.mark.parametrize(
  "sizes, match",
  [
    ((), "at least an input and an output"),
    ((784,), "at least"),
    ((784, 0, 10), "positive integers"),
    ((784, -3, 10), "-3"),
    ((784, 2.5, 10), "2.5"),
  ],
)
def test_bad_layer_sizes(sizes, match):
  with pytest.raises(ValueError, match=match):
    sm.init_mlp(KEY, sizes)


def test_wrong_input_width():
  params = sm.init_mlp(KEY, (5, 4, 2))
  with pytest.raises(ValueError, match=r"shape \(3, 6\).*input width 5"):
    sm.apply_hard(params, jnp.ones((3, 6)))
  with pytest.raises(ValueError, match="input width 5"):
    jax.jit(lambda x: sm.apply_selective(params, x, KEY))(jnp.ones((3, 6)))


@pytest.mark.parametrize("temperature", [0.0, -1.0, 1e-30, float("inf"), float("nan"), jnp.ones(2)])
def test_bad_temperature(temperature):
  params = sm.init_mlp(KEY, (5, 4, 2))
  with pytest.raises(ValueError, match="temperature must be a"):
    sm.apply_selective(params, jnp.ones((1, 5)), KEY, temperature=temperature)


def test_params_carry_their_pool_and_a_mismatch_is_caught():
  params = sm.init_mlp(KEY, (5, 4, 2), pool=("relu", "tanh"))
  assert params.pool == ("relu", "tanh")
  with pytest.raises(TypeError, match="unexpected keyword argument 'pool'"):
    sm.apply_hard(params, jnp.ones((1, 5)), pool=sm.DEFAULT_POOL)  # the pool is bound, not passed
  wrong = dataclasses.replace(params, pool=sm.DEFAULT_POOL)  # logits made for another pool
  for run in (lambda p: sm.apply_hard(p, jnp.ones((1, 5))), sm.freeze, sm.choices):
    with pytest.raises(ValueError, match="2 candidates but the params' pool"):
      run(wrong)


def test_integer_input_is_rejected():
  params = sm.init_mlp(KEY, (5, 4, 2))
  with pytest.raises(TypeError, match="floating"):
    sm.apply_hard(params, jnp.ones((1, 5), jnp.uint8))


def _clamp(x, c):
  """PyTorch's clamp: the gradient passes on the bounds (jnp.clip halves it there)."""
  return jnp.where(jnp.abs(x) <= c, x, jnp.sign(x) * c)


def _reference_mix(z, weights, fns, clip=None):
  """The textbook formula, differentiated by plain autodiff."""
  values = jnp.stack([fn(z) if clip is None else _clamp(fn(z), clip) for fn in fns], -1)
  out = jnp.sum(values * weights, -1)
  return out if clip is None else _clamp(out, clip)


@pytest.mark.parametrize("clip", [None, 1.5])
@pytest.mark.parametrize("hard", [True, False])
def test_mix_custom_vjp_equals_autodiff(clip, hard):
  fns = [fn for _, fn in resolve_pool(sm.DEFAULT_POOL)]
  z = 3 * jax.random.normal(jax.random.key(10), (2, 5, 7))
  logits = jax.random.normal(jax.random.key(11), (7, 6))
  key = jax.random.key(12)
  cotangent = jax.random.normal(jax.random.key(13), z.shape)

  def loss(mix_fn, z, logits):
    weights = sm.gumbel_straight_through(logits, key, temperature=0.7, hard=hard)
    return jnp.sum(cotangent * mix_fn(z, weights))

  ours = jax.grad(lambda z, l: loss(lambda a, w: sm.mix(a, w, fns, clip=clip), z, l), (0, 1))(z, logits)
  reference = jax.grad(lambda z, l: loss(lambda a, w: _reference_mix(a, w, fns, clip), z, l), (0, 1))(
    z, logits
  )
  chex.assert_trees_all_close(ours, reference, atol=1e-5, rtol=1e-5)
  value = sm.mix(z, jax.nn.softmax(logits), fns, clip=clip)
  chex.assert_trees_all_close(value, _reference_mix(z, jax.nn.softmax(logits), fns, clip), atol=1e-6)


def test_sample_choices_are_the_draws_of_apply_selective():
  key = jax.random.key(11)
  params = sm.init_mlp(key, (6, 9, 7, 3))
  params = dataclasses.replace(
    params, logits=tuple(jax.random.normal(k, l.shape) for k, l in zip(jax.random.split(key), params.logits))
  )
  x = jax.random.normal(key, (4, 6))
  draws = set()
  for i in range(5):
    k = jax.random.key(100 + i)
    sampled = sm.sample_choices(params, k)
    chex.assert_trees_all_close(
      sm.apply_selective(params, x, k), sm.apply_choices(params, x, sampled), atol=1e-6
    )
    draws.add(tuple(np.concatenate([np.asarray(c) for c in sampled])))
  assert len(draws) == 5  # a new key draws anew
