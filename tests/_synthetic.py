"""Synthetic MNIST-shaped data for tests where the compile, not the data, is the point."""

import numpy as np

from smartmixed_jax import app


def prototypes_dataset(train: int, val: int = 128, test: int = 128, seed: int = 0) -> app.Dataset:
  """784 features, 10 classes: a noisy prototype per class, learnable in a few epochs."""
  rng = np.random.default_rng(seed)
  prototypes = rng.uniform(size=(10, 784))

  def split(n):
    y = rng.integers(0, 10, n)
    x = 0.3 * prototypes[y] + 0.7 * rng.uniform(size=(n, 784))
    return app.Split(x.astype(np.float32), y.astype(np.int32))

  return app.Dataset(split(train), split(val), split(test), source="synthetic")
