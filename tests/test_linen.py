import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import smartmixed_jax as sm
from smartmixed_jax import linen as slinen


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(8, (3, 3))(x)
    x = slinen.MixedActivation(name="act")(x, deterministic=not train)
    return nn.Dense(4)(x.reshape(x.shape[0], -1))


class FrozenNet(nn.Module):
  choices: tuple

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(8, (3, 3))(x)
    x = slinen.FrozenActivation(self.choices, name="act")(x)
    return nn.Dense(4)(x.reshape(x.shape[0], -1))


def test_linen_train_eval_gradients_and_freeze():
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
  variables = Net().init({"params": jax.random.key(1)}, x, train=False)
  params = variables["params"]
  params["act"]["logits"] = jax.random.normal(jax.random.key(2), (8, 6))
  chex.assert_shape(params["act"]["logits"], (8, 6))
  a = Net().apply({"params": params}, x, train=True, rngs={"gumbel": jax.random.key(3)})
  b = Net().apply({"params": params}, x, train=True, rngs={"gumbel": jax.random.key(4)})
  assert not np.array_equal(a, b)
  evaluated = Net().apply({"params": params}, x, train=False)
  grads = jax.grad(
    lambda p: jnp.sum(Net().apply({"params": p}, x, train=True, rngs={"gumbel": jax.random.key(3)}))
  )(params)
  assert float(jnp.abs(grads["act"]["logits"]).sum()) > 0

  choices = slinen.frozen_choices(params["act"]["logits"])
  frozen = FrozenNet(choices).apply({"params": {k: v for k, v in params.items() if k != "act"}}, x)
  chex.assert_trees_all_close(frozen, evaluated, atol=1e-5)
  np.testing.assert_array_equal(choices, np.argmax(params["act"]["logits"], -1))


def test_fixed_activation_grouped_or_not_agree():
  x = jax.random.normal(jax.random.key(0), (3, 10)) * 4
  choices = (5, 0, 2, 2, 1, 4, 3, 0, 5, 1)
  order = np.argsort(choices, kind="stable")
  scattered = sm.fixed_activation(x, choices, pool=sm.DEFAULT_POOL)
  grouped = sm.fixed_activation(x[:, order], tuple(np.asarray(choices)[order]), pool=sm.DEFAULT_POOL)
  chex.assert_trees_all_close(grouped, scattered[:, order])


class Deep(nn.Module):
  """Two mixed activations, one inside a submodule."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(16)(x)
    x = slinen.MixedActivation(name="first")(x, deterministic=not train)
    x = Net(name="body")(x.reshape(x.shape[0], 2, 2, 4), train)
    return x


def test_linen_freeze_is_the_evaluated_model_and_drops_the_logits():
  x = jax.random.normal(jax.random.key(0), (3, 7))
  variables = Deep().init({"params": jax.random.key(1)}, x, train=False)
  variables = jax.tree.map(lambda v: v, variables)
  params = variables["params"]
  params["first"]["logits"] = jax.random.normal(jax.random.key(2), (16, 6))
  params["body"]["act"]["logits"] = jax.random.normal(jax.random.key(3), (8, 6))
  evaluated = Deep().apply(variables, x, train=False)
  module, frozen = slinen.freeze(Deep(), variables)
  assert "first" not in frozen["params"] and "act" not in frozen["params"]["body"]
  # Fixed in any mode, under jit, with no RNG.
  out = jax.jit(lambda v, x: module.apply(v, x, train=True))(frozen, x)
  chex.assert_trees_all_close(out, evaluated, atol=1e-5)
  expected = {"first": np.bincount(np.argmax(params["first"]["logits"], -1), minlength=6).tolist()}
  got = slinen.counts(frozen)
  assert list(got["first"].values()) == expected["first"]
  assert set(got) == {"first", "body/act"} and sum(got["body/act"].values()) == 8
  assert slinen.counts(variables) == got  # the same counts before freezing
  with np.testing.assert_raises_regex(ValueError, "nothing to freeze"):
    slinen.freeze(Deep(), frozen)
  params["first"]["logits"] = params["first"]["logits"].at[0, 0].set(jnp.nan)
  with np.testing.assert_raises_regex(ValueError, "not finite"):
    slinen.freeze(Deep(), variables)
