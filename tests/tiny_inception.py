"""A tiny stand-in for the 2015 TF Inception graph (classify_image_graph_def.pb) and its
NumPy twin, for the IS / FID tests.

The graph has the real graph's tensor names and structure around them:
`DecodeJpeg/contents` (string placeholder) -> `DecodeJpeg` -> `Cast` -> `ExpandDims`
-> `ResizeBilinear` (to SIZE x SIZE) -> `Sub` (- 128) -> `Mul` (/ 128), or with
`expand_dims=False` a `Mul` placeholder [1, size, size, 3] as its input; then a 1x1
convolution + ReLU, `pool_3` (average pool to [N, 1, 1, FEATURES]), `pool_3/_reshape`
(to [1, FEATURES]: batch one, like the real graph), `softmax/logits/MatMul` with
`softmax/weights`, `softmax/logits` (+ `softmax/biases`) and `softmax`.
"""

import numpy as np
import tensorflow as tf

SIZE = 8
FEATURES = 5
CLASSES = 4


def write_graph(path, expand_dims=True, size=SIZE, seed=0):
  """Writes the graph to path; returns its weights (conv [3, F], W [F, C], bias [C])."""
  rng = np.random.RandomState(seed)
  conv = rng.normal(size=(3, FEATURES)).astype(np.float32)
  w = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
  bias = (3.0 * rng.normal(size=CLASSES)).astype(np.float32)  # large: leaving it out shows
  graph = tf.Graph()
  with graph.as_default():
    if expand_dims:
      contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
      x = tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg")
      x = tf.expand_dims(tf.cast(x, tf.float32, name="Cast"), 0, name="ExpandDims")
      resize = tf.constant([size, size], name="ResizeBilinear/size")
      x = tf.raw_ops.ResizeBilinear(images=x, size=resize, name="ResizeBilinear")
      x = tf.subtract(x, tf.constant(128.0, name="Sub/y"), name="Sub")
      x = tf.multiply(x, tf.constant(1.0 / 128.0, name="Mul/y"), name="Mul")
    else:
      x = tf.compat.v1.placeholder(tf.float32, [1, size, size, 3], name="Mul")
    kernel = tf.constant(conv.reshape(1, 1, 3, FEATURES), name="conv/weights")
    h = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID", name="conv"), name="conv/relu")
    pool = tf.nn.avg_pool2d(h, size, 1, "VALID", name="pool_3")
    shape = tf.constant([1, FEATURES], name="pool_3/_reshape/shape")
    flat = tf.reshape(pool, shape, name="pool_3/_reshape")
    mm = tf.matmul(flat, tf.constant(w, name="softmax/weights"), name="softmax/logits/MatMul")
    logits = tf.nn.bias_add(mm, tf.constant(bias, name="softmax/biases"), name="softmax/logits")
    tf.nn.softmax(logits, name="softmax")
  with open(path, "wb") as f:
    f.write(graph.as_graph_def().SerializeToString())
  return conv, w, bias


def reference(images, weights, with_bias=False):
  """NumPy twin of the graph on images float [N, size, size, C] in [0, 1] (no resize:
  the tests use images of the graph's size): (probs [N, C], pool_3 features [N, F]), as
  the published code computes them (8-bit pixels, grey repeated, no softmax bias)."""
  conv, w, bias = weights
  x = np.round(np.clip(images.astype(np.float64), 0.0, 1.0) * 255.0)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  h = np.maximum(np.einsum("nhwc,cf->nhwf", (x - 128.0) / 128.0, conv), 0.0)
  features = h.mean(axis=(1, 2))
  logits = features @ w + (bias if with_bias else 0.0)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True), features


def write_stats(path, features):
  """A TTUR-format statistics .npz (mu, sigma) of features [N, F]; returns (mu, sigma)."""
  mu, sigma = features.mean(axis=0), np.cov(features, rowvar=False)
  np.savez(path, mu=mu, sigma=sigma)
  return mu, sigma
