"""Tests for asvae_tf.data.sources and .splits: load_splits on synthetic data, argument
errors, the Splits invariants, the fast TFDS failure and dataset.download='auto' (the
reachability probe is patched both ways: no test needs internet or downloads)."""

import os
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from asvae_tf import data
from asvae_tf import errors
from asvae_tf.data import sources


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
    data.load_splits("mnist", tfds_data_dir=str(tmp_path), download=False)
  assert time.time() - start < 30
  message = str(info.value).splitlines()[0]  # gin appends its call location.
  assert "dataset.local_dir" in message and "dataset.download='auto' or True" in message
  assert "'mnist'" in message


# --- dataset.download = 'auto' ---------------------------------------------------------


class FakeBuilder:
  """The part of a TFDS builder that load_splits uses; download_and_prepare is recorded."""

  name = "mnist"

  def __init__(self, prepared=False):
    self.prepared, self.downloads = prepared, 0

  def is_prepared(self):
    return self.prepared

  def download_and_prepare(self):
    self.downloads += 1
    self.prepared = True

  @property
  def info(self):
    sizes = {"train": 16, "test": 8}
    return type(
      "Info", (), {"splits": {k: type("S", (), {"num_examples": n}) for k, n in sizes.items()}}
    )

  def as_dataset(self, split, shuffle_files):
    assert self.prepared and not shuffle_files
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    n = self.info.splits[split].num_examples
    images = np.full((n, 28, 28, 1), 7 if split == "train" else 9, np.uint8)
    return tf.data.Dataset.from_tensor_slices({"image": images})


@pytest.fixture
def fake_tfds(monkeypatch):
  """tfds.builder returns one FakeBuilder; the probe answers `probe.online` and counts calls."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = FakeBuilder()
  probe = type("Probe", (), {"online": True, "calls": 0})()

  def reachable(*args, **kwargs):
    del args, kwargs
    probe.calls += 1
    return probe.online

  monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: builder)
  monkeypatch.setattr(sources, "tfds_reachable", reachable)
  return builder, probe


def test_download_auto_is_the_default_and_downloads_when_the_probe_answers(fake_tfds):
  builder, probe = fake_tfds
  splits = data.load_splits("mnist", validation_size=10)  # the default is download='auto'
  assert (probe.calls, builder.downloads) == (1, 1)
  assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 10, 8)
  assert splits.train.max() == 7 and splits.test.max() == 9
  # Prepared already: no probe, no download.
  data.load_splits("mnist", validation_size=10, download="auto")
  assert (probe.calls, builder.downloads) == (1, 1)


def test_download_auto_offline_fails_fast_naming_local_dir(fake_tfds):
  builder, probe = fake_tfds
  probe.online = False
  start = time.time()
  with pytest.raises(errors.DataError) as info:
    data.load_splits("mnist", tfds_data_dir="/nonexistent/tfds")
  assert time.time() - start < 30
  assert (probe.calls, builder.downloads) == (1, 0)
  message = str(info.value).splitlines()[0]  # gin appends its call location.
  assert "dataset.local_dir" in message
  assert "dataset.download='auto'" in message and "'mnist'" in message


def test_download_true_and_false_keep_their_meaning(fake_tfds):
  builder, probe = fake_tfds
  probe.online = False  # True downloads without asking the probe
  data.load_splits("mnist", validation_size=10, download=True)
  assert (probe.calls, builder.downloads) == (0, 1)
  data.load_splits("mnist", validation_size=10, download=True)  # TFDS's own no-op when prepared
  assert builder.downloads == 2
  builder.prepared = False
  with pytest.raises(errors.DataError, match="dataset.local_dir"):
    data.load_splits("mnist", download=False)  # never downloads: as_dataset fails
  assert (probe.calls, builder.downloads) == (0, 2)


@pytest.mark.parametrize("bad", ["yes", "Auto", "true", 1, 0, None])
def test_download_other_values_are_config_errors(bad):
  with pytest.raises(errors.ConfigError, match="dataset.download must be 'auto', True or False"):
    data.load_splits("synthetic", download=bad)


def test_cli_offline_exits_2_with_one_line(fake_tfds, tmp_path, capsys):
  import gin  # pylint: disable=g-import-not-at-top

  from asvae_tf import cli  # pylint: disable=g-import-not-at-top

  fake_tfds[1].online = False
  gin.clear_config()
  try:
    code = cli.run_training(["mnist.gin"], [], str(tmp_path / "m"))
  finally:
    gin.clear_config()
  lines = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(lines) == 1, lines
  assert lines[0].startswith("asvae_tf: error: ") and "dataset.local_dir" in lines[0]
  assert not os.path.exists(tmp_path / "m")


def test_tfds_reachable_is_bounded_and_reads_answers(monkeypatch):
  def answer(error):
    def urlopen(request, timeout):
      assert request.get_method() == "HEAD" and timeout == 0.5
      if error == "hang":
        time.sleep(3)
      raise error

    return urlopen

  http_404 = urllib.error.HTTPError(sources.PROBE_URL, 404, "Not Found", {}, None)
  monkeypatch.setattr(urllib.request, "urlopen", answer(http_404))
  assert sources.tfds_reachable(timeout=0.5)  # any HTTP status: reachable
  monkeypatch.setattr(urllib.request, "urlopen", answer(urllib.error.URLError("no route")))
  assert not sources.tfds_reachable(timeout=0.5)
  monkeypatch.setattr(urllib.request, "urlopen", answer("hang"))
  start = time.time()
  assert not sources.tfds_reachable(timeout=0.5)  # a hanging lookup cannot hold the caller
  assert time.time() - start < 2
