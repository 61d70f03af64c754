"""Building blocks of the networks: activations, a stack of layers with stateless dropout and
`Network`, the base of the network bodies (float32 outputs under mixed precision).

All weights use Xavier/Glorot-uniform initialisation (section 5). Dropout is stateless
and replica-invariant (`rng.dropout`): pass `seed` (int32 [2]) and `training=True`.
"""

import keras
import numpy as np
import tensorflow as tf

from asvae_tf import rng

_XAVIER = "glorot_uniform"  # section 5: Xavier initialisation


def _activation(name):
  if name == "leaky_relu":
    return lambda x: tf.nn.leaky_relu(x, alpha=0.2)
  return keras.activations.get(name)


class Network(keras.layers.Layer):
  """Base of the encoder, decoder and discriminator bodies: its outputs leave in the layer's
  variable dtype (float32), whatever it computes in. Under a mixed dtype policy
  (`train.dtype_policy`) the network runs in bfloat16 / float16 (Keras casts its float
  inputs and weights) while the posterior, likelihoods and losses it feeds stay float32.
  Under float32 the cast is no op at all (tf.cast returns a tensor of its dtype as is)."""

  def __call__(self, *args, **kwargs):
    out = super().__call__(*args, **kwargs)
    return tf.nest.map_structure(lambda t: tf.cast(t, self.variable_dtype), out)


class _Stack(keras.layers.Layer):
  """Layers `<prefix>_0 .. <prefix>_{n-1}`, each followed by the activation and (in
  training) stateless dropout. Subclasses create the layers after this __init__.

  Named attributes, not a list: tf.train.Checkpoint does not see into Keras 3's
  tracked lists, so weights held in a list attribute would silently not be saved.
  """

  def __init__(self, prefix, num_layers, activation, dropout_rate, **kwargs):
    super().__init__(**kwargs)
    self.prefix = prefix
    self.num_layers = int(num_layers)
    self.act = _activation(activation)
    self.dropout_rate = float(dropout_rate)

  def call(self, h, seed=None, training=False, batch_size=None):
    """h [b, ...] -> [b, ...]. batch_size (int or int32 scalar): h is ONE row [1, ...]
    standing for a batch of batch_size identical rows (a constant input, e.g. the zeros
    an explicit estimator's residual gets in place of an unused input); the first layer
    runs on that row and its output is broadcast to the batch before the activation and
    dropout: the same values, dropout masks and gradients as the stacked batch, without
    the first layer's [batch_size, n_in] matmul."""
    apply_dropout = training and self.dropout_rate > 0.0
    if apply_dropout and seed is None:
      raise ValueError(f"{self.name}: dropout in training needs a seed")
    for i in range(self.num_layers):
      layer = getattr(self, f"{self.prefix}_{i}")
      if i == 0 and batch_size is not None:
        h = _first_layer_broadcast(layer, h, batch_size)
      else:
        h = layer(h)
      h = self.act(h)
      if apply_dropout:
        h = rng.dropout(h, self.dropout_rate, rng.fold_in(seed, i))
    if self.num_layers == 0 and batch_size is not None:  # an empty stack passes the row on
      h = tf.broadcast_to(h, tf.concat([[batch_size], tf.shape(h)[1:]], 0))
    return h


class _DenseStack(_Stack):
  """Dense -> activation -> dropout, repeated; the building block of every MLP.

  Input [b, n_in] -> output [b, units[-1]] (or the input when units is empty).
  """

  def __init__(self, units, activation, dropout_rate, **kwargs):
    super().__init__("dense", len(units), activation, dropout_rate, **kwargs)
    for i, u in enumerate(units):
      setattr(
        self,
        f"dense_{i}",
        keras.layers.Dense(
          u, kernel_initializer=_XAVIER, dtype=self.dtype_policy, name=f"dense_{i}"
        ),
      )


def _first_layer_broadcast(layer, row, batch_size):
  """layer(row broadcast to batch_size rows), [batch_size, ...], with the same ops as the
  stacked call where they decide the rounding. A Dense layer multiplies the ONE row
  (row @ kernel), broadcasts the product and adds the bias to the full batch, as Keras'
  Dense does: the bias gradient then comes from the same batch reduction as before, so
  training is bit-identical to feeding the stacked constant batch. Other layers (the
  convolutions of the conv discriminators) get the stacked batch."""
  if isinstance(layer, keras.layers.Dense) and layer.activation in (None, keras.activations.linear):
    if not layer.built:
      layer.build(row.shape)
    if _is_zero_constant(row):  # `constant_row`: 0 @ kernel is exactly 0 (+0): no cast, no
      # matmul and no gradient for the kernel (model.idle_variables), bit-identically
      product = tf.zeros([1, layer.units], layer.compute_dtype)
    else:
      kernel = tf.cast(layer.kernel, layer.compute_dtype)
      product = tf.matmul(tf.cast(row, layer.compute_dtype), kernel)  # [1, units]
    h = tf.broadcast_to(product, tf.concat([[batch_size], tf.shape(product)[1:]], 0))
    return tf.nn.bias_add(h, tf.cast(layer.bias, layer.compute_dtype)) if layer.use_bias else h
  return layer(tf.broadcast_to(row, tf.concat([[batch_size], tf.shape(row)[1:]], 0)))


def _is_zero_constant(row):
  """True when row's value is known while tracing and is all zeros (`constant_row`)."""
  value = tf.get_static_value(row)
  return value is not None and not np.any(value)


def flatten_rows(x):
  """x [n, ...] -> [n, prod(...)]. A zero `constant_row` stays a constant (a reshape would
  hide its value from `_first_layer_broadcast`, which then skips its 0 @ kernel)."""
  size = int(np.prod(x.shape[1:]))
  if x.shape[0] == 1 and _is_zero_constant(x):
    return tf.zeros([1, size], x.dtype)
  return tf.reshape(x, [tf.shape(x)[0], size])


def constant_row(t):
  """An all-zero input of ONE row like t's rows: [1, ...] of t's dtype. Networks that
  take two inputs (the joint discriminators) broadcast a one-row input to the other
  input's batch (`broadcast_batches`), so an unused input costs no [batch, n] matmul."""
  return tf.zeros([1] + t.shape[1:].as_list(), t.dtype)


def broadcast_batches(x, z):
  """(batch size for x's path or None, batch size for z's path or None): an input whose
  static batch is 1 while the other's is not is broadcast to the other's batch."""
  if x.shape[0] == 1 and z.shape[0] != 1:
    return tf.shape(z)[0], None
  if z.shape[0] == 1 and x.shape[0] != 1:
    return None, tf.shape(x)[0]
  return None, None
