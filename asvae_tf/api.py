"""The Python API of a trained AS-VAE: `asvae_tf.load(model_dir)`, `asvae_tf.load_saved_model(E)`.

  model = asvae_tf.load("runs/mnist")                            # a training model_dir
  model = asvae_tf.load_saved_model("runs/mnist/saved_model")    # an export: base or version

Both return a `TrainedModel` with the same methods, run by the same functions: those of
the exported SavedModel (`export.AsvaeServing`; in-process for `load`, its loaded
signatures for `load_saved_model`), so both give the same numbers for the same weights.
NumPy in, NumPy out (float32):

  sample(n, seed=0)                  -> [n, H, W, C] decoder means of z ~ N(0, I)
  encode(x, seed=None)               -> [N, D] posterior means; with a seed, z ~ q(z|x)
  decode(z)                          -> [N, H, W, C] decoder means
  reconstruct(x, seed=None)          -> [N, H, W, C] decoder mean at the posterior mean;
                                        with a seed, at z ~ q(z|x)
  log_likelihood(x, k=1000, seed=0)  -> [N] importance-weighted bound of log p(x), nats
  interpolate(x1, x2, n=10)          -> [n, H, W, C] (or [N, n, H, W, C]) decoder means
                                        along the line between the posterior means

Images x are arrays or tensors of real numbers in [0, 1], [N, H, W, C] or one image
[H, W, C] (outputs then have no batch axis); anything else raises errors.DataError naming
the expected shape. Seeds are an int s (the pair [s, 0]) or a pair of ints; the same
inputs and seed give the same outputs. Image and code batches above the export's
per-request limits (`export.serving_limits`) run in chunks of the limit, chunk i with seed
(s0, s1 + i); `sample(n)` and `log_likelihood(x, k)` above their limits raise ConfigError.
"""

import os

import numpy as np
import tensorflow as tf

from asvae_tf import checkpoints
from asvae_tf import errors
from asvae_tf import export
from asvae_tf import gin_config
from asvae_tf import model as model_lib
from asvae_tf import precision
from asvae_tf import registry
from asvae_tf import versions

_INT32 = (-(2**31), 2**31 - 1)


def load(model_dir, checkpoint=checkpoints.DEFAULT):
  """The model of a training model_dir, restored from a checkpoint.

  Args:
    model_dir: a training model_dir (operative_config.gin, checkpoints/, best/).
    checkpoint: None (the default: the early-stopping best if model_dir/best has one,
      else the latest; `checkpoints.DEFAULT`), "best", "latest" or a checkpoint prefix.
  Returns:
    a `TrainedModel`; its `metadata` is what an export of this checkpoint records.
  The model is built from model_dir/operative_config.gin in an isolated gin scope: the
  caller's gin config is untouched, and loading several models in one process is fine.
  Raises:
    errors.GinFileNotFoundError: no operative_config.gin; FileNotFoundError: no such
    checkpoint; errors.CheckpointMismatchError, errors.CheckpointCorruptError.
  """
  model_dir = os.fspath(model_dir)
  with gin_config.isolated():
    registry.parse_model_dir(model_dir)
    limits = export.serving_limits()
    with precision.policy_scope(precision.serving_dtype_policy()):  # as its export would
      mdl = model_lib.build_model(image_shape=export.image_shape_from_gin())
      mdl.build_all()
    prefix, step = checkpoints.restore_latest_intact(mdl, model_dir, checkpoint)
    because = checkpoints.chosen_because(model_dir, checkpoint, prefix)
    dataset = gin_config.operative_value(model_dir, "dataset.name")
    meta = export.metadata(
      mdl, step, dataset, limits, {"checkpoint": prefix, "chosen_because": because}
    )
    functions = export.AsvaeServing(mdl, limits=limits).signatures()
  return TrainedModel(functions, mdl.image_shape, mdl.latent_dim, meta, model_dir)


def load_saved_model(path):
  """An exported SavedModel as a `TrainedModel` (the same methods as `load`).

  path: an export base (its highest numbered version is loaded, as TF Serving does), a
  version directory, or a flat SavedModel of an earlier release.
  Raises errors.SavedModelNotFoundError: `path` holds no SavedModel.
  """
  directory = versions.resolve(os.fspath(path))
  loaded = tf.saved_model.load(directory)
  functions = dict(loaded.signatures)
  missing = [n for n in export.SIGNATURES if n not in functions]
  if missing:
    raise errors.SavedModelNotFoundError(f"{directory} is not an asvae_tf export (no {missing})")
  images = functions["encode"].structured_input_signature[1]["images"].shape[1:]
  latent_dim = functions["decode"].structured_input_signature[1]["z"].shape[1]
  try:
    meta = export.read_metadata(directory)
  except (OSError, ValueError):
    meta = {}
  model = TrainedModel(functions, images, latent_dim, meta, directory)
  model.saved_model = loaded  # also keeps the restored variables alive
  return model


class TrainedModel:
  """A trained AS-VAE behind its serving functions (see the module docstring).

  Attributes: image_shape (H, W, C), latent_dim D, path (the model_dir or SavedModel
  directory), metadata (the asvae_metadata.json fields: training_step, checkpoint,
  chosen_because, serving_limits, ...), step (the training step of the weights),
  saved_model (what tf.saved_model.load returned, for load_saved_model; else None).
  """

  def __init__(self, functions, image_shape, latent_dim, metadata, path):
    self._functions = functions
    self.image_shape = tuple(int(s) for s in image_shape)
    self.latent_dim = int(latent_dim)
    self.metadata = dict(metadata)
    self.path = path
    self.step = self.metadata.get("training_step")
    self._limits = self.metadata.get("serving_limits") or {}
    self.saved_model = None

  def __repr__(self):
    return (
      f"TrainedModel({self.path!r}, step={self.step}, image_shape={self.image_shape}, "
      f"latent_dim={self.latent_dim})"
    )

  def sample(self, n, seed=0):
    """n decoder means of prior draws z ~ N(0, I): float32 [n, H, W, C] in [0, 1]."""
    n = _count(n, "n", self._limits.get("max_num_samples"), "max_num_samples")
    out = self._functions["sample"](num_samples=tf.constant(n, tf.int32), seed=_seed(seed))
    return out["images"].numpy()

  def encode(self, x, seed=None):
    """Codes of images x [N, H, W, C]: float32 [N, D] posterior means (the base mean pushed
    through the flow; deterministic), or with a seed z ~ q(z|x) (reparameterised)."""
    x, single = self._images(x)
    key = "posterior_mean" if seed is None else "z"
    z = self._batched("encode", key, "max_batch_size", images=x, seed=0 if seed is None else seed)
    return z[0] if single else z

  def decode(self, z):
    """Decoder means of codes z [N, D] (or one [D]): float32 [N, H, W, C] in [0, 1]."""
    z = np.asarray(z, dtype=np.float32) if _is_real(z) else None
    single = z is not None and z.ndim == 1
    if z is None or (z[None] if single else z).shape[1:] != (self.latent_dim,):
      got = "non-real values" if z is None else f"shape {list(z.shape)}"
      raise errors.DataError(
        f"z must be float [N, {self.latent_dim}] (or one [{self.latent_dim}]); got {got}"
      )
    if not np.isfinite(z).all():
      raise errors.DataError("z must be finite; got NaN or Inf")
    images = self._batched("decode", "images", "max_batch_size", z=z[None] if single else z)
    return images[0] if single else images

  def reconstruct(self, x, seed=None):
    """Reconstructions of images x [N, H, W, C]: float32 [N, H, W, C], the decoder mean at
    the posterior mean (deterministic), or with a seed at z ~ q(z|x)."""
    if seed is None:
      return self.decode(self.encode(x))
    x, single = self._images(x)
    out = self._batched("reconstruct", "images", "max_batch_size", images=x, seed=seed)
    return out[0] if single else out

  def log_likelihood(self, x, k=1000, seed=0):
    """Importance-weighted lower bound of log p(x) with k samples (nats; k = 1: an ELBO
    estimate) of images x [N, H, W, C]: float32 [N]. For MNIST (Bernoulli decoder) x are
    the (binarised) pixels; for Gaussian decoders the continuous density."""
    x, single = self._images(x)
    k = _count(k, "k", self._limits.get("max_importance_samples"), "max_importance_samples")
    out = self._batched("log_likelihood", "log_likelihood", "max_log_likelihood_images",
                        images=x, num_importance_samples=np.int32(k), seed=seed)  # fmt: skip
    return out[0] if single else out

  def interpolate(self, x1, x2, n=10):
    """Decoder means at n evenly spaced points from the posterior mean of x1 to that of x2
    (both included): one image each -> float32 [n, H, W, C]; batches [N, H, W, C] ->
    [N, n, H, W, C]."""
    n = _count(n, "n", None, None)
    z1, z2 = self.encode(x1), self.encode(x2)
    if z1.shape != z2.shape:
      raise errors.DataError(
        f"x1 and x2 must have the same shape; got {z1.shape[:-1]} and {z2.shape[:-1]} images"
      )
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    z = (1.0 - t) * z1[..., None, :] + t * z2[..., None, :]  # [(N,) n, D]
    images = self.decode(z.reshape(-1, self.latent_dim))
    return images.reshape(z.shape[:-1] + self.image_shape)

  def _images(self, x):
    """(float32 [N, H, W, C] array, whether x was one image); errors.DataError otherwise."""
    h, w, c = self.image_shape
    a = np.asarray(x) if _is_real(x) else None
    single = a is not None and a.ndim == 3
    what = f"images must be float [N, {h}, {w}, {c}] (or one [{h}, {w}, {c}]) with values in [0, 1]"
    if a is None or (a[None] if single else a).shape[1:] != (h, w, c):
      raise errors.DataError(
        f"{what}; got {'non-real values' if a is None else f'shape {list(a.shape)}'}"
      )
    a = (a[None] if single else a).astype(np.float32)
    if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
      if not np.isfinite(a).all():
        raise errors.DataError(f"{what}; got NaN or Inf")
      low, high = float(a.min()), float(a.max())
      hint = " (8-bit pixels? divide by 255)" if 1.0 < high <= 255.0 and low >= 0.0 else ""
      raise errors.DataError(f"{what}; got values in [{low:g}, {high:g}]{hint}")
    return a, single

  def _batched(self, name, key, limit, seed=None, **inputs):
    """Output `key` of function `name` on inputs, in chunks of the limit `limit` along the
    first axis of the array inputs (chunk i with seed (s0, s1 + i))."""
    rows = next(len(v) for v in inputs.values() if np.ndim(v))
    size = max(1, int(self._limits.get(limit) or max(rows, 1)))
    outputs = []
    for i, start in enumerate(range(0, max(rows, 1), size)):
      args = {
        k: tf.constant(v[start : start + size] if np.ndim(v) else v) for k, v in inputs.items()
      }
      if seed is not None:
        args["seed"] = _seed(seed) + tf.constant([0, i], tf.int32)
      outputs.append(self._functions[name](**args)[key].numpy())
    return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]


def _is_real(x):
  """True if np.asarray(x) is an array of real numbers (bool, int, uint or float)."""
  try:
    return np.asarray(x).dtype.kind in "biuf"
  except (TypeError, ValueError):
    return False


def _seed(seed):
  """int32 [2] tensor of an int s ([s, 0]) or a pair of ints; errors.ConfigError otherwise."""
  pair = [seed, 0] if isinstance(seed, (int, np.integer)) else list(np.ravel(seed))
  ok = len(pair) == 2 and all(
    isinstance(s, (int, np.integer)) and not isinstance(s, bool) and _INT32[0] <= s <= _INT32[1]
    for s in pair
  )
  if not ok or isinstance(seed, bool):
    raise errors.ConfigError(f"seed must be an int or a pair of int32s; got {seed!r}")
  return tf.constant(pair, tf.int32)


def _count(value, name, limit, binding):
  """value as an int in [1, limit]; errors.ConfigError naming the limit otherwise."""
  top = limit or _INT32[1]
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= top:
    where = f" (gin serving_limits.{binding} of this model)" if limit else ""
    raise errors.ConfigError(f"{name} must be an int >= 1 and <= {top}{where}; got {value!r}")
  return int(value)
