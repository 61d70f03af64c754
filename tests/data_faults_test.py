"""Data faults (issue 16, item 7): truncated / corrupt IDX and .npz files, label/image
count mismatches and non-pixel .npz values each raise ONE DataError line naming the file
and the problem; through tools/train.py they exit 2 with one `asvae_tf: error:` line and
leave --model_dir untouched."""

import gzip
import hashlib
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from asvae_tf import data
from conftest import ROOT, TINY_MODEL

TRAIN_PY = os.path.join(ROOT, "tools", "train.py")
MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")


def _images(n=6, rows=28, cols=28, seed=0):
  return np.random.RandomState(seed).randint(0, 256, size=(n, rows, cols)).astype(np.uint8)


def _idx3(images):
  n, rows, cols = images.shape
  return struct.pack(">IIII", 0x803, n, rows, cols) + images.tobytes()


def _idx1(labels):
  return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def _write(path, raw, gz=False):
  path.write_bytes(gzip.compress(raw) if gz else raw)
  return path


def _error(fn, *args):
  """The message of the DataError fn(*args) raises, checked to be one line.

  (Gin appends "In call to configurable 'dataset' ..." on a line of its own to errors of
  load_splits; the CLI folds that into its one line. It is not part of the message.)
  """
  with pytest.raises(data.DataError) as info:
    fn(*args)
  message = str(info.value).split("\n  In call to configurable 'dataset'")[0]
  assert message and "\n" not in message, message
  return message


# ---- IDX --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_truncated_idx_image_file(tmp_path, gz):
  raw = _idx3(_images(5, 4, 4))
  path = _write(tmp_path / "t10k-images-idx3-ubyte", raw[:40], gz)  # 24 of 80 pixel bytes
  message = _error(data.read_idx_images, path)
  assert str(path) in message and "truncated" in message
  assert "24 bytes after the 16-byte header" in message
  assert "declares 5 images of 4x4 = 80 bytes" in message
  assert ("after gunzip" in message) == gz
  # Cut inside the header.
  _write(path, raw[:10], gz)
  assert "10 bytes, shorter than the 16-byte IDX header" in _error(data.read_idx_images, path)


def test_truncated_gzip_stream(tmp_path):
  packed = gzip.compress(_idx3(_images(50)))
  path = _write(tmp_path / "t10k-images-idx3-ubyte.gz", packed[: len(packed) // 2])
  message = _error(data.read_idx_images, path)
  assert str(path) in message and "truncated, its gzip stream ends" in message
  packed = gzip.compress(_idx1([1] * 500))
  labels = _write(tmp_path / "t10k-labels-idx1-ubyte.gz", packed[: len(packed) // 2])
  message = _error(data.read_idx_labels, labels)
  assert message.startswith(f"MNIST label file {labels} is corrupt: truncated, its gzip")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_truncated_idx_label_file(tmp_path, gz):
  path = _write(tmp_path / "t10k-labels-idx1-ubyte", _idx1([3, 1, 4, 1, 5])[:10], gz)
  message = _error(data.read_idx_labels, path)
  assert message.startswith(f"MNIST label file {path} is corrupt: truncated, 2 bytes")
  assert "declares 5 labels = 5 bytes" in message
  assert "magic" not in message  # The old message mixed the magic number into this case.


def test_trailing_bytes_and_empty_idx(tmp_path):
  path = _write(tmp_path / "x", _idx3(_images(2, 3, 3)) + b"\0\0\0")
  assert "3 bytes beyond the 2 images of 3x3" in _error(data.read_idx_images, path)
  _write(path, _idx1([1, 2]) + b"\0")
  assert "1 bytes beyond the 2 labels" in _error(data.read_idx_labels, path)
  _write(path, _idx3(np.zeros((0, 28, 28), np.uint8)))
  assert f"{path} holds no images" in _error(data.read_idx_images, path)


def test_bad_idx_magic_numbers(tmp_path):
  path = _write(tmp_path / "x", b"<!DOCTYPE html><html>not mnist</html>")
  message = _error(data.read_idx_images, path)
  assert f"{path} is not an idx3 unsigned-byte image file" in message
  assert "magic number 0x3c21444f, expected 0x00000803" in message
  # Image and label files swapped: the message says which kind each one is.
  labels = _write(tmp_path / "labels", _idx1([1, 2, 3] * 7))
  images = _write(tmp_path / "images", _idx3(_images(3, 2, 2)))
  assert "(it is an idx1 label file)" in _error(data.read_idx_images, labels)
  message = _error(data.read_idx_labels, images)
  assert f"{images} is not an idx1 unsigned-byte label file" in message
  assert "(it is an idx3 image file)" in message


def test_label_image_count_mismatch(tmp_path):
  images = _write(tmp_path / "t10k-images-idx3-ubyte", _idx3(_images(6)))
  labels = _write(tmp_path / "t10k-labels-idx1-ubyte.gz", _idx1([1] * 5), gz=True)
  message = _error(data.read_labeled_idx, images, labels)
  assert f"{labels} holds 5 labels but {images} holds 6 images" in message
  assert message.startswith("label/image count mismatch")
  # Matching counts read both.
  _write(labels, _idx1([7, 0, 1, 2, 3, 9]))
  x, y = data.read_labeled_idx(images, labels)
  assert x.shape == (6, 28, 28, 1) and y.tolist() == [7, 0, 1, 2, 3, 9]


def test_local_dir_checks_label_files_next_to_the_images(tmp_path):
  train = _write(tmp_path / "train-images-idx3-ubyte", _idx3(_images(20, seed=1)))
  _write(tmp_path / "t10k-images-idx3-ubyte", _idx3(_images(6)))
  _write(tmp_path / "t10k-labels-idx1-ubyte", _idx1([1] * 6))
  splits = data.load_splits("mnist", local_dir=str(tmp_path), validation_size=5)
  assert len(splits.train) == 15 and len(splits.test) == 6
  labels = _write(tmp_path / "train-labels-idx1-ubyte.gz", _idx1([1] * 19), gz=True)
  message = _error(data.load_splits, "mnist", str(tmp_path), 5)
  assert f"{labels} holds 19 labels but {train} holds 20 images" in message
  _write(labels, _idx1([1] * 20)[:-4], gz=True)  # a truncated label file is caught too
  assert f"{labels} is corrupt: truncated" in _error(data.load_splits, "mnist", str(tmp_path), 5)


def test_load_labeled_mnist_names_the_mismatched_files(tmp_path):
  from asvae_tf.evaluation import feature_nets  # pylint: disable=g-import-not-at-top

  images = _write(tmp_path / "t10k-images-idx3-ubyte", _idx3(_images(6)))
  labels = _write(tmp_path / "t10k-labels-idx1-ubyte", _idx1([1] * 7))
  message = _error(feature_nets.load_labeled_mnist, str(tmp_path))
  assert f"{labels} holds 7 labels but {images} holds 6 images" in message


# ---- npz --------------------------------------------------------------------------


def _npz(path, compressed=False, **arrays):
  (np.savez_compressed if compressed else np.savez)(path, **arrays)
  return path


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "compressed"])
def test_truncated_or_corrupt_npz(tmp_path, compressed):
  x = _images(40, 8, 8)
  path = _npz(tmp_path / "d.npz", compressed, x_train=x, x_test=x[:4])
  raw = path.read_bytes()
  path.write_bytes(raw[: len(raw) // 2])  # cut in the middle: the zip directory is gone
  message = _error(data.read_npz, path)
  assert f"npz file {path} is unreadable or corrupt: not a complete .npz zip archive" in message
  for junk in (b"", b"not a zip at all", b"PK\x03\x04junk"):
    path.write_bytes(junk)
    assert f"npz file {path} is unreadable or corrupt" in _error(data.read_npz, path)
  # Zip directory intact, member data damaged: the CRC check names the member.
  broken = bytearray(raw)
  broken[200:260] = bytes(60)
  path.write_bytes(bytes(broken))
  message = _error(data.read_npz, path)
  assert f"npz file {path} is corrupt: cannot read 'x_train'" in message and "CRC" in message


def test_npy_saved_under_an_npz_name(tmp_path):
  path = tmp_path / "mnist.npz"
  with open(path, "wb") as f:
    np.save(f, _images(4, 8, 8))  # used to escape as a TypeError traceback
  assert f"npz file {path} is a single .npy array, not an .npz archive" in _error(
    data.read_npz, path
  )


def test_npz_missing_keys_and_wrong_dtypes(tmp_path):
  x = _images(4, 8, 8)
  path = _npz(tmp_path / "a.npz", images=x, labels=np.zeros(4))
  assert f"npz file {path} has keys ['images', 'labels']; expected uint8 x_train" in _error(
    data.read_npz, path
  )
  for bad, dtype in ((x > 9, "bool"), (np.array([["ab"]]), "<U2"), (x + 0j, "complex128")):
    _npz(path, x_train=bad, x_test=x)
    message = _error(data.read_npz, path)
    assert f"npz file {path}: x_train has dtype {dtype}; expected uint8 pixels in [0, 255]" in (
      message
    )
  _npz(path, x_train=x, x_test=np.array([object(), None], dtype=object))
  assert f"npz file {path} is corrupt: cannot read 'x_test'" in _error(data.read_npz, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_nan_or_inf(tmp_path, bad):
  x = _images(10, 8, 8).astype(np.float32)
  x[3, 2, 1] = bad
  x[7, 0, 0] = bad
  path = _npz(tmp_path / "nan.npz", x_train=x, x_test=x[:2])
  assert _error(data.read_npz, path) == (
    f"npz file {path}: x_train is float32 with 2 NaN/Inf value(s) (first at index "
    f"(3, 2, 1)); expected uint8 pixels in [0, 255]"
  )


def test_npz_floats_are_refused_even_in_range(tmp_path):
  x = _images(10, 8, 8)
  path = _npz(tmp_path / "f.npz", x_train=x.astype(np.float64), x_test=x)
  message = _error(data.read_npz, path)
  assert f"npz file {path}: x_train is float64 (values 0 to 255)" in message
  assert "floats are not accepted" in message and "scaled" not in message
  _npz(path, x_train=x, x_test=x.astype(np.float32) / 255)
  message = _error(data.read_npz, path)
  assert "x_test is float32 (values 0 to 1)" in message
  assert "looks scaled to [0, 1]: save np.round(x * 255).astype(np.uint8)" in message


@pytest.mark.parametrize(
  "delta, dtype, summary",
  [
    (-1, np.int16, "(int16) has 3 value(s) outside [0, 255] (min -1, max 255"),
    (256, np.int64, "(int64) has 3 value(s) outside [0, 255] (min 0, max 256"),
  ],
)
def test_npz_integers_out_of_range(tmp_path, delta, dtype, summary):
  x = np.full((10, 8, 8), 7, dtype)
  x[0, 0, 0], x[4, 5, 6] = 0, 255
  x[2, 1, 3] = x[2, 1, 4] = x[9, 7, 7] = delta
  path = _npz(tmp_path / "int.npz", x_train=x, x_test=x[:2].astype(np.uint8))
  message = _error(data.read_npz, path)
  assert message == (
    f"npz file {path}: x_train {summary}, first at index (2, 1, 3)); "
    f"expected uint8 pixels in [0, 255]"
  )


def test_npz_integers_in_range_are_converted_exactly(tmp_path):
  x = _images(10, 8, 8)
  path = _npz(tmp_path / "ok.npz", x_train=x.astype(np.int64), x_test=x[:3].astype(np.uint16))
  train, test, validation = data.read_npz(path)
  assert train.dtype == test.dtype == np.uint8 and validation is None
  np.testing.assert_array_equal(train[..., 0], x)
  np.testing.assert_array_equal(test[..., 0], x[:3])


def test_npz_label_count_mismatch_and_empty_splits(tmp_path):
  x = _images(10, 8, 8)
  path = _npz(tmp_path / "y.npz", x_train=x, x_test=x[:4], y_train=np.zeros(10), y_test=[1, 2])
  message = _error(data.read_npz, path)
  assert message == (
    f"npz file {path}: label/image count mismatch: y_test holds 2 labels but x_test holds 4 images"
  )
  _npz(path, x_train=x, x_test=x[:4], y_train=np.zeros(10), y_test=np.zeros((4, 10)))
  assert data.read_npz(path)[1].shape == (4, 8, 8, 1)  # one-hot labels have N rows too
  _npz(path, x_train=x, x_test=x[:0])
  assert f"npz file {path}: x_test holds no images (shape (0, 8, 8, 1))" in _error(
    data.read_npz, path
  )


def test_load_splits_reports_the_npz_fault(tmp_path):
  x = _images(10).astype(np.float32)
  x[0, 0, 0] = np.nan
  path = _npz(tmp_path / "mnist.npz", x_train=x, x_test=x[:2])
  message = _error(data.load_splits, "mnist", str(tmp_path))
  assert message.startswith(f"npz file {path}: x_train is float32 with 1 NaN/Inf")


# ---- end to end: tools/train.py ----------------------------------------------------


def _tree(root):
  """{relative path: (sha256, mtime_ns)} of every file and folder under root."""
  out = {}
  for dirpath, dirnames, files in os.walk(root):
    for name in dirnames + files:
      path = os.path.join(dirpath, name)
      digest = None
      if os.path.isfile(path):
        with open(path, "rb") as f:
          digest = hashlib.sha256(f.read()).hexdigest()
      out[os.path.relpath(path, root)] = (digest, os.stat(path).st_mtime_ns)
  return out


def test_train_py_exits_2_with_one_line_and_leaves_model_dir_untouched(tmp_path):
  # Fault 1: a truncated gzipped t10k file; model_dir does not exist yet.
  idx_dir = tmp_path / "idx"
  idx_dir.mkdir()
  packed = gzip.compress(_idx3(_images(100)))
  truncated = _write(idx_dir / "t10k-images-idx3-ubyte.gz", packed[: len(packed) - 100])
  fresh = tmp_path / "runs" / "fresh"
  # Fault 2: a NaN .npz; model_dir holds an earlier run's files.
  npz_dir = tmp_path / "npz"
  npz_dir.mkdir()
  x = _images(40).astype(np.float32)
  x[1, 2, 3] = np.nan
  nan_npz = _npz(npz_dir / "data.npz", x_train=x, x_test=x[:8])
  used = tmp_path / "runs" / "used"
  (used / "checkpoints").mkdir(parents=True)
  (used / "operative_config.gin").write_text("train.num_steps = 2\n")
  (used / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
  runs_before, used_before = sorted(os.listdir(tmp_path / "runs")), _tree(used)

  base = TINY_MODEL + [
    "model.objective = 'vae'",
    "posterior.kind = 'gaussian'",
    "posterior.num_flows = 0",
    "train.strategy = 'default'",
    "dataset.name = 'mnist'",
  ]
  cases = [
    (truncated, fresh, f"MNIST image file {truncated} is corrupt: truncated"),
    (nan_npz, used, f"npz file {nan_npz}: x_train is float32 with 1 NaN/Inf value(s)"),
  ]
  procs = []
  try:
    for bad_file, model_dir, _ in cases:  # both at once: one TF start-up's wall time
      bindings = base + [f"dataset.local_dir = '{bad_file.parent}'"]
      procs.append(
        subprocess.Popen(
          [sys.executable, TRAIN_PY, f"--gin_file={MNIST_GIN}", f"--model_dir={model_dir}"]
          + [f"--gin_param={b}" for b in bindings],
          cwd=ROOT,
          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1"),
          stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE,
          text=True,
        )
      )
    stderrs = [p.communicate(timeout=120)[1] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for (_, _, needle), proc, stderr in zip(cases, procs, stderrs):
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("asvae_tf: error:")]
    assert len(errors) == 1 and needle in errors[0], stderr[-3000:]
    others = [
      line
      for line in stderr.splitlines()
      if "error" in line.lower()
      and not line.startswith(("asvae_tf: error:", "W0", "I0", "E0", "WARNING:", "INFO:"))
    ]
    assert not others, others
  assert not fresh.exists()
  assert sorted(os.listdir(tmp_path / "runs")) == runs_before
  assert _tree(used) == used_before  # same files, same bytes, same mtimes
