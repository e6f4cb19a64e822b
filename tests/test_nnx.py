import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smartmixed_jax as sm
import smartmixed_jax.nnx as snx
from smartmixed_jax._src.checkpoint import Checkpoints
from smartmixed_jax._src.pool import resolve_pool


def _randomise(model, seed=0):
  """Spread every MixedActivation's choices over the whole pool."""
  for i, (_, node) in enumerate(nnx.iter_graph(model)):
    if isinstance(node, snx.MixedActivation):
      node.logits.set_value(jax.random.normal(jax.random.key(seed + i), node.logits.shape))
  return model


def _linear_chain():
  return nnx.Sequential(
    nnx.Linear(12, 32, rngs=nnx.Rngs(0)), snx.MixedActivation(32, rngs=nnx.Rngs(1)),
    nnx.Linear(32, 24, rngs=nnx.Rngs(2)), snx.MixedActivation(24, rngs=nnx.Rngs(3)),
    nnx.Linear(24, 5, rngs=nnx.Rngs(4)),
  )  # fmt: skip


def _conv_chain():
  return nnx.Sequential(
    nnx.Conv(3, 16, (3, 3), rngs=nnx.Rngs(0)), snx.MixedActivation(16, rngs=nnx.Rngs(1)),
    nnx.Conv(16, 8, (3, 3), rngs=nnx.Rngs(2)), snx.MixedActivation(8, rngs=nnx.Rngs(3)),
    nnx.Conv(8, 4, (1, 1), rngs=nnx.Rngs(4)),
  )  # fmt: skip


class Residual(nnx.Module):
  """The activation's features are also read by the skip connection."""

  def __init__(self, rngs):
    self.inp = nnx.Linear(6, 20, rngs=rngs)
    self.act = snx.MixedActivation(20, rngs=rngs)
    self.out = nnx.Linear(20, 20, rngs=rngs)

  def __call__(self, x):
    h = self.act(self.inp(x))
    return h + self.out(h)


@pytest.mark.parametrize(
  "make, shape, permuted",
  [
    (_linear_chain, (2, 3, 12), True),
    (_conv_chain, (2, 9, 9, 3), True),
    (lambda: Residual(nnx.Rngs(0)), (4, 6), False),
  ],
  ids=["linear_chain", "conv_chain", "residual"],
)
def test_frozen_model_equals_the_evaluated_model(make, shape, permuted):
  model = _randomise(make())
  model.eval()
  x = jax.random.normal(jax.random.key(9), shape)
  expected = model(x)
  frozen = snx.freeze(model)
  chex.assert_trees_all_close(frozen(x), expected, atol=1e-5, rtol=1e-5)
  acts = [n for _, n in nnx.iter_graph(frozen) if isinstance(n, snx.FrozenActivation)]
  assert acts and not [n for _, n in nnx.iter_graph(frozen) if isinstance(n, snx.MixedActivation)]
  for act in acts:
    choices = act.choices[...].tolist()
    assert (choices == sorted(choices)) == permuted
    assert len(set(choices)) > 1
  # The input model is untouched.
  assert [n for _, n in nnx.iter_graph(model) if isinstance(n, snx.MixedActivation)]
  chex.assert_trees_all_close(model(x), expected)


def test_leading_axes_and_modes():
  act = snx.MixedActivation(7, rngs=nnx.Rngs(0))
  act.logits.set_value(jax.random.normal(jax.random.key(1), (7, 6)))
  x = jax.random.normal(jax.random.key(2), (2, 3, 4, 7))
  y = act(x)
  chex.assert_shape(y, x.shape)
  assert not np.array_equal(y, act(x))  # a fresh Gumbel sample per call in training
  act.eval()
  evaluated = act(x)
  np.testing.assert_array_equal(evaluated, act(x))
  fns = [fn for _, fn in resolve_pool(sm.DEFAULT_POOL)]
  expected = sm.mix(x, jax.nn.one_hot(act.choices(), 6), fns)
  chex.assert_trees_all_close(evaluated, expected)
  act.train()
  np.testing.assert_array_equal(act(x, deterministic=True), evaluated)
  with pytest.raises(ValueError, match="last axis must be 7"):
    act(jnp.ones((2, 8)))
  with pytest.raises(ValueError, match="num_features must be a positive integer, got 0"):
    snx.MixedActivation(0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="temperature"):
    snx.MixedActivation(3, temperature=-1.0, rngs=nnx.Rngs(0))


def test_training_reaches_the_logits_with_nnx_jit():
  model = _linear_chain()
  optimizer = nnx.Optimizer(model, __import__("optax").adam(1e-2), wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(0), (16, 12))
  y = jax.random.randint(jax.random.key(1), (16,), 0, 5)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      return sm.cross_entropy(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss, grads

  before = model.layers[1].logits[...]
  losses = [float(step(model, optimizer, x, y)[0]) for _ in range(30)]
  _, grads = step(model, optimizer, x, y)
  assert float(jnp.abs(grads["layers"][1]["logits"][...]).sum()) > 0
  assert not np.array_equal(before, model.layers[1].logits[...])
  assert losses[-1] < losses[0]


def test_plain_jax_jit_through_split_and_merge():
  model = _randomise(_linear_chain())
  model.eval()
  graphdef, state = nnx.split(model)
  x = jnp.ones((3, 12))
  out = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))(state, x)
  chex.assert_trees_all_close(out, model(x), atol=1e-6)
  frozen = snx.freeze(model)
  chex.assert_trees_all_close(nnx.jit(lambda m, x: m(x))(frozen, x), out, atol=1e-5)


def test_checkpoint_round_trip(tmp_path):
  model = _randomise(_linear_chain())
  _, state = nnx.split(model)
  store = Checkpoints(tmp_path)
  store.save(1, nnx.to_pure_dict(state), {"note": "nnx"})
  fresh = _linear_chain()  # different logits until restored
  _, fresh_state = nnx.split(fresh)
  restored = store.restore_latest(lambda meta: jax.eval_shape(lambda: nnx.to_pure_dict(fresh_state)))
  nnx.replace_by_pure_dict(fresh_state, restored.arrays)
  nnx.update(fresh, fresh_state)
  model.eval()
  fresh.eval()
  x = jnp.ones((2, 12))
  np.testing.assert_array_equal(fresh(x), model(x))
  np.testing.assert_array_equal(fresh.layers[1].choices(), model.layers[1].choices())


def test_frozen_checkpoint_restores_without_phase1_state(tmp_path):
  import orbax.checkpoint as ocp

  model = _randomise(_linear_chain())
  model.eval()
  frozen = snx.freeze(model)
  assert isinstance(frozen.layers[1].choices, snx.Choices)
  assert not isinstance(frozen.layers[1].choices, nnx.Param)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "frozen", nnx.state(frozen))
  checkpointer.wait_until_finished()
  # A fresh process knows only the architecture: freeze it abstractly, then restore.
  abstract = nnx.eval_shape(lambda: snx.freeze(_linear_chain()))
  graphdef, abstract_state = nnx.split(abstract)
  restored = nnx.merge(graphdef, checkpointer.restore(tmp_path / "frozen", abstract_state))
  x = jax.random.normal(jax.random.key(3), (5, 12))
  np.testing.assert_array_equal(restored(x), frozen(x))
  chex.assert_trees_all_close(nnx.jit(lambda m, x: m(x))(restored, x), model(x), atol=1e-5, rtol=1e-5)
  assert snx.counts(restored) == snx.counts(model)
  assert not nnx.state(restored, snx.Logits)  # no Phase 1 state left


def test_frozen_activation_refuses_bad_choices():
  with pytest.raises(ValueError, match="indices into the pool"):
    snx.FrozenActivation((0, 6), pool=sm.DEFAULT_POOL)
  with pytest.raises(ValueError, match="indices into the pool"):
    snx.FrozenActivation(())
