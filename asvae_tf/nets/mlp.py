"""MLP encoder, decoder and joint discriminator f_psi(x, z) (gin: mlp_encoder, mlp_decoder,
joint_discriminator): the MNIST networks (784-500-500 / 32-500-500-784, 500-unit
discriminator paths)."""

import keras
import numpy as np
import tensorflow as tf

from asvae_tf import gin_config
from asvae_tf import rng
from asvae_tf.nets.layers import _XAVIER, Network, _DenseStack, broadcast_batches, flatten_rows


class MLPEncoder(Network):
  """x [b, H, W, C] -> features [b, hidden_units[-1]] (paper MNIST: 784-500-500)."""

  def __init__(self, hidden_units=(500, 500), activation="relu", dropout_rate=0.0, **kwargs):
    super().__init__(**kwargs)
    self.body = _DenseStack(
      hidden_units, activation, dropout_rate, dtype=self.dtype_policy, name="body"
    )

  def call(self, x, seed=None, training=False):
    h = tf.reshape(x, [tf.shape(x)[0], int(np.prod(x.shape[1:]))])
    return self.body(h, seed=seed, training=training)


class MLPDecoder(Network):
  """z [b, D] -> likelihood parameters [b, H, W, C * num_params] (paper: 32-500-500-784).

  Args:
    output_shape: (H, W, C * num_params), set by the model from the data and head.
  """

  def __init__(
    self, output_shape, hidden_units=(500, 500), activation="relu", dropout_rate=0.0, **kwargs
  ):
    super().__init__(**kwargs)
    self.out_shape = tuple(int(s) for s in output_shape)
    self.body = _DenseStack(
      hidden_units, activation, dropout_rate, dtype=self.dtype_policy, name="body"
    )
    self.out = keras.layers.Dense(
      int(np.prod(self.out_shape)), kernel_initializer=_XAVIER, dtype=self.dtype_policy, name="out"
    )

  def call(self, z, seed=None, training=False):
    h = self.out(self.body(z, seed=seed, training=training))
    return tf.reshape(h, [tf.shape(z)[0]] + list(self.out_shape))


class JointDiscriminator(Network):
  """f_psi(x, z): x [b, H, W, C], z [b, D] -> logit [b].

  x and z are embedded separately (x_units, z_units), concatenated, and passed
  through joint_units before a linear logit, as in ALI-style joint
  discriminators. Dropout (default 0.2) regularises every hidden layer.
  """

  def __init__(
    self,
    x_units=(500,),
    z_units=(500,),
    joint_units=(500,),
    activation="leaky_relu",
    dropout_rate=0.2,
    **kwargs,
  ):
    super().__init__(**kwargs)
    kw = dict(activation=activation, dropout_rate=dropout_rate, dtype=self.dtype_policy)
    self.x_path = _DenseStack(x_units, name="x_path", **kw)
    self.z_path = _DenseStack(z_units, name="z_path", **kw)
    self.joint = _DenseStack(joint_units, name="joint", **kw)
    self.logit = keras.layers.Dense(
      1, kernel_initializer=_XAVIER, dtype=self.dtype_policy, name="logit"
    )

  def call(self, x, z, seed=None, training=False):
    """x [b or 1, H, W, C], z [b or 1, D] -> [b]; a one-row input is a constant shared by
    all b rows (`layers.constant_row`)."""
    seeds = [None] * 3 if seed is None else [rng.fold_in(seed, i) for i in range(3)]
    bx, bz = broadcast_batches(x, z)
    # (flatten_rows: a zero constant row stays a constant, so x_path skips its kernel.)
    hx = (
      flatten_rows(x)
      if bx is not None
      else tf.reshape(x, [tf.shape(x)[0], int(np.prod(x.shape[1:]))])
    )
    hx = self.x_path(hx, seed=seeds[0], training=training, batch_size=bx)
    hz = self.z_path(z, seed=seeds[1], training=training, batch_size=bz)
    h = self.joint(tf.concat([hx, hz], axis=-1), seed=seeds[2], training=training)
    return tf.squeeze(self.logit(h), axis=-1)


# ---- convolutional networks (natural images) ---------------------------------


mlp_encoder = gin_config.factory(MLPEncoder, "mlp_encoder", layer_name="encoder")
mlp_decoder = gin_config.factory(
  MLPDecoder, "mlp_decoder", layer_name="decoder", denylist=["output_shape"]
)
joint_discriminator = gin_config.factory(
  JointDiscriminator, "joint_discriminator", layer_name="discriminator"
)
