"""Building blocks of the networks: activations, a stack of layers with stateless dropout and
`Network`, the base of the network bodies (float32 outputs under mixed precision).

All weights use Xavier/Glorot-uniform initialisation (section 5). Dropout is stateless
and replica-invariant (`rng.dropout`): pass `seed` (int32 [2]) and `training=True`.
"""

import keras
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

  def call(self, h, seed=None, training=False):
    apply_dropout = training and self.dropout_rate > 0.0
    if apply_dropout and seed is None:
      raise ValueError(f"{self.name}: dropout in training needs a seed")
    for i in range(self.num_layers):
      h = self.act(getattr(self, f"{self.prefix}_{i}")(h))
      if apply_dropout:
        h = rng.dropout(h, self.dropout_rate, rng.fold_in(seed, i))
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
