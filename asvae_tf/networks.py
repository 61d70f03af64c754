"""Keras 3 network bodies: MLP encoder / decoder and joint discriminators.

Architectures only; no probability here. The encoder maps images to a feature
vector that `flows.Posterior` turns into q_phi(z|x); the decoder maps codes to
the parameters of a `heads` likelihood; the joint discriminators f_psi(x, z) of
eqs. (5) and (6) map an (image, code) pair to a logit.

Gin sees factory functions (`mlp_encoder`, `mlp_decoder`,
`joint_discriminator`), not the Keras classes: Keras 3 inspects a layer
class's __init__ signature, which gin's class decoration hides.

All weights use Xavier/Glorot-uniform initialisation (section 5). Dropout is
stateless and replica-invariant (`noise.dropout`): pass `seed` (int32 [2]) and
`training=True` to apply it.
"""

import gin
import keras
import numpy as np
import tensorflow as tf

from asvae_tf import noise

_XAVIER = "glorot_uniform"


def _activation(name):
  if name == "leaky_relu":
    return lambda x: tf.nn.leaky_relu(x, alpha=0.2)
  return keras.activations.get(name)


class _DenseStack(keras.layers.Layer):
  """Dense -> activation -> dropout, repeated; the building block of every MLP.

  Input [b, n_in] -> output [b, units[-1]] (or the input when units is empty).
  """

  def __init__(self, units, activation, dropout_rate, **kwargs):
    super().__init__(**kwargs)
    # Named attributes, not a list: tf.train.Checkpoint does not see into Keras 3's
    # tracked lists, so weights held in a list attribute would silently not be saved.
    self.num_layers = len(units)
    for i, u in enumerate(units):
      setattr(self, f"dense_{i}", keras.layers.Dense(
          u, kernel_initializer=_XAVIER, dtype=self.dtype_policy, name=f"dense_{i}"))
    self.act = _activation(activation)
    self.dropout_rate = float(dropout_rate)

  def call(self, h, seed=None, training=False):
    apply_dropout = training and self.dropout_rate > 0.0
    if apply_dropout and seed is None:
      raise ValueError(f"{self.name}: dropout in training needs a seed")
    for i in range(self.num_layers):
      h = self.act(getattr(self, f"dense_{i}")(h))
      if apply_dropout:
        h = noise.dropout(h, self.dropout_rate, noise.fold_in(seed, i))
    return h


class MLPEncoder(keras.layers.Layer):
  """x [b, H, W, C] -> features [b, hidden_units[-1]] (paper MNIST: 784-500-500)."""

  def __init__(self, hidden_units=(500, 500), activation="relu", dropout_rate=0.0,
               **kwargs):
    super().__init__(**kwargs)
    self.body = _DenseStack(hidden_units, activation, dropout_rate, dtype=self.dtype_policy,
                            name="body")

  def call(self, x, seed=None, training=False):
    h = tf.reshape(x, [tf.shape(x)[0], int(np.prod(x.shape[1:]))])
    return self.body(h, seed=seed, training=training)


class MLPDecoder(keras.layers.Layer):
  """z [b, D] -> likelihood parameters [b, H, W, C * num_params] (paper: 32-500-500-784).

  Args:
    output_shape: (H, W, C * num_params), set by the model from the data and head.
  """

  def __init__(self, output_shape, hidden_units=(500, 500), activation="relu",
               dropout_rate=0.0, **kwargs):
    super().__init__(**kwargs)
    self.out_shape = tuple(int(s) for s in output_shape)
    self.body = _DenseStack(hidden_units, activation, dropout_rate, dtype=self.dtype_policy,
                            name="body")
    self.out = keras.layers.Dense(int(np.prod(self.out_shape)), kernel_initializer=_XAVIER,
                                  dtype=self.dtype_policy, name="out")

  def call(self, z, seed=None, training=False):
    h = self.out(self.body(z, seed=seed, training=training))
    return tf.reshape(h, [tf.shape(z)[0]] + list(self.out_shape))


class JointDiscriminator(keras.layers.Layer):
  """f_psi(x, z): x [b, H, W, C], z [b, D] -> logit [b].

  x and z are embedded separately (x_units, z_units), concatenated, and passed
  through joint_units before a linear logit, as in ALI-style joint
  discriminators. Dropout (default 0.2) regularises every hidden layer.
  """

  def __init__(self, x_units=(500,), z_units=(500,), joint_units=(500,),
               activation="leaky_relu", dropout_rate=0.2, **kwargs):
    super().__init__(**kwargs)
    kw = dict(activation=activation, dropout_rate=dropout_rate, dtype=self.dtype_policy)
    self.x_path = _DenseStack(x_units, name="x_path", **kw)
    self.z_path = _DenseStack(z_units, name="z_path", **kw)
    self.joint = _DenseStack(joint_units, name="joint", **kw)
    self.logit = keras.layers.Dense(1, kernel_initializer=_XAVIER, dtype=self.dtype_policy,
                                    name="logit")

  def call(self, x, z, seed=None, training=False):
    seeds = [None] * 3 if seed is None else [noise.fold_in(seed, i) for i in range(3)]
    hx = tf.reshape(x, [tf.shape(x)[0], int(np.prod(x.shape[1:]))])
    hx = self.x_path(hx, seed=seeds[0], training=training)
    hz = self.z_path(z, seed=seeds[1], training=training)
    h = self.joint(tf.concat([hx, hz], axis=-1), seed=seeds[2], training=training)
    return tf.squeeze(self.logit(h), axis=-1)


@gin.configurable("mlp_encoder", denylist=["name"])
def mlp_encoder(hidden_units=(500, 500), activation="relu", dropout_rate=0.0, name="encoder"):
  """Gin factory of `MLPEncoder`."""
  return MLPEncoder(hidden_units=hidden_units, activation=activation,
                    dropout_rate=dropout_rate, name=name)


@gin.configurable("mlp_decoder", denylist=["output_shape", "name"])
def mlp_decoder(output_shape, hidden_units=(500, 500), activation="relu", dropout_rate=0.0,
                name="decoder"):
  """Gin factory of `MLPDecoder`; output_shape is set by the model."""
  return MLPDecoder(output_shape, hidden_units=hidden_units, activation=activation,
                    dropout_rate=dropout_rate, name=name)


@gin.configurable("joint_discriminator", denylist=["name"])
def joint_discriminator(x_units=(500,), z_units=(500,), joint_units=(500,),
                        activation="leaky_relu", dropout_rate=0.2, name="discriminator"):
  """Gin factory of `JointDiscriminator`."""
  return JointDiscriminator(x_units=x_units, z_units=z_units, joint_units=joint_units,
                            activation=activation, dropout_rate=dropout_rate, name=name)
