"""The file formats of local datasets: readers only (NumPy, no TensorFlow).

* MNIST IDX files: idx3-ubyte images and idx1-ubyte labels, gzipped or not
  (gzip is detected from the content, not the name).
* CIFAR-10 python batches (pickled dicts with a uint8 [N, 3072] 'data' of CHW
  rows).
* One .npz with uint8 x_train / x_test (optional x_validation).

Every reader returns uint8 arrays and raises `DataError` (never a bare OSError,
pickle or zlib error) on a missing, unreadable or malformed file. Where the
files of a dataset are looked for, and how they become splits, is
`asvae_tf.data.local`'s business.
"""

import gzip
import os
import pathlib
import pickle
import struct
import zlib

import numpy as np

from asvae_tf.errors import DataError

_IDX3_MAGIC = 0x00000803  # idx3, unsigned bytes.
_IDX1_MAGIC = 0x00000801  # idx1, unsigned bytes.

# Accepted names of the MNIST IDX files, most usual first.
MNIST_TRAIN_IMAGE_FILES = (
  "train-images-idx3-ubyte",
  "train-images-idx3-ubyte.gz",
  "train-images.idx3-ubyte",
  "train-images.idx3-ubyte.gz",
)
MNIST_TEST_IMAGE_FILES = (
  "t10k-images-idx3-ubyte",
  "t10k-images-idx3-ubyte.gz",
  "t10k-images.idx3-ubyte",
  "t10k-images.idx3-ubyte.gz",
)
MNIST_TRAIN_LABEL_FILES = (
  "train-labels-idx1-ubyte",
  "train-labels-idx1-ubyte.gz",
  "train-labels.idx1-ubyte",
  "train-labels.idx1-ubyte.gz",
)
MNIST_TEST_LABEL_FILES = (
  "t10k-labels-idx1-ubyte",
  "t10k-labels-idx1-ubyte.gz",
  "t10k-labels.idx1-ubyte",
  "t10k-labels.idx1-ubyte.gz",
)

CIFAR_TRAIN_FILES = tuple("data_batch_%d" % i for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_SUBDIR = "cifar-10-batches-py"


def find_first(folder, candidates, entries=None, what=None):
  """The first of `candidates` that is a file directly in `folder`.

  Args:
    folder: a directory (str or path-like).
    candidates: file names in order of preference, e.g. MNIST_TEST_IMAGE_FILES.
    entries: the names in `folder` if already listed (os.listdir otherwise).
    what: None returns None when nothing is found; a description such as
      "t10k images" raises DataError instead.

  Returns:
    The path of the file (a pathlib.Path if `folder` is one, else a str joined
    with os.path.join), or None.
  """
  entries = os.listdir(folder) if entries is None else entries
  for candidate in candidates:
    found = os.path.join(folder, candidate)
    if candidate in entries and os.path.isfile(found):
      return pathlib.Path(found) if isinstance(folder, pathlib.PurePath) else found
  if what:
    raise DataError(f"{folder} has no {what} file ({candidates[0]}[.gz])")
  return None


def _read_maybe_gzip(path, what):
  """The bytes of a file, gunzipped if its content is gzip; DataError if unreadable."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(
      f"{what} {path} is unreadable or not valid gzip ({type(e).__name__}: {e})"
    ) from None
  return raw


def read_idx_images(path) -> np.ndarray:
  """Reads an MNIST idx3-ubyte image file (gzipped or not).

  Args:
    path: file path; gzip is detected from the content, not the name.

  Returns:
    uint8 [N, rows, cols, 1].

  Raises:
    DataError: unreadable, corrupt, wrong magic number or wrong size.
  """
  raw = _read_maybe_gzip(path, "MNIST file")
  if len(raw) < 16:
    raise DataError(f"MNIST file {path} is corrupt: {len(raw)} bytes, too short for an IDX header")
  magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
  if magic != _IDX3_MAGIC:
    raise DataError(
      f"MNIST file {path} is corrupt: magic number "
      f"{magic:#010x}, expected {_IDX3_MAGIC:#010x} (idx3 "
      f"unsigned-byte images)"
    )
  expected = 16 + n * rows * cols
  if len(raw) != expected:
    raise DataError(
      f"MNIST file {path} is corrupt: {len(raw)} bytes (after "
      f"decompression), expected {expected} for {n} images of "
      f"{rows}x{cols}"
    )
  return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols, 1).copy()


def read_idx_labels(path) -> np.ndarray:
  """Reads an MNIST idx1-ubyte label file (gzipped or not) -> uint8 [N].

  Raises:
    DataError: unreadable, corrupt, wrong magic number or wrong size.
  """
  raw = _read_maybe_gzip(path, "MNIST label file")
  if len(raw) < 8:
    raise DataError(f"MNIST label file {path} is corrupt: {len(raw)} bytes")
  magic, n = struct.unpack(">II", raw[:8])
  if magic != _IDX1_MAGIC or len(raw) != 8 + n:
    raise DataError(
      f"MNIST label file {path} is corrupt: magic {magic:#010x} "
      f"(expected {_IDX1_MAGIC:#010x}), {len(raw)} bytes for {n} labels"
    )
  labels = np.frombuffer(raw, np.uint8, offset=8).copy()
  if labels.size and labels.max() > 9:
    raise DataError(f"MNIST label file {path} holds label {labels.max()} > 9")
  return labels


def read_cifar_batch(file) -> np.ndarray:
  """One CIFAR-10 python batch -> uint8 [N, 32, 32, 3] (from CHW rows)."""
  try:
    with open(file, "rb") as f:
      batch = pickle.load(f, encoding="bytes")
    data = batch[b"data"] if b"data" in batch else batch["data"]
    data = np.asarray(data)
  except Exception as e:  # pickle raises many types on corrupt input.
    raise DataError(
      f"CIFAR-10 file {file} is unreadable or corrupt ({type(e).__name__}: {e})"
    ) from None
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise DataError(
      f"CIFAR-10 file {file} is corrupt: 'data' is "
      f"{data.dtype} {data.shape}, expected uint8 [N, 3072]"
    )
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _npz_images(file, archive, key):
  """uint8 [N, H, W, C] from archive[key] ([N, H, W] gets C = 1)."""
  try:
    array = archive[key]
  except Exception as e:
    raise DataError(f"npz file {file}: cannot read {key!r} ({type(e).__name__}: {e})") from None
  if array.dtype != np.uint8:
    raise DataError(f"npz file {file}: {key} has dtype {array.dtype}, expected uint8 images")
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4:
    raise DataError(
      f"npz file {file}: {key} has shape {array.shape}, expected [N, H, W, C] or [N, H, W]"
    )
  return array


def read_npz(file):
  """(x_train, x_test, x_validation or None) of one .npz, uint8 [N, H, W, C] each.

  Rank-3 arrays [N, H, W] get C = 1; all splits must have the same image shape.

  Raises:
    DataError: unreadable file, missing keys, non-uint8 arrays or mismatched shapes.
  """
  try:
    archive = np.load(file, allow_pickle=False)
  except Exception as e:
    raise DataError(f"npz file {file} is unreadable or corrupt ({type(e).__name__}: {e})") from None
  with archive:
    keys = set(archive.files)
    if not {"x_train", "x_test"} <= keys:
      raise DataError(
        f"npz file {file} has keys {sorted(keys)}; expected "
        f"uint8 x_train and x_test (optional x_validation)"
      )
    train = _npz_images(file, archive, "x_train")
    test = _npz_images(file, archive, "x_test")
    validation = _npz_images(file, archive, "x_validation") if "x_validation" in keys else None
  shapes = {a.shape[1:] for a in (train, test, validation) if a is not None}
  if len(shapes) != 1:
    raise DataError(f"npz file {file}: image shapes differ between splits ({sorted(shapes)})")
  return train, test, validation
