"""MLP encoder, decoder and joint discriminator f_psi(x, z) (gin: mlp_encoder, mlp_decoder,
joint_discriminator): the MNIST networks (784-500-500 / 32-500-500-784, 500-unit
discriminator paths)."""

import keras
import numpy as np
import tensorflow as tf

from asvae_tf import gin_config
from asvae_tf import rng
from asvae_tf.errors import ConfigError
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


OUTPUT_BIASES = ("zeros", "data_mean")


class MLPDecoder(Network):
  """z [b, D] -> likelihood parameters [b, H, W, C * num_params] (paper: 32-500-500-784).

  Args:
    output_shape: (H, W, C * num_params), set by the model from the data and head.
    output_bias: initial bias of the output layer. 'zeros' (section 5: Xavier weights,
      zero biases) or 'data_mean' (Bernoulli decoders): logit of the training images'
      per-pixel mean (`data_mean_logits`), set by the training run at its fresh start, so
      the first samples are the data's mean image instead of grey noise (as in the IWAE
      code of Burda et al.). A resumed run restores its checkpoint over it.
  """

  def __init__(
    self,
    output_shape,
    hidden_units=(500, 500),
    activation="relu",
    dropout_rate=0.0,
    output_bias="zeros",
    **kwargs,
  ):
    super().__init__(**kwargs)
    if output_bias not in OUTPUT_BIASES:
      raise ConfigError(
        f"mlp_decoder.output_bias must be one of {OUTPUT_BIASES}; got {output_bias!r}"
      )
    self.output_bias = output_bias
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

  def initialise_output_bias(self, train_images):
    """Sets the built output layer's bias as `output_bias` says ('zeros': left as built).

    train_images: uint8 [N, H, W, C], pixel / 255 the Bernoulli probability; the decoder
    must output one logit per pixel (output_shape == (H, W, C))."""
    if self.output_bias == "zeros":
      return
    if tuple(train_images.shape[1:]) != self.out_shape:
      raise ConfigError(
        f"mlp_decoder.output_bias = 'data_mean' needs one logit per pixel (a Bernoulli "
        f"likelihood): the decoder outputs {self.out_shape}, images are "
        f"{tuple(train_images.shape[1:])}"
      )
    self.out.bias.assign(data_mean_logits(train_images))


def data_mean_logits(images, eps=1e-3):
  """uint8 images [N, H, W, C] -> float32 [H * W * C]: logit(p), p the per-pixel mean of
  images / 255 clipped to [eps, 1 - eps] (a pixel never on in training gets logit(1e-3),
  not -inf). Among constant Bernoulli decoders with p in [eps, 1 - eps], the one whose
  logits are these has the largest expected log-likelihood of the training images."""
  flat = images.reshape(len(images), -1)
  p = np.clip(flat.mean(axis=0, dtype=np.float64) / 255.0, eps, 1.0 - eps)
  return (np.log(p) - np.log1p(-p)).astype(np.float32)


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
