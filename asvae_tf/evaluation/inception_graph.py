"""The 2015 TF Inception GraphDef of the published IS / FID code, and FID reference statistics.

Published Inception Scores (Salimans et al. 2016, openai/improved-gan
`inception_score/model.py`) and FIDs (Heusel et al. 2017, bioinf-jku/TTUR `fid.py`) run
the frozen graph `classify_image_graph_def.pb` of TensorFlow's `inception-2015-12-05.tgz`:

  * input `ExpandDims:0`: float32 images [N, H, W, 3], pixel values 0..255; the graph
    resizes them to 299x299 itself (`ResizeBilinear`, TF1's align_corners=False) and
    scales them to (x - 128) / 128 (`Sub`, `Mul`). A graph without `ExpandDims` is fed at
    `Mul:0` with that preprocessing done here (same resize op, same scaling);
  * FID features: `pool_3:0` [N, 1, 1, 2048], reshaped to [N, 2048];
  * IS class probabilities: softmax(pool_3 W) with W the weights of the graph's
    `softmax/logits/MatMul` (1008 classes) and WITHOUT the graph's bias, exactly as
    improved-gan computes them (the graph's own `softmax:0` reshapes pool_3 to a batch of
    one image, which is why the published code rebuilds it).

Numbers from `InceptionGraph` are therefore comparable with published IS / FID (given the
same number of images and splits); `feature_nets.InceptionNet` (Keras' InceptionV3
weights) gives numbers of the same kind that are not. Images here are float in [0, 1];
they are quantised to 8-bit pixel values round(255 x) (as a PNG of them would be; real
8-bit images come back exactly) and grey images repeated to 3 channels.

`load_reference_stats(path)` reads TTUR's statistics format, an .npz with `mu` [D] and
`sigma` [D, D] of the pool_3 features of a reference set (e.g. TTUR's
fid_stats_cifar10_train.npz); the FID is then taken against them instead of against the
evaluated split. `make_inception` picks the network from the `evaluate.*` settings.
"""

import io
import zipfile

import numpy as np
import tensorflow as tf
from google.protobuf import message

from asvae_tf import errors
from asvae_tf.evaluation import feature_nets

GRAPH_FILE = "classify_image_graph_def.pb"
INPUT_TENSORS = ("ExpandDims:0", "Mul:0")  # raw 0..255 pixels / preprocessed 299x299
POOL_TENSOR = "pool_3:0"
LOGITS_MATMUL = "softmax/logits/MatMul"
NOT_SET = (
  "neither evaluate.inception_graph (--inception_graph) nor evaluate.inception_weights "
  "(--inception_weights) set"
)


def make_inception(inception_weights, inception_graph, fid_reference_stats):
  """The Inception network the `evaluate.*` settings ask for, or None (IS / FID skipped).

  Raises (one line, before any work): errors.ConfigError for both networks at once, or
  reference statistics without the graph; FileNotFoundError / errors.ConfigError for a
  missing or unreadable file.
  """
  if inception_weights and inception_graph:
    raise errors.ConfigError(
      "set one of evaluate.inception_graph (--inception_graph: the 2015 TF graph, comparable "
      "with published IS/FID) and evaluate.inception_weights (--inception_weights), not both"
    )
  if fid_reference_stats and not inception_graph:
    raise errors.ConfigError(
      "evaluate.fid_reference_stats (--fid_reference_stats) holds pool_3 statistics of the "
      "2015 TF Inception graph: it needs evaluate.inception_graph (--inception_graph)"
    )
  if inception_graph:
    return InceptionGraph(inception_graph, fid_reference_stats)
  if inception_weights:
    return feature_nets.InceptionNet(inception_weights)
  return None


def _read_graph_def(path):
  """tf.compat.v1.GraphDef of path; FileNotFoundError / errors.ConfigError (one line)."""
  if not path or not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise FileNotFoundError(
      f"Inception graph file not found: {path!r} (machines here cannot download it; it is "
      f"{GRAPH_FILE} of http://download.tensorflow.org/models/image/imagenet/"
      f"inception-2015-12-05.tgz, or leave evaluate.inception_graph unset to skip IS/FID)"
    )
  graph_def = tf.compat.v1.GraphDef()
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      graph_def.ParseFromString(f.read())
  except (message.DecodeError, OSError, tf.errors.OpError) as e:
    raise errors.ConfigError(
      f"{path} is not a TensorFlow GraphDef (expected {GRAPH_FILE}): {errors.one_line(e)[:200]}"
    ) from None
  names = {node.name for node in graph_def.node}
  needed = [POOL_TENSOR.split(":")[0], LOGITS_MATMUL]
  missing = [n for n in needed if n not in names]
  if missing or not any(t.split(":")[0] in names for t in INPUT_TENSORS):
    raise errors.ConfigError(
      f"{path} is not the 2015 Inception graph ({GRAPH_FILE}): it has no "
      f"{' / '.join(missing) or ' or '.join(INPUT_TENSORS)} node"
    )
  return graph_def


def _graph_function(graph_def, input_name, image_size):
  """A concrete function: float32 [N, H, W, 3] pixels 0..255 -> (probs [N, C], pool_3
  features [N, D]), the graph's ops fed at input_name (`Mul:0`: preprocessed here to
  image_size, as the graph's own ResizeBilinear / Sub / Mul do)."""

  def forward(images):
    if input_name == "Mul:0":
      images = tf.raw_ops.ResizeBilinear(images=images, size=image_size, align_corners=False)
      images = (images - 128.0) / 128.0
    pool, matmul = tf.graph_util.import_graph_def(
      graph_def,
      input_map={input_name: images},
      return_elements=[POOL_TENSOR, LOGITS_MATMUL],
      name="inception",
    )
    features = tf.reshape(pool, [-1, pool.shape[-1]])
    logits = tf.matmul(features, matmul.inputs[1])  # improved-gan: no bias
    return tf.nn.softmax(logits), features

  try:
    wrapped = tf.compat.v1.wrap_function(
      forward, [tf.TensorSpec([None, None, None, 3], tf.float32)]
    )
    # Only the ops the outputs need: the graph's own pool_3/_reshape and softmax take a
    # batch of one image and would fail shape inference for a batch of N.
    return wrapped.prune(wrapped.inputs[0], list(wrapped.structured_outputs))
  except (ValueError, TypeError, tf.errors.OpError) as e:
    raise errors.ConfigError(
      f"cannot import the Inception graph at {input_name}: {errors.one_line(e)[:200]}"
    ) from None


def _mul_input_size(graph_def):
  """[H, W] of the graph's `Mul:0` (299x299 in the 2015 graph)."""
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
  shape = graph.get_tensor_by_name("Mul:0").shape
  if shape.rank != 4 or shape[1] is None or shape[2] is None:
    return [299, 299]
  return [int(shape[1]), int(shape[2])]


class InceptionGraph(feature_nets._FeatureNet):  # pylint: disable=protected-access
  """The frozen 2015 TF Inception graph: (softmax [N, 1008], pool_3 [N, 2048]), as the
  published IS / FID code runs it (see the module docstring). Comparable numbers."""

  comparable = True

  def __init__(self, graph_path, reference_stats_path=None, batch_size=50):
    graph_def = _read_graph_def(graph_path)
    names = {node.name for node in graph_def.node}
    self.input_name = next(t for t in INPUT_TENSORS if t.split(":")[0] in names)
    size = _mul_input_size(graph_def) if self.input_name == "Mul:0" else None
    graph_fn = _graph_function(graph_def, self.input_name, size)
    dim = graph_fn.structured_outputs[1].shape[-1]  # 2048 in the 2015 graph
    self.feature_dim = None if dim is None else int(dim)
    self.graph_path = graph_path
    self.name = f"Inception graph ({graph_path})"
    self.reference_stats = None
    self.reference_stats_path = reference_stats_path
    if reference_stats_path:
      self.reference_stats = load_reference_stats(reference_stats_path, self.feature_dim)

    def forward(x):
      if x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
      return graph_fn(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0))

    super().__init__(forward, batch_size)

  @property
  def provenance(self):
    """metrics.json keys naming the network and what the FID is measured against."""
    return {
      "inception_graph": self.graph_path,
      "inception_network": f"2015 TF Inception graph ({GRAPH_FILE} format, fed at "
      f"{self.input_name}): comparable with published IS/FID",
      "inception_comparable": True,
      "fid_reference": self.reference_stats_path or "the evaluated split",
    }


def load_reference_stats(path, feature_dim=None):
  """(mu [D], sigma [D, D]) float64 of a TTUR FID statistics .npz (keys `mu`, `sigma`).

  Raises (one line): FileNotFoundError; errors.ConfigError for a file that is not such an
  .npz, non-finite values, or D != feature_dim (when given).
  """
  if not path or not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"FID reference statistics file not found: {path!r}")
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      npz = np.load(io.BytesIO(f.read()), allow_pickle=False)
    if not hasattr(npz, "files"):
      raise ValueError("an .npy array, not an .npz archive")
    mu, sigma = np.asarray(npz["mu"], np.float64), np.asarray(npz["sigma"], np.float64)
  except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise errors.ConfigError(
      f"{path} is not an FID statistics .npz with float arrays 'mu' [D] and 'sigma' [D, D] "
      f"(TTUR's format): {errors.one_line(e)[:200]}"
    ) from None
  d = mu.shape[0] if mu.ndim == 1 else None
  if d is None or sigma.shape != (d, d):
    raise errors.ConfigError(
      f"{path}: 'mu' must be [D] and 'sigma' [D, D], got {mu.shape} and {sigma.shape}"
    )
  if feature_dim is not None and d != feature_dim:
    raise errors.ConfigError(
      f"{path} holds statistics of {d}-d features; the Inception graph's pool_3 has {feature_dim}"
    )
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
    raise errors.ConfigError(f"{path}: 'mu' / 'sigma' hold NaN or Inf")
  return mu, sigma


def table_labels(metrics):
  """(IS row name, FID row name) of `run.format_table`: which network, whether its numbers
  are comparable with published ones, and what the FID is against."""
  if metrics.get("inception_comparable"):
    network = "2015 TF Inception graph: comparable"
  else:
    network = "Keras InceptionV3: NOT comparable with published"
  reference = metrics.get("fid_reference", "the evaluated split")
  return f"Inception Score ({network})", f"FID ({network}; vs {reference})"
