"""Tests for asvae_tf.data.pipeline: the determinism / resume / distribution contract of
train_dataset, eval_dataset / to_float, and the shared NumPy helpers binarize_once and
to_unit_range (which must reproduce the formulas they replace bit for bit)."""

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import data


def _take(ds, n):
  return [x.numpy() for x in ds.take(n)]


def _index_images(num):
  """[num, 1, 1, 1] images whose single pixel is the example index."""
  return np.arange(num, dtype=np.uint8).reshape(num, 1, 1, 1)


def _decode_indices(batch):
  """Example indices of dequantised `_index_images` rows (floor(x * 256))."""
  return np.floor(batch.reshape(len(batch)) * 256).astype(int)


def _grey_images(shape=(7, 5, 4, 3), seed=0):
  return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


# --- binarize_once / to_unit_range ------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 28, 28, 1), (5, 3, 4, 3), (1, 1, 1, 1)])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_binarize_once_reproduces_both_former_formulas(shape, seed):
  images = _grey_images(shape, seed=7)
  out = data.binarize_once(images, seed=seed)
  assert out.dtype == np.uint8 and out.shape == shape
  # Former data._binarize_once (seed 0 only): uniform drawn flat, [N, H*W*C].
  flat = images.reshape(len(images), -1)
  uniform = np.random.RandomState(seed).uniform(size=flat.shape)
  former_data = (uniform < flat / 255.0).astype(np.uint8).reshape(images.shape)
  # Former train_lib._validation_batches: uniform drawn with the image shape.
  former_train_lib = (
    np.random.RandomState(seed).uniform(size=images.shape) < images / 255.0
  ).astype(np.uint8)
  assert out.tobytes() == former_data.tobytes() == former_train_lib.tobytes()


def test_binarize_once_extremes_and_empty():
  images = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1).repeat(50, axis=1)
  out = data.binarize_once(images)
  assert out[0].max() == 0 and out[1].min() == 1
  assert data.binarize_once(images[:0]).shape == (0, 50, 1, 1)


def test_to_unit_range_equals_former_division():
  images = _grey_images()
  expected = images.astype(np.float32) / 255.0  # feature_nets.py's conversion.
  out = data.to_unit_range(images)
  assert out.dtype == np.float32 and out.tobytes() == expected.tobytes()
  assert data.to_unit_range(tf.constant(images)).numpy().tobytes() == expected.tobytes()
  # No already-binarised detection (unlike to_float).
  ones = np.ones((2, 2, 2, 1), np.uint8)
  np.testing.assert_array_equal(data.to_unit_range(ones), np.full(ones.shape, 1 / 255, np.float32))
  with pytest.raises(data.DataError, match="to_unit_range expects uint8"):
    data.to_unit_range(expected)


# --- train_dataset -------------------------------------------------------------


def test_train_determinism_and_seed_dependence():
  images = data.load_splits("synthetic", synthetic_num_examples=64).train
  a = _take(data.train_dataset(images, 8, seed=3, binary=True), 7)
  b = _take(data.train_dataset(images, 8, seed=3, binary=True), 7)
  c = _take(data.train_dataset(images, 8, seed=4, binary=True), 7)
  assert a[0].shape == (8, 28, 28, 1) and a[0].dtype == np.float32
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_dynamic_binarisation_statistics():
  pixels = np.array([0, 32, 128, 200, 255], np.uint8).reshape(1, 1, 5, 1)
  images = np.repeat(pixels, 8, axis=0)
  draws = np.concatenate(_take(data.train_dataset(images, 8, seed=0, binary=True), 100))
  assert set(np.unique(draws)) <= {0.0, 1.0}
  np.testing.assert_allclose(draws.mean(axis=(0, 1, 3)), pixels.ravel() / 255, atol=0.05)
  assert draws[..., 0, :].max() == 0.0 and draws[..., 4, :].min() == 1.0
  # Fresh noise every step: the same image is binarised differently.
  assert not np.array_equal(draws[:8], draws[8:16])


def test_uniform_dequantisation_bounds():
  pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  images = np.repeat(pixels, 4, axis=0)
  draws = np.concatenate(_take(data.train_dataset(images, 4, seed=0, binary=False), 20))
  p = np.broadcast_to(pixels, draws.shape).astype(np.float64)
  assert np.all(draws >= p / 256) and np.all(draws < (p + 1) / 256)
  assert abs((draws * 256 - p).mean() - 0.5) < 0.02


def test_epoch_covers_each_example_once_and_reshuffles():
  images = _index_images(14)  # B = 4: 3 steps per epoch, 2 examples dropped.
  batches = _take(data.train_dataset(images, 4, seed=0, binary=False), 6)
  epochs = [np.concatenate([_decode_indices(b) for b in batches[i : i + 3]]) for i in (0, 3)]
  for seen in epochs:
    assert len(set(seen)) == 12 and set(seen) <= set(range(14))
  assert not np.array_equal(epochs[0], epochs[1])

  exact = _take(data.train_dataset(_index_images(12), 4, seed=5, binary=False), 3)
  assert sorted(np.concatenate([_decode_indices(b) for b in exact])) == list(range(12))


def test_resume_reproduces_uninterrupted_run():
  images = data.load_splits("synthetic", synthetic_num_examples=32).train
  full = _take(data.train_dataset(images, 8, seed=1, binary=True), 9)
  for k in (1, 3, 5):  # 3 steps per epoch: mid-epoch and epoch boundaries.
    resumed = _take(data.train_dataset(images, 8, seed=1, binary=True, start_step=k), 9 - k)
    for x, y in zip(full[k:], resumed):
      np.testing.assert_array_equal(x, y)


def test_bad_arguments_are_data_errors():
  images = _index_images(8)
  with pytest.raises(data.DataError, match="fewer than global_batch_size"):
    data.train_dataset(_index_images(3), 4, seed=0, binary=False)
  with pytest.raises(data.DataError, match="global_batch_size must be an int"):
    data.train_dataset(images, True, seed=0, binary=False)
  with pytest.raises(data.DataError, match="start_step must be an int"):
    data.train_dataset(images, 4, seed=0, binary=False, start_step=-1)
  with pytest.raises(data.DataError, match="images must be uint8"):
    data.train_dataset(images.astype(np.float32), 4, seed=0, binary=False)
  with pytest.raises(data.DataError, match="batch_size must be an int"):
    data.eval_dataset(images, 0, binary=True)
  with pytest.raises(data.DataError, match="to_float expects uint8"):
    data.to_float(images.astype(np.float32), True)


def test_input_context_replicas_and_pipelines():
  images = data.load_splits(
    "synthetic", synthetic_num_examples=64, synthetic_image_shape=(6, 6, 3)
  ).train
  single = _take(data.train_dataset(images, 8, seed=2, binary=False), 3)

  ctx = tf.distribute.InputContext(
    num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2
  )
  replicas = _take(data.train_dataset(images, 8, seed=2, binary=False, input_context=ctx), 6)
  assert replicas[0].shape == (4, 6, 6, 3)
  for step in range(3):
    np.testing.assert_array_equal(np.concatenate(replicas[2 * step : 2 * step + 2]), single[step])

  for replicas_in_sync, per_pipeline in ((2, 1), (4, 2)):
    for pipeline in (0, 1):
      ctx = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=replicas_in_sync
      )
      out = _take(
        data.train_dataset(images, 8, seed=2, binary=False, start_step=1, input_context=ctx),
        2 * per_pipeline,
      )
      rows = np.concatenate(out[:per_pipeline])
      np.testing.assert_array_equal(rows, single[1][4 * pipeline : 4 * pipeline + 4])

  ctx = tf.distribute.InputContext(num_replicas_in_sync=3)
  with pytest.raises(data.DataError, match="not divisible"):
    data.train_dataset(images, 8, seed=2, binary=False, input_context=ctx)
  ctx = tf.distribute.InputContext(num_input_pipelines=3, num_replicas_in_sync=4)
  with pytest.raises(data.DataError, match="cannot be split evenly"):
    data.train_dataset(images, 8, seed=2, binary=False, input_context=ctx)


# --- eval_dataset / to_float ----------------------------------------------------


def test_eval_dataset_keeps_remainder_and_maps_values():
  images = np.random.RandomState(0).randint(0, 256, size=(7, 3, 3, 1)).astype(np.uint8)
  natural = _take(data.eval_dataset(images, 3, binary=False), 10)
  assert [len(b) for b in natural] == [3, 3, 1]
  np.testing.assert_allclose(np.concatenate(natural), (images + 0.5) / 256, rtol=1e-6)
  probs = np.concatenate(_take(data.eval_dataset(images, 3, binary=True), 10))
  np.testing.assert_allclose(probs, images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(probs, data.to_float(images, True))
  np.testing.assert_array_equal(probs, data.to_unit_range(images))
  np.testing.assert_array_equal(np.concatenate(natural), data.to_float(images, False))
  np.testing.assert_array_equal(data.to_float(tf.constant(images), True).numpy(), probs)

  fixed = (images > 127).astype(np.uint8)  # Already binarised: stays 0 / 1.
  binarized = np.concatenate(_take(data.eval_dataset(fixed, 4, True), 10))
  np.testing.assert_array_equal(binarized, fixed.astype(np.float32))
  np.testing.assert_array_equal(data.to_float(fixed, True), binarized)


def test_to_float_tensor_in_a_graph_matches_numpy():
  images = _grey_images()
  fixed = (images > 127).astype(np.uint8)
  for binary in (True, False):
    convert = tf.function(lambda x, binary=binary: data.to_float(x, binary))
    for array in (images, fixed):
      out = convert(tf.constant(array)).numpy()
      assert out.tobytes() == data.to_float(array, binary).tobytes()
