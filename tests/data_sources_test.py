"""Tests for asvae_tf.data.sources and .splits: load_splits on synthetic data, argument
errors, the Splits invariants and the fast TFDS failure."""

import time

import numpy as np
import pytest

from asvae_tf import data


def test_synthetic_splits_shapes_dtypes_and_determinism():
  a = data.load_splits("synthetic", synthetic_num_examples=64)
  b = data.load_splits("synthetic", synthetic_num_examples=64)
  c = data.load_splits("synthetic", synthetic_num_examples=64, synthetic_seed=1)
  assert a.image_shape == (28, 28, 1) and a.binary
  assert (len(a.train), len(a.validation), len(a.test)) == (48, 8, 8)
  for arr in (a.train, a.validation, a.test, a.test_binarized):
    assert arr.dtype == np.uint8 and arr.shape[1:] == (28, 28, 1)
  assert set(np.unique(a.test_binarized)) <= {0, 1}
  np.testing.assert_array_equal(a.test_binarized, data.binarize_once(a.test))
  assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
  assert not np.array_equal(a.train, c.train)
  # Structured, not empty: dark background with bright shapes.
  assert a.train.max() == 255 and 10 < a.train.mean() < 150
  assert "synthetic" in a.note and "\n" not in a.note

  rgb = data.load_splits(
    "synthetic", synthetic_num_examples=16, synthetic_image_shape=(8, 8, 3), validation_size=0
  )
  assert not rgb.binary and rgb.test_binarized is None
  assert rgb.image_shape == (8, 8, 3)
  assert rgb.validation.shape == (0, 8, 8, 3)
  assert len(rgb.train) == 14


def test_synthetic_images_rgb_and_determinism():
  a = data.synthetic_images(20, (5, 6, 3), seed=2)
  assert a.shape == (20, 5, 6, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, data.synthetic_images(20, (5, 6, 3), seed=2))
  assert not np.array_equal(a[..., 0], a[..., 1])  # Shapes are coloured independently.


def test_unknown_name_and_bad_arguments():
  with pytest.raises(data.DataError, match="allowed: mnist, cifar10"):
    data.load_splits("fashion")
  with pytest.raises(data.DataError, match="leaves no training data"):
    data.load_splits("synthetic", synthetic_num_examples=16, validation_size=14)
  for bad in (-1, True, 2.0):
    with pytest.raises(data.DataError, match="validation_size must be None or an int >= 0"):
      data.load_splits("synthetic", validation_size=bad)
  assert len(data.load_splits("synthetic", validation_size=np.int64(3)).validation) == 3
  with pytest.raises(data.DataError, match="local_dir is not used by the synthetic"):
    data.load_splits("synthetic", local_dir="/tmp")
  with pytest.raises(data.DataError, match="synthetic_image_shape must be"):
    data.load_splits("synthetic", synthetic_image_shape=(4, 4))
  with pytest.raises(data.DataError, match="synthetic_num_examples must be >= 8"):
    data.load_splits("synthetic", synthetic_num_examples=7)


def test_splits_invariants():
  x = np.zeros((4, 2, 2, 1), np.uint8)
  with pytest.raises(data.DataError, match="Splits.test of 'x' must be a uint8"):
    data.Splits("x", x, x, x.astype(np.float32), True, "note")
  with pytest.raises(data.DataError, match="Splits.validation of 'x' has shape"):
    data.Splits("x", x, x[..., 0], x, True, "note")
  with pytest.raises(data.DataError, match="test_binarized of 'x' has shape"):
    data.Splits("x", x, x, x, True, "note", test_binarized=x[:2])
  assert data.Splits("x", x, x[:0], x, False, "note").image_shape == (2, 2, 1)


def test_tfds_without_local_data_fails_fast(tmp_path):
  start = time.time()
  with pytest.raises(data.DataError) as info:
    data.load_splits("mnist", tfds_data_dir=str(tmp_path))
  assert time.time() - start < 30
  message = str(info.value).splitlines()[0]  # gin appends its call location.
  assert "dataset.local_dir" in message and "dataset.download=True" in message
  assert "'mnist'" in message
