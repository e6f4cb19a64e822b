"""Property-based tests (hypothesis) and numerical safety at extreme inputs."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smartmixed_jax as sm
from smartmixed_jax._src.pool import resolve_pool

FNS = [fn for _, fn in resolve_pool(sm.DEFAULT_POOL)]


@settings(max_examples=6, deadline=None)
@given(
  sizes=st.lists(st.integers(1, 24), min_size=2, max_size=6),
  seed=st.integers(0, 2**31 - 1),
  scale=st.floats(0.01, 100.0),
  logit_scale=st.floats(0.0, 10.0),
)
def test_freeze_preserves_the_function_for_any_mlp(sizes, seed, scale, logit_scale):
  key = jax.random.key(seed)
  params = sm.init_mlp(key, sizes)
  logits = [
    logit_scale * jax.random.normal(k, l.shape) for k, l in zip(jax.random.split(key, 8), params.logits)
  ]
  params = dataclasses.replace(params, logits=tuple(logits))
  x = scale * jax.random.normal(jax.random.fold_in(key, 1), (3, sizes[0]))
  model = sm.freeze(params)
  expected = jax.jit(sm.apply_hard)(params, x)
  tolerance = 1e-5 * (1 + float(jnp.max(jnp.abs(expected))))
  chex.assert_trees_all_close(model(x), expected, atol=tolerance, rtol=1e-5)
  for perm, c in zip(model.permutations, sm.choices(params)):
    assert sorted(perm) == list(range(len(c)))
    assert np.all(np.diff(np.asarray(c)[list(perm)]) >= 0)  # grouped by activation


@settings(max_examples=6, deadline=None)
@given(
  neurons=st.integers(1, 40),
  candidates=st.integers(1, 8),
  temperature=st.floats(0.05, 5.0),
  seed=st.integers(0, 2**31 - 1),
)
def test_straight_through_is_one_hot_forward_and_soft_backward(neurons, candidates, temperature, seed):
  key = jax.random.key(seed)
  logits = 3 * jax.random.normal(key, (neurons, candidates))
  sample_key = jax.random.fold_in(key, 1)
  f = jax.random.normal(jax.random.fold_in(key, 2), (neurons, candidates))
  sample = lambda l, hard: sm.gumbel_straight_through(l, sample_key, temperature=temperature, hard=hard)

  @jax.jit
  def compute(logits):
    hard_grad = jax.grad(lambda l: jnp.sum(sample(l, True) * f))(logits)
    soft_grad = jax.grad(lambda l: jnp.sum(sample(l, False) * f))(logits)
    return sample(logits, True), hard_grad, soft_grad

  y, hard_grad, soft_grad = compute(logits)
  np.testing.assert_array_equal(jnp.sum(y == 1, -1), 1)
  np.testing.assert_array_equal(jnp.sum(y, -1), 1)
  chex.assert_trees_all_close(hard_grad, soft_grad, atol=1e-5)
  chex.assert_tree_all_finite(hard_grad)


@settings(max_examples=6, deadline=None)
@given(
  shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
  seed=st.integers(0, 2**31 - 1),
  clip=st.sampled_from([None, 0.5, 10.0]),
)
def test_mixture_gradient_matches_autodiff_for_any_shape(shape, seed, clip):
  key = jax.random.key(seed)
  z = 5 * jax.random.normal(key, tuple(shape))
  weights = jax.nn.softmax(jax.random.normal(jax.random.fold_in(key, 1), (shape[-1], len(FNS))))

  def reference(z, w):
    values = jnp.stack([fn(z) for fn in FNS], -1)
    if clip is not None:
      values = jnp.where(jnp.abs(values) <= clip, values, jnp.sign(values) * clip)
    out = jnp.sum(values * w, -1)
    return out if clip is None else jnp.where(jnp.abs(out) <= clip, out, jnp.sign(out) * clip)

  cotangent = jax.random.normal(jax.random.fold_in(key, 2), z.shape)
  ours = jax.jit(jax.grad(lambda z, w: jnp.sum(cotangent * sm.mix(z, w, FNS, clip=clip)), (0, 1)))(z, weights)
  theirs = jax.jit(jax.grad(lambda z, w: jnp.sum(cotangent * reference(z, w)), (0, 1)))(z, weights)
  chex.assert_trees_all_close(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gumbel_sampling_is_always_finite(dtype):
  logits = jnp.zeros((4096, 6), dtype)
  for i in range(50):  # ~1.2M Gumbel draws
    y = sm.gumbel_straight_through(logits, jax.random.key(i), temperature=0.01, hard=False)
    chex.assert_tree_all_finite(y)
  noise = jax.random.gumbel(jax.random.key(99), (1_000_000,), dtype)
  chex.assert_tree_all_finite(noise)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("hard", [True, False])
def test_phase1_forward_and_gradients_finite_at_extreme_inputs(dtype, hard):
  params = jax.tree.map(lambda a: a.astype(dtype), sm.init_mlp(jax.random.key(0), (4, 64, 3)))
  layers = (sm.Dense(jnp.full((4, 64), 1.0, dtype), jnp.zeros(64, dtype)), params.layers[1])
  params = dataclasses.replace(params, layers=layers)
  x = jnp.array([[1e4, -1e4, 0.0, 1.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, 1e4, 1e4]], dtype) / 4

  def loss(p):
    out = sm.apply_selective(p, x, jax.random.key(1), hard=hard)
    return jnp.sum(out.astype(jnp.float32) ** 2) * 1e-12

  out = jax.jit(sm.apply_selective, static_argnames="hard")(params, x, jax.random.key(1), hard=hard)
  chex.assert_tree_all_finite((out, jax.jit(jax.grad(loss))(params)))
  model = sm.freeze(params)
  chex.assert_tree_all_finite(jax.grad(lambda m: jnp.sum(m(x).astype(jnp.float32)) * 1e-8)(model))
