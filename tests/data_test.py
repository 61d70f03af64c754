"""Tests for asvae_tf.data: split loading (synthetic, IDX, CIFAR, npz, TFDS
failure) and the determinism / resume / distribution contract of the pipelines."""

import gzip
import hashlib
import pathlib
import pickle
import struct
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import data

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


# --- helpers -----------------------------------------------------------------


def _idx_bytes(images):
  n, rows, cols = images.shape
  return struct.pack(">IIII", 0x803, n, rows, cols) + images.tobytes()


def _write_idx(path, images, gz):
  raw = _idx_bytes(images)
  path.write_bytes(gzip.compress(raw) if gz else raw)


def _write_cifar(folder, num_per_batch=3):
  """Tiny CIFAR python batches; image i of the whole set has R channel = i."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.RandomState(0)
  names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
  chw = {}
  for b, name in enumerate(names):
    images = rng.randint(0, 256, size=(num_per_batch, 3, 32, 32)).astype(np.uint8)
    chw[name] = images
    with open(folder / name, "wb") as f:
      pickle.dump({b"data": images.reshape(num_per_batch, -1), b"labels": [b] * num_per_batch}, f)
  return chw


def _take(ds, n):
  return [x.numpy() for x in ds.take(n)]


def _index_images(num):
  """[num, 1, 1, 1] images whose single pixel is the example index."""
  return np.arange(num, dtype=np.uint8).reshape(num, 1, 1, 1)


def _decode_indices(batch):
  """Example indices of dequantised `_index_images` rows (floor(x * 256))."""
  return np.floor(batch.reshape(len(batch)) * 256).astype(int)


# --- load_splits: synthetic ----------------------------------------------------


def test_synthetic_splits_shapes_dtypes_and_determinism():
  a = data.load_splits("synthetic", synthetic_num_examples=64)
  b = data.load_splits("synthetic", synthetic_num_examples=64)
  c = data.load_splits("synthetic", synthetic_num_examples=64, synthetic_seed=1)
  assert a.image_shape == (28, 28, 1) and a.binary
  assert (len(a.train), len(a.validation), len(a.test)) == (48, 8, 8)
  for arr in (a.train, a.validation, a.test, a.test_binarized):
    assert arr.dtype == np.uint8 and arr.shape[1:] == (28, 28, 1)
  assert set(np.unique(a.test_binarized)) <= {0, 1}
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


def test_unknown_name_and_bad_validation_size():
  with pytest.raises(data.DataError, match="allowed: mnist, cifar10"):
    data.load_splits("fashion")
  with pytest.raises(data.DataError, match="leaves no training data"):
    data.load_splits("synthetic", synthetic_num_examples=16, validation_size=14)
  with pytest.raises(data.DataError, match="validation_size"):
    data.load_splits("synthetic", validation_size=-1)


def test_gin_binding():
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


# --- load_splits: MNIST IDX ----------------------------------------------------


def test_mnist_idx_full_layout_gz_and_plain(tmp_path):
  rng = np.random.RandomState(0)
  train = rng.randint(0, 256, size=(20, 28, 28)).astype(np.uint8)
  test = rng.randint(0, 256, size=(6, 28, 28)).astype(np.uint8)
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, gz=True)
  _write_idx(tmp_path / "t10k-images-idx3-ubyte", test, gz=False)
  splits = data.load_splits("mnist", local_dir=str(tmp_path), validation_size=5)
  assert splits.binary and splits.image_shape == (28, 28, 1)
  np.testing.assert_array_equal(splits.train[..., 0], train[:15])
  np.testing.assert_array_equal(splits.validation[..., 0], train[15:])
  np.testing.assert_array_equal(splits.test[..., 0], test)
  flat = test.reshape(6, -1)
  expected = np.random.RandomState(0).uniform(size=flat.shape) < flat / 255.0
  np.testing.assert_array_equal(splits.test_binarized.reshape(6, -1), expected.astype(np.uint8))
  # The full-MNIST default holds out 10000, more than this tiny file has.
  with pytest.raises(data.DataError, match="validation_size=10000"):
    data.load_splits("mnist", local_dir=str(tmp_path))


@pytest.mark.parametrize("corruption", ["magic", "truncated", "bad_gzip"])
def test_mnist_idx_corrupt_file(tmp_path, corruption):
  images = np.zeros((4, 28, 28), np.uint8)
  raw = _idx_bytes(images)
  if corruption == "magic":
    raw = struct.pack(">I", 0x801) + raw[4:]
  elif corruption == "truncated":
    raw = raw[:-10]
  name = "t10k-images-idx3-ubyte"
  if corruption == "bad_gzip":
    raw, name = gzip.compress(raw)[:-20], name + ".gz"
  (tmp_path / name).write_bytes(raw)
  _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=False)
  with pytest.raises(data.DataError, match=name):
    data.load_splits("mnist", local_dir=str(tmp_path), validation_size=1)


def test_mnist10k_checksum_mismatch_is_an_error(tmp_path):
  fake = np.random.RandomState(1).randint(0, 256, size=(10000, 28, 28))
  _write_idx(tmp_path / "t10k-images-idx3-ubyte", fake.astype(np.uint8), gz=False)
  with pytest.raises(data.DataError, match="sha256"):
    data.load_splits("mnist", local_dir=str(tmp_path))


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"{SHARED_MNIST} not present")
def test_mnist10k_protocol_on_real_files():
  splits = data.load_splits("mnist", local_dir=str(SHARED_MNIST))
  assert (len(splits.train), len(splits.validation), len(splits.test)) == (7000, 1000, 2000)
  assert "MNIST-10k" in splits.note and "\n" not in splits.note
  with gzip.open(SHARED_MNIST / "t10k-images-idx3-ubyte.gz") as f:
    raw = f.read()
  first = np.frombuffer(raw, np.uint8, count=784, offset=16).reshape(28, 28)
  np.testing.assert_array_equal(splits.train[0, ..., 0], first)
  last_test = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[-1]
  np.testing.assert_array_equal(splits.test[-1, ..., 0], last_test)
  digest = hashlib.sha256(splits.test_binarized.reshape(2000, 784).tobytes()).hexdigest()
  assert digest == data.MNIST10K_TEST_BINARIZED_SHA256
  assert digest.startswith("8004001ea78f")


# --- load_splits: CIFAR, npz, bad local_dir, TFDS ------------------------------


@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-py"])
def test_cifar_python_batches_chw_to_hwc(tmp_path, subdir):
  chw = _write_cifar(tmp_path / subdir if subdir else tmp_path)
  splits = data.load_splits("cifar10", local_dir=str(tmp_path), validation_size=2)
  assert not splits.binary and splits.test_binarized is None
  assert (len(splits.train), len(splits.validation), len(splits.test)) == (13, 2, 3)
  # Pixel (row 5, col 7) of channel G (1) of image 1 in data_batch_1.
  assert splits.train[1, 5, 7, 1] == chw["data_batch_1"][1, 1, 5, 7]
  assert splits.test[2, 31, 0, 2] == chw["test_batch"][2, 2, 31, 0]
  # Validation is the end of data_batch_5.
  np.testing.assert_array_equal(splits.validation, chw["data_batch_5"][1:].transpose(0, 2, 3, 1))


def test_cifar_missing_batch_is_an_error(tmp_path):
  _write_cifar(tmp_path)
  (tmp_path / "data_batch_3").unlink()
  with pytest.raises(data.DataError, match="data_batch_3"):
    data.load_splits("cifar10", local_dir=str(tmp_path), validation_size=2)


def test_npz_loading(tmp_path):
  rng = np.random.RandomState(0)
  x_train = rng.randint(0, 256, size=(10, 6, 6, 3)).astype(np.uint8)
  x_test = rng.randint(0, 256, size=(4, 6, 6, 3)).astype(np.uint8)
  np.savez(tmp_path / "imagenet64.npz", x_train=x_train, x_test=x_test)
  splits = data.load_splits("imagenet64", local_dir=str(tmp_path), validation_size=3)
  assert not splits.binary and splits.image_shape == (6, 6, 3)
  np.testing.assert_array_equal(splits.train, x_train[:7])
  np.testing.assert_array_equal(splits.validation, x_train[7:])
  np.testing.assert_array_equal(splits.test, x_test)

  # Rank-3 arrays get C = 1; a given x_validation is used as is.
  gray = tmp_path / "gray"
  gray.mkdir()
  np.savez(
    gray / "any.npz",
    x_train=x_train[..., 0],
    x_test=x_test[..., 0],
    x_validation=x_test[:2, ..., 0],
  )
  splits = data.load_splits("mnist", local_dir=str(gray))
  assert splits.binary and splits.image_shape == (6, 6, 1)
  assert (len(splits.train), len(splits.validation)) == (10, 2)
  assert splits.test_binarized.shape == (4, 6, 6, 1)


def test_npz_bad_dtype_is_an_error(tmp_path):
  np.savez(
    tmp_path / "x.npz",
    x_train=np.zeros((4, 6, 6, 3), np.float32),
    x_test=np.zeros((2, 6, 6, 3), np.float32),
  )
  with pytest.raises(data.DataError, match="float32.*expected uint8"):
    data.load_splits("imagenet64", local_dir=str(tmp_path), validation_size=1)


def test_bad_local_dir(tmp_path):
  with pytest.raises(data.DataError, match="does not exist"):
    data.load_splits("mnist", local_dir=str(tmp_path / "nope"))
  with pytest.raises(data.DataError, match="none of the files.*t10k-images"):
    data.load_splits("mnist", local_dir=str(tmp_path))
  a_file = tmp_path / "file.txt"
  a_file.write_text("x")
  with pytest.raises(data.DataError, match="not a directory"):
    data.load_splits("cifar10", local_dir=str(a_file))


def test_tfds_without_local_data_fails_fast(tmp_path):
  start = time.time()
  with pytest.raises(data.DataError) as info:
    data.load_splits("mnist", tfds_data_dir=str(tmp_path))
  assert time.time() - start < 30
  message = str(info.value).splitlines()[0]  # gin appends its call location.
  assert "dataset.local_dir" in message and "dataset.download=True" in message
  assert "'mnist'" in message


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


def test_batch_larger_than_data_is_an_error():
  with pytest.raises(data.DataError, match="fewer than global_batch_size"):
    data.train_dataset(_index_images(3), 4, seed=0, binary=False)


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


# --- eval_dataset / to_float ----------------------------------------------------


def test_eval_dataset_keeps_remainder_and_maps_values():
  images = np.random.RandomState(0).randint(0, 256, size=(7, 3, 3, 1)).astype(np.uint8)
  natural = _take(data.eval_dataset(images, 3, binary=False), 10)
  assert [len(b) for b in natural] == [3, 3, 1]
  np.testing.assert_allclose(np.concatenate(natural), (images + 0.5) / 256, rtol=1e-6)
  probs = np.concatenate(_take(data.eval_dataset(images, 3, binary=True), 10))
  np.testing.assert_allclose(probs, images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(probs, data.to_float(images, True))
  np.testing.assert_array_equal(np.concatenate(natural), data.to_float(images, False))
  np.testing.assert_array_equal(data.to_float(tf.constant(images), True).numpy(), probs)

  fixed = (images > 127).astype(np.uint8)  # Already binarised: stays 0 / 1.
  binarized = np.concatenate(_take(data.eval_dataset(fixed, 4, True), 10))
  np.testing.assert_array_equal(binarized, fixed.astype(np.float32))
  np.testing.assert_array_equal(data.to_float(fixed, True), binarized)
