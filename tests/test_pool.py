import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smartmixed_jax as sm
from smartmixed_jax import pool as pool_lib

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
  assert sm.resolve_pool(pool)[1][1] is jnp.sin


@pytest.mark.parametrize(
  "pool, error, match",
  [
    (("relu", "swish2"), ValueError, r"Unknown activation 'swish2'.*'elu'"),
    (("relu", "relu"), ValueError, r"duplicate names \['relu'\]"),
    (("relu", ("relu", jnp.sin)), ValueError, "duplicate"),
    ((), ValueError, "non-empty"),
    (("relu", 3), TypeError, "name or a \\(name, callable\\) pair, got 3"),
    (("relu", ("sum", jnp.sum)), ValueError, "'sum' must be elementwise"),
  ],
)
def test_bad_pools(pool, error, match):
  with pytest.raises(error, match=match):
    sm.resolve_pool(pool)


def test_list_pool_is_accepted():
  assert pool_lib.pool_names(["relu", "tanh"]) == ("relu", "tanh")
