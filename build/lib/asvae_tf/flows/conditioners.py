"""Keras 3 conditioner networks of the IAF / MAF / RealNVP flows.

* `MADE` (Germain et al. 2015): the autoregressive conditioner of MAF and IAF,
  x [..., D] -> (shift, log_scale) [..., D], output d depending only on x_{<d}.
* `CouplingNet` (Dinh et al. 2017): the RealNVP coupling conditioner,
  x_{1:d} [..., d] -> (shift, log_scale) [..., D - d].

Both are MLPs conditioned on an encoder context vector h [..., C] (the IAF
paper's context), which enters the first hidden layer through an unmasked
kernel.  Their weights are tracked by Keras 3, unlike TFP's Keras-2
`tfb.AutoregressiveNetwork`, and held as ATTRIBUTES (kernel_i, bias_i,
context_kernel, output_kernel, output_bias) so tf.train.Checkpoint sees them.
log_scale = bound * tanh(raw / bound): smooth, exactly 0 at raw = 0, bounded in
(-bound, bound).  The output kernel is initialised small (`_small_init`) and the
output bias at zero: the flows start near the identity.
"""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["MADE", "CouplingNet"]


def _small_init(scale):
  """Truncated normal with stddev scale / sqrt(fan_in): near-identity flows."""
  return keras.initializers.VarianceScaling(
    scale=scale * scale, mode="fan_in", distribution="truncated_normal"
  )


def _hidden_degrees(event_size, units):
  """MADE degrees of a hidden layer: spread over [min(1, D-1), D-1] ('equal')."""
  if event_size <= 1:
    return np.zeros([units], dtype=np.int64)
  return np.ceil(np.arange(1, units + 1) * (event_size - 1) / units).astype(np.int64).clip(1)


def _add_hidden_weights(layer, sizes):
  """Creates kernel_i [sizes[i], sizes[i+1]] and bias_i as ATTRIBUTES of `layer`.

  (Keras 3 tracks Python lists of weights/layers for `trainable_variables`, but
  its TrackedList is not a TF trackable: a tf.train.Checkpoint would silently
  skip anything held only in a list.)
  """
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    setattr(
      layer,
      f"kernel_{i}",
      layer.add_weight(shape=(n_in, n_out), initializer="glorot_uniform", name=f"kernel_{i}"),
    )
    setattr(
      layer, f"bias_{i}", layer.add_weight(shape=(n_out,), initializer="zeros", name=f"bias_{i}")
    )


def _hidden_weights(layer):
  return [
    (getattr(layer, f"kernel_{i}"), getattr(layer, f"bias_{i}"))
    for i in range(len(layer.hidden_units))
  ]


class _Conditioner(keras.layers.Layer):
  """The MLP shared by `MADE` and `CouplingNet` (see the module docstring)."""

  def __init__(
    self, hidden_units, context_dim, activation, log_scale_bound, output_init_scale, **kwargs
  ):
    super().__init__(**kwargs)
    self.hidden_units = tuple(int(h) for h in hidden_units)
    if not self.hidden_units:
      raise ValueError(f"{type(self).__name__} needs at least one hidden layer.")
    self.context_dim = None if context_dim is None else int(context_dim)
    self.activation = keras.activations.get(activation)
    self._activation_name = activation
    self.log_scale_bound = float(log_scale_bound)
    self.output_init_scale = float(output_init_scale)

  def _add_weights(self, input_units, num_outputs):
    """Hidden kernels/biases, context kernel (if any), output kernel and bias, in this order."""
    _add_hidden_weights(self, (input_units,) + self.hidden_units)
    if self.context_dim is not None:
      self.context_kernel = self.add_weight(
        shape=(self.context_dim, self.hidden_units[0]),
        initializer="glorot_uniform",
        name="context_kernel",
      )
    self.output_kernel = self.add_weight(
      shape=(self.hidden_units[-1], num_outputs),
      initializer=_small_init(self.output_init_scale),
      name="output_kernel",
    )
    self.output_bias = self.add_weight(
      shape=(num_outputs,), initializer="zeros", name="output_bias"
    )

  def _mlp(self, x, context, masks=None):
    """x [..., input_units], context [..., C] -> raw outputs [..., num_outputs].

    masks: None, or one 0/1 NumPy array per kernel (hidden kernels, then the
    output kernel) multiplied into it.
    """
    dtype = self.compute_dtype
    h = x
    for i, (kernel, bias) in enumerate(_hidden_weights(self)):
      if masks is not None:
        kernel = kernel * tf.constant(masks[i], dtype)
      h = tf.matmul(h, kernel) + bias
      if i == 0 and self.context_dim is not None:
        if context is None:
          raise ValueError(f"This {type(self).__name__} was built with context_dim: pass context.")
        h = h + tf.matmul(context, self.context_kernel)
      h = self.activation(h)
    kernel = self.output_kernel
    if masks is not None:
      kernel = kernel * tf.constant(masks[-1], dtype)
    return tf.matmul(h, kernel) + self.output_bias

  def _bounded_log_scale(self, raw):
    bound = tf.constant(self.log_scale_bound, self.compute_dtype)
    return bound * tf.tanh(raw / bound)

  def _shared_config(self):
    return dict(
      hidden_units=self.hidden_units,
      context_dim=self.context_dim,
      activation=self._activation_name,
      log_scale_bound=self.log_scale_bound,
      output_init_scale=self.output_init_scale,
    )


class MADE(_Conditioner):
  """Masked autoencoder for distribution estimation (Germain et al. 2015), Keras 3.

  Conditioner of MAF/IAF: maps x [..., D] (and a context vector [..., C]) to
  (shift, log_scale), each [..., D], where output d depends only on x_{<d}
  (inputs in left-to-right order; degrees 1..D).  Masks: input->hidden
  deg_in <= deg_h, hidden->hidden deg <= deg', hidden->output deg_h < deg_out.
  The context enters the first hidden layer through an unmasked kernel
  (it is not one of the autoregressive variables).

  log_scale = log_scale_bound * tanh(raw / log_scale_bound): smooth, exactly 0
  at raw = 0, bounded in (-bound, bound).  The output kernel is initialised
  small and the output bias at zero: the flow starts near the identity.
  """

  def __init__(
    self,
    event_size,
    hidden_units=(64, 64),
    context_dim=None,
    activation="elu",
    log_scale_bound=3.0,
    output_init_scale=1e-2,
    **kwargs,
  ):
    super().__init__(
      hidden_units, context_dim, activation, log_scale_bound, output_init_scale, **kwargs
    )
    self.event_size = int(event_size)

  def build(self, input_shape=None):
    d = self.event_size
    deg_in = np.arange(1, d + 1)
    degrees = [deg_in] + [_hidden_degrees(d, h) for h in self.hidden_units]
    masks = [(a[:, None] <= b[None, :]) for a, b in zip(degrees[:-1], degrees[1:])]
    deg_out = np.repeat(deg_in, 2)  # output column j -> dim j // 2
    masks.append(degrees[-1][:, None] < deg_out[None, :])
    self._masks = [m.astype(np.float64) for m in masks]
    self._add_weights(d, 2 * d)
    self.built = True

  def call(self, x, context=None):
    """x: [..., D]; context: [..., C] broadcastable -> (shift, log_scale) [..., D]."""
    out = self._mlp(x, context, self._masks)
    out = tf.reshape(out, tf.concat([tf.shape(out)[:-1], [self.event_size, 2]], 0))
    return out[..., 0], self._bounded_log_scale(out[..., 1])

  def get_config(self):
    config = super().get_config()
    config.update(event_size=self.event_size, **self._shared_config())
    return config


class CouplingNet(_Conditioner):
  """RealNVP coupling conditioner (Dinh et al. 2017), Keras 3.

  Maps the conditioning half x_{1:d} [..., d] (and a context vector [..., C])
  through an MLP to (shift, log_scale), each [..., output_units], for the other
  half.  log_scale = bound * tanh(raw / bound); small output init (near identity).
  """

  def __init__(
    self,
    input_units,
    output_units,
    hidden_units=(64, 64),
    context_dim=None,
    activation="elu",
    log_scale_bound=3.0,
    output_init_scale=1e-2,
    **kwargs,
  ):
    super().__init__(
      hidden_units, context_dim, activation, log_scale_bound, output_init_scale, **kwargs
    )
    self.input_units = int(input_units)
    self.output_units = int(output_units)

  def build(self, input_shape=None):
    self._add_weights(self.input_units, 2 * self.output_units)
    self.built = True

  def call(self, x, context=None):
    """x: [..., d]; context: [..., C] -> (shift, log_scale) [..., output_units]."""
    out = self._mlp(x, context)
    shift = out[..., : self.output_units]
    return shift, self._bounded_log_scale(out[..., self.output_units :])

  def get_config(self):
    config = super().get_config()
    config.update(
      input_units=self.input_units, output_units=self.output_units, **self._shared_config()
    )
    return config
