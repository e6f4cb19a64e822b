"""The tasks of the panel (``panel.py``): data, a Flax NNX model per task, its loss and its metric.

Every model is written as a Flax user writes one, with an activation at each
place a fixed one would be: ``act(features)`` makes it (a ``MixedActivation``
for SmartMixed's Phase 1, a ``FrozenActivation`` for a fixed activation or a
control) from its own RNG stream, so the weights of every model of a seed are
the same. ``model(x, key)`` gives each mixed activation its own Gumbel key.

- ``mnist_mlp``, ``fashion_mlp``: 784-256-128-10 MLPs (relu-family territory).
- ``fashion_cnn``: two stride-2 3x3 convolutions (16, 32 channels) and a dense layer of 128.
- ``deep_narrow``: MNIST through 20 hidden layers of 32, no normalisation, where saturating
  activations stop the gradient.
- ``sine_fit``: regression of an oscillatory function on [-1, 1] (relu is piecewise linear).
- ``poisson_pinn``: a physics-informed network solving u'' = f on [0, 1] with u(0) = u(1) = 0:
  its loss is the residual of a second derivative of the output, which relu's is not.
- ``char_lm``: a character-level transformer language model on Shakespeare, SmartMixed in each
  block's MLP, gelu and silu in the pool; bits per character.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import shakespeare
from flax import nnx

import smartmixed_jax.nnx as snx
from smartmixed_jax import app

Splits = dict[str, tuple[jax.Array, jax.Array]]
POOL = ("relu", "sigmoid", "tanh", "leaky_relu", "elu", "selu")
LM_POOL = (*POOL, "gelu", "silu")


def activate(act: nnx.Module, x: jax.Array, key: jax.Array, i: int) -> jax.Array:
  """``act(x)``; a mixed activation draws its Gumbel noise from ``key`` folded with its index ``i`` (no
  key: evaluation, each feature's argmax)."""
  if isinstance(act, snx.MixedActivation) and key is not None:
    return act(x, rngs=jax.random.fold_in(key, i))
  return act(x)


@dataclasses.dataclass(frozen=True)
class Task:
  """One task of the panel.

  Attributes:
    name: the task's name.
    pool: the activations SmartMixed chooses from; each is also a fixed-activation model.
    metric: what the panel reports, e.g. ``"test accuracy (%)"``.
    higher_is_better: the metric's direction.
    data: ``(smoke, data_dir) -> splits`` of ``(x, y)`` arrays; ``data_dir`` is the
      image data sets' cache (None: the default).
    build: ``(act, rngs) -> model``; ``act(features)`` makes each activation.
    loss: per-example loss of ``(prediction, y)``.
    value: the metric from the test split's ``(loss, accuracy)``.
    epochs: total epochs (SmartMixed: ``phase1_epochs`` of them in Phase 1).
    phase1_epochs: SmartMixed's Phase 1 epochs.
    batch_size: training batch size.
    learning_rate: Adam's peak learning rate (cosine-decayed over all epochs).
    train_forward: ``(model, x, key) -> prediction`` for training, if not ``model(x, key)``
      (the PINN trains on its residual and is evaluated on its solution).
  """

  name: str
  pool: tuple[str, ...]
  metric: str
  higher_is_better: bool
  data: Callable[[bool, Any], Splits]
  build: Callable[[Callable[[int], nnx.Module], nnx.Rngs], nnx.Module]
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  value: Callable[[float, float], float]
  epochs: int
  phase1_epochs: int
  batch_size: int = 128
  learning_rate: float = 1e-3
  train_forward: Any = None


def squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(pred - y).reshape(pred.shape[0], -1), axis=-1)


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Per example, the mean over its positions (one for a class, every token of a sequence)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).reshape(y.shape[0], -1).mean(-1)


def accuracy(loss: float, acc: float) -> float:
  return 100 * acc


# ----------------------------------------------------------------------------
# Image classification.


def image_data(name: str, train_limit: int | None = None) -> Callable[[bool, Any], Splits]:
  def data(smoke: bool, data_dir=None) -> Splits:
    splits = app.device_splits(app.load_dataset(name, data_dir), 512 if smoke else train_limit)
    return splits if not smoke else {k: (x[:512], y[:512]) for k, (x, y) in splits.items()}

  return data


class MLP(nnx.Module):
  def __init__(self, sizes, act, rngs):
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.acts = nnx.List([act(n) for n in sizes[1:-1]])

  def __call__(self, x, key=None):
    for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
      x = activate(act, layer(x), key, i)
    return self.layers[-1](x)


class CNN(nnx.Module):
  def __init__(self, act, rngs):
    self.conv1, self.act1 = nnx.Conv(1, 16, (3, 3), strides=2, rngs=rngs), act(16)
    self.conv2, self.act2 = nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs), act(32)
    self.dense, self.act3 = nnx.Linear(7 * 7 * 32, 128, rngs=rngs), act(128)
    self.head = nnx.Linear(128, 10, rngs=rngs)

  def __call__(self, x, key=None):
    x = x.reshape(*x.shape[:-1], 28, 28, 1)
    x = activate(self.act1, self.conv1(x), key, 0)
    x = activate(self.act2, self.conv2(x), key, 1)
    x = activate(self.act3, self.dense(x.reshape(*x.shape[:-3], -1)), key, 2)
    return self.head(x)


# ----------------------------------------------------------------------------
# Smooth regression and a physics-informed network.


def target(x):
  """An oscillatory target on [-1, 1]: two octaves and a bump."""
  return jnp.sin(2 * jnp.pi * x) + 0.5 * jnp.sin(6 * jnp.pi * x) + jnp.exp(-20 * x**2)


def sine_data(smoke: bool, data_dir=None) -> Splits:
  n = 256 if smoke else 4096
  grid = lambda k, m: jax.random.uniform(jax.random.key(k), (m, 1), minval=-1, maxval=1)  # noqa: E731
  return {split: (x, target(x)) for split, x in (("train", grid(0, n)), ("val", grid(1, 1024)),
                                                ("test", grid(2, 1024)))}  # fmt: skip


def rmse(loss: float, acc: float) -> float:
  return math.sqrt(loss)


def solution(x):
  """The PINN's exact solution: u(0) = u(1) = 0, with a fast mode."""
  return jnp.sin(jnp.pi * x) + 0.3 * jnp.sin(4 * jnp.pi * x)


def source(x):
  """f = u'' of :func:`solution`."""
  return -(jnp.pi**2) * jnp.sin(jnp.pi * x) - 0.3 * (4 * jnp.pi) ** 2 * jnp.sin(4 * jnp.pi * x)


def pinn_data(smoke: bool, data_dir=None) -> Splits:
  """Collocation points (labels: 0, the residual's target) to train; the exact solution to evaluate."""
  n = 128 if smoke else 1024
  x = jax.random.uniform(jax.random.key(0), (n, 1))
  grid = lambda k: jax.random.uniform(jax.random.key(k), (512, 1))  # noqa: E731
  return {
    "train": (x, jnp.zeros_like(x)),
    "val": (grid(1), solution(grid(1))),
    "test": (grid(2), solution(grid(2))),
  }


class PINN(nnx.Module):
  """u(x) = x (1 - x) N(x): the boundary conditions hold exactly."""

  def __init__(self, act, rngs):
    self.net = MLP((1, 32, 32, 32, 1), act, rngs)

  def __call__(self, x, key=None):
    return x * (1 - x) * self.net(x, key)


def pinn_residual(model, x, key):
  """u''(x) − f(x) per point: the second derivative through the network (relu's is zero a.e.)."""
  u = lambda t: model(t.reshape(1, 1), key)[0, 0]  # noqa: E731
  second = jax.vmap(jax.grad(jax.grad(u)))(x[:, 0])
  return (second - source(x[:, 0]))[:, None] / (4 * jnp.pi) ** 2  # scaled to order 1


SOLUTION_RMS = math.sqrt(0.5 + 0.5 * 0.3**2)  # of solution() over [0, 1]: its two modes are orthogonal


def relative_l2(loss: float, acc: float) -> float:
  return 100 * math.sqrt(loss) / SOLUTION_RMS


# ----------------------------------------------------------------------------
# A character-level transformer language model.

CONTEXT, WIDTH, HEADS, BLOCKS = 64, 64, 4, 2


def lm_data(smoke: bool, data_dir=None) -> Splits:
  """Windows of ``CONTEXT + 1`` characters: fixed random ones of train, evenly spaced ones of val / test."""
  corpus = shakespeare.load()

  def windows(ids, count, rng):
    starts = rng.integers(0, len(ids) - CONTEXT - 1, count) if rng else np.linspace(
      0, len(ids) - CONTEXT - 1, count).astype(int)  # fmt: skip
    w = np.stack([ids[s : s + CONTEXT + 1] for s in starts]).astype(np.int32)
    return jnp.asarray(w[:, :-1]), jnp.asarray(w[:, 1:])

  n, m = (256, 128) if smoke else (16384, 2048)
  rng = np.random.default_rng(0)
  return {"train": windows(corpus.train, n, rng), "val": windows(corpus.validation, m, None),
          "test": windows(corpus.test, m, None)}  # fmt: skip


class Block(nnx.Module):
  """Pre-norm attention and MLP; the MLP's activation is the one SmartMixed chooses.

  The MLP is an ``nnx.Sequential``, which passes ``rngs`` (the Gumbel key) on to the layers that take
  it, and whose features ``freeze(model, probe=x)`` can sort so each activation runs on one segment.
  """

  def __init__(self, act, rngs):
    self.norm1, self.norm2 = nnx.LayerNorm(WIDTH, rngs=rngs), nnx.LayerNorm(WIDTH, rngs=rngs)
    self.attention = nnx.MultiHeadAttention(HEADS, WIDTH, decode=False, rngs=rngs)
    up, down = nnx.Linear(WIDTH, 4 * WIDTH, rngs=rngs), nnx.Linear(4 * WIDTH, WIDTH, rngs=rngs)
    self.mlp = nnx.Sequential(up, act(4 * WIDTH), down)

  def __call__(self, x, mask, key, i):
    x = x + self.attention(self.norm1(x), mask=mask)
    return x + self.mlp(self.norm2(x), rngs=None if key is None else jax.random.fold_in(key, i))


class CharLM(nnx.Module):
  def __init__(self, act, rngs, vocab: int = 84):
    self.embed = nnx.Embed(vocab, WIDTH, rngs=rngs)
    self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (CONTEXT, WIDTH)))
    self.blocks = nnx.List([Block(act, rngs) for _ in range(BLOCKS)])
    self.norm = nnx.LayerNorm(WIDTH, rngs=rngs)

  def __call__(self, tokens, key=None):
    x = self.embed(tokens) + self.position[: tokens.shape[-1]]
    mask = nnx.make_causal_mask(tokens)
    for i, block in enumerate(self.blocks):
      x = block(x, mask, key, i)
    return self.embed.attend(self.norm(x))  # tied output embedding


def bits_per_char(loss: float, acc: float) -> float:
  return loss / math.log(2)


# ----------------------------------------------------------------------------

TASKS = {
  task.name: task
  for task in (  # the cheapest first
    Task("sine_fit", POOL, "test RMSE", False, sine_data,
         lambda act, rngs: MLP((1, 64, 64, 64, 1), act, rngs), squared_error, rmse, 400, 160,
         batch_size=64),
    Task("poisson_pinn", POOL, "relative L2 error of u (%)", False, pinn_data, PINN, squared_error,
         relative_l2, 200, 80, batch_size=64, train_forward=pinn_residual),
    Task("deep_narrow", POOL, "test accuracy (%)", True, image_data("mnist", 16384),
         lambda act, rngs: MLP((784, *[32] * 20, 10), act, rngs), cross_entropy, accuracy, 10, 4),
    Task("mnist_mlp", POOL, "test accuracy (%)", True, image_data("mnist"),
         lambda act, rngs: MLP((784, 256, 128, 10), act, rngs), cross_entropy, accuracy, 10, 4),
    Task("fashion_mlp", POOL, "test accuracy (%)", True, image_data("fashion_mnist"),
         lambda act, rngs: MLP((784, 256, 128, 10), act, rngs), cross_entropy, accuracy, 10, 4),
    Task("fashion_cnn", POOL, "test accuracy (%)", True, image_data("fashion_mnist"), CNN, cross_entropy,
         accuracy, 6, 2),
    Task("char_lm", LM_POOL, "test bits per character", False, lm_data, CharLM, cross_entropy,
         bits_per_char, 6, 2, batch_size=32),
  )
}  # fmt: skip
