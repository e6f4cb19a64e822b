"""Freezing a Flax model is exact or refused, never silently wrong: the layouts an outside review found.

Each case freezes without a probe (only what freeze can prove is rewritten) and
with one (the self-check), and compares with the evaluated model.
"""

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


def _randomise(model, seed=0):
  """Spread every MixedActivation's choices over the whole pool."""
  for i, (_, node) in enumerate(nnx.iter_graph(model)):
    if isinstance(node, snx.MixedActivation):
      node.logits.set_value(jax.random.normal(jax.random.key(seed + i), node.logits.shape) * 3)
  return model


def _exact(model, x, atol=1e-5):
  """Freezes ``model`` with and without a probe; both must compute what the evaluated model computes."""
  model = _randomise(model)
  expected = nnx.view(model, deterministic=True)(x)
  for frozen in (snx.freeze(model), snx.freeze(model, probe=x)):
    chex.assert_trees_all_close(frozen(x), expected, atol=atol, rtol=atol)
    assert not [n for _, n in nnx.iter_graph(frozen) if isinstance(n, snx.MixedActivation)]
  return frozen


def _sorted(frozen) -> list[bool]:
  acts = [n for _, n in nnx.iter_graph(frozen) if isinstance(n, snx.FrozenActivation)]
  return [bool(np.all(np.diff(np.asarray(a.choices[...])) >= 0)) for a in acts]


def test_a_conv_mask_is_sorted_with_its_kernel():
  rngs = nnx.Rngs(0)
  mask = jax.random.bernoulli(KEY, 0.6, (3, 3, 3, 16)).astype(jnp.float32)
  mask2 = jax.random.bernoulli(jax.random.key(1), 0.6, (3, 3, 16, 4)).astype(jnp.float32)
  model = nnx.Sequential(
    nnx.Conv(3, 16, (3, 3), mask=mask, rngs=rngs), snx.MixedActivation(16, rngs=rngs),
    nnx.Conv(16, 4, (3, 3), mask=mask2, rngs=rngs),
  )  # fmt: skip
  frozen = _exact(model, jax.random.normal(KEY, (2, 7, 7, 3)))
  assert _sorted(frozen) == [True]  # the fast grouped form, made exact


class Tied(nnx.Module):
  """The second layer's kernel is the third's: one Variable, two layers."""

  def __init__(self, rngs):
    self.seq = nnx.Sequential(
      nnx.Linear(6, 12, rngs=rngs), snx.MixedActivation(12, rngs=rngs), nnx.Linear(12, 6, rngs=rngs)
    )
    self.out = nnx.Linear(12, 6, rngs=rngs)
    self.out.kernel = self.seq.layers[2].kernel

  def __call__(self, x):
    return self.seq(x) + self.out(self.seq.layers[1](self.seq.layers[0](x)))


class DirectCall(nnx.Module):
  """Calls a layer of its Sequential directly and reads a kernel: uses no graph shows."""

  def __init__(self, rngs):
    self.seq = nnx.Sequential(
      nnx.Linear(6, 12, rngs=rngs), snx.MixedActivation(12, rngs=rngs), nnx.Linear(12, 6, rngs=rngs)
    )
    self.head = nnx.Linear(12, 6, rngs=rngs)

  def __call__(self, x):
    return (
      self.seq(x)
      + self.head(self.seq.layers[0](x))
      + x @ self.seq.layers[2].kernel[...].T @ (self.seq.layers[0].kernel[...].T)
    )


class Plain(nnx.Module):
  """A Sequential inside a module whose code calls it as written: safe to sort, but only a probe shows it."""

  def __init__(self, rngs):
    self.seq = nnx.Sequential(
      nnx.Linear(6, 12, rngs=rngs), snx.MixedActivation(12, rngs=rngs), nnx.Linear(12, 6, rngs=rngs)
    )

  def __call__(self, x):
    return self.seq(x)


@pytest.mark.parametrize("make", [Tied, DirectCall], ids=["tied_kernel", "direct_call"])
def test_shared_variables_and_direct_calls_keep_the_features_in_place(make):
  frozen = _exact(make(nnx.Rngs(0)), jax.random.normal(KEY, (4, 6)))
  assert _sorted(frozen) == [False]


def test_a_probe_lets_freeze_sort_inside_your_modules():
  model, x = _randomise(Plain(nnx.Rngs(0))), jax.random.normal(KEY, (4, 6))
  assert _sorted(snx.freeze(model)) == [False]  # nothing proves how Plain calls its layers
  assert _sorted(snx.freeze(model, probe=x)) == [True]  # the probe does


class InTuple(nnx.Module):
  """Modules in a tuple (which Flax traverses), one Linear also held directly."""

  def __init__(self, rngs):
    shared = nnx.Linear(12, 6, rngs=rngs)
    self.shared = shared
    self.layers = nnx.data((nnx.Linear(6, 12, rngs=rngs), snx.MixedActivation(12, rngs=rngs), shared))

  def __call__(self, x):
    a, act, b = self.layers
    return b(act(a(x))) + self.shared(act(a(x)))


def test_modules_in_a_tuple_are_frozen():
  model = InTuple(nnx.Rngs(0))
  frozen = _exact(model, jax.random.normal(KEY, (4, 6)))
  assert isinstance(frozen.layers[1], snx.FrozenActivation) and frozen.layers[2] is frozen.shared
  assert isinstance(frozen.layers, tuple)
  assert len(snx.counts(model)) == len(snx.counts(frozen)) == 1


def test_nnx_view_evaluates_deterministically():
  model = _randomise(
    nnx.Sequential(nnx.Linear(6, 12, rngs=nnx.Rngs(0)), snx.MixedActivation(12, rngs=nnx.Rngs(1)))
  )
  x = jax.random.normal(KEY, (4, 6))
  view = nnx.view(model, deterministic=True)  # no Dropout in the model: the activation takes the key
  np.testing.assert_array_equal(view(x), view(x))
  assert model.layers[1].deterministic is False  # the view is a new node; the model still trains
  with_dropout = nnx.Sequential(model, nnx.Dropout(0.5, rngs=nnx.Rngs(2)))
  np.testing.assert_array_equal(nnx.view(with_dropout, deterministic=True)(x), view(x))


def test_the_compute_dtype_survives_freezing():
  rngs = nnx.Rngs(0)
  model = nnx.Sequential(
    nnx.Linear(6, 12, rngs=rngs), snx.MixedActivation(12, dtype=jnp.bfloat16, rngs=rngs),
    nnx.Linear(12, 6, rngs=rngs),
  )  # fmt: skip
  x = jax.random.normal(KEY, (4, 6))
  frozen = _exact(model, x, atol=2e-2)
  expected = nnx.view(model, deterministic=True).layers[1](model.layers[0](x))
  got = frozen.layers[1](frozen.layers[0](x))
  assert got.dtype == expected.dtype == jnp.bfloat16


def test_a_temperature_schedule_compiles_once():
  model = nnx.Sequential(nnx.Linear(6, 12, rngs=nnx.Rngs(0)), snx.MixedActivation(12, rngs=nnx.Rngs(1)))
  traces = []

  @nnx.jit
  def step(model, x, temperature):
    traces.append(1)
    return model.layers[1](model.layers[0](x), temperature=temperature)

  x = jax.random.normal(KEY, (4, 6))
  for t in (1.0, 0.5, 0.1):
    step(model, x, jnp.float32(t))
  assert len(traces) == 1


class Block(nnx.Module):
  def __init__(self, rngs):
    self.up = nnx.Linear(8, 16, rngs=rngs)
    self.act = snx.MixedActivation(16, rngs=rngs)
    self.down = nnx.Linear(16, 8, rngs=rngs)

  def __call__(self, x):
    return x + self.down(self.act(self.up(x)))


class ScannedStack(nnx.Module):
  """Layers created with nnx.vmap and run with nnx.scan, as Flax users write transformers."""

  def __init__(self, layers, rngs):
    @nnx.split_rngs(splits=layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(rngs):
      return Block(rngs)

    self.blocks = make(rngs)

  def __call__(self, x):
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def step(x, block):
      return block(x)

    return step(x, self.blocks)


def test_a_scanned_stack_freezes_to_per_layer_choices():
  model = ScannedStack(3, nnx.Rngs(0))
  frozen = _exact(model, jax.random.normal(KEY, (5, 8)))
  assert frozen.blocks.act.choices[...].shape == (3, 16)
  assert len(snx.counts(frozen)) == 3 and snx.counts(frozen) == snx.counts(model)


def test_a_frozen_model_that_disagrees_is_refused_with_a_probe():
  class Doubled(snx.MixedActivation):
    """A subclass that computes something else: freeze replaces it by a FrozenActivation all the same."""

    def __call__(self, x, **kwargs):
      return 2 * super().__call__(x, **kwargs)

  model = nnx.Sequential(nnx.Linear(6, 12, rngs=nnx.Rngs(0)), Doubled(12, rngs=nnx.Rngs(1)))
  with pytest.raises(ValueError, match="differs from the evaluated model on the probe by up to"):
    snx.freeze(_randomise(model), probe=jax.random.normal(KEY, (4, 6)))


def test_non_finite_logits_name_the_layer():
  model = Plain(nnx.Rngs(0))
  model.seq.layers[1].logits.set_value(jnp.full((12, 6), jnp.nan))
  with pytest.raises(ValueError, match=r"model\.seq\.layers\.1: The logits are not finite"):
    snx.freeze(model)


def test_integer_input_is_refused_clearly():
  act = snx.MixedActivation(4, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match="MixedActivation needs floating-point input"):
    act(jnp.ones((2, 4), jnp.int32), deterministic=True)


def test_traced_choices_outside_the_pool_give_nan_not_relu():
  layer = snx.FrozenActivation([0, 1, 2])
  layer.choices.set_value(jnp.array([0, 7, -1], jnp.int32))
  out = nnx.jit(lambda layer, x: layer(x))(layer, -jnp.ones((2, 3)))
  assert out[0, 0] == 0.0 and np.all(np.isnan(out[:, 1:]))
  params = sm.init_mlp(KEY, (3, 4, 2), pool=("relu", "tanh"))
  out = jax.jit(sm.apply_choices)(params, jnp.ones((1, 3)), [jnp.array([0, 1, 5, 0])])
  assert np.all(np.isnan(out))


def test_a_traced_temperature_of_zero_stays_finite():
  logits = jnp.zeros((4, 6))
  weights = jax.jit(lambda t: sm.gumbel_straight_through(logits, KEY, temperature=t))(0.0)
  assert np.all(np.isfinite(weights)) and np.allclose(weights.sum(-1), 1)
  first = lambda lg, t: sm.gumbel_straight_through(lg, KEY, temperature=t)[:, 0].sum()  # noqa: E731
  grad = jax.jit(jax.grad(first))(logits, 0.0)
  assert np.all(np.isfinite(grad))


def test_bfloat16_logits_draw_every_candidate_alike():
  logits = jnp.zeros((4000, 6), jnp.bfloat16)
  picks = jnp.argmax(sm.gumbel_straight_through(logits, KEY, temperature=1.0), -1)
  share = float(jnp.mean(picks == 0))
  assert abs(share - 1 / 6) < 4 * np.sqrt(1 / 6 * 5 / 6 / 4000)  # was 0.1698 +- 0.0008 with bf16 noise ties


def test_optax_training_of_nnx_logits_still_works():
  model = _randomise(Plain(nnx.Rngs(0)))
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  x = jax.random.normal(KEY, (8, 6))

  def loss(model):
    return jnp.mean(model(x) ** 2)

  before = model.seq.layers[1].logits[...]
  for _ in range(2):
    optimizer.update(model, nnx.grad(loss)(model))
  assert not np.array_equal(before, model.seq.layers[1].logits[...])


# ----------------------------------------------------------------------------
# Linen.

import flax.linen as nn  # noqa: E402

from smartmixed_jax import linen as slinen  # noqa: E402


class LinenBlock(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    h = slinen.MixedActivation(name="act")(nn.Dense(16)(x), deterministic=True)
    return x + nn.Dense(8)(h), None


class LinenStack(nn.Module):
  """Blocks under nn.scan: the stacked logits are [3, 16, 6]."""

  @nn.compact
  def __call__(self, x):
    blocks = nn.scan(
      LinenBlock, variable_axes={"params": 0, "choices": 0}, split_rngs={"params": True}, length=3
    )(name="blocks")
    return blocks(x, None)[0]


def _random_logits(variables, seed=0):
  def spread(path, leaf):
    named = any(getattr(k, "key", None) == "logits" for k in path)
    return jax.random.normal(jax.random.key(seed), leaf.shape) * 3 if named else leaf

  return jax.tree_util.tree_map_with_path(spread, variables)


def test_a_linen_scanned_stack_freezes_to_per_layer_choices():
  x = jax.random.normal(KEY, (5, 8))
  variables = _random_logits(LinenStack().init(KEY, x))
  assert variables["params"]["blocks"]["act"]["logits"].shape == (3, 16, 6)
  evaluate = lambda m, v: m.apply(v, x)  # noqa: E731
  for probe in (None, evaluate):
    module, frozen = slinen.freeze(LinenStack(), variables, probe=probe)
    assert frozen["choices"]["blocks"]["act"]["choices"].shape == (3, 16)
    chex.assert_trees_all_close(module.apply(frozen, x), evaluate(LinenStack(), variables), atol=1e-5)
  got = slinen.counts(frozen)
  assert list(got) == ["blocks/act[0]", "blocks/act[1]", "blocks/act[2]"] and got == slinen.counts(variables)


class Head(nn.Module):
  """A module of the user's with its own 2-D param named ``logits``."""

  @nn.compact
  def __call__(self, x):
    return x @ self.param("logits", nn.initializers.normal(1.0), (x.shape[-1], 3))


class WithHead(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = slinen.MixedActivation(name="act")(nn.Dense(8)(x), deterministic=not train)
    return Head(name="head")(x)


def test_a_probe_finds_exactly_the_mixed_layers():
  x = jax.random.normal(KEY, (4, 5))
  variables = _random_logits(WithHead().init(KEY, x))
  module, frozen = slinen.freeze(WithHead(), variables, probe=lambda m, v: m.apply(v, x))
  assert "logits" in frozen["params"]["head"] and "act" not in frozen["params"]
  chex.assert_trees_all_close(module.apply(frozen, x, train=True), WithHead().apply(variables, x), atol=1e-5)


def test_linen_counts_refuse_another_pool_and_dtype_and_temperature_work():
  x = jax.random.normal(KEY, (4, 5))
  layer = slinen.MixedActivation(pool=("relu", "gelu", "silu"), dtype=jnp.bfloat16)
  variables = layer.init(KEY, x, deterministic=True)
  with pytest.raises(ValueError, match="chooses among 3 activations, but the pool given is"):
    slinen.counts(variables)
  assert sum(slinen.counts(variables, pool=("relu", "gelu", "silu"))[""].values()) == 5
  assert layer.apply(variables, x, deterministic=True).dtype == jnp.bfloat16
  traces = []

  @jax.jit
  def sample(t):
    traces.append(1)
    return layer.apply(variables, x, deterministic=False, temperature=t, rngs={"gumbel": KEY})

  for t in (1.0, 0.5):
    sample(jnp.float32(t))
  assert len(traces) == 1


# ----------------------------------------------------------------------------
# The optimizer finds the logits in every API; pools take plain functions.


def _logit_and_weight_steps(params, grads, scale):
  opt = sm.make_optimizer(1e-3, 1e9, logits_scale=scale)
  updates, _ = opt.update(grads, opt.init(params), params)
  labels = sm.param_labels(updates)
  steps = {"logits": [], "weights": []}
  jax.tree.map(lambda label, u: steps[label].append(float(jnp.abs(u).max())), labels, updates)
  return max(steps["logits"]), max(steps["weights"])


def test_make_optimizer_scales_the_logits_of_nnx_and_linen_params():
  model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), snx.MixedActivation(4, rngs=nnx.Rngs(1)))
  nnx_params = nnx.state(model, nnx.Param)
  linen_params = WithHead().init(KEY, jnp.ones((2, 5)))["params"]
  for params in (nnx_params, linen_params):
    grads = jax.tree.map(jnp.ones_like, params)
    logits, weights = _logit_and_weight_steps(params, grads, 100.0)
    assert logits == pytest.approx(100 * weights, rel=1e-3)  # Adam's first step is lr per leaf
  labels = jax.tree.leaves(sm.param_labels(linen_params))
  assert labels.count("logits") == 2  # the activation's and, by name, the Head's own


def test_scale_logits_chains_after_any_optimizer_and_refuses_a_bad_scale():
  params = sm.init_mlp(KEY, (5, 4, 3))
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optax.chain(optax.sgd(1.0), sm.scale_logits())  # the default scale
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(updates.logits[0].max()) == -sm.LOGITS_LR_SCALE
  assert float(jnp.abs(updates.layers[0].w).max()) == 1.0  # the weights' step is sgd's alone
  for bad in (0, -1.0, float("inf"), True, "100"):
    with pytest.raises(ValueError, match=f"scale must be a finite number > 0, got {bad!r}"):
      sm.scale_logits(bad)


def sine(x):
  return jnp.sin(x)


def test_pools_take_named_functions_and_refuse_integer_ones():
  import pickle

  params = sm.init_mlp(KEY, (5, 4, 2), pool=("relu", jax.nn.gelu, sine))
  assert sm.pool_names(params.pool) == ("relu", "gelu", "sine")
  restored = pickle.loads(pickle.dumps(params))  # the README's example pool
  chex.assert_trees_all_close(
    sm.apply_hard(restored, jnp.ones((1, 5))), sm.apply_hard(params, jnp.ones((1, 5)))
  )
  with pytest.raises(TypeError, match="'floor' must return floating-point values, got int32"):
    sm.init_mlp(KEY, (5, 4, 2), pool=("relu", ("floor", lambda x: jnp.floor(x).astype(jnp.int32))))
  with pytest.raises(TypeError, match="export_model takes a FrozenMLP .* got MLPParams. Freeze it first"):
    sm.export_model(params)


def test_an_unused_overflowing_activation_leaves_the_gradients_finite():
  pool = ("relu", ("exp_sq", lambda x: jnp.exp(x * x)))  # finite on [-3, 3], overflows at 10
  layer = snx.FrozenActivation([0, 0, 0], pool=pool)
  x = jnp.full((2, 3), 10.0)
  eager = jax.grad(lambda x: layer(x).sum())(x)
  jitted = nnx.jit(lambda layer, x: jax.grad(lambda x: layer(x).sum())(x))(layer, x)
  np.testing.assert_array_equal(eager, jitted)
  assert np.all(np.isfinite(jitted))


def test_frozen_state_restored_into_another_pool_is_caught():
  x = jax.random.normal(KEY, (4, 6))
  model = _randomise(Plain(nnx.Rngs(0)))

  def build(pool):
    rngs = nnx.Rngs(0)
    seq = nnx.Sequential(
      nnx.Linear(6, 12, rngs=rngs), snx.FrozenActivation([0] * 12, pool=pool), nnx.Linear(12, 6, rngs=rngs)
    )
    return seq

  same, reordered = build(sm.DEFAULT_POOL), build(tuple(reversed(sm.DEFAULT_POOL)))
  for target in (same, reordered):
    nnx.update(target, nnx.state(snx.freeze(model).seq))
  chex.assert_trees_all_close(same(x), nnx.view(model, deterministic=True)(x), atol=1e-5)
  with pytest.raises(ValueError, match="frozen with another pool"):
    reordered(x)
  assert np.all(np.isnan(nnx.jit(lambda m, x: m(x))(reordered, x)))


def test_a_linen_vmapped_layer_freezes():
  class Ensemble(nn.Module):
    """Three independently chosen activations over a leading axis (nn.vmap)."""

    @nn.compact
    def __call__(self, x):
      vmapped = nn.vmap(
        slinen.MixedActivation, variable_axes={"params": 0, "choices": 0}, split_rngs={"params": True},
        in_axes=0, out_axes=0,
      )  # fmt: skip
      return vmapped(deterministic=True, name="act")(x)

  x = jax.random.normal(KEY, (3, 4, 8)) * 3
  variables = _random_logits(Ensemble().init(KEY, x))
  module, frozen = slinen.freeze(Ensemble(), variables, probe=lambda m, v: m.apply(v, x))
  assert frozen["choices"]["act"]["choices"].shape == (3, 8)
  chex.assert_trees_all_close(module.apply(frozen, x), Ensemble().apply(variables, x), atol=1e-5)
