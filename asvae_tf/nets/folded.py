"""The MLP decoder's serving path: each layer's bias rides inside its matmul.

A Keras Dense layer is MatMul + BiasAdd (+ the activation). Measured on a 2-core Intel Xeon
with AMX (docs/results.md, "Speed"), at the `sample` shapes (1000 x 32 -> 500 -> 500 -> 784):
  * grappler fuses MatMul + BiasAdd into oneDNN's `inner_product`, which does not use AMX,
    while a plain bfloat16 MatMul runs oneDNN's AMX `brg_matmul`;
  * unfused, a bfloat16 bias add runs element by element through a float conversion.
Both go away when the bias is a row of the kernel and the input has a column of ones:

  [h, 1] @ [[W], [b]] = h W + b.

The column of ones is carried from layer to layer by one extra output unit of each hidden
layer (kernel column 0, bias 1; it needs activation(1) = 1, as relu, leaky_relu, elu and
linear have), and each hidden width is padded with zero units to a multiple of
PAD_MULTIPLE (500 + 1 -> 512), the AMX tile's multiple. The product then sums the bias in
the matmul's float32 accumulator and rounds once, where the Keras path rounds the product
to bfloat16 before adding the bias.

`fold(decoder)` builds a `FoldedMLP` for a bfloat16 MLP decoder: a SNAPSHOT of its
weights in bfloat16, held in its own non-trainable variables (the export's `decode`,
`sample` and `reconstruct` signatures run it under serving.dtype_policy =
'mixed_bfloat16'; build it after the weights are restored).
"""

import warnings

import keras
import numpy as np
import tensorflow as tf

from asvae_tf.nets import mlp

PAD_MULTIPLE = 32


class FoldedMLP(tf.Module):
  """Inference-only copy of an MLP decoder, z [n, D] float32 -> params [n, *out_shape]
  float32, numerically the decoder's call up to the rounding of the bias add (a float16
  copy would turn an overflowing unit's inf into NaN through the 0 * inf of the padding).

  Attributes: kernels (tf.Variables [k_i + 1 or padded, n_i] in the compute dtype; row
  k_i of the input side is the bias), out_shape, compute_dtype.
  """

  def __init__(self, kernels, activation, out_shape, compute_dtype, name="folded_decoder"):
    """kernels: float32 arrays, the folded kernels (`fold_kernels`); activation: the hidden
    layers' activation; out_shape: the decoder's output shape per example."""
    super().__init__(name=name)
    self.compute_dtype = tf.as_dtype(compute_dtype)
    self.kernels = [
      tf.Variable(tf.cast(k, self.compute_dtype), trainable=False, name=f"{name}/kernel_{i}")
      for i, k in enumerate(kernels)
    ]
    self._act = activation
    self.out_shape = tuple(int(s) for s in out_shape)

  def __call__(self, z):
    """z [n, D] -> [n, *out_shape] float32."""
    n = tf.shape(z)[0]
    h = tf.concat([tf.cast(z, self.compute_dtype), tf.ones([n, 1], self.compute_dtype)], 1)
    for i, kernel in enumerate(self.kernels):
      h = tf.matmul(h, kernel)
      if i < len(self.kernels) - 1:
        h = self._act(h)
    return tf.reshape(tf.cast(h, tf.float32), tf.concat([[n], self.out_shape], 0))


def fold_kernels(dense_weights, pad_multiple=PAD_MULTIPLE):
  """[(W_i [k_i, n_i], b_i [n_i])] of a Dense chain -> the folded kernels, float32 arrays.

  Kernel i takes [h_{i-1}, 1, 0...] (the previous padded width; the first input is [z, 1])
  and, for a hidden layer, outputs [h_i, 1, 0...] of width round_up(n_i + 1, pad_multiple):
  rows [W_i; b_i; 0], plus for hidden layers a column that is 1 on the bias row and 0
  elsewhere, then zero columns. The last layer outputs exactly n_last columns.
  """
  kernels, width_in = [], None
  for i, (w, b) in enumerate(dense_weights):
    w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
    k, n = w.shape
    rows = k + 1 if width_in is None else width_in
    last = i == len(dense_weights) - 1
    cols = n if last else -(-(n + 1) // pad_multiple) * pad_multiple
    folded = np.zeros([rows, cols], np.float32)
    folded[:k, :n], folded[k, :n] = w, b
    if not last:
      folded[k, n] = 1.0  # carries the column of ones
    kernels.append(folded)
    width_in = cols
  return kernels


def fold(decoder):
  """A `FoldedMLP` of an `MLPDecoder`'s current weights, or None when it would not pay or
  would not be exact:
    * the compute dtype is not bfloat16 (float32 gains nothing measurable: paired +0.3 ±
      3.2%, docs/results.md; the AMX kernels are bfloat16's);
    * not an `MLPDecoder`, or a subclass with its own `call`;
    * a Dense layer with its own activation or without a bias;
    * a hidden activation that is not elementwise or has activation(1) != 1 (tanh, softmax).
  """
  if not isinstance(decoder, mlp.MLPDecoder) or type(decoder).call is not mlp.MLPDecoder.call:
    return None
  body, out = decoder.body, decoder.out
  if tf.as_dtype(out.compute_dtype) != tf.bfloat16:
    return None
  layers = [getattr(body, f"{body.prefix}_{i}") for i in range(body.num_layers)] + [out]
  for layer in layers:
    linear = layer.activation in (None, keras.activations.linear)
    if not (isinstance(layer, keras.layers.Dense) and layer.use_bias and linear):
      return None
  if body.num_layers and not _carries_ones(body.act, out.compute_dtype):
    return None
  kernels = fold_kernels([(layer.kernel.numpy(), layer.bias.numpy()) for layer in layers])
  return FoldedMLP(kernels, body.act, decoder.out_shape, out.compute_dtype)


def _carries_ones(act, dtype):
  """True when act is elementwise on a [2, 4] probe (each column alone gives the same
  values) and act(1) == 1; False when it is not, or fails on the probe."""
  probe = tf.constant([[1.0, 0.0, -1.5, 2.0], [-0.5, 1.0, 3.0, 0.25]], dtype)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # keras: "softmax over an axis of size 1"
      whole = np.asarray(act(probe), np.float32)
      columns = [np.asarray(act(probe[:, i : i + 1]), np.float32) for i in range(4)]
  except Exception:  # pylint: disable=broad-except  # e.g. glu's split of an odd axis
    return False
  if whole.shape != (2, 4) or any(c.shape != (2, 1) for c in columns):
    return False
  return np.array_equal(whole, np.concatenate(columns, 1)) and whole[0, 0] == 1.0
