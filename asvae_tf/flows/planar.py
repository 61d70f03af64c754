"""Planar flow (Rezende & Mohamed 2015, eq. 10-12): K stacked planar layers in ONE TFP bijector.

Layer k maps z_{k-1} -> z_k:
    z_k = z_{k-1} + u_k tanh(a_k),   a_k = w_k . z_{k-1} + b_k,
    log|det dz_k/dz_{k-1}| = log|1 + u_k . psi_k|,  psi_k = h'(a_k) w_k,
i.e. log(1 + c_k s_k) with c_k = w_k . u_k and s_k = 1 - tanh^2(a_k).

A layer is invertible iff w_k . u_k > -1 (appendix A).  `planar_flow(u, w, b,
delta)` builds the bijector from RAW parameters through the reparameterisation
with margin delta > 0 (`planar_reparameterize_u`):
    u_hat = u + (m(w.u) - w.u) w / ||w||^2,   m(a) = -1 + delta + softplus(a),
so that c = w.u_hat = m(w.u) >= -1 + delta, i.e. every layer has
1 + c s >= delta > 0 (strictly invertible, log-det bounded below by log(delta)).

`PlanarFlow` has a forward pass, log-det and a numerical inverse (a monotone
Newton solve per layer, see `planar_loops`), both as one-pass
value-and-log-det helpers with analytic VJPs (exact implicit-function gradients
for the inverse, see `planar_grad`).  Shapes: parameters u_hat, w [batch, K, D],
b [batch, K]; codes [..., batch, D] (extra leading sample dims broadcast).
dtype float32 or float64.  Runs under tf.function and tf.function(jit_compile=True).
`planar_identity_bias` is the posterior head's bias at which the flow is the identity.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf.flows.planar_grad import _planar_forward_custom
from asvae_tf.flows.planar_grad import _planar_inverse_custom

tfb = tfp.bijectors

__all__ = ["planar_reparameterize_u", "PlanarFlow", "planar_flow", "planar_identity_bias"]


def _planar_reparameterize_u_and_c(u, w, delta):
  """(u_hat [..., D], c = w.u_hat = m(w.u) [...]) -- see `planar_reparameterize_u`."""
  wu = tf.reduce_sum(w * u, axis=-1, keepdims=True)
  m = tf.constant(delta - 1.0, u.dtype) + tf.math.softplus(wu)
  # Guard ||w||^2 = 0 (then w.u_hat = w.u = 0 > -1 anyway).
  w_sq = tf.maximum(
    tf.reduce_sum(tf.square(w), axis=-1, keepdims=True), np.finfo(u.dtype.as_numpy_dtype).tiny
  )
  u_hat = u + ((m - wu) / w_sq) * w
  return u_hat, m[..., 0]


def planar_reparameterize_u(u, w, delta):
  """Invertibility reparameterisation of the planar-flow vector u (module docstring).

  Rezende & Mohamed (2015), appendix A, with a margin delta > 0:
      u_hat = u + (m(w.u) - w.u) w / ||w||^2,   m(a) = -1 + delta + softplus(a).

  Args:
    u, w: [..., D] raw parameters (e.g. [batch, K, D]).
    delta: Python float in (0, 1).
  Returns:
    u_hat with the shape of u.
  """
  u = tf.convert_to_tensor(u)
  w = tf.convert_to_tensor(w, dtype=u.dtype)
  return _planar_reparameterize_u_and_c(u, w, delta)[0]


class PlanarFlow(tfb.Bijector):
  """K stacked planar layers as one bijector (module docstring for the maths).

  Layers run k = 0..K-1 (forward) and K-1..0 (inverse); the log-dets are
  summed after the layer loop from the stored tanh values.  `u_hat` must already
  satisfy w_k . u_hat_k > -1 (use `planar_flow`, which applies
  `planar_reparameterize_u`); with its margin delta, 1 + c_k s_k >= delta.
  The inverse solves each layer's pre-activation by Newton (`planar_loops`);
  gradients of both directions are analytic VJPs (`planar_grad`), first order.

  Args (batch shape [batch]; z may have extra leading sample dims [..., batch, D]):
    u_hat: [batch, K, D] constrained u.
    w:     [batch, K, D].
    b:     [batch, K].
    c:     optional [batch, K] = w . u_hat if already known (`planar_flow`
      passes m(w.u), saving one reduction); computed otherwise.
    newton_iterations: None (10 for float64, 8 otherwise) or an int: Newton
      steps per layer in the inverse, plus one last step.
    layers_per_iteration: layers run per tf.while_loop iteration (Python-
      unrolled inside the body); >= K unrolls the whole flow in Python.
    jit_compile: run the layer loops (forward, inverse and their VJP recursions)
      as XLA-compiled functions (`planar_grad`); the same maths, other rounding.
  forward_min_event_ndims = 1; events are [D].  K = 0 is the identity.
  """

  def __init__(
    self,
    u_hat,
    w,
    b,
    c=None,
    newton_iterations=None,
    layers_per_iteration=8,
    jit_compile=False,
    validate_args=False,
    name="planar_flow",
  ):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      dtype = tf.convert_to_tensor(u_hat).dtype
      self._u_hat = tf.convert_to_tensor(u_hat, dtype=dtype, name="u_hat")
      self._w = tf.convert_to_tensor(w, dtype=dtype, name="w")
      self._b = tf.convert_to_tensor(b, dtype=dtype, name="b")
      if self._u_hat.shape.rank != 3 or self._w.shape.rank != 3 or self._b.shape.rank != 2:
        raise ValueError(
          "PlanarFlow expects u_hat, w: [batch, K, D] and b: [batch, K]; got "
          f"{self._u_hat.shape}, {self._w.shape}, {self._b.shape}."
        )
      if self._u_hat.shape[1] is None:
        raise ValueError("PlanarFlow needs a static number of layers K.")
      self._c = (
        tf.reduce_sum(self._w * self._u_hat, axis=-1)
        if c is None
        else tf.convert_to_tensor(c, dtype=dtype, name="c")
      )
      self._num_layers = int(self._u_hat.shape[1])
      if newton_iterations is None:
        newton_iterations = 10 if dtype == tf.float64 else 8
      self._newton_iterations = int(newton_iterations)
      self._layers_per_iteration = int(layers_per_iteration)
      self._jit_compile = bool(jit_compile)
      super().__init__(
        forward_min_event_ndims=1,
        dtype=dtype,
        validate_args=validate_args,
        parameters=parameters,
        name=name,
      )

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict(
      u_hat=tfp.util.ParameterProperties(event_ndims=2),
      w=tfp.util.ParameterProperties(event_ndims=2),
      b=tfp.util.ParameterProperties(event_ndims=1),
      c=tfp.util.ParameterProperties(event_ndims=1),
    )

  @property
  def u_hat(self):
    return self._u_hat

  @property
  def w(self):
    return self._w

  @property
  def b(self):
    return self._b

  @property
  def c(self):
    """w_k . u_hat_k, [batch, K]."""
    return self._c

  @property
  def num_layers(self):
    return self._num_layers

  def _checked(self, x):
    x = tf.convert_to_tensor(x, dtype=self.dtype)
    if not self.validate_args:
      return x
    with tf.control_dependencies(
      [
        tf.debugging.assert_greater(
          self._c,
          tf.constant(-1.0, self.dtype),
          message="PlanarFlow needs w.u_hat > -1 (use planar_flow()).",
        )
      ]
    ):
      return tf.identity(x)

  # -- one-pass helpers -----------------------------------------------------

  def forward_and_log_det(self, z):
    """One pass: (y, fldj) with y = f_K o ... o f_1(z), fldj = sum_k log|det|.

    Args:
      z: [..., batch, D].
    Returns:
      y: [..., batch, D]; fldj: [..., batch].
    """
    z = self._checked(z)
    if self._num_layers == 0:
      return z, tf.zeros_like(z[..., 0])
    return _planar_forward_custom(
      z, self._u_hat, self._w, self._b, self._c, self._layers_per_iteration, self._jit_compile
    )

  def inverse_and_log_det(self, y):
    """One pass of the numerical inverse: (z, ildj), ildj = -fldj(z).

    Args:
      y: [..., batch, D].
    Returns:
      z: [..., batch, D]; ildj: [..., batch].
    """
    y = self._checked(y)
    if self._num_layers == 0:
      return y, tf.zeros_like(y[..., 0])
    return _planar_inverse_custom(
      y,
      self._u_hat,
      self._w,
      self._b,
      self._c,
      self._newton_iterations,
      self._layers_per_iteration,
      self._jit_compile,
    )

  # -- TFP Bijector interface -------------------------------------------------
  # The one-pass helpers compute the value and the log-det together; the
  # log-det is stored in TFP's bijector cache attributes (the same 'ildj'
  # attribute TFP itself uses), so `inverse(y)` followed by
  # `inverse_log_det_jacobian(y)` (what TransformedDistribution.log_prob does)
  # solves the inverse only once.

  def _forward(self, x):
    y, fldj = self.forward_and_log_det(x)
    self._cache.forward_attributes(x)["ildj"] = -fldj
    return y

  def _inverse(self, y):
    x, ildj = self.inverse_and_log_det(y)
    self._cache.inverse_attributes(y)["ildj"] = ildj
    return x

  def _forward_log_det_jacobian(self, x):
    return self.forward_and_log_det(x)[1]

  def _inverse_log_det_jacobian(self, y):
    return self.inverse_and_log_det(y)[1]


def planar_flow(
  u,
  w,
  b,
  delta=0.05,
  newton_iterations=None,
  layers_per_iteration=8,
  jit_compile=False,
  validate_args=False,
  name="planar_flow",
):
  """Builds a `PlanarFlow` from RAW parameters, enforcing invertibility.

  Args:
    u: [batch, K, D] raw u (reparameterised to u_hat with w.u_hat >= -1 + delta,
      see `planar_reparameterize_u`).
    w: [batch, K, D].
    b: [batch, K].
    delta: margin in (0, 1) of the invertibility condition.
    newton_iterations: Newton steps per layer in the inverse, before the last
      one (None: 10 for float64, 8 otherwise).
    layers_per_iteration: layers per tf.while_loop iteration (>= K: Python loop).
    jit_compile: XLA-compile the layer loops (see `PlanarFlow`).
  Returns:
    A `PlanarFlow` acting on z: [..., batch, D].
  """
  if not 0.0 < delta < 1.0:
    raise ValueError(f"delta must be in (0, 1), got {delta}.")
  u = tf.convert_to_tensor(u)
  w = tf.convert_to_tensor(w, dtype=u.dtype)
  b = tf.convert_to_tensor(b, dtype=u.dtype)
  u_hat, c = _planar_reparameterize_u_and_c(u, w, delta)
  return PlanarFlow(
    u_hat,
    w,
    b,
    c=c,
    newton_iterations=newton_iterations,
    layers_per_iteration=layers_per_iteration,
    jit_compile=jit_compile,
    validate_args=validate_args,
    name=name,
  )


def planar_identity_bias(num_flows, latent_dim, delta, seed=0):
  """Head-bias values [K, 2D+1] at which the planar flow is exactly the identity.

  Per layer: w0 a random unit vector, u0 = a0 w0 with a0 = softplus^{-1}(1 - delta),
  b0 = 0.  Then m(w0.u0) = -1 + delta + softplus(a0) = 0 and
  u_hat = u0 + (0 - a0) w0 / ||w0||^2 = 0, i.e. every layer is the identity,
  while w0 keeps a usable scale (a small raw w would blow u_hat up through the
  1/||w||^2 term of the reparameterisation).
  """
  rng = np.random.RandomState(seed)
  w0 = rng.normal(size=(num_flows, latent_dim))
  w0 /= np.linalg.norm(w0, axis=-1, keepdims=True)
  a0 = math.log(math.expm1(1.0 - delta))
  u0 = a0 * w0
  b0 = np.zeros((num_flows, 1))
  return np.concatenate([u0, w0, b0], axis=-1)
