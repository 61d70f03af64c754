"""Datasets and tf.data input pipelines for asvae_tf.

Two layers:

1. `load_splits` (gin name `dataset`) returns a `Splits` of uint8 numpy arrays
   [N, H, W, C]: train / validation / test. The validation split is always
   carved from the END of the training data (nothing is shuffled before
   splitting), so a split is a pure function of the files and
   `validation_size`. Sources: TFDS (`dataset.download`: 'auto' downloads after
   one quick reachability probe, True always, False never), local files
   (`dataset.local_dir`: MNIST IDX, CIFAR-10 python batches, or a .npz), or a
   deterministic synthetic dataset for tests.

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
  is binarised ONCE (`Splits.test_binarized`, np.random.RandomState(0)), as is
  any fixed evaluation set (`binarize_once(images, seed)`).
* natural images (CIFAR-10, ImageNet 64x64): uniform dequantisation
  x = (p + U) / 256 in training, bin centres (p + 0.5) / 256 at evaluation.
* `to_unit_range` is the plain pixel / 255 (no binarisation, no detection of
  already-binarised arrays), e.g. for the MNIST classifier.

Modules (everything public is re-exported here; use `from asvae_tf import data`):

  formats   file formats, readers only (NumPy): IDX images / labels (gzip or
            not; `read_labeled_idx` checks their counts agree), CIFAR-10 python
            batches, .npz; the accepted MNIST file names and `find_first`.
  splits    `Splits`, validation carving, `DEFAULT_VALIDATION_SIZE`.
  local     `dataset.local_dir` discovery: full MNIST, MNIST-10k, CIFAR-10, .npz.
  sources   `load_splits` (gin `dataset`), TFDS, synthetic data.
  pipeline  tf.data (`train_dataset`, `eval_dataset`) and the uint8 -> float
            conversions (`to_float`, `to_unit_range`, `binarize_once`).
  checks    the argument validators.
"""

from asvae_tf.data.formats import (
  CIFAR_SUBDIR,
  CIFAR_TEST_FILE,
  CIFAR_TRAIN_FILES,
  MNIST_TEST_IMAGE_FILES,
  MNIST_TEST_LABEL_FILES,
  MNIST_TRAIN_IMAGE_FILES,
  MNIST_TRAIN_LABEL_FILES,
  check_same_count,
  find_first,
  read_cifar_batch,
  read_idx_images,
  read_idx_labels,
  read_labeled_idx,
  read_npz,
)
from asvae_tf.data.local import (
  MNIST10K_NUM_IMAGES,
  MNIST10K_NUM_TRAIN,
  MNIST10K_TEST_BINARIZED_SHA256,
)
from asvae_tf.data.pipeline import (
  binarize_once,
  eval_dataset,
  to_float,
  to_unit_range,
  train_dataset,
)
from asvae_tf.data.sources import DATASET_NAMES, TFDS_BUILDERS, load_splits, synthetic_images
from asvae_tf.data.splits import DEFAULT_VALIDATION_SIZE, Splits
from asvae_tf.errors import DataError

__all__ = [
  "CIFAR_SUBDIR",
  "CIFAR_TEST_FILE",
  "CIFAR_TRAIN_FILES",
  "DATASET_NAMES",
  "DEFAULT_VALIDATION_SIZE",
  "DataError",
  "MNIST10K_NUM_IMAGES",
  "MNIST10K_NUM_TRAIN",
  "MNIST10K_TEST_BINARIZED_SHA256",
  "MNIST_TEST_IMAGE_FILES",
  "MNIST_TEST_LABEL_FILES",
  "MNIST_TRAIN_IMAGE_FILES",
  "MNIST_TRAIN_LABEL_FILES",
  "Splits",
  "TFDS_BUILDERS",
  "binarize_once",
  "check_same_count",
  "eval_dataset",
  "find_first",
  "load_splits",
  "read_cifar_batch",
  "read_idx_images",
  "read_idx_labels",
  "read_labeled_idx",
  "read_npz",
  "synthetic_images",
  "to_float",
  "to_unit_range",
  "train_dataset",
]
