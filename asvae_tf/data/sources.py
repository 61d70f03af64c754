"""Where splits come from: `load_splits` (gin name `dataset`) and its sources.

* TFDS (`dataset.download`: 'auto' downloads when one quick probe reaches TFDS's host),
* local files (`dataset.local_dir`, see `asvae_tf.data.local`),
* a deterministic synthetic dataset for tests (`synthetic_images`).
"""

import threading
import urllib.error
import urllib.request

import gin
import numpy as np
import tensorflow as tf

from asvae_tf.data.checks import is_int
from asvae_tf.data.local import EXPECTED_LOCAL_FILES, load_local
from asvae_tf.data.splits import DEFAULT_VALIDATION_SIZE, Splits, make_splits
from asvae_tf.errors import ConfigError, DataError, one_line

DATASET_NAMES = ("mnist", "cifar10", "imagenet64", "synthetic")

# TFDS builder and the (train, test) split names used for each dataset. The
# 64x64 ImageNet of the paper is van den Oord et al.'s downsampled ImageNet
# (image-net.org/small); its official "validation" split is the test set.
TFDS_BUILDERS = {
  "mnist": ("mnist", "train", "test"),
  "cifar10": ("cifar10", "train", "test"),
  "imagenet64": ("downsampled_imagenet/64x64", "train", "validation"),
}

# dataset.download='auto' sends one HEAD request here (TFDS's download host: its prepared
# datasets and MNIST's source files) and downloads only when it answers within the timeout.
PROBE_URL = "https://storage.googleapis.com/tfds-data/"
PROBE_TIMEOUT_SECONDS = 5.0


@gin.configurable("dataset")
def load_splits(
  name=gin.REQUIRED,
  local_dir=None,
  validation_size=None,
  download="auto",
  synthetic_num_examples=256,
  synthetic_image_shape=(28, 28, 1),
  synthetic_seed=0,
  tfds_data_dir=None,
) -> Splits:
  """Loads a dataset as train / validation / test uint8 arrays.

  Args:
    name: one of DATASET_NAMES.
    local_dir: read local files from this folder instead of TFDS (MNIST IDX
      files, CIFAR-10 python batches, or one .npz with x_train / x_test).
      With only MNIST's t10k files present, the MNIST-10k protocol is used.
    validation_size: number of training examples held out from the end of the
      training data; None selects the dataset default (MNIST 10000, MNIST-10k
      1000, CIFAR-10 5000, ImageNet64 10000, synthetic N // 8); 0 is allowed.
    download: whether TFDS may download and prepare a dataset that is not already in
      its data_dir: 'auto' (one reachability probe, `tfds_reachable`, then download;
      unreachable: a DataError naming dataset.local_dir within seconds), True (always
      download, needs internet) or False (never: fail fast when not prepared).
    synthetic_num_examples: total number of synthetic images (train +
      validation + test).
    synthetic_image_shape: (H, W, C) of the synthetic images.
    synthetic_seed: seed of the synthetic images.
    tfds_data_dir: TFDS data_dir; None uses TFDS's default (TFDS_DATA_DIR or
      ~/tensorflow_datasets).

  Returns:
    A `Splits`.

  Raises:
    ConfigError: download is not 'auto', True or False.
    DataError: unknown name, missing / corrupt files, unprepared TFDS dataset,
      or an impossible validation_size.
  """
  if not (isinstance(download, bool) or (isinstance(download, str) and download == "auto")):
    raise ConfigError(f"dataset.download must be 'auto', True or False, got {download!r}")
  if name not in DATASET_NAMES:
    raise DataError(f"unknown dataset.name {name!r}; allowed: {', '.join(DATASET_NAMES)}")
  if validation_size is not None and not is_int(validation_size, 0, np.inf):
    raise DataError(f"dataset.validation_size must be None or an int >= 0, got {validation_size!r}")
  if name == "synthetic":
    if local_dir is not None:
      raise DataError(
        "dataset.local_dir is not used by the synthetic "
        "dataset; remove it or choose another dataset.name"
      )
    return _load_synthetic(
      synthetic_num_examples, synthetic_image_shape, synthetic_seed, validation_size
    )
  if local_dir is not None:
    return load_local(name, local_dir, validation_size)
  return _load_tfds(name, validation_size, download, tfds_data_dir)


# --- synthetic ----------------------------------------------------------------


def _load_synthetic(num_examples, image_shape, seed, validation_size):
  """Deterministic blob-and-stroke images; binary iff C == 1."""
  try:
    h, w, c = (int(d) for d in image_shape)
    num_examples = int(num_examples)
  except (TypeError, ValueError):
    raise DataError(
      f"dataset.synthetic_image_shape must be (H, W, C), got {image_shape!r}"
    ) from None
  if min(h, w, c) < 1:
    raise DataError(f"dataset.synthetic_image_shape must be positive, got {image_shape!r}")
  num_test = num_examples // 8
  if num_test < 1:
    raise DataError(f"dataset.synthetic_num_examples must be >= 8, got {num_examples}")
  images = synthetic_images(num_examples, (h, w, c), seed)
  train_full, test = images[:-num_test], images[-num_test:]
  return make_splits(
    "synthetic",
    train_full,
    test,
    validation_size,
    num_test,
    binary=(c == 1),
    source=(
      f"{num_examples} deterministic blob/stroke images "
      f"(synthetic_seed {seed}), last {num_test} = test"
    ),
  )


def synthetic_images(num_examples, image_shape, seed, num_blobs=2, num_strokes=2):
  """Structured random images: Gaussian blobs and soft line strokes.

  Args:
    num_examples: N.
    image_shape: (H, W, C).
    seed: int; the result is a pure function of all arguments.
    num_blobs: blobs per image.
    num_strokes: strokes per image.

  Returns:
    uint8 [N, H, W, C], dark background, bright shapes (each shape coloured
    independently when C > 1).
  """
  h, w, c = image_shape
  k = num_blobs + num_strokes
  rs = np.random.RandomState(seed)
  # All random parameters first (small), so rendering in chunks is invariant.
  centre = rs.uniform(0.2, 0.8, size=(num_examples, num_blobs, 2))
  sigma = rs.uniform(0.06, 0.15, size=(num_examples, num_blobs))
  start = rs.uniform(0.1, 0.9, size=(num_examples, num_strokes, 2))
  end = rs.uniform(0.1, 0.9, size=(num_examples, num_strokes, 2))
  width = rs.uniform(0.03, 0.06, size=(num_examples, num_strokes))
  amplitude = rs.uniform(0.6, 1.0, size=(num_examples, k))
  colour = (
    rs.uniform(0.2, 1.0, size=(num_examples, k, c)) if c > 1 else np.ones((num_examples, k, 1))
  )

  grid = np.stack(
    np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij"), -1
  )
  out = np.empty((num_examples, h, w, c), np.uint8)
  chunk = 256
  for lo in range(0, num_examples, chunk):
    sl = slice(lo, lo + chunk)
    # Blobs: [n, num_blobs, H, W].
    d2 = np.sum((grid[None, None] - centre[sl, :, None, None, :]) ** 2, -1)
    blobs = np.exp(-d2 / (2 * sigma[sl, :, None, None] ** 2))
    # Strokes: distance of each pixel to a segment, [n, num_strokes, H, W].
    a = start[sl, :, None, None, :]
    ab = end[sl, :, None, None, :] - a
    t = np.sum((grid[None, None] - a) * ab, -1) / np.maximum(np.sum(ab**2, -1), 1e-6)
    nearest = a + np.clip(t, 0.0, 1.0)[..., None] * ab
    d2 = np.sum((grid[None, None] - nearest) ** 2, -1)
    strokes = np.exp(-d2 / (2 * width[sl, :, None, None] ** 2))
    shapes = np.concatenate([blobs, strokes], 1) * amplitude[sl, :, None, None]
    image = np.einsum("nkhw,nkc->nhwc", shapes, colour[sl])
    out[sl] = np.round(255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)
  return out


# --- TFDS --------------------------------------------------------------------


def _tfds_split_to_numpy(builder, split):
  """All images of a prepared TFDS split, in file order, as uint8 [N,H,W,C]."""
  num = builder.info.splits[split].num_examples
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(4096).prefetch(2)
  out, filled = None, 0
  for batch in ds.as_numpy_iterator():
    if out is None:  # Preallocate once the image shape is known.
      out = np.empty((num,) + batch.shape[1:], np.uint8)
    out[filled : filled + len(batch)] = batch
    filled += len(batch)
  if out is None or filled != num:
    raise DataError(
      f"TFDS {builder.name} split {split!r} yielded {filled} images, its info says {num}"
    )
  return out


def tfds_reachable(url=PROBE_URL, timeout=PROBE_TIMEOUT_SECONDS):
  """True when one HTTP HEAD request to `url` gets an answer within `timeout` seconds.

  Any HTTP status counts as an answer (the host is reachable). The request goes through
  the environment's proxy settings, as TFDS's downloads do, and runs in a daemon thread,
  so a name lookup that hangs cannot hold the caller past `timeout`.
  """
  answered = threading.Event()

  def head():
    try:
      urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
      pass  # 403, 404, ...: an answer
    except Exception:  # pylint: disable=broad-except  (URLError, OSError, timeouts: offline)
      return
    answered.set()

  threading.Thread(target=head, name="asvae-tfds-probe", daemon=True).start()
  return answered.wait(timeout)


def _prepare(builder, name, download, where):
  """Downloads and prepares `builder` as dataset.download says (see `load_splits`).

  Raises:
    DataError: download='auto', the dataset is not prepared and the probe got no answer.
  """
  if download is False or (download == "auto" and builder.is_prepared()):
    return
  if download == "auto" and not tfds_reachable():
    raise DataError(
      f"dataset {name!r} (TFDS {TFDS_BUILDERS[name][0]}) is not prepared in {where} and TFDS's "
      f"download host did not answer within {PROBE_TIMEOUT_SECONDS:g} s "
      f"(dataset.download='auto'); set dataset.local_dir to a folder with "
      f"{EXPECTED_LOCAL_FILES[name]}, or prepare the TFDS data elsewhere and point "
      f"dataset.tfds_data_dir at it"
    )
  builder.download_and_prepare()


def _load_tfds(name, validation_size, download, data_dir):
  """TFDS path: downloads as dataset.download says, then reads both splits."""
  tfds_name, train_split, test_split = TFDS_BUILDERS[name]
  where = data_dir or "the default TFDS data_dir"
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(tfds_name, data_dir=data_dir)
    _prepare(builder, name, download, where)
    train_full = _tfds_split_to_numpy(builder, train_split)
    test = _tfds_split_to_numpy(builder, test_split)
  except DataError:
    raise
  except Exception as e:  # TFDS raises AssertionError, OSError, ... here.
    raise DataError(
      f"dataset {name!r} (TFDS {tfds_name}) is not available in {where} "
      f"({type(e).__name__}: {one_line(e)[:160]}); set dataset.local_dir to a folder "
      f"with {EXPECTED_LOCAL_FILES[name]}, or let TFDS download it "
      f"(dataset.download='auto' or True) on a machine with internet"
    ) from e
  return make_splits(
    name,
    train_full,
    test,
    validation_size,
    DEFAULT_VALIDATION_SIZE[name],
    binary=(name == "mnist"),
    source=(
      f"TFDS {tfds_name} ({where}), splits {train_split!r} -> train "
      f"+ validation, {test_split!r} -> test"
    ),
  )
