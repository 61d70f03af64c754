"""Tests for the asvae_tf.data package surface: every name the former data.py module
exported is still there, the gin name `dataset` is unchanged, and importing the package
works in a fresh interpreter. The behaviour itself is tested in data_formats_test.py
(files), data_sources_test.py (load_splits) and data_pipeline_test.py (tf.data)."""

import pathlib
import subprocess
import sys

import gin

from asvae_tf import data, errors

REPO = pathlib.Path(__file__).resolve().parents[1]

# The public names of the former asvae_tf/data.py module.
FORMER_PUBLIC_NAMES = (
  "DATASET_NAMES",
  "DEFAULT_VALIDATION_SIZE",
  "DataError",
  "MNIST10K_NUM_IMAGES",
  "MNIST10K_NUM_TRAIN",
  "MNIST10K_TEST_BINARIZED_SHA256",
  "MNIST_TEST_LABEL_FILES",
  "MNIST_TRAIN_LABEL_FILES",
  "Splits",
  "TFDS_BUILDERS",
  "eval_dataset",
  "load_splits",
  "read_idx_images",
  "read_idx_labels",
  "synthetic_images",
  "to_float",
  "train_dataset",
)


def test_former_public_names_are_reexported():
  missing = [name for name in FORMER_PUBLIC_NAMES if not hasattr(data, name)]
  assert not missing
  assert data.DataError is errors.DataError
  assert set(FORMER_PUBLIC_NAMES) <= set(data.__all__)
  assert all(hasattr(data, name) for name in data.__all__)
  assert data.DATASET_NAMES == ("mnist", "cifar10", "imagenet64", "synthetic")
  assert data.DEFAULT_VALIDATION_SIZE == {
    "mnist": 10000,
    "mnist10k": 1000,
    "cifar10": 5000,
    "imagenet64": 10000,
  }
  assert data.TFDS_BUILDERS["imagenet64"] == ("downsampled_imagenet/64x64", "train", "validation")
  assert data.MNIST10K_NUM_TRAIN == 8000 and data.MNIST10K_NUM_IMAGES == 10000


def test_former_private_names_are_gone():
  # Their users now call MNIST_TRAIN_IMAGE_FILES / MNIST_TEST_IMAGE_FILES and binarize_once.
  for name in ("_MNIST_TRAIN_FILES", "_MNIST_TEST_FILES", "_binarize_once", "_check_int"):
    assert not hasattr(data, name)
  assert data.MNIST_TEST_IMAGE_FILES[:2] == ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz")
  assert data.MNIST_TRAIN_IMAGE_FILES[0] == "train-images-idx3-ubyte"


def test_gin_name_is_dataset():
  gin.clear_config()
  try:
    gin.parse_config(
      [
        "dataset.name = 'synthetic'",
        "dataset.synthetic_num_examples = 16",
        "dataset.synthetic_image_shape = (4, 4, 1)",
      ]
    )
    splits = data.load_splits()
  finally:
    gin.clear_config()
  assert splits.name == "synthetic" and splits.image_shape == (4, 4, 1)


def test_import_in_a_fresh_interpreter():
  code = (
    "from asvae_tf import data; import asvae_tf.data.formats as f; "
    "print(data.load_splits('synthetic', synthetic_num_examples=8).note.split(':')[0], "
    "'tensorflow' in __import__('sys').modules)"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["synthetic", "True"]
