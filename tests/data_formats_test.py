"""Tests for asvae_tf.data.formats (IDX, CIFAR-10 pickles, npz readers, find_first) and
asvae_tf.data.local (which files of dataset.local_dir make which splits)."""

import gzip
import hashlib
import pathlib
import pickle
import struct

import numpy as np
import pytest

from asvae_tf import data
from asvae_tf.data import formats

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def _idx_bytes(images):
  n, rows, cols = images.shape
  return struct.pack(">IIII", 0x803, n, rows, cols) + images.tobytes()


def _write_idx(path, images, gz):
  raw = _idx_bytes(images)
  path.write_bytes(gzip.compress(raw) if gz else raw)


def _write_cifar(folder, num_per_batch=3):
  """Tiny CIFAR python batches with random pixels; returns {file name: CHW images}."""
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


# --- readers -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_images_and_labels(tmp_path, gz):
  images = np.random.RandomState(0).randint(0, 256, size=(3, 5, 4)).astype(np.uint8)
  _write_idx(tmp_path / "x", images, gz)
  out = data.read_idx_images(tmp_path / "x")
  assert out.dtype == np.uint8 and out.shape == (3, 5, 4, 1)
  np.testing.assert_array_equal(out[..., 0], images)

  raw = struct.pack(">II", 0x801, 4) + bytes([0, 9, 3, 7])
  (tmp_path / "y").write_bytes(gzip.compress(raw) if gz else raw)
  np.testing.assert_array_equal(data.read_idx_labels(str(tmp_path / "y")), [0, 9, 3, 7])


@pytest.mark.parametrize(
  "raw, match",
  [
    (struct.pack(">II", 0x801, 2) + bytes([1, 12]), "label 12 > 9"),
    (struct.pack(">II", 0x803, 2) + bytes([1, 2]), "magic"),
    (struct.pack(">II", 0x801, 3) + bytes([1, 2]), "corrupt"),
    (b"abc", "corrupt"),
  ],
)
def test_read_idx_labels_corrupt(tmp_path, raw, match):
  (tmp_path / "labels").write_bytes(raw)
  with pytest.raises(data.DataError, match=match):
    data.read_idx_labels(tmp_path / "labels")


def test_missing_file_is_a_data_error(tmp_path):
  with pytest.raises(data.DataError, match="unreadable"):
    data.read_idx_images(tmp_path / "nope")


def test_find_first(tmp_path):
  names = data.MNIST_TEST_LABEL_FILES
  assert formats.find_first(tmp_path, names) is None
  assert formats.find_first(str(tmp_path), names) is None
  with pytest.raises(
    data.DataError, match=r"has no t10k labels file \(t10k-labels-idx1-ubyte\[.gz\]\)"
  ):
    formats.find_first(str(tmp_path), names, what="t10k labels")
  (tmp_path / names[2]).mkdir()  # A folder with a file's name does not count.
  (tmp_path / names[3]).write_bytes(b"")
  (tmp_path / names[1]).write_bytes(b"")
  assert formats.find_first(tmp_path, names) == tmp_path / names[1]
  found = formats.find_first(str(tmp_path), names, what="t10k labels")
  assert isinstance(found, str) and found == str(tmp_path / names[1])
  # Given entries restrict the search to them.
  assert formats.find_first(tmp_path, names, entries=[names[3]]) == tmp_path / names[3]


def test_read_npz_rank3_and_errors(tmp_path):
  x = np.zeros((4, 3, 3), np.uint8)
  np.savez(tmp_path / "a.npz", x_train=x, x_test=x[:2])
  train, test, validation = data.read_npz(tmp_path / "a.npz")
  assert train.shape == (4, 3, 3, 1) and test.shape == (2, 3, 3, 1) and validation is None
  np.savez(tmp_path / "b.npz", x_train=x)
  with pytest.raises(data.DataError, match="expected uint8 x_train and x_test"):
    data.read_npz(tmp_path / "b.npz")
  np.savez(tmp_path / "c.npz", x_train=x, x_test=np.zeros((2, 3, 4), np.uint8))
  with pytest.raises(data.DataError, match="image shapes differ"):
    data.read_npz(tmp_path / "c.npz")
  (tmp_path / "d.npz").write_bytes(b"junk")
  with pytest.raises(data.DataError, match="unreadable or corrupt"):
    data.read_npz(tmp_path / "d.npz")


# --- local_dir: MNIST IDX --------------------------------------------------------


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


def test_mnist_train_without_test_is_an_error(tmp_path):
  _write_idx(tmp_path / "train-images.idx3-ubyte", np.zeros((3, 28, 28), np.uint8), gz=False)
  with pytest.raises(data.DataError, match="train-images.idx3-ubyte but no t10k"):
    data.load_splits("mnist", local_dir=str(tmp_path), validation_size=1)


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


def test_mnist10k_needs_10000_images(tmp_path):
  _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8), gz=False)
  with pytest.raises(data.DataError, match="needs the 10000 28x28 t10k images"):
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
  labels = data.read_idx_labels(data.find_first(SHARED_MNIST, data.MNIST_TEST_LABEL_FILES))
  assert labels.shape == (10000,) and labels.max() == 9


# --- local_dir: CIFAR, npz, bad folders ----------------------------------------


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


def test_cifar_missing_or_corrupt_batch_is_an_error(tmp_path):
  _write_cifar(tmp_path)
  (tmp_path / "data_batch_3").unlink()
  with pytest.raises(data.DataError, match="data_batch_3"):
    data.load_splits("cifar10", local_dir=str(tmp_path), validation_size=2)
  (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
  with pytest.raises(data.DataError, match="data_batch_3 is unreadable or corrupt"):
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
  # Several .npz files: the one named after the dataset wins.
  np.savez(tmp_path / "other.npz", x_train=x_test, x_test=x_test)
  again = data.load_splits("imagenet64", local_dir=str(tmp_path), validation_size=3)
  np.testing.assert_array_equal(again.train, x_train[:7])
  with pytest.raises(data.DataError, match="several .npz files"):
    data.load_splits("cifar10", local_dir=str(tmp_path), validation_size=3)

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
  with pytest.raises(data.DataError, match="x_validation with 2 images"):
    data.load_splits("mnist", local_dir=str(gray), validation_size=3)


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
