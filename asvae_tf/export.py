"""SavedModel export of a trained AS-VAE: encode, decode, sample, reconstruct, log_likelihood.

The exported `AsvaeServing` module holds the Keras 3 model; each signature is a
`tf.function` with an input signature, so the SavedModel loads with TensorFlow
alone (no asvae_tf, no TensorFlow Probability: only TF ops are in the graphs).

Signatures (images are float32 [N, H, W, C] in [0, 1]; seeds int32 [2]):
  encode(images, seed)                      -> {z [N, D], posterior_mean [N, D]}
  decode(z)                                 -> {images [N, H, W, C]}   (decoder mean)
  sample(num_samples, seed)                 -> {images [n, H, W, C], z [n, D]}
  reconstruct(images, seed)                 -> {images [N, H, W, C]}
  log_likelihood(images, num_importance_samples, seed) -> {log_likelihood [N]} (nats)
  serving_default = encode

All randomness is stateless (tf.random.stateless_*, Philox) and keyed on the seed
input: the same seed gives bit-identical outputs. Bad inputs fail with an
InvalidArgumentError whose message names the expected shape/range, raised by assert
ops that run BEFORE anything request-sized is allocated: shapes and ranks (images,
z, seed, the scalar counts), values (images finite and in [0, 1], z finite, counts
>= 1) and the upper limits of `serving_limits` (gin), baked into the graphs and
recorded in the metadata. Wrong dtypes are rejected by the signatures themselves.

Assets: assets/operative_config.gin and assets/asvae_metadata.json.

  * `export(mdl, export_dir, operative_config, step, dataset)`: a built model -> SavedModel
    at export_dir itself.
  * `export_checkpoint(model_dir, export_dir, checkpoint)`: a training checkpoint (default:
    `checkpoints.DEFAULT`) -> SavedModel at export_dir/<step>/ (TF Serving's versions,
    versions.py), the model built from the gin config the caller parsed (model_dir's
    operative_config.gin); nothing here parses or clears the global gin config.
  * `read_metadata(export_dir)`: the asvae_metadata.json of an export (base or version).
  * `serving_limits(...)` (gin `serving_limits`): the per-request upper limits.

(Was `asvae_tf.export_lib`, kept as an alias for one release.)
"""

import json
import os
import shutil
import tempfile

import gin
import tensorflow as tf

import asvae_tf
from asvae_tf import errors
from asvae_tf import model as model_lib
from asvae_tf import checkpoints
from asvae_tf import precision
from asvae_tf import rng
from asvae_tf import versions
from asvae_tf.nets import folded

METADATA_FILE = "asvae_metadata.json"
CONFIG_FILE = "operative_config.gin"
SIGNATURES = ("encode", "decode", "sample", "reconstruct", "log_likelihood", "serving_default")
# Importance samples per chunk of the log_likelihood signature (memory ~ chunk * N images).
IWAE_CHUNK_SIZE = 64
_DEFAULT_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "imagenet64": (64, 64, 3)}
_INT32_MAX = 2**31 - 1


@gin.configurable("serving_limits")
def serving_limits(
  max_num_samples=10000,
  max_importance_samples=10000,
  max_batch_size=10000,
  max_log_likelihood_images=1000,
):
  """The per-request upper limits baked into an export, as a dict (README table).

  max_num_samples: `num_samples` of `sample`. max_importance_samples: k of
  `log_likelihood`. max_batch_size: images of `encode` / `reconstruct`, codes z of
  `decode`. max_log_likelihood_images: images of `log_likelihood` (its memory is
  ~ IWAE_CHUNK_SIZE x N images and decoder outputs, 64 times that of `encode`).
  Raises errors.ConfigError unless every limit is an int in [1, 2**31 - 1].
  """
  limits = dict(
    max_num_samples=max_num_samples,
    max_importance_samples=max_importance_samples,
    max_batch_size=max_batch_size,
    max_log_likelihood_images=max_log_likelihood_images,
  )
  for name, value in limits.items():
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _INT32_MAX:
      raise errors.ConfigError(
        f"serving_limits.{name} must be an int in [1, 2**31 - 1]; got {value!r}"
      )
  return limits


def _check_shape(t, expected, what):
  """Assert op: t has shape `expected` (list, None = any size).

  Loaded SavedModel signatures check dtypes but not shapes, so the functions check
  shapes themselves. Grappler folds what the spec tells statically: the Shape (also
  of Identity, Reshape, Where, PlaceholderWithDefault, ...) of a fully static input
  (seed [2], the scalar counts), and the rank of a partial one ([N, D] z). So a fully
  static input goes through Serialize/ParseTensor (whose output shape Grappler does
  not know; a few bytes for a valid input), and the runtime shape vector likewise."""
  if t.shape.is_fully_defined():
    t = tf.io.parse_tensor(tf.io.serialize_tensor(t), t.dtype)
  shape = tf.raw_ops.Shape(input=t, out_type=tf.int32)
  shape = tf.io.parse_tensor(tf.io.serialize_tensor(shape), tf.int32)  # rank not folded
  rank = len(expected)
  padded = tf.concat([shape, -tf.ones([rank], tf.int32)], 0)[:rank]  # any rank -> [rank]
  ok = tf.equal(tf.size(shape), rank)
  for i, e in enumerate(expected):
    if e is not None:
      ok = tf.logical_and(ok, tf.equal(padded[i], e))
  return tf.debugging.Assert(ok, [f"{what}; got shape", shape])


def _check_images(images, h, w, c, max_n, binding):
  """Assert ops: images [N, H, W, C], N <= max_n, values finite and in [0, 1] (in that order)."""
  what = f"images must be float32 [N, {h}, {w}, {c}] with values in [0, 1]"
  with tf.control_dependencies([_check_shape(images, [None, h, w, c], what)]):
    n = tf.raw_ops.Shape(input=images, out_type=tf.int32)[0]
    too_many = f"images: at most {max_n} per request (gin serving_limits.{binding}); got"
    with tf.control_dependencies([tf.debugging.Assert(n <= max_n, [too_many, n])]):
      return [  # NaN fails both comparisons, +-Inf one of them
        tf.debugging.assert_greater_equal(images, 0.0, message=f"{what}; got a value < 0 (or NaN)"),
        tf.debugging.assert_less_equal(images, 1.0, message=f"{what}; got a value > 1 (or NaN)"),
      ]


def _checked_seed(seed):
  """`seed` after an assert op that it has shape [2]."""
  with tf.control_dependencies([_check_shape(seed, [2], "seed must have shape [2] (int32)")]):
    return tf.identity(seed)


def _check_count(value, name, limit, binding):
  """Assert ops: `value` is a scalar in [1, limit] (the message names `name` and the limit)."""
  what = f"{name} must be an int32 scalar >= 1 and <= {limit} (gin serving_limits.{binding})"
  with tf.control_dependencies([_check_shape(value, [], what)]):
    ok = tf.logical_and(tf.reduce_all(value >= 1), tf.reduce_all(value <= limit))
    return [tf.debugging.Assert(ok, [f"{what}; got", value])]


class AsvaeServing(tf.Module):
  """tf.Module holding an `ASVAE` with the serving functions (see module docstring).

  Tracked: encode, decode, sample, reconstruct, log_likelihood (tf.functions with input
  signatures), model_variables (the generator's raw tf.Variables), folded_decoder (a
  bfloat16 MLP decoder's serving path, `nets.folded.FoldedMLP`: a snapshot of the weights
  when the module is built; else None), image_shape (int32 [3]), latent_dim (int32
  scalar) and assets ({file name: tf.saved_model.Asset}).
  """

  def __init__(self, mdl, assets=(), limits=None):
    """mdl: a built `model.ASVAE`; assets: paths of files to copy into export_dir/assets;
    limits: `serving_limits` arguments (a dict; None or missing ones: as gin configures)."""
    super().__init__(name="asvae_serving")
    # The module tracks the model's raw tf.Variables, NOT the Keras model: the traced
    # functions capture the raw tf.Variable behind each keras.Variable, and a tracked
    # Keras model would save every weight twice, leaving the captured copies
    # uninitialised for TF1-style loaders (saved_model_cli run, TF Serving):
    # keras-team/keras#20095, #23553.
    # Only the generator's weights (encoder, posterior, decoder): nothing here uses the
    # discriminators, and saving fails loudly if a captured variable were missed.
    self.model_variables = [
      getattr(v, "value", v)
      for v in mdl.encoder.weights + mdl.posterior.weights + mdl.decoder.weights
    ]
    self.get_model = lambda: mdl  # not tracked
    limits = serving_limits(**(limits or {}))
    self.image_shape = tf.constant(list(mdl.image_shape), tf.int32)
    self.latent_dim = tf.constant(mdl.latent_dim, tf.int32)
    # Tracked so the files are copied into export_dir/assets.
    self.assets = {os.path.basename(p): tf.saved_model.Asset(p) for p in assets}
    # `nets.folded`: a bfloat16 decoder with its biases in the matmuls (None: not folded).
    self.folded_decoder = folded.fold(mdl.decoder)
    decode_fn = mdl.decode if self.folded_decoder is None else self.folded_decoder
    encode, reconstruct, log_likelihood = _image_functions(mdl, limits, decode_fn)
    decode, sample = _latent_functions(mdl, limits, decode_fn)
    self.encode = encode
    self.decode = decode
    self.sample = sample
    self.reconstruct = reconstruct
    self.log_likelihood = log_likelihood

  def signatures(self):
    """{signature name: tf.function} for tf.saved_model.save (the names of SIGNATURES)."""
    return {
      "encode": self.encode,
      "decode": self.decode,
      "sample": self.sample,
      "reconstruct": self.reconstruct,
      "log_likelihood": self.log_likelihood,
      "serving_default": self.encode,
    }


def _image_functions(mdl, limits, decode_fn):
  """(encode, reconstruct, log_likelihood): the signatures taking images [N, H, W, C]."""
  h, w, c = mdl.image_shape
  images = tf.TensorSpec([None, h, w, c], tf.float32, name="images")
  seed = tf.TensorSpec([2], tf.int32, name="seed")
  max_n = limits["max_batch_size"]

  @tf.function(autograph=False, input_signature=[images, seed])
  def encode(images, seed):
    with tf.control_dependencies(_check_images(images, h, w, c, max_n, "max_batch_size")):
      images, seed = tf.identity(images), _checked_seed(seed)
    z, _ = mdl.encode(images, seed)
    return {"z": z, "posterior_mean": mdl.posterior_mean(images)}

  @tf.function(autograph=False, input_signature=[images, seed])
  def reconstruct(images, seed):
    with tf.control_dependencies(_check_images(images, h, w, c, max_n, "max_batch_size")):
      images, seed = tf.identity(images), _checked_seed(seed)
    z, _ = mdl.encode(images, seed)
    return {"images": mdl.likelihood.mean(decode_fn(z))}

  @tf.function(
    autograph=False,
    input_signature=[images, tf.TensorSpec([], tf.int32, name="num_importance_samples"), seed],
  )
  def log_likelihood(images, num_importance_samples, seed):
    k_max, n_max = limits["max_importance_samples"], limits["max_log_likelihood_images"]
    checks = _check_count(
      num_importance_samples, "num_importance_samples", k_max, "max_importance_samples"
    ) + _check_images(images, h, w, c, n_max, "max_log_likelihood_images")
    with tf.control_dependencies(checks):
      images, seed = tf.identity(images), _checked_seed(seed)
      num_importance_samples = tf.identity(num_importance_samples)
    return {
      "log_likelihood": mdl.iwae_log_likelihood(
        images, num_importance_samples, seed, chunk_size=IWAE_CHUNK_SIZE
      )
    }

  return encode, reconstruct, log_likelihood


def _latent_functions(mdl, limits, decode_fn):
  """(decode, sample): the signatures producing images from codes z [N, D] (decode_fn)."""
  d, max_n = mdl.latent_dim, limits["max_batch_size"]
  seed = tf.TensorSpec([2], tf.int32, name="seed")

  @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, d], tf.float32, name="z")])
  def decode(z):
    what = f"z must be finite float32 [N, {d}]"
    with tf.control_dependencies([_check_shape(z, [None, d], what)]):
      n = tf.raw_ops.Shape(input=z, out_type=tf.int32)[0]
      too_many = f"z: at most {max_n} codes per request (gin serving_limits.max_batch_size); got"
      with tf.control_dependencies([tf.debugging.Assert(n <= max_n, [too_many, n])]):
        z = tf.debugging.assert_all_finite(z, message=what)
    return {"images": mdl.likelihood.mean(decode_fn(z))}

  @tf.function(
    autograph=False, input_signature=[tf.TensorSpec([], tf.int32, name="num_samples"), seed]
  )
  def sample(num_samples, seed):
    checks = _check_count(num_samples, "num_samples", limits["max_num_samples"], "max_num_samples")
    with tf.control_dependencies(checks):
      num_samples, seed = tf.identity(num_samples), _checked_seed(seed)
    z = rng.stateless_normal(tf.stack([num_samples, d]), seed)
    return {"images": mdl.likelihood.mean(decode_fn(z)), "z": z}

  return decode, sample


def metadata(mdl, step, dataset=None, limits=None, source=None):
  """The metadata dict written to assets/asvae_metadata.json; `source`: {"checkpoint":
  prefix, "chosen_because": phrase} of export_checkpoint (else both None)."""
  return {
    "checkpoint": None,
    "chosen_because": None,
    **(source or {}),
    "dataset": dataset,
    "image_shape": list(mdl.image_shape),
    "latent_dim": mdl.latent_dim,
    "posterior_kind": mdl.posterior.kind,
    "num_flows": mdl.posterior.num_flows,
    "objective": mdl.objective.name,
    "likelihood": type(mdl.likelihood).__name__,
    "dtype_policy": mdl.encoder.dtype_policy.name,
    "training_step": None if step is None else int(step),
    "asvae_tf_version": asvae_tf.__version__,
    "tensorflow_version": tf.__version__,
    "signatures": list(SIGNATURES),
    "serving_limits": serving_limits(**(limits or {})),
  }


def export(mdl, export_dir, operative_config, step=None, dataset=None, limits=None, source=None):
  """Writes the SavedModel of the built model `mdl` to export_dir (replaced if present).

  Args:
    mdl: a built `model.ASVAE` (weights already restored).
    export_dir: output directory.
    operative_config: the gin config text (operative_config.gin) to ship as an asset.
    step: training step of the weights (metadata).
    dataset: dataset name (metadata).
    limits: per-request limits, a dict of `serving_limits` arguments; None or missing
      ones: as gin configures `serving_limits` (else its defaults).
    source: which checkpoint and why (`metadata`).
  Returns:
    export_dir.
  """
  limits = serving_limits(**(limits or {}))
  with tempfile.TemporaryDirectory(prefix="asvae_export_") as tmp:
    paths = [os.path.join(tmp, CONFIG_FILE), os.path.join(tmp, METADATA_FILE)]
    with open(paths[0], "w") as f:
      f.write(operative_config)
    with open(paths[1], "w") as f:
      json.dump(metadata(mdl, step, dataset, limits, source), f, indent=2, sort_keys=True)
    module = AsvaeServing(mdl, paths, limits)
    # Write beside the target, then swap: a failed export leaves the old one intact,
    # and only a directory that IS a SavedModel (or empty) is ever replaced.
    if (
      os.path.isdir(export_dir)
      and os.listdir(export_dir)
      and not os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    ):
      raise FileExistsError(
        f"export_dir {export_dir} exists and is not a SavedModel; refusing to replace it"
      )
    staging = export_dir.rstrip("/") + ".partial"
    if os.path.isdir(staging):
      shutil.rmtree(staging)
    tf.saved_model.save(module, staging, signatures=module.signatures())
    if os.path.isdir(export_dir):
      shutil.rmtree(export_dir)
    os.replace(staging, export_dir)
  return export_dir


def _gin_value(name, default):
  """gin.query_parameter(name), or `default` when it is not bound."""
  try:
    return gin.query_parameter(name)
  except ValueError:
    return default


def image_shape_from_gin():
  """(H, W, C) of the gin-configured dataset, without loading the data."""
  name = _gin_value("dataset.name", None)
  if name == "synthetic":
    return tuple(int(s) for s in _gin_value("dataset.synthetic_image_shape", (28, 28, 1)))
  if name not in _DEFAULT_SHAPES:
    raise errors.ConfigError(f"cannot infer the image shape of dataset.name={name!r}")
  return _DEFAULT_SHAPES[name]


def export_checkpoint(model_dir, export_dir, checkpoint=checkpoints.DEFAULT, image_shape=None):
  """Restores a checkpoint of model_dir into the gin-configured model and exports it to
  export_dir/<step>/ (a flat SavedModel at export_dir first moves into its own version).

  Like `evaluation.evaluate`, this builds the model from the gin config IN EFFECT and
  never parses, replaces or clears it: the caller parses model_dir/operative_config.gin
  first (tools/export.py: `registry.parse_model_dir(model_dir)`; a process that holds
  another config wraps both in `gin_config.fresh()`). The SavedModel ships the text of
  model_dir/operative_config.gin and, in its metadata, the checkpoint and why it was chosen.

  Args:
    model_dir: a training model_dir (needs operative_config.gin).
    export_dir: the export base (TF Serving's model base path).
    checkpoint: see `checkpoints.resolve_checkpoint` (default: the best, else the latest).
    image_shape: (H, W, C); None: that of the gin-configured dataset.
  Returns:
    (export_dir/<step>, restored checkpoint path).
  Raises:
    FileNotFoundError: no operative_config.gin or no such checkpoint.
    FileExistsError: export_dir exists and is not an export base (versions.check_base).
    errors.ConfigError: no gin config parsed, or a checkpoint of another model
      (errors.CheckpointMismatchError).
  """
  gin_path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.isfile(gin_path):
    raise FileNotFoundError(f"no {CONFIG_FILE} in model_dir {model_dir}")
  if not gin.config_str():
    raise errors.ConfigError(
      f"export_checkpoint builds the model from the parsed gin config, and none is parsed: "
      f"parse {gin_path} first (asvae_tf.registry.parse)"
    )
  checkpoints.resolve_checkpoint(model_dir, checkpoint)  # none: fail before any work
  versions.check_base(export_dir)
  with open(gin_path) as f:
    gin_text = f.read()
  with precision.policy_scope(precision.serving_dtype_policy()):
    mdl = model_lib.build_model(image_shape=tuple(image_shape or image_shape_from_gin()))
    mdl.build_all()
  # 'latest' / 'best' fall back past damaged checkpoints (one line each, files kept).
  prefix, step = checkpoints.restore_latest_intact(mdl, model_dir, checkpoint)
  source = {"checkpoint": prefix,
            "chosen_because": checkpoints.chosen_because(model_dir, checkpoint, prefix)}  # fmt: skip
  version_dir = versions.prepare(export_dir, step)
  export(mdl, version_dir, gin_text, step, _gin_value("dataset.name", None), source=source)
  return version_dir, prefix


def read_metadata(export_dir):
  """The metadata dict (assets/asvae_metadata.json) of a SavedModel or of the highest
  version of an export base."""
  with open(os.path.join(versions.resolve(export_dir), "assets", METADATA_FILE)) as f:
    return json.load(f)
