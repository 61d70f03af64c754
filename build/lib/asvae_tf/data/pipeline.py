"""uint8 images -> float32 in [0, 1]: tf.data pipelines and the conversions they share.

* `train_dataset`: infinite, resumable, device-count-invariant training
  batches with fresh noise every step (see the package docstring for the
  exact data-position contract).
* `eval_dataset` / `to_float`: deterministic, noise-free evaluation mapping.
* `binarize_once` / `to_unit_range`: the NumPy (and tensor) helpers every
  other module should use instead of writing the formulas again.
"""

import numpy as np
import tensorflow as tf

from asvae_tf.data.checks import check_images, check_int, check_uint8
from asvae_tf.errors import DataError

_SHUFFLE_STREAM = 0
_NOISE_STREAM = 1
_RNG_ALG = "philox"
# Dequantisation noise is quantised to 2^-16 so that (p + u) is exact in
# float32 for p <= 255: x = (p + u) / 256 then lies in [p/256, (p+1)/256).
_NOISE_LEVELS = 2.0**16


# ----------------------------------------------------------------------------
# Fixed (noise-free or seeded NumPy) conversions
# ----------------------------------------------------------------------------


def binarize_once(images, seed=0) -> np.ndarray:
  """Binarises uint8 grey levels ONCE with a seeded NumPy draw.

  x = 1[U < p / 255] with U = np.random.RandomState(seed).uniform over the
  array in C order. Drawing U with shape [N, H*W*C] (as `Splits.test_binarized`
  is documented) or with the image shape [N, H, W, C] gives the same bits: it
  is the same stream of N*H*W*C doubles.

  Args:
    images: uint8 [N, H, W, C] numpy array (any shape works).
    seed: the RandomState seed; 0 for `Splits.test_binarized`.

  Returns:
    uint8 {0, 1} array of the shape of `images`.
  """
  images = np.asarray(images)
  uniform = np.random.RandomState(seed).uniform(size=images.shape)
  return (uniform < images / 255.0).astype(np.uint8)


def _binary_divisor(images) -> float:
  """1 for a uint8 array holding only 0 and 1 (already binarised), else 255."""
  return 1.0 if images.size == 0 or int(images.max()) <= 1 else 255.0


def _scale(x, binary, divisor):
  """float32 grey levels (numpy or tensor) -> x / divisor or bin centres (x + 0.5) / 256."""
  if binary:
    return x / divisor
  return (x + np.float32(0.5)) / np.float32(256.0)


def to_unit_range(images):
  """uint8 grey levels -> float32 pixel / 255, with no already-binarised detection.

  Args:
    images: uint8 numpy array or tensor of any shape.

  Returns:
    float32 of the same shape: numpy for numpy input, a tensor for a tensor.
  """
  if isinstance(images, (tf.Tensor, tf.Variable)):
    return _scale(tf.cast(images, tf.float32), True, np.float32(255.0))
  x = check_uint8(images, "to_unit_range").astype(np.float32)
  return _scale(x, True, np.float32(255.0))


def to_float(images, binary):
  """Deterministic uint8 -> float32 mapping used for evaluation.

  binary=True: pixel / 255 (probabilities). An array holding only 0 and 1,
  e.g. `Splits.test_binarized`, is already binarised and maps to 0.0 / 1.0
  (the decision is taken once for the whole array). binary=False: bin centres
  (pixel + 0.5) / 256.

  Args:
    images: uint8 [..., H, W, C] numpy array or tensor.
    binary: `Splits.binary`.

  Returns:
    float32 of the same shape: numpy for numpy input, a tensor for a tensor.
  """
  if isinstance(images, (tf.Tensor, tf.Variable)):
    x = tf.cast(images, tf.float32)
    divisor = tf.where(tf.reduce_max(x) <= 1.0, 1.0, 255.0) if binary else None
    return _scale(x, binary, divisor)
  images = check_uint8(images, "to_float")
  divisor = np.float32(_binary_divisor(images)) if binary else None
  return _scale(images.astype(np.float32), binary, divisor)


# ----------------------------------------------------------------------------
# tf.data
# ----------------------------------------------------------------------------


def _as_tensor(images):
  with tf.init_scope(), tf.device("/cpu:0"):
    return tf.convert_to_tensor(images)


def _options():
  """Deterministic; no auto-sharding (each pipeline slices its own rows).

  tf.data's default graph rewrites are switched off: they serialise the
  captured image tensor (seconds per GB at every iterator creation) and have
  nothing to fuse in these map + prefetch pipelines.
  """
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.apply_default_optimizations = False
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return options


def _preprocess(pixels, uniform, binary):
  """uint8 [b, H, W, C] + U[0,1) of the same shape -> float32 in [0, 1]."""
  pixels = tf.cast(pixels, tf.float32)
  if binary:
    return tf.cast(uniform < pixels / 255.0, tf.float32)
  uniform = tf.floor(uniform * _NOISE_LEVELS) / _NOISE_LEVELS
  return (pixels + uniform) / 256.0


def _pipeline_rows(batch, input_context):
  """(lo, hi, per_replica): this pipeline's rows [lo, hi) of a global batch of `batch`."""
  if input_context is None:
    return 0, batch, batch
  replicas = input_context.num_replicas_in_sync
  pipelines = input_context.num_input_pipelines
  pipeline = input_context.input_pipeline_id
  if batch % replicas:
    raise DataError(
      f"global_batch_size={batch} is not divisible by the {replicas} replicas in sync"
    )
  if replicas % pipelines:
    raise DataError(f"{replicas} replicas cannot be split evenly over {pipelines} input pipelines")
  rows = batch // pipelines
  return pipeline * rows, (pipeline + 1) * rows, batch // replicas


def _step_indices(num, batch, seed, start_step):
  """Dataset of (global step [], example indices [B]) from `start_step` on, forever."""
  steps_per_epoch = num // batch
  shuffle_key = tf.constant([seed, _SHUFFLE_STREAM], tf.int64)

  def epoch_indices(epoch):
    """(global step [], indices [B]) for every step of one epoch."""
    key = tf.random.experimental.stateless_fold_in(shuffle_key, epoch, alg=_RNG_ALG)
    order = tf.random.experimental.stateless_shuffle(
      tf.range(num, dtype=tf.int64), seed=key, alg=_RNG_ALG
    )
    indices = tf.reshape(order[: steps_per_epoch * batch], [steps_per_epoch, batch])
    steps = epoch * steps_per_epoch + tf.range(steps_per_epoch, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((steps, indices))

  first_epoch, skip = divmod(start_step, steps_per_epoch)
  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
  return ds.flat_map(epoch_indices).skip(skip)


def _batch_maker(images, batch, seed, binary, rows):
  """make_batch(step, indices [B]) -> this pipeline's preprocessed rows of the step."""
  lo, hi, per_replica = rows
  local_replicas = (hi - lo) // per_replica
  images_t = _as_tensor(images)
  shape = tuple(int(d) for d in images.shape[1:])
  noise_key = tf.constant([seed, _NOISE_STREAM], tf.int64)

  def make_batch(step, indices):
    """Global batch of `step` (indices [B]) -> this pipeline's rows."""
    key = tf.random.experimental.stateless_fold_in(noise_key, step, alg=_RNG_ALG)
    uniform = tf.random.stateless_uniform((batch,) + shape, seed=key, alg=_RNG_ALG)
    x = _preprocess(tf.gather(images_t, indices[lo:hi]), uniform[lo:hi], binary)
    if local_replicas > 1:
      x = tf.reshape(x, (local_replicas, per_replica) + shape)
    return x

  return make_batch


def train_dataset(
  images, global_batch_size, seed, binary, start_step=0, input_context=None
) -> tf.data.Dataset:
  """Infinite, resumable, device-count-invariant training batches.

  See the package docstring for the exact data-position semantics.

  Args:
    images: uint8 numpy [N, H, W, C].
    global_batch_size: B, rows per global step over all replicas.
    seed: int; keys the epoch shuffles (seed, epoch) and the noise (seed, step).
    binary: True: x = 1[U < p / 255] (dynamic binarisation); False:
      x = (p + U) / 256 (uniform dequantisation).
    start_step: first global step to produce (resume position).
    input_context: optional tf.distribute.InputContext (P pipelines, this one
      p, R replicas in sync). This pipeline keeps rows [p*B/P, (p+1)*B/P) of
      each global batch and yields them as R/P consecutive per-replica
      batches of B/R rows.

  Returns:
    tf.data.Dataset of float32 [B, H, W, C] (no input_context) or
    [B/R, H, W, C] (with input_context), values in [0, 1].

  Raises:
    DataError: bad images, N < B, or B not divisible by the replica count.
  """
  images = check_images(images)
  batch = check_int(global_batch_size, "global_batch_size", 1)
  seed = check_int(seed, "seed", -(2**63))
  start_step = check_int(start_step, "start_step", 0)
  if len(images) < batch:
    raise DataError(
      f"training set has {len(images)} examples, fewer than global_batch_size={batch}"
    )
  rows = _pipeline_rows(batch, input_context)
  make_batch = _batch_maker(images, batch, seed, binary, rows)
  ds = _step_indices(len(images), batch, seed, start_step)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  lo, hi, per_replica = rows
  if (hi - lo) // per_replica > 1:
    ds = ds.unbatch()
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


def eval_dataset(images, batch_size, binary) -> tf.data.Dataset:
  """Finite, deterministic, noise-free batches in file order.

  Args:
    images: uint8 numpy [N, H, W, C].
    batch_size: rows per batch; the last batch keeps the remainder.
    binary: as `to_float`: pixel / 255, except that an array holding only 0
      and 1 (`Splits.test_binarized`) stays 0.0 / 1.0; False: (p + 0.5) / 256.

  Returns:
    tf.data.Dataset of float32 [<=batch_size, H, W, C], mapped like `to_float`.
  """
  images = check_images(images)
  batch_size = check_int(batch_size, "batch_size", 1)
  divisor = _binary_divisor(images) if binary else None
  images_t = _as_tensor(images)

  def gather(indices):
    return _scale(tf.cast(tf.gather(images_t, indices), tf.float32), binary, divisor)

  ds = tf.data.Dataset.range(len(images)).batch(batch_size)
  ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)
