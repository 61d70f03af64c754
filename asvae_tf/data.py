"""Datasets and tf.data input pipelines for asvae_tf.

Two layers:

1. `load_splits` (gin name `dataset`) returns a `Splits` of uint8 numpy arrays
   [N, H, W, C]: train / validation / test. The validation split is always
   carved from the END of the training data (nothing is shuffled before
   splitting), so a split is a pure function of the files and
   `validation_size`. Sources: TFDS (offline unless `dataset.download=True`),
   local files (`dataset.local_dir`: MNIST IDX, CIFAR-10 python batches, or a
   .npz), or a deterministic synthetic dataset for tests.

2. `train_dataset` / `eval_dataset` / `to_float` turn those arrays into float32
   images in [0, 1].

Determinism and data position of `train_dataset` (the resume contract):

* steps_per_epoch = N // global_batch_size (the remainder of each epoch is
  dropped). Global step s belongs to epoch e = s // steps_per_epoch and uses
  rows [k * B, (k + 1) * B) of that epoch's permutation, k = s % steps_per_epoch.
* The permutation of epoch e is a stateless shuffle keyed on (seed, e); the
  preprocessing noise of step s (binarisation or dequantisation) is a stateless
  uniform draw keyed on (seed, s). Nothing else is random.
* Hence the global batch of step s is a pure function of
  (images, seed, global_batch_size, s). The trainer only has to checkpoint
  the step counter: `train_dataset(..., start_step=s)` yields exactly the
  batches an uninterrupted run would have seen from step s on. Skipping is
  cheap: only the int64 index stream is skipped, images are gathered and
  preprocessed after the skip.
* Under `tf.distribute`, every input pipeline computes the whole global batch
  of step s (indices and noise) and keeps its own rows, so the concatenation of
  the per-replica batches in replica order equals the single-device global
  batch: results do not depend on the number of devices or workers.

Pixel conventions (`Splits.binary`):

* binary (MNIST): pixel / 255 is the probability of a binary pixel. Training
  batches are binarised afresh every step (x = 1[U < p / 255]); the test split
  is binarised ONCE (`Splits.test_binarized`, np.random.RandomState(0)).
* natural images (CIFAR-10, ImageNet 64x64): uniform dequantisation
  x = (p + U) / 256 in training, bin centres (p + 0.5) / 256 at evaluation.
"""

import dataclasses
import gzip
import hashlib
import os
import pathlib
import pickle
import struct
import zlib
from typing import Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from asvae_tf.errors import DataError  # noqa: F401  (re-exported: data.DataError)

DATASET_NAMES = ("mnist", "cifar10", "imagenet64", "synthetic")

# TFDS builder and the (train, test) split names used for each dataset. The
# 64x64 ImageNet of the paper is van den Oord et al.'s downsampled ImageNet
# (image-net.org/small); its official "validation" split is the test set.
TFDS_BUILDERS = {
  "mnist": ("mnist", "train", "test"),
  "cifar10": ("cifar10", "train", "test"),
  "imagenet64": ("downsampled_imagenet/64x64", "train", "validation"),
}

# Default number of training examples held out (from the end) as validation.
DEFAULT_VALIDATION_SIZE = {
  "mnist": 10000,  # 50k / 10k of the official 60k training set.
  "mnist10k": 1000,  # 7000 / 1000 of the 8000 MNIST-10k training images.
  "cifar10": 5000,
  "imagenet64": 10000,
}

# MNIST-10k protocol (see shared/data/mnist/README.md).
MNIST10K_NUM_IMAGES = 10000
MNIST10K_NUM_TRAIN = 8000
MNIST10K_TEST_BINARIZED_SHA256 = "8004001ea78fc95df91d51753a40c44767a933ad996aa5f760e5a7a0e73892c2"

_IDX3_MAGIC = 0x00000803  # idx3, unsigned bytes.
_MNIST_TRAIN_FILES = (
  "train-images-idx3-ubyte",
  "train-images-idx3-ubyte.gz",
  "train-images.idx3-ubyte",
  "train-images.idx3-ubyte.gz",
)
_MNIST_TEST_FILES = (
  "t10k-images-idx3-ubyte",
  "t10k-images-idx3-ubyte.gz",
  "t10k-images.idx3-ubyte",
  "t10k-images.idx3-ubyte.gz",
)
_CIFAR_TRAIN_FILES = tuple("data_batch_%d" % i for i in range(1, 6))
_CIFAR_TEST_FILE = "test_batch"
_CIFAR_SUBDIR = "cifar-10-batches-py"

_EXPECTED_LOCAL_FILES = {
  "mnist": (
    "MNIST IDX files train-images-idx3-ubyte[.gz] + "
    "t10k-images-idx3-ubyte[.gz] (t10k alone selects the MNIST-10k "
    "protocol), or one .npz with uint8 x_train / x_test"
  ),
  "cifar10": (
    "CIFAR-10 python batches data_batch_1..5 + test_batch "
    "(directly or in cifar-10-batches-py/), or one .npz with "
    "uint8 x_train / x_test"
  ),
  "imagenet64": (
    "one .npz with uint8 x_train / x_test (optional x_validation) of shape [N, 64, 64, 3]"
  ),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """A dataset as uint8 numpy arrays.

  Attributes:
    name: "mnist", "cifar10", "imagenet64" or "synthetic".
    train: uint8 [N, H, W, C], validation already removed.
    validation: uint8 [Nv, H, W, C], carved from the END of the training data
      (Nv may be 0).
    test: uint8 [Nt, H, W, C].
    binary: True if pixel / 255 is a Bernoulli probability (dynamic
      binarisation); False for natural 8-bit images (uniform dequantisation).
    note: one human-readable line: source, protocol and split sizes.
    test_binarized: binary datasets only: uint8 {0, 1} [Nt, H, W, C], `test`
      binarised once with
      np.random.RandomState(0).uniform(size=(Nt, H*W*C)) < test / 255.
  """

  name: str
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  binary: bool
  note: str
  test_binarized: Optional[np.ndarray] = None

  def __post_init__(self):
    shape = None
    for field in ("train", "validation", "test", "test_binarized"):
      array = getattr(self, field)
      if array is None and field == "test_binarized":
        continue
      if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise DataError(
          f"Splits.{field} of {self.name!r} must be a uint8 "
          f"numpy array, got {type(array).__name__} "
          f"{getattr(array, 'dtype', '')}"
        )
      if array.ndim != 4 or (shape is not None and array.shape[1:] != shape):
        raise DataError(
          f"Splits.{field} of {self.name!r} has shape "
          f"{array.shape}; expected [N, H, W, C] matching "
          f"train {self.train.shape}"
        )
      shape = array.shape[1:]
    if self.test_binarized is not None and self.test_binarized.shape != self.test.shape:
      raise DataError(
        f"Splits.test_binarized of {self.name!r} has shape "
        f"{self.test_binarized.shape}, test has "
        f"{self.test.shape}"
      )

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(int(d) for d in self.train.shape[1:])


# ----------------------------------------------------------------------------
# load_splits
# ----------------------------------------------------------------------------


@gin.configurable("dataset")
def load_splits(
  name=gin.REQUIRED,
  local_dir=None,
  validation_size=None,
  download=False,
  synthetic_num_examples=256,
  synthetic_image_shape=(28, 28, 1),
  synthetic_seed=0,
  tfds_data_dir=None,
) -> Splits:
  """Loads a dataset as train / validation / test uint8 arrays.

  Args:
    name: one of DATASET_NAMES.
    local_dir: read local files from this folder instead of TFDS (MNIST IDX
      files, CIFAR-10 python batches, or one .npz with x_train / x_test).
      With only MNIST's t10k files present, the MNIST-10k protocol is used.
    validation_size: number of training examples held out from the end of the
      training data; None selects the dataset default (MNIST 10000, MNIST-10k
      1000, CIFAR-10 5000, ImageNet64 10000, synthetic N // 8); 0 is allowed.
    download: let TFDS download and prepare the dataset (needs internet).
      False fails fast when the dataset is not already prepared.
    synthetic_num_examples: total number of synthetic images (train +
      validation + test).
    synthetic_image_shape: (H, W, C) of the synthetic images.
    synthetic_seed: seed of the synthetic images.
    tfds_data_dir: TFDS data_dir; None uses TFDS's default (TFDS_DATA_DIR or
      ~/tensorflow_datasets).

  Returns:
    A `Splits`.

  Raises:
    DataError: unknown name, missing / corrupt files, unprepared TFDS dataset,
      or an impossible validation_size.
  """
  if name not in DATASET_NAMES:
    raise DataError(f"unknown dataset.name {name!r}; allowed: {', '.join(DATASET_NAMES)}")
  if validation_size is not None and (
    isinstance(validation_size, bool)
    or not isinstance(validation_size, (int, np.integer))
    or validation_size < 0
  ):
    raise DataError(f"dataset.validation_size must be None or an int >= 0, got {validation_size!r}")
  if name == "synthetic":
    if local_dir is not None:
      raise DataError(
        "dataset.local_dir is not used by the synthetic "
        "dataset; remove it or choose another dataset.name"
      )
    return _load_synthetic(
      synthetic_num_examples, synthetic_image_shape, synthetic_seed, validation_size
    )
  if local_dir is not None:
    return _load_local(name, local_dir, validation_size)
  return _load_tfds(name, validation_size, download, tfds_data_dir)


def _carve_validation(name, train_full, validation_size, default_size):
  """Splits [N, ...] into (train [N - Nv], validation [Nv]) from the end."""
  size = default_size if validation_size is None else int(validation_size)
  n = len(train_full)
  if size >= n:
    raise DataError(
      f"dataset.validation_size={size} leaves no training data "
      f"for {name!r}: the training data holds {n} examples"
    )
  return train_full[: n - size], train_full[n - size :]


def _binarize_once(test):
  """uint8 {0,1} [Nt, H, W, C]: RandomState(0).uniform(Nt, HWC) < test / 255."""
  flat = test.reshape(len(test), -1)
  uniform = np.random.RandomState(0).uniform(size=flat.shape)
  return (uniform < flat / 255.0).astype(np.uint8).reshape(test.shape)


def _make_splits(
  name, train_full, test, validation_size, default_size, binary, source, validation=None
):
  """Carves validation (unless given) and assembles a Splits with its note."""
  if validation is None:
    train, validation = _carve_validation(name, train_full, validation_size, default_size)
    where = "end of the training data"
  else:
    train, where = train_full, "given"
  note = (
    f"{name}: {source}; train {len(train)} / validation "
    f"{len(validation)} ({where}) / test {len(test)}, images "
    f"{tuple(train.shape[1:])}, "
    f"{'binary (dynamic binarisation)' if binary else 'natural 8-bit (uniform dequantisation)'}"
  )
  return Splits(
    name=name,
    train=train,
    validation=validation,
    test=test,
    binary=binary,
    note=note,
    test_binarized=_binarize_once(test) if binary else None,
  )


# --- synthetic ----------------------------------------------------------------


def _load_synthetic(num_examples, image_shape, seed, validation_size):
  """Deterministic blob-and-stroke images; binary iff C == 1."""
  try:
    h, w, c = (int(d) for d in image_shape)
    num_examples = int(num_examples)
  except (TypeError, ValueError):
    raise DataError(
      f"dataset.synthetic_image_shape must be (H, W, C), got {image_shape!r}"
    ) from None
  if min(h, w, c) < 1:
    raise DataError(f"dataset.synthetic_image_shape must be positive, got {image_shape!r}")
  num_test = num_examples // 8
  if num_test < 1:
    raise DataError(f"dataset.synthetic_num_examples must be >= 8, got {num_examples}")
  images = synthetic_images(num_examples, (h, w, c), seed)
  train_full, test = images[:-num_test], images[-num_test:]
  return _make_splits(
    "synthetic",
    train_full,
    test,
    validation_size,
    num_test,
    binary=(c == 1),
    source=(
      f"{num_examples} deterministic blob/stroke images "
      f"(synthetic_seed {seed}), last {num_test} = test"
    ),
  )


def synthetic_images(num_examples, image_shape, seed, num_blobs=2, num_strokes=2):
  """Structured random images: Gaussian blobs and soft line strokes.

  Args:
    num_examples: N.
    image_shape: (H, W, C).
    seed: int; the result is a pure function of all arguments.
    num_blobs: blobs per image.
    num_strokes: strokes per image.

  Returns:
    uint8 [N, H, W, C], dark background, bright shapes (each shape coloured
    independently when C > 1).
  """
  h, w, c = image_shape
  k = num_blobs + num_strokes
  rs = np.random.RandomState(seed)
  # All random parameters first (small), so rendering in chunks is invariant.
  centre = rs.uniform(0.2, 0.8, size=(num_examples, num_blobs, 2))
  sigma = rs.uniform(0.06, 0.15, size=(num_examples, num_blobs))
  start = rs.uniform(0.1, 0.9, size=(num_examples, num_strokes, 2))
  end = rs.uniform(0.1, 0.9, size=(num_examples, num_strokes, 2))
  width = rs.uniform(0.03, 0.06, size=(num_examples, num_strokes))
  amplitude = rs.uniform(0.6, 1.0, size=(num_examples, k))
  colour = (
    rs.uniform(0.2, 1.0, size=(num_examples, k, c)) if c > 1 else np.ones((num_examples, k, 1))
  )

  grid = np.stack(
    np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij"), -1
  )
  out = np.empty((num_examples, h, w, c), np.uint8)
  chunk = 256
  for lo in range(0, num_examples, chunk):
    sl = slice(lo, lo + chunk)
    # Blobs: [n, num_blobs, H, W].
    d2 = np.sum((grid[None, None] - centre[sl, :, None, None, :]) ** 2, -1)
    blobs = np.exp(-d2 / (2 * sigma[sl, :, None, None] ** 2))
    # Strokes: distance of each pixel to a segment, [n, num_strokes, H, W].
    a = start[sl, :, None, None, :]
    ab = end[sl, :, None, None, :] - a
    t = np.sum((grid[None, None] - a) * ab, -1) / np.maximum(np.sum(ab**2, -1), 1e-6)
    nearest = a + np.clip(t, 0.0, 1.0)[..., None] * ab
    d2 = np.sum((grid[None, None] - nearest) ** 2, -1)
    strokes = np.exp(-d2 / (2 * width[sl, :, None, None] ** 2))
    shapes = np.concatenate([blobs, strokes], 1) * amplitude[sl, :, None, None]
    image = np.einsum("nkhw,nkc->nhwc", shapes, colour[sl])
    out[sl] = np.round(255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)
  return out


# --- local files -------------------------------------------------------------


def _load_local(name, local_dir, validation_size):
  """Dispatches on the files found in local_dir."""
  path = pathlib.Path(os.fspath(local_dir)).expanduser()
  expected = _EXPECTED_LOCAL_FILES[name]
  if not path.exists():
    raise DataError(f"dataset.local_dir {path} does not exist; expected a folder with {expected}")
  if not path.is_dir():
    raise DataError(
      f"dataset.local_dir {path} is not a directory; expected a folder with {expected}"
    )
  try:
    entries = sorted(os.listdir(path))
  except OSError as e:
    raise DataError(
      f"dataset.local_dir {path} is unreadable "
      f"({e.strerror or e}); expected a folder with "
      f"{expected}"
    ) from None
  if name == "mnist":
    splits = _try_load_mnist_idx(path, entries, validation_size)
    if splits is not None:
      return splits
  if name == "cifar10":
    splits = _try_load_cifar(path, validation_size)
    if splits is not None:
      return splits
  splits = _try_load_npz(name, path, entries, validation_size)
  if splits is not None:
    return splits
  raise DataError(
    f"dataset.local_dir {path} holds none of the files expected for {name!r}: {expected}"
  )


def _first_present(path, entries, candidates):
  for candidate in candidates:
    if candidate in entries and (path / candidate).is_file():
      return path / candidate
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


_IDX1_MAGIC = 0x00000801  # idx1, unsigned bytes.
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


def _try_load_mnist_idx(path, entries, validation_size):
  """Full MNIST (train + t10k files) or MNIST-10k (t10k only); None if absent."""
  train_file = _first_present(path, entries, _MNIST_TRAIN_FILES)
  test_file = _first_present(path, entries, _MNIST_TEST_FILES)
  if train_file is None and test_file is None:
    return None
  if test_file is None:
    raise DataError(
      f"dataset.local_dir {path} has {train_file.name} but no "
      f"t10k-images-idx3-ubyte[.gz]; both are needed for full "
      f"MNIST"
    )
  test_all = read_idx_images(test_file)
  if train_file is not None:
    return _make_splits(
      "mnist",
      read_idx_images(train_file),
      test_all,
      validation_size,
      DEFAULT_VALIDATION_SIZE["mnist"],
      binary=True,
      source=(
        f"MNIST IDX files {train_file.name} + {test_file.name} in "
        f"{path} (full MNIST: official train / t10k test)"
      ),
    )
  return _mnist10k_splits(test_all, test_file, validation_size)


def _mnist10k_splits(test_all, test_file, validation_size):
  """The MNIST-10k protocol: t10k images 0..7999 train, 8000..9999 test."""
  if test_all.shape != (MNIST10K_NUM_IMAGES, 28, 28, 1):
    raise DataError(
      f"MNIST-10k protocol needs the 10000 28x28 t10k images, "
      f"but {test_file} holds {test_all.shape[:3]}"
    )
  reason = f"only {test_file.name} is in {test_file.parent} (no train-images-idx3-ubyte[.gz])"
  splits = _make_splits(
    "mnist",
    test_all[:MNIST10K_NUM_TRAIN],
    test_all[MNIST10K_NUM_TRAIN:],
    validation_size,
    DEFAULT_VALIDATION_SIZE["mnist10k"],
    binary=True,
    source=(
      f"MNIST-10k protocol because {reason}: t10k images 0..7999 = "
      f"train (validation from their end), 8000..9999 = test "
      f"(binarised once with RandomState(0), sha256 verified)"
    ),
  )
  digest = hashlib.sha256(np.ascontiguousarray(splits.test_binarized).tobytes()).hexdigest()
  if digest != MNIST10K_TEST_BINARIZED_SHA256:
    raise DataError(
      f"MNIST-10k test_binarized from {test_file} has sha256 "
      f"{digest}, expected {MNIST10K_TEST_BINARIZED_SHA256}: "
      f"the file is not the original MNIST t10k set"
    )
  logging.warning(
    "Using the MNIST-10k protocol because %s: train 0..7999 "
    "(%d train / %d validation), test 8000..9999.",
    reason,
    len(splits.train),
    len(splits.validation),
  )
  return splits


def _read_cifar_batch(file):
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


def _try_load_cifar(path, validation_size):
  """CIFAR-10 python batches in path or path/cifar-10-batches-py; else None."""
  all_files = _CIFAR_TRAIN_FILES + (_CIFAR_TEST_FILE,)
  for folder in (path, path / _CIFAR_SUBDIR):
    present = [f for f in all_files if (folder / f).is_file()]
    if not present:
      continue
    missing = [f for f in all_files if f not in present]
    if missing:
      raise DataError(
        f"CIFAR-10 folder {folder} lacks {', '.join(missing)}; "
        f"expected data_batch_1..5 and test_batch"
      )
    train_full = np.concatenate([_read_cifar_batch(folder / f) for f in _CIFAR_TRAIN_FILES])
    test = np.ascontiguousarray(_read_cifar_batch(folder / _CIFAR_TEST_FILE))
    return _make_splits(
      "cifar10",
      train_full,
      test,
      validation_size,
      DEFAULT_VALIDATION_SIZE["cifar10"],
      binary=False,
      source=f"CIFAR-10 python batches in {folder}",
    )
  return None


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


def _try_load_npz(name, path, entries, validation_size):
  """One .npz with x_train / x_test (optional x_validation); None if absent."""
  files = [path / e for e in entries if e.endswith(".npz") and (path / e).is_file()]
  if not files:
    return None
  if len(files) > 1:
    preferred = [f for f in files if f.name == f"{name}.npz"]
    if len(preferred) != 1:
      raise DataError(
        f"dataset.local_dir {path} holds several .npz files "
        f"({', '.join(f.name for f in files)}); keep one or "
        f"name it {name}.npz"
      )
    files = preferred
  file = files[0]
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
    train_full = _npz_images(file, archive, "x_train")
    test = _npz_images(file, archive, "x_test")
    validation = _npz_images(file, archive, "x_validation") if "x_validation" in keys else None
  shapes = {a.shape[1:] for a in (train_full, test, validation) if a is not None}
  if len(shapes) != 1:
    raise DataError(f"npz file {file}: image shapes differ between splits ({sorted(shapes)})")
  if validation is not None and validation_size not in (None, len(validation)):
    raise DataError(
      f"npz file {file} has x_validation with "
      f"{len(validation)} images but dataset.validation_size="
      f"{validation_size}; drop one of them"
    )
  default_size = DEFAULT_VALIDATION_SIZE.get(name, 0)
  return _make_splits(
    name,
    train_full,
    test,
    validation_size,
    default_size,
    binary=(name == "mnist"),
    source=f"npz file {file}",
    validation=validation,
  )


# --- TFDS --------------------------------------------------------------------


def _tfds_split_to_numpy(builder, split):
  """All images of a prepared TFDS split, in file order, as uint8 [N,H,W,C]."""
  num = builder.info.splits[split].num_examples
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(4096).prefetch(2)
  out, filled = None, 0
  for batch in ds.as_numpy_iterator():
    if out is None:  # Preallocate once the image shape is known.
      out = np.empty((num,) + batch.shape[1:], np.uint8)
    out[filled : filled + len(batch)] = batch
    filled += len(batch)
  if out is None or filled != num:
    raise DataError(
      f"TFDS {builder.name} split {split!r} yielded {filled} images, its info says {num}"
    )
  return out


def _load_tfds(name, validation_size, download, data_dir):
  """TFDS path: fails fast (no download) unless download=True."""
  tfds_name, train_split, test_split = TFDS_BUILDERS[name]
  where = data_dir or "the default TFDS data_dir"
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if download:
      builder.download_and_prepare()
    train_full = _tfds_split_to_numpy(builder, train_split)
    test = _tfds_split_to_numpy(builder, test_split)
  except DataError:
    raise
  except Exception as e:  # TFDS raises AssertionError, OSError, ... here.
    cause = " ".join(str(e).split())[:160]
    raise DataError(
      f"dataset {name!r} (TFDS {tfds_name}) is not available in {where} "
      f"({type(e).__name__}: {cause}); set dataset.local_dir to a folder "
      f"with {_EXPECTED_LOCAL_FILES[name]}, or dataset.download=True on a "
      f"machine with internet"
    ) from e
  return _make_splits(
    name,
    train_full,
    test,
    validation_size,
    DEFAULT_VALIDATION_SIZE[name],
    binary=(name == "mnist"),
    source=(
      f"TFDS {tfds_name} ({where}), splits {train_split!r} -> train "
      f"+ validation, {test_split!r} -> test"
    ),
  )


# ----------------------------------------------------------------------------
# tf.data pipelines
# ----------------------------------------------------------------------------

_SHUFFLE_STREAM = 0
_NOISE_STREAM = 1
_RNG_ALG = "philox"
# Dequantisation noise is quantised to 2^-16 so that (p + u) is exact in
# float32 for p <= 255: x = (p + u) / 256 then lies in [p/256, (p+1)/256).
_NOISE_LEVELS = 2.0**16


def _check_images(images, what="images"):
  """np.asarray(images), checked to be uint8 [N, H, W, C]."""
  array = np.asarray(images)
  if array.dtype != np.uint8 or array.ndim != 4:
    raise DataError(f"{what} must be uint8 [N, H, W, C], got {array.dtype} {array.shape}")
  return array


def _check_int(value, what, minimum, maximum=2**63 - 1):
  if (
    isinstance(value, bool)
    or not isinstance(value, (int, np.integer))
    or not minimum <= value <= maximum
  ):
    raise DataError(f"{what} must be an int in [{minimum}, {maximum}], got {value!r}")
  return int(value)


def _as_tensor(images):
  with tf.init_scope(), tf.device("/cpu:0"):
    return tf.convert_to_tensor(images)


def _options():
  """Deterministic; no auto-sharding (each pipeline slices its own rows).

  tf.data's default graph rewrites are switched off: they serialise the
  captured image tensor (seconds per GB at every iterator creation) and have
  nothing to fuse in these map + prefetch pipelines.
  """
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.apply_default_optimizations = False
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return options


def _preprocess(pixels, uniform, binary):
  """uint8 [b, H, W, C] + U[0,1) of the same shape -> float32 in [0, 1]."""
  pixels = tf.cast(pixels, tf.float32)
  if binary:
    return tf.cast(uniform < pixels / 255.0, tf.float32)
  uniform = tf.floor(uniform * _NOISE_LEVELS) / _NOISE_LEVELS
  return (pixels + uniform) / 256.0


def train_dataset(
  images, global_batch_size, seed, binary, start_step=0, input_context=None
) -> tf.data.Dataset:
  """Infinite, resumable, device-count-invariant training batches.

  See the module docstring for the exact data-position semantics.

  Args:
    images: uint8 numpy [N, H, W, C].
    global_batch_size: B, rows per global step over all replicas.
    seed: int; keys the epoch shuffles (seed, epoch) and the noise (seed, step).
    binary: True: x = 1[U < p / 255] (dynamic binarisation); False:
      x = (p + U) / 256 (uniform dequantisation).
    start_step: first global step to produce (resume position).
    input_context: optional tf.distribute.InputContext (P pipelines, this one
      p, R replicas in sync). This pipeline keeps rows [p*B/P, (p+1)*B/P) of
      each global batch and yields them as R/P consecutive per-replica
      batches of B/R rows.

  Returns:
    tf.data.Dataset of float32 [B, H, W, C] (no input_context) or
    [B/R, H, W, C] (with input_context), values in [0, 1].

  Raises:
    DataError: bad images, N < B, or B not divisible by the replica count.
  """
  images = _check_images(images)
  batch = _check_int(global_batch_size, "global_batch_size", 1)
  seed = _check_int(seed, "seed", -(2**63))
  start_step = _check_int(start_step, "start_step", 0)
  num = len(images)
  if num < batch:
    raise DataError(f"training set has {num} examples, fewer than global_batch_size={batch}")
  steps_per_epoch = num // batch
  lo, hi, per_replica = 0, batch, batch
  if input_context is not None:
    replicas = input_context.num_replicas_in_sync
    pipelines = input_context.num_input_pipelines
    pipeline = input_context.input_pipeline_id
    if batch % replicas:
      raise DataError(
        f"global_batch_size={batch} is not divisible by the {replicas} replicas in sync"
      )
    if replicas % pipelines:
      raise DataError(
        f"{replicas} replicas cannot be split evenly over {pipelines} input pipelines"
      )
    per_replica = batch // replicas
    rows = batch // pipelines
    lo, hi = pipeline * rows, (pipeline + 1) * rows
  local_replicas = (hi - lo) // per_replica

  images_t = _as_tensor(images)
  shape = tuple(int(d) for d in images.shape[1:])
  shuffle_key = tf.constant([seed, _SHUFFLE_STREAM], tf.int64)
  noise_key = tf.constant([seed, _NOISE_STREAM], tf.int64)

  def epoch_indices(epoch):
    """(global step [], indices [B]) for every step of one epoch."""
    key = tf.random.experimental.stateless_fold_in(shuffle_key, epoch, alg=_RNG_ALG)
    order = tf.random.experimental.stateless_shuffle(
      tf.range(num, dtype=tf.int64), seed=key, alg=_RNG_ALG
    )
    indices = tf.reshape(order[: steps_per_epoch * batch], [steps_per_epoch, batch])
    steps = epoch * steps_per_epoch + tf.range(steps_per_epoch, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((steps, indices))

  def make_batch(step, indices):
    """Global batch of `step` (indices [B]) -> this pipeline's rows."""
    key = tf.random.experimental.stateless_fold_in(noise_key, step, alg=_RNG_ALG)
    uniform = tf.random.stateless_uniform((batch,) + shape, seed=key, alg=_RNG_ALG)
    x = _preprocess(tf.gather(images_t, indices[lo:hi]), uniform[lo:hi], binary)
    if local_replicas > 1:
      x = tf.reshape(x, (local_replicas, per_replica) + shape)
    return x

  first_epoch, skip = divmod(start_step, steps_per_epoch)
  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
  ds = ds.flat_map(epoch_indices).skip(skip)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if local_replicas > 1:
    ds = ds.unbatch()
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def _binary_divisor(images) -> float:
  """1 for a uint8 array holding only 0 and 1 (already binarised), else 255."""
  return 1.0 if images.size == 0 or int(images.max()) <= 1 else 255.0


def eval_dataset(images, batch_size, binary) -> tf.data.Dataset:
  """Finite, deterministic, noise-free batches in file order.

  Args:
    images: uint8 numpy [N, H, W, C].
    batch_size: rows per batch; the last batch keeps the remainder.
    binary: as `to_float`: pixel / 255, except that an array holding only 0
      and 1 (`Splits.test_binarized`) stays 0.0 / 1.0; False: (p + 0.5) / 256.

  Returns:
    tf.data.Dataset of float32 [<=batch_size, H, W, C], mapped like `to_float`.
  """
  images = _check_images(images)
  batch_size = _check_int(batch_size, "batch_size", 1)
  divisor = _binary_divisor(images) if binary else None
  images_t = _as_tensor(images)

  def gather(indices):
    x = tf.cast(tf.gather(images_t, indices), tf.float32)
    return x / divisor if binary else (x + 0.5) / 256.0

  ds = tf.data.Dataset.range(len(images)).batch(batch_size)
  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def to_float(images, binary):
  """Deterministic uint8 -> float32 mapping used for evaluation.

  binary=True: pixel / 255 (probabilities). An array holding only 0 and 1,
  e.g. `Splits.test_binarized`, is already binarised and maps to 0.0 / 1.0
  (the decision is taken once for the whole array). binary=False: bin centres
  (pixel + 0.5) / 256.

  Args:
    images: uint8 [..., H, W, C] numpy array or tensor.
    binary: `Splits.binary`.

  Returns:
    float32 of the same shape: numpy for numpy input, a tensor for a tensor.
  """
  if isinstance(images, (tf.Tensor, tf.Variable)):
    x = tf.cast(images, tf.float32)
    if not binary:
      return (x + 0.5) / 256.0
    return x / tf.where(tf.reduce_max(x) <= 1.0, 1.0, 255.0)
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise DataError(f"to_float expects uint8 images, got {images.dtype}")
  x = images.astype(np.float32)
  if not binary:
    return (x + np.float32(0.5)) / np.float32(256.0)
  return x / np.float32(_binary_divisor(images))
