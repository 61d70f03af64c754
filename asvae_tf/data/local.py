"""Splits from the files of a local folder (`dataset.local_dir`).

What is found decides the protocol, in this order:

* MNIST IDX files (mnist only): train-images + t10k-images is full MNIST
  (official train / t10k test); t10k-images alone selects the MNIST-10k
  protocol (see shared/data/mnist/README.md): t10k images 0..7999 are the
  training data, 8000..9999 the test set, whose binarisation is sha256-checked.
  Label files next to them are not used in training, but are checked (readable, as
  many labels as images) when present; the validation split's labels are kept for
  TensorBoard's embedding projector (`Splits.validation_labels`).
* CIFAR-10 python batches (cifar10 only), in the folder or in its
  cifar-10-batches-py/ subfolder.
* One .npz with uint8 x_train / x_test (optional x_validation), any dataset.
"""

import hashlib
import os
import pathlib

from absl import logging
import numpy as np

from asvae_tf.data import formats
from asvae_tf.data.splits import DEFAULT_VALIDATION_SIZE, make_splits
from asvae_tf.errors import DataError

MNIST10K_NUM_IMAGES = 10000
MNIST10K_NUM_TRAIN = 8000
MNIST10K_TEST_BINARIZED_SHA256 = "8004001ea78fc95df91d51753a40c44767a933ad996aa5f760e5a7a0e73892c2"

EXPECTED_LOCAL_FILES = {
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


def load_local(name, local_dir, validation_size):
  """Splits of dataset `name` from the files found in local_dir (DataError if none fit)."""
  path = pathlib.Path(os.fspath(local_dir)).expanduser()
  expected = EXPECTED_LOCAL_FILES[name]
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
  splits = None
  if name == "mnist":
    splits = _try_load_mnist_idx(path, entries, validation_size)
  elif name == "cifar10":
    splits = _try_load_cifar(path, validation_size)
  if splits is None:
    splits = _try_load_npz(name, path, entries, validation_size)
  if splits is not None:
    return splits
  raise DataError(
    f"dataset.local_dir {path} holds none of the files expected for {name!r}: {expected}"
  )


def _try_load_mnist_idx(path, entries, validation_size):
  """Full MNIST (train + t10k files) or MNIST-10k (t10k only); None if absent."""
  train_file = formats.find_first(path, formats.MNIST_TRAIN_IMAGE_FILES, entries)
  test_file = formats.find_first(path, formats.MNIST_TEST_IMAGE_FILES, entries)
  if train_file is None and test_file is None:
    return None
  if test_file is None:
    raise DataError(
      f"dataset.local_dir {path} has {train_file.name} but no "
      f"t10k-images-idx3-ubyte[.gz]; both are needed for full "
      f"MNIST"
    )
  test_all = formats.read_idx_images(test_file)
  test_labels = _check_idx_labels(
    path, entries, test_all, test_file, formats.MNIST_TEST_LABEL_FILES
  )
  if train_file is not None:
    train_all = formats.read_idx_images(train_file)
    train_labels = _check_idx_labels(
      path, entries, train_all, train_file, formats.MNIST_TRAIN_LABEL_FILES
    )
    return make_splits(
      "mnist",
      train_all,
      test_all,
      validation_size,
      DEFAULT_VALIDATION_SIZE["mnist"],
      binary=True,
      source=(
        f"MNIST IDX files {train_file.name} + {test_file.name} in "
        f"{path} (full MNIST: official train / t10k test)"
      ),
      train_labels=train_labels,
    )
  return _mnist10k_splits(test_all, test_file, validation_size, test_labels)


def _check_idx_labels(path, entries, images, images_file, label_names):
  """The labels of `images_file` (None if the folder has no label file), checked:
  readable, as many as images.

  Training does not use labels, but a label file that is corrupt or disagrees with its
  images means the folder mixes files of different sets (the evaluation's classifier
  reads them too): DataError rather than training on a broken copy.
  """
  labels_file = formats.find_first(path, label_names, entries)
  if labels_file is None:
    return None
  labels = formats.read_idx_labels(labels_file)
  formats.check_same_count(images, images_file, labels, labels_file)
  return labels


def _mnist10k_splits(test_all, test_file, validation_size, test_labels=None):
  """The MNIST-10k protocol: t10k images 0..7999 train, 8000..9999 test."""
  if test_all.shape != (MNIST10K_NUM_IMAGES, 28, 28, 1):
    raise DataError(
      f"MNIST-10k protocol needs the 10000 28x28 t10k images, "
      f"but {test_file} holds {test_all.shape[:3]}"
    )
  reason = f"only {test_file.name} is in {test_file.parent} (no train-images-idx3-ubyte[.gz])"
  splits = make_splits(
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
    train_labels=None if test_labels is None else test_labels[:MNIST10K_NUM_TRAIN],
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


def _try_load_cifar(path, validation_size):
  """CIFAR-10 python batches in path or path/cifar-10-batches-py; else None."""
  all_files = formats.CIFAR_TRAIN_FILES + (formats.CIFAR_TEST_FILE,)
  for folder in (path, path / formats.CIFAR_SUBDIR):
    present = [f for f in all_files if (folder / f).is_file()]
    if not present:
      continue
    missing = [f for f in all_files if f not in present]
    if missing:
      raise DataError(
        f"CIFAR-10 folder {folder} lacks {', '.join(missing)}; "
        f"expected data_batch_1..5 and test_batch"
      )
    train_full = np.concatenate(
      [formats.read_cifar_batch(folder / f) for f in formats.CIFAR_TRAIN_FILES]
    )
    test = np.ascontiguousarray(formats.read_cifar_batch(folder / formats.CIFAR_TEST_FILE))
    return make_splits(
      "cifar10",
      train_full,
      test,
      validation_size,
      DEFAULT_VALIDATION_SIZE["cifar10"],
      binary=False,
      source=f"CIFAR-10 python batches in {folder}",
    )
  return None


def _find_npz(name, path, entries):
  """The one .npz of the folder (or `name`.npz among several); None if there is none."""
  files = [path / e for e in entries if e.endswith(".npz") and (path / e).is_file()]
  if len(files) > 1:
    preferred = [f for f in files if f.name == f"{name}.npz"]
    if len(preferred) != 1:
      raise DataError(
        f"dataset.local_dir {path} holds several .npz files "
        f"({', '.join(f.name for f in files)}); keep one or "
        f"name it {name}.npz"
      )
    files = preferred
  return files[0] if files else None


def _try_load_npz(name, path, entries, validation_size):
  """One .npz with x_train / x_test (optional x_validation); None if absent."""
  file = _find_npz(name, path, entries)
  if file is None:
    return None
  train_full, test, validation = formats.read_npz(file)
  if validation is not None and validation_size not in (None, len(validation)):
    raise DataError(
      f"npz file {file} has x_validation with "
      f"{len(validation)} images but dataset.validation_size="
      f"{validation_size}; drop one of them"
    )
  return make_splits(
    name,
    train_full,
    test,
    validation_size,
    DEFAULT_VALIDATION_SIZE.get(name, 0),
    binary=(name == "mnist"),
    source=f"npz file {file}",
    validation=validation,
  )
