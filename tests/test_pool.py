import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smartmixed_jax as sm
from smartmixed_jax._src import pool as pool_lib
from smartmixed_jax._src.pool import resolve_pool

ALL = sorted(sm.ACTIVATIONS)


def test_default_pool_is_the_papers_in_order():
  assert sm.DEFAULT_POOL == ("relu", "sigmoid", "tanh", "leaky_relu", "elu", "selu")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pool_member_contract(name, dtype):
  """Shape kept; jit equals eager; finite value and gradient up to |x| = 1e4."""
  fn = sm.ACTIVATIONS[name]
  x = jnp.array([[-1e4, -30.0, -1.0, -1e-3, 0.0], [1e-3, 0.5, 1.0, 30.0, 1e4]], dtype)
  y = fn(x)
  chex.assert_shape(y, x.shape)
  chex.assert_trees_all_close(jax.jit(fn)(x), y)
  grad = jax.grad(lambda v: jnp.sum(fn(v)))(x)
  chex.assert_tree_all_finite((y, grad))


def test_constants_match_the_paper():
  x = jnp.array([-2.0, -1.0, 3.0])
  np.testing.assert_allclose(sm.ACTIVATIONS["leaky_relu"](x), [-0.02, -0.01, 3.0], rtol=1e-6)
  np.testing.assert_allclose(
    sm.ACTIVATIONS["elu"](x), np.concatenate([np.expm1([-2.0, -1.0]), [3.0]]), rtol=1e-6
  )
  selu = 1.0507009873554805 * np.concatenate([1.6732632423543772 * np.expm1([-2.0, -1.0]), [3.0]])
  np.testing.assert_allclose(sm.ACTIVATIONS["selu"](x), selu, rtol=1e-6)
  np.testing.assert_allclose(sm.ACTIVATIONS["selu"](x), jax.nn.selu(x), rtol=1e-6)


def test_custom_callable_in_pool():
  pool = ("relu", ("sin", jnp.sin))
  assert sm.pool_names(pool) == ("relu", "sin")
  assert resolve_pool(pool)[1][1] is jnp.sin


@pytest.mark.parametrize(
  "pool, error, match",
  [
    (("relu", "swish2"), ValueError, r"Unknown activation 'swish2'.*'elu'"),
    (("relu", "relu"), ValueError, r"duplicate names \['relu'\]"),
    (("relu", ("relu", jnp.sin)), ValueError, "duplicate"),
    ((), ValueError, "non-empty"),
    (("relu", 3), TypeError, "named function or a \\(name, callable\\) pair, got 3"),
    (("relu", ("sum", jnp.sum)), ValueError, "'sum' must be elementwise"),
    (("relu", ("softmax", jax.nn.softmax)), ValueError, "'softmax' must be elementwise; its outputs depend"),
    ((("elu", jnp.sum),), ValueError, "'elu' must be elementwise"),  # a registered name, not its function
  ],
)
def test_bad_pools(pool, error, match):
  with pytest.raises(error, match=match):
    resolve_pool(pool)


@pytest.mark.parametrize("name", ALL)
def test_registered_activations_pass_the_check_a_users_function_gets(name):
  """A pool skips the check for its registered functions (a second of small compiles per process)."""
  pool_lib._check_activation(name, sm.ACTIVATIONS[name])


def test_list_pool_is_accepted():
  assert pool_lib.pool_names(["relu", "tanh"]) == ("relu", "tanh")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_elu_and_selu_are_accurate(dtype):
  """Values and gradients against float64 truth, to a few ulp (jax.nn.elu's own
  gradient underflows to 0 below x = -17; ours stays exp(x)); at x = 0 the gradient is 1 (not split)."""
  x = jnp.concatenate([-jnp.logspace(-8, 2, 2001), jnp.linspace(-1, 1, 2001), jnp.zeros(1)]).astype(dtype)
  x64 = np.asarray(x, np.float64)
  rtol = 1e-6 if dtype == jnp.float32 else 3e-2  # ~8 float32 ulp, ~4 bfloat16 ulp
  for name, scale, alpha in (("elu", 1.0, 1.0), ("selu", pool_lib.SELU_SCALE, pool_lib.SELU_ALPHA)):
    fn = sm.ACTIVATIONS[name]
    value = scale * np.where(x64 > 0, x64, alpha * np.expm1(np.minimum(x64, 0)))
    grad = scale * np.where(x64 > 0, 1.0, alpha * np.exp(np.minimum(x64, 0)))
    np.testing.assert_allclose(np.asarray(fn(x), np.float64), value, rtol=rtol, atol=1e-30)
    ours = jax.vmap(jax.grad(lambda v, fn=fn: fn(v).astype(jnp.float32)))(x)
    np.testing.assert_allclose(np.asarray(ours, np.float64), grad, rtol=rtol, atol=1e-30)
