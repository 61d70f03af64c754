"""Optimizers: FusedAdam and the gin factory `optimizer` (scopes generator/, discriminator/).

`gin.tf` does not import on current TensorFlow (it needs tf.estimator), so the Keras
optimizers are exposed through `make_optimizer`, a small gin factory used in two scopes:
`generator/optimizer.*` (theta, phi) and `discriminator/optimizer.*` (psi1, psi2).
"""

import gin
import keras
import tensorflow as tf

from asvae_tf.errors import ConfigError


class FusedAdam(keras.optimizers.Adam):
  """Keras 3 Adam whose per-variable update is TF's fused `ResourceApplyAdam` kernel.

  Same update as `keras.optimizers.Adam` (m, v moments; bias correction folded into
  the step size lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)) in one pass over each
  variable instead of about ten elementwise ops: on the MNIST MLPs this update is
  otherwise a third of the VAE step. Works in replica and update contexts
  (MirroredStrategy) because it goes through the variables' resource handles.
  AMSGrad and weight decay are not fused: they fall back to the Keras update.
  The update's scalars (beta_1^t, beta_2^t, lr, betas, epsilon) are built once per graph,
  device and dtype and shared by all its variables (the same numbers, fewer graph ops).
  """

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    # The scalars of one update (beta powers at step t, lr, betas, epsilon) are built once
    # per graph, device and dtype and shared by its variables: ~8 graph ops per variable
    # fewer. Not through Keras' attribute tracking (a plain dict, reset every update).
    object.__setattr__(self, "_update_scalars", {})
    try:
      super()._backend_update_step(grads, trainable_variables, learning_rate)
    finally:
      object.__setattr__(self, "_update_scalars", None)

  def _scalars(self, dtype, learning_rate, device):
    """{beta1_power, beta2_power, lr, beta1, beta2, epsilon} in `dtype` at this update's
    step t = iterations + 1 (the same for every variable of the update)."""
    cache = None if tf.executing_eagerly() else getattr(self, "_update_scalars", None)
    key = (id(tf.compat.v1.get_default_graph()), device, dtype)
    if cache is not None and key in cache:
      return cache[key]
    step = tf.cast(self.iterations + 1, dtype)
    # tf.constant, not tf.cast: casting a Python float goes through float32.
    beta_1 = tf.constant(self.beta_1, dtype)
    beta_2 = tf.constant(self.beta_2, dtype)
    scalars = dict(
      beta1_power=tf.pow(beta_1, step),
      beta2_power=tf.pow(beta_2, step),
      lr=tf.cast(learning_rate, dtype),
      beta1=beta_1,
      beta2=beta_2,
      epsilon=tf.constant(self.epsilon, dtype),
    )
    if cache is not None:
      cache[key] = scalars
    return scalars

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    m, v = self._momentums[index], self._velocities[index]
    tf.raw_ops.ResourceApplyAdam(
      var=variable.handle,
      m=m.handle,
      v=v.handle,
      grad=tf.cast(gradient, dtype),
      use_locking=False,
      **self._scalars(dtype, learning_rate, variable.device),
    )


_OPTIMIZERS = {
  "adam": FusedAdam,
  "keras_adam": keras.optimizers.Adam,
  "rmsprop": keras.optimizers.RMSprop,
  "sgd": keras.optimizers.SGD,
}


@gin.configurable("optimizer")
def make_optimizer(
  name="adam",
  learning_rate=1e-4,
  beta_1=0.9,
  beta_2=0.999,
  epsilon=1e-7,
  momentum=0.0,
  clipnorm=None,
):
  """A Keras 3 optimizer; Adam with learning rate 1e-4 as in section 5.

  name: "adam" (`FusedAdam`, the default), "keras_adam" (keras.optimizers.Adam, same
  maths, unfused), "rmsprop" or "sgd".
  beta_1 / beta_2 / epsilon apply to Adam only, momentum to SGD and RMSprop.
  Call it under `gin.config_scope("generator")` or
  `("discriminator")` and under `strategy.scope()`.
  """
  if name not in _OPTIMIZERS:
    raise ConfigError(f"optimizer.name must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
  kwargs = dict(learning_rate=learning_rate)
  if clipnorm is not None:
    kwargs["clipnorm"] = clipnorm
  if name in ("adam", "keras_adam"):
    kwargs.update(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
  else:
    kwargs.update(momentum=momentum)
  return _OPTIMIZERS[name](**kwargs)
