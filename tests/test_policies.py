"""The epoch loop's policies: composition, order, stopping, resuming, and the state as a pytree."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import smartmixed_jax as sm

X = jax.random.normal(jax.random.key(0), (256, 4))
SPLITS = {split: (X, (X[:, 0] > 0).astype(jnp.int32)) for split in ("train", "val", "test")}


def _fit(policies, *, epochs=4, resume=None, optimizer=None, models=None):
  model = sm.fixed_mlp(jax.random.key(1), (4, 16, 2), "tanh")
  key = jax.random.key(2)
  if models:
    model = jax.tree.map(lambda leaf: jnp.stack([leaf] * models), model)
    key = jax.random.split(key, models)
  return sm.fit(
    model, apply=lambda m, x, key, step: m(x), optimizer=optimizer or optax.adam(1e-2), splits=SPLITS,
    epochs=epochs, key=key, batch_size=64, policies=policies, resume=resume, models=models, name="toy",
  )  # fmt: skip


def test_the_state_is_a_pytree_of_its_arrays_with_the_records_static():
  model = sm.fixed_mlp(jax.random.key(1), (4, 16, 2), "tanh")
  state = sm.PhaseState.initial(model, optax.adam(1e-2), jax.random.key(3), epoch=2, histories=[[{"a": 1}]])
  abstract = jax.eval_shape(lambda: sm.PhaseState.initial(model, optax.adam(1e-2), jax.random.key(3)))
  assert jax.tree.structure(jax.tree.map(jnp.shape, abstract)) == jax.tree.structure(
    jax.tree.map(jnp.shape, state.replace(epoch=0, histories=[[]]))
  )
  chex.assert_trees_all_equal_shapes_and_dtypes(abstract.params, model)
  assert len(jax.tree.leaves(state)) == len(jax.tree.leaves((model, state.opt_state, model))) + 2
  doubled = jax.tree.map(lambda leaf: leaf, state)
  assert doubled.epoch == 2 and doubled.histories == [[{"a": 1}]]
  again = sm.PhaseState.restore(state.arrays(), state.meta())
  chex.assert_trees_all_equal(jax.random.key_data(again.key), jax.random.key_data(state.key))
  chex.assert_trees_all_equal((again.params, again.opt_state), (state.params, state.opt_state))
  assert again.meta() == state.meta()


def test_policies_run_in_order_and_see_what_the_ones_before_did():
  seen = []
  stats = sm.record_stats(
    lambda params, steps, before: {"moved": float(params.layers[0].w[0, 0] != before.layers[0].w[0, 0])}
  )
  stop = sm.stop_when(lambda state: state.epoch == 2)
  result = _fit(
    [
      stats,
      stop,
      sm.each_epoch(lambda state: seen.append((state.epoch, state.done, state.histories[0][-1]["moved"]))),
    ]
  )
  assert seen == [(1, False, 1.0), (2, True, 1.0)]  # the callback knows the stop and sees the statistics
  assert len(result.histories[0]) == 3 and result.histories[0][2]["moved"] == 1.0
  # In the other order the callback runs before the stop is decided.
  seen.clear()
  _fit([sm.each_epoch(lambda state: seen.append((state.epoch, state.done))), stop])
  assert seen == [(1, False), (2, False)]


def test_a_phase_resumed_at_the_epoch_it_stopped_at_stays_stopped():
  saved = []
  stop = sm.stop_when(lambda state: state.epoch == 2)
  first = _fit([stop, sm.each_epoch(saved.append)])
  again = _fit([stop], resume=saved[-1])
  assert again.histories == first.histories and again.best_epochs == first.best_epochs
  # Without the stop, the same state trains on to the planned epochs, as an uninterrupted run does.
  whole = _fit([])
  resumed = _fit([], resume=saved[0])
  assert [e["val_loss"] for e in resumed.histories[0]] == [e["val_loss"] for e in whole.histories[0]]


def test_a_phase_of_zero_epochs_calls_each_epoch_once_with_its_start():
  seen = []
  result = _fit([sm.each_epoch(seen.append)], epochs=0)
  assert [(s.epoch, s.done) for s in seen] == [(0, True)] and result.best_epochs == [0]


def test_divergence_raises_only_with_its_policy():
  with pytest.raises(sm.NonFiniteError, match=r"toy: training diverged at epoch 1"):
    _fit([sm.raise_on_nonfinite()], optimizer=optax.sgd(1e38))
  result = _fit([], optimizer=optax.sgd(1e38), epochs=1)
  assert result.histories[0][1]["val_loss"] is None


def test_a_custom_policy_composes_with_the_library_ones():
  class Trace:
    def __init__(self):
      self.events = []

    def policy(self):
      return sm.Policy(
        start=lambda state, phase: (
          self.events.append(("start", phase.name, phase.epochs, state.epoch)) or state
        ),
        after_epoch=lambda state, phase, outcome: (
          self.events.append(("epoch", state.epoch, int(outcome.nonfinite_steps[0]))) or state
        ),
        end=lambda state, phase: self.events.append(("end", state.epoch)),
      )

  trace = Trace()
  _fit([sm.raise_on_nonfinite(), trace.policy()], epochs=2)
  assert trace.events == [("start", "toy", 2, 0), ("epoch", 1, 0), ("epoch", 2, 0), ("end", 2)]


def test_stacked_models_get_their_own_statistics():
  stats = sm.record_stats(lambda params, steps, before: {"w00": float(params.layers[0].w[0, 0])})
  result = _fit([stats], models=2, epochs=1)
  values = [history[1]["w00"] for history in result.histories]
  assert result.best_epochs == [1, 1] and values[0] != values[1]  # each model's own data order
  np.testing.assert_allclose(values, result.best_params.layers[0].w[:, 0, 0])
