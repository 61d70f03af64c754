"""The file formats of local datasets: readers only (NumPy, no TensorFlow).

* MNIST IDX files: idx3-ubyte images and idx1-ubyte labels, gzipped or not
  (gzip is detected from the content, not the name).
* CIFAR-10 python batches (pickled dicts with a uint8 [N, 3072] 'data' of CHW
  rows).
* One .npz with uint8 x_train / x_test (optional x_validation; another integer
  dtype is accepted when every value is in [0, 255]).

Every reader returns uint8 arrays and raises `DataError` (never a bare OSError,
pickle or zlib error) on a missing, unreadable, truncated or malformed file: one
line naming the file and the problem. The checks:

* IDX: readable, a complete gzip stream (if gzipped), the idx3 / idx1 magic
  number (naming a swapped image / label file), exactly the bytes the header
  declares (truncated or trailing data), at least one image, labels 0..9;
  `read_labeled_idx` / `check_same_count`: as many labels as images.
* CIFAR-10: an unpicklable batch, a 'data' that is not uint8 [N, 3072].
* npz: a zip archive (not cut, not a bare .npy), the keys, readable members,
  pixels (uint8, or integers in [0, 255]; NaN / Inf / floats / negative or
  > 255 values are refused), non-empty x_train / x_test, y_* as long as x_*,
  one image shape.

Where the files of a dataset are looked for, and how they become splits, is
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
  """(bytes of the file, gunzipped if its content is gzip; whether it was gzip)."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{what} {path} is unreadable ({e.strerror or e})") from None
  raw_is_gzip = raw[:2] == b"\x1f\x8b"
  if raw_is_gzip:
    try:
      raw = gzip.decompress(raw)
    except EOFError:
      raise DataError(
        f"{what} {path} is corrupt: truncated, its gzip stream ends before the end-of-stream marker"
      ) from None
    except (OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError.
      raise DataError(
        f"{what} {path} is unreadable: not valid gzip ({type(e).__name__}: {e})"
      ) from None
  return raw, raw_is_gzip


def _check_magic(path, what, magic, expected, content):
  """DataError unless `magic` is `expected`; names an IDX file of the other kind."""
  if magic == expected:
    return
  other = {_IDX3_MAGIC: "an idx3 image file", _IDX1_MAGIC: "an idx1 label file"}.get(magic)
  raise DataError(
    f"{what} {path} is not {content}: magic number {magic:#010x}, expected "
    f"{expected:#010x}" + (f" (it is {other})" if other else " (not an IDX file, or corrupt)")
  )


def _check_payload(path, what, raw, gzipped, header, expected, items):
  """DataError unless the bytes after the header are exactly `expected` (declared `items`)."""
  got = len(raw) - header
  if got < expected:
    raise DataError(
      f"{what} {path} is corrupt: truncated, {got} bytes after the {header}-byte header"
      f"{' (after gunzip)' if gzipped else ''}, but its header declares {items} = "
      f"{expected} bytes"
    )
  if got > expected:
    raise DataError(
      f"{what} {path} is corrupt: {got - expected} bytes beyond the {items} its header "
      f"declares ({expected} bytes)"
    )


def read_idx_images(path) -> np.ndarray:
  """Reads an MNIST idx3-ubyte image file (gzipped or not).

  Args:
    path: file path; gzip is detected from the content, not the name.

  Returns:
    uint8 [N, rows, cols, 1], N >= 1.

  Raises:
    DataError: unreadable, truncated (file or gzip stream), wrong magic number, a size
      other than the header declares, or no images.
  """
  what = "MNIST image file"
  raw, gzipped = _read_maybe_gzip(path, what)
  if len(raw) < 16:
    raise DataError(
      f"{what} {path} is corrupt: truncated, {len(raw)} bytes, shorter than the 16-byte IDX header"
    )
  magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
  _check_magic(path, what, magic, _IDX3_MAGIC, "an idx3 unsigned-byte image file")
  if not n * rows * cols:
    raise DataError(f"{what} {path} holds no images: header declares {n} images of {rows}x{cols}")
  _check_payload(path, what, raw, gzipped, 16, n * rows * cols, f"{n} images of {rows}x{cols}")
  return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols, 1).copy()


def read_idx_labels(path) -> np.ndarray:
  """Reads an MNIST idx1-ubyte label file (gzipped or not) -> uint8 [N], labels 0..9.

  Raises:
    DataError: unreadable, truncated (file or gzip stream), wrong magic number, a size
      other than the header declares, or a label above 9.
  """
  what = "MNIST label file"
  raw, gzipped = _read_maybe_gzip(path, what)
  if len(raw) < 8:
    raise DataError(
      f"{what} {path} is corrupt: truncated, {len(raw)} bytes, shorter than the 8-byte IDX header"
    )
  magic, n = struct.unpack(">II", raw[:8])
  _check_magic(path, what, magic, _IDX1_MAGIC, "an idx1 unsigned-byte label file")
  _check_payload(path, what, raw, gzipped, 8, n, f"{n} labels")
  labels = np.frombuffer(raw, np.uint8, offset=8).copy()
  if labels.size and labels.max() > 9:
    raise DataError(f"{what} {path} holds label {labels.max()} > 9")
  return labels


def check_same_count(images, images_path, labels, labels_path):
  """DataError unless `images` and `labels` hold as many examples (len); names both files."""
  if len(images) != len(labels):
    raise DataError(
      f"label/image count mismatch: {labels_path} holds {len(labels)} labels but "
      f"{images_path} holds {len(images)} images (files of different sets, or one is corrupt)"
    )


def read_labeled_idx(images_path, labels_path):
  """(images uint8 [N, rows, cols, 1], labels uint8 [N]) of an IDX image + label file pair.

  Raises:
    DataError: either file is bad (see `read_idx_images`, `read_idx_labels`), or their
      counts differ.
  """
  images = read_idx_images(images_path)
  labels = read_idx_labels(labels_path)
  check_same_count(images, images_path, labels, labels_path)
  return images, labels


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


_NPZ_IMAGE_KEYS = ("x_train", "x_test", "x_validation")
_NPZ_LABEL_KEYS = {"x_train": "y_train", "x_test": "y_test", "x_validation": "y_validation"}
_EXPECTED_PIXELS = "expected uint8 pixels in [0, 255]"


def _first_index(mask):
  """The index (tuple) of the first True of `mask`."""
  return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _as_pixels(file, key, array):
  """`array` as uint8: uint8 as is, other integer dtypes if every value is in [0, 255].

  Floats are refused even when integer-valued: float images are usually scaled (to
  [0, 1] or [-1, 1]), and reading them as 0..255 pixels would silently train on
  nearly black images. Each refusal is one DataError line naming the file, the array
  and what is wrong with it.
  """
  if array.dtype == np.uint8:
    return array
  where = f"npz file {file}: {key}"
  if array.dtype.kind in "iu":
    if not array.size:
      return array.astype(np.uint8)
    bad = (array < 0) | (array > 255)
    if bad.any():
      raise DataError(
        f"{where} ({array.dtype}) has {int(bad.sum())} value(s) outside [0, 255] (min "
        f"{array.min()}, max {array.max()}, first at index {_first_index(bad)}); "
        f"{_EXPECTED_PIXELS}"
      )
    return array.astype(np.uint8)
  if array.dtype.kind == "f" and array.size:
    finite = np.isfinite(array)
    if not finite.all():
      raise DataError(
        f"{where} is {array.dtype} with {int((~finite).sum())} NaN/Inf value(s) (first at "
        f"index {_first_index(~finite)}); {_EXPECTED_PIXELS}"
      )
    lo, hi = float(array.min()), float(array.max())
    hint = (
      "; it looks scaled to [0, 1]: save np.round(x * 255).astype(np.uint8)"
      if 0.0 <= lo and hi <= 1.0
      else ""
    )
    raise DataError(
      f"{where} is {array.dtype} (values {lo:g} to {hi:g}); {_EXPECTED_PIXELS}, floats "
      f"are not accepted{hint}"
    )
  raise DataError(f"{where} has dtype {array.dtype}; {_EXPECTED_PIXELS}")


def _npz_array(file, archive, key):
  """archive[key]; DataError if the member cannot be read."""
  try:
    return archive[key]
  except Exception as e:  # zipfile, zlib and the .npy header parser raise many types.
    raise DataError(
      f"npz file {file} is corrupt: cannot read {key!r} ({type(e).__name__}: {e})"
    ) from None


def _npz_images(file, archive, key):
  """uint8 [N, H, W, C] from archive[key] ([N, H, W] gets C = 1)."""
  array = _as_pixels(file, key, _npz_array(file, archive, key))
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4:
    raise DataError(
      f"npz file {file}: {key} has shape {array.shape}, expected [N, H, W, C] or [N, H, W]"
    )
  if not array.size and key != "x_validation":
    raise DataError(f"npz file {file}: {key} holds no images (shape {array.shape})")
  labels_key = _NPZ_LABEL_KEYS[key]
  if labels_key in archive.files:
    labels = _npz_array(file, archive, labels_key)
    if labels.ndim < 1 or len(labels) != len(array):
      raise DataError(
        f"npz file {file}: label/image count mismatch: {labels_key} holds "
        f"{len(labels) if labels.ndim else 'a scalar, no'} labels but {key} holds "
        f"{len(array)} images"
      )
  return array


def read_npz(file):
  """(x_train, x_test, x_validation or None) of one .npz, uint8 [N, H, W, C] each.

  Rank-3 arrays [N, H, W] get C = 1; all splits must have the same image shape.
  Arrays of another integer dtype are accepted (and converted) when every value is in
  [0, 255]; floats (NaN or not), bools and values outside [0, 255] are refused. Labels
  are not read, but a y_train / y_test / y_validation that is present must have as many
  rows as its x array.

  Raises:
    DataError: unreadable, truncated or corrupt file (or not an .npz), missing keys,
      empty x_train / x_test, a label/image count mismatch, non-pixel data or
      mismatched shapes. One line naming the file and the array.
  """
  try:
    archive = np.load(file, allow_pickle=False)
  except Exception as e:  # zipfile, OSError, EOFError, ValueError (pickles), ...
    raise DataError(
      f"npz file {file} is unreadable or corrupt: not a complete .npz zip archive "
      f"({type(e).__name__}: {e})"
    ) from None
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise DataError(
      f"npz file {file} is a single .npy array, not an .npz archive; save it with "
      f"np.savez(file, x_train=..., x_test=...)"
    )
  with archive:
    keys = set(archive.files)
    if not {"x_train", "x_test"} <= keys:
      raise DataError(
        f"npz file {file} has keys {sorted(keys)}; expected "
        f"uint8 x_train and x_test (optional x_validation)"
      )
    train, test, validation = (
      _npz_images(file, archive, key) if key in keys else None for key in _NPZ_IMAGE_KEYS
    )
  shapes = {a.shape[1:] for a in (train, test, validation) if a is not None}
  if len(shapes) != 1:
    raise DataError(f"npz file {file}: image shapes differ between splits ({sorted(shapes)})")
  return train, test, validation
