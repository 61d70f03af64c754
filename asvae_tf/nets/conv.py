"""DCGAN-like convolutional encoder, decoder and joint discriminator (NHWC) for natural
images (gin: conv_encoder, conv_decoder, conv_joint_discriminator).

`num_stages` stride-2 convolutions (kernel 4, 'same' padding: each halves H and W
exactly) of widths base_width * 2^i (capped at max_width); by default num_stages is
derived from the image size so that the smallest feature map is 4x4 (32x32 -> 3 stages of
64, 128, 256; 64x64 -> 4 stages of 64, 128, 256, 512). The decoder mirrors the encoder
with stride-2 transposed convolutions. No batch normalisation: batch statistics would
couple the examples of a batch (and the replicas of a step) and break the per-example
terms of eq. (11).
"""

import keras
import numpy as np
import tensorflow as tf

from asvae_tf import gin_config
from asvae_tf import rng
from asvae_tf.nets.layers import _XAVIER, Network, _DenseStack, _Stack, _activation
from asvae_tf.nets.layers import broadcast_batches


def conv_stages(height, width, num_stages=None, who="conv network"):
  """Number of stride-2 stages for an H x W image (each stage halves H and W).

  num_stages=None derives it: square images whose side is 4 * 2^k (k >= 1:
  8, 16, 32, 64, 128, ...) get k stages (smallest feature map 4x4). An explicit
  num_stages >= 1 needs H and W divisible by 2^num_stages.

  Raises:
    ValueError naming the unsupported size and the remedy.
  """
  height, width = int(height), int(width)
  if num_stages is None:
    side = height
    k = 0
    while side > 4 and side % 2 == 0:
      side //= 2
      k += 1
    if height != width or side != 4 or k < 1:
      raise ValueError(
        f"{who}: unsupported image size {height}x{width}: with num_stages=None the "
        f"images must be square with side 4 * 2^k (8, 16, 32, 64, 128, ...), e.g. "
        f"32x32 (CIFAR-10) or 64x64 (ImageNet 64x64); otherwise set num_stages so "
        f"that H and W are divisible by 2^num_stages"
      )
    return k
  k = int(num_stages)
  if k < 1:
    raise ValueError(f"{who}: num_stages must be >= 1 or None, got {num_stages!r}")
  if height % 2**k or width % 2**k:
    raise ValueError(
      f"{who}: unsupported image size {height}x{width} for num_stages={k}: H and W "
      f"must be divisible by 2^{k} = {2**k}"
    )
  return k


def conv_widths(num_stages, base_width, max_width):
  """Channels of the stride-2 stages, finest first: min(base_width * 2^i, max_width)."""
  if int(base_width) < 1 or int(max_width) < 1:
    raise ValueError(f"base_width and max_width must be >= 1, got {base_width}, {max_width}")
  return [min(int(base_width) * 2**i, int(max_width)) for i in range(int(num_stages))]


class _ConvStack(_Stack):
  """Conv2D(stride 2, 'same') -> activation -> dropout, repeated (NHWC).

  Input [b, H, W, C] -> output [b, H / 2^n, W / 2^n, widths[-1]].
  """

  def __init__(self, widths, kernel_size, activation, dropout_rate, **kwargs):
    super().__init__("conv", len(widths), activation, dropout_rate, **kwargs)
    for i, width in enumerate(widths):
      setattr(
        self,
        f"conv_{i}",
        keras.layers.Conv2D(
          width,
          kernel_size,
          strides=2,
          padding="same",
          kernel_initializer=_XAVIER,
          dtype=self.dtype_policy,
          name=f"conv_{i}",
        ),
      )


def _flatten(h):
  return tf.reshape(h, [tf.shape(h)[0], int(np.prod(h.shape[1:]))])


class _ConvFeatures(keras.layers.Layer):
  """x [b, H, W, C] -> stride-2 conv stages -> flatten -> Dense stack -> [b, F].

  The conv stages are created when the layer first sees an image (their number
  depends on H and W, see `conv_stages`); an unsupported size fails there.
  """

  def __init__(
    self,
    base_width,
    max_width,
    kernel_size,
    num_stages,
    hidden_units,
    activation,
    dropout_rate,
    who=None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.who = who or self.name
    self.base_width, self.max_width = int(base_width), int(max_width)
    self.kernel_size = int(kernel_size)
    self.num_stages = None if num_stages is None else int(num_stages)
    self.activation, self.dropout_rate = activation, float(dropout_rate)
    conv_widths(1, base_width, max_width)  # validates the widths now
    self.dense = _DenseStack(
      hidden_units, activation, dropout_rate, dtype=self.dtype_policy, name="dense"
    )

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"{self.who}: expects images [b, H, W, C], got shape {input_shape}")
    k = conv_stages(input_shape[1], input_shape[2], self.num_stages, who=self.who)
    self.convs = _ConvStack(
      conv_widths(k, self.base_width, self.max_width),
      self.kernel_size,
      self.activation,
      self.dropout_rate,
      dtype=self.dtype_policy,
      name="convs",
    )

  def call(self, x, seed=None, training=False, batch_size=None):
    """batch_size: x is one constant row standing for that many (`_Stack.call`)."""
    seeds = [None, None] if seed is None else [rng.fold_in(seed, i) for i in range(2)]
    h = _flatten(self.convs(x, seed=seeds[0], training=training, batch_size=batch_size))
    return self.dense(h, seed=seeds[1], training=training)


class ConvEncoder(Network):
  """x [b, H, W, C] -> features [b, F] (DCGAN discriminator-like body).

  32x32 with the defaults: 16x16x64 -> 8x8x128 -> 4x4x256 -> F = 4096 (then the
  optional Dense `hidden_units`).
  """

  def __init__(
    self,
    base_width=64,
    max_width=512,
    kernel_size=4,
    num_stages=None,
    hidden_units=(),
    activation="leaky_relu",
    dropout_rate=0.0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.body = _ConvFeatures(
      base_width,
      max_width,
      kernel_size,
      num_stages,
      hidden_units,
      activation,
      dropout_rate,
      who=self.name,
      dtype=self.dtype_policy,
      name="body",
    )

  def call(self, x, seed=None, training=False):
    return self.body(x, seed=seed, training=training)


class ConvDecoder(Network):
  """z [b, D] -> likelihood parameters [b, H, W, C * num_params] (DCGAN generator-like).

  z -> optional Dense `hidden_units` -> Dense to [H / 2^n, W / 2^n, widths[-1]]
  -> n - 1 stride-2 Conv2DTranspose (widths[-2], ..., widths[0]) -> a last
  stride-2 Conv2DTranspose to C * num_params channels (no activation).
  32x32x3, Gaussian head, defaults: 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32x6.

  Args:
    output_shape: (H, W, C * num_params), set by the model from the data and head.
  """

  def __init__(
    self,
    output_shape,
    base_width=64,
    max_width=512,
    kernel_size=4,
    num_stages=None,
    hidden_units=(),
    activation="relu",
    dropout_rate=0.0,
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.out_shape = tuple(int(s) for s in output_shape)
    if len(self.out_shape) != 3:
      raise ValueError(f"{self.name}: output_shape must be (H, W, C), got {output_shape}")
    h, w, c = self.out_shape
    k = conv_stages(h, w, num_stages, who=self.name)
    widths = conv_widths(k, base_width, max_width)
    self.num_layers = k
    self.start_shape = (h // 2**k, w // 2**k, widths[-1])
    self.body = _DenseStack(
      hidden_units, activation, dropout_rate, dtype=self.dtype_policy, name="body"
    )
    self.project = keras.layers.Dense(
      int(np.prod(self.start_shape)),
      kernel_initializer=_XAVIER,
      dtype=self.dtype_policy,
      name="project",
    )
    # Named attributes, not a list (see _DenseStack): deconv_0 is the coarsest.
    out_widths = widths[-2::-1] + [c]
    for i, width in enumerate(out_widths):
      setattr(
        self,
        f"deconv_{i}",
        keras.layers.Conv2DTranspose(
          width,
          int(kernel_size),
          strides=2,
          padding="same",
          kernel_initializer=_XAVIER,
          dtype=self.dtype_policy,
          name=f"deconv_{i}",
        ),
      )
    self.act = _activation(activation)
    self.dropout_rate = float(dropout_rate)

  def call(self, z, seed=None, training=False):
    apply_dropout = training and self.dropout_rate > 0.0
    if apply_dropout and seed is None:
      raise ValueError(f"{self.name}: dropout in training needs a seed")
    seeds = (
      [None] * (self.num_layers + 1)
      if seed is None
      else [rng.fold_in(seed, i) for i in range(self.num_layers + 1)]
    )
    h = self.act(self.project(self.body(z, seed=seeds[0], training=training)))
    h = tf.reshape(h, [tf.shape(z)[0]] + list(self.start_shape))
    for i in range(self.num_layers):
      h = getattr(self, f"deconv_{i}")(h)
      if i < self.num_layers - 1:
        h = self.act(h)
        if apply_dropout:
          h = rng.dropout(h, self.dropout_rate, seeds[i + 1])
    return h


class ConvJointDiscriminator(Network):
  """f_psi(x, z) with a convolutional x path: x [b, H, W, C], z [b, D] -> logit [b].

  x path: stride-2 conv stages (as `ConvEncoder`) -> flatten -> Dense x_units;
  z path: Dense z_units; the two are concatenated and passed through Dense
  joint_units before a linear logit (ALI-style). Dropout (default 0.2) after
  every hidden layer, convolutions included.
  """

  def __init__(
    self,
    base_width=64,
    max_width=512,
    kernel_size=4,
    num_stages=None,
    x_units=(),
    z_units=(512,),
    joint_units=(1024,),
    activation="leaky_relu",
    dropout_rate=0.2,
    **kwargs,
  ):
    super().__init__(**kwargs)
    policy = self.dtype_policy
    self.x_path = _ConvFeatures(
      base_width,
      max_width,
      kernel_size,
      num_stages,
      x_units,
      activation,
      dropout_rate,
      who=f"{self.name} (x path)",
      dtype=policy,
      name="x_path",
    )
    kw = dict(activation=activation, dropout_rate=dropout_rate, dtype=policy)
    self.z_path = _DenseStack(z_units, name="z_path", **kw)
    self.joint = _DenseStack(joint_units, name="joint", **kw)
    self.logit = keras.layers.Dense(1, kernel_initializer=_XAVIER, dtype=policy, name="logit")

  def call(self, x, z, seed=None, training=False):
    """x [b or 1, H, W, C], z [b or 1, D] -> [b]; a one-row input is a constant shared by
    all b rows (`layers.constant_row`)."""
    seeds = [None] * 3 if seed is None else [rng.fold_in(seed, i) for i in range(3)]
    bx, bz = broadcast_batches(x, z)
    hx = self.x_path(x, seed=seeds[0], training=training, batch_size=bx)
    hz = self.z_path(z, seed=seeds[1], training=training, batch_size=bz)
    h = self.joint(tf.concat([hx, hz], axis=-1), seed=seeds[2], training=training)
    return tf.squeeze(self.logit(h), axis=-1)


conv_encoder = gin_config.factory(ConvEncoder, "conv_encoder", layer_name="encoder")
conv_decoder = gin_config.factory(
  ConvDecoder, "conv_decoder", layer_name="decoder", denylist=["output_shape"]
)
conv_joint_discriminator = gin_config.factory(
  ConvJointDiscriminator, "conv_joint_discriminator", layer_name="discriminator"
)
