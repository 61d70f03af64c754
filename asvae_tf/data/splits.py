"""`Splits`, the uint8 train / validation / test arrays of a dataset, and how one is assembled.

Every source (`asvae_tf.data.sources`, `asvae_tf.data.local`) hands its full
training data and its test data to `make_splits`, which carves the validation
split from the END of the training data, writes the one-line note and
binarises the test split once for binary datasets.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from asvae_tf.data.pipeline import binarize_once
from asvae_tf.errors import DataError

# Default number of training examples held out (from the end) as validation.
DEFAULT_VALIDATION_SIZE = {
  "mnist": 10000,  # 50k / 10k of the official 60k training set.
  "mnist10k": 1000,  # 7000 / 1000 of the 8000 MNIST-10k training images.
  "cifar10": 5000,
  "imagenet64": 10000,
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
      np.random.RandomState(0).uniform(size=(Nt, H*W*C)) < test / 255
      (`binarize_once(test)`).
    validation_labels: int [Nv] class labels of `validation` when the source has them
      (MNIST IDX label files beside the images), else None. Training never reads them;
      TensorBoard's embedding projector shows them.
  """

  name: str
  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  binary: bool
  note: str
  test_binarized: Optional[np.ndarray] = None
  validation_labels: Optional[np.ndarray] = None

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
    labels = self.validation_labels
    if labels is not None and (np.ndim(labels) != 1 or len(labels) != len(self.validation)):
      raise DataError(
        f"Splits.validation_labels of {self.name!r} has shape {np.shape(labels)}; expected "
        f"[{len(self.validation)}]"
      )

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(int(d) for d in self.train.shape[1:])


def carve_validation(name, train_full, validation_size, default_size):
  """Splits [N, ...] into (train [N - Nv], validation [Nv]) from the end.

  Nv is `validation_size`, or `default_size` when that is None.
  """
  size = default_size if validation_size is None else int(validation_size)
  n = len(train_full)
  if size >= n:
    raise DataError(
      f"dataset.validation_size={size} leaves no training data "
      f"for {name!r}: the training data holds {n} examples"
    )
  return train_full[: n - size], train_full[n - size :]


def make_splits(
  name,
  train_full,
  test,
  validation_size,
  default_size,
  binary,
  source,
  validation=None,
  train_labels=None,
) -> Splits:
  """Carves validation (unless given) and assembles a Splits with its note.

  Args:
    name: `Splits.name`.
    train_full: uint8 [N, H, W, C], the training data including validation.
    test: uint8 [Nt, H, W, C].
    validation_size: dataset.validation_size (None: `default_size`).
    default_size: the source's default validation size.
    binary: `Splits.binary`; True also binarises `test` once.
    source: where the data came from, for the note.
    validation: a validation split given by the source; `train_full` is then
      used as is.
    train_labels: int [N] labels of `train_full`, or None; carved like the images into
      `Splits.validation_labels` (None with a given `validation`).
  """
  validation_labels = None
  if validation is None:
    train, validation = carve_validation(name, train_full, validation_size, default_size)
    where = "end of the training data"
    if train_labels is not None:
      validation_labels = np.asarray(train_labels)[len(train) : len(train_full)]
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
    test_binarized=binarize_once(test) if binary else None,
    validation_labels=validation_labels,
  )
