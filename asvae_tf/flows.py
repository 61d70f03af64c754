"""Normalizing-flow posteriors q_phi(z|x) for the AS-VAE (Pu et al., NIPS 2017).

The AS-VAE objective (eq. 11 of the paper) needs the encoder density
log q_phi(z|x') at a code z that the encoder did NOT produce (a prior draw pushed
through the decoder).  A posterior is therefore only usable if its density can be
evaluated at any z.  This module provides:

* `PlanarFlow`: K stacked planar layers (Rezende & Mohamed 2015, eq. 10-12) in ONE
  TFP bijector, with forward, log-det, and a numerical inverse (per-layer scalar
  root solve) whose gradients are exact implicit-function gradients.
  `planar_flow(u, w, b, delta)` applies the invertibility reparameterisation.
* `MADE` and `CouplingNet`: Keras 3 conditioner networks (their weights are tracked
  by Keras 3, unlike TFP's Keras-2 `tfb.AutoregressiveNetwork`), conditioned on an
  encoder context vector, used to build IAF / MAF / RealNVP stacks out of TFP
  bijectors (`iaf_bijector`, `maf_bijector`, `realnvp_bijector`).
* `Posterior`: the Keras 3 layer mapping encoder features h [batch, F] to a
  diagonal-Normal base distribution followed by one of those flows.

Shapes: latents z are [batch, D] (planar and the TFP flows also broadcast over
extra leading sample dimensions, e.g. [S, batch, D]).  dtype follows the inputs
(float32 and float64 both work).  Randomness is stateless: sampling takes `seed`,
an int32 Tensor of shape [2] (or the standard-normal noise `eps` itself).
Everything runs under tf.function and tf.function(jit_compile=True); the planar
flow's layer loop is a tf.while_loop with a static trip count.
"""

import inspect
import math

import gin
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
  "POSTERIOR_KINDS",
  "soft_clip",
  "planar_reparameterize_u",
  "PlanarFlow",
  "planar_flow",
  "MADE",
  "CouplingNet",
  "maf_bijector",
  "iaf_bijector",
  "realnvp_bijector",
  "diag_normal_log_prob",
  "Posterior",
]

POSTERIOR_KINDS = ("gaussian", "planar", "iaf", "maf", "realnvp")

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def soft_clip(x, low, high):
  """Smooth, monotone clamp of `x` into (low, high).

  soft_clip(x) = low + softplus(x - low) - softplus(x - high).
  soft_clip(x) - x = softplus(low - x) - softplus(x - high): ~0 well inside the
  interval (at distance d from the nearer bound, |error| <= softplus(-d)), it
  tends to `low` / `high` at -inf / +inf, and its derivative
  sigmoid(x - low) - sigmoid(x - high) lies in (0, 1): gradients never vanish
  abruptly as with a hard clip.
  """
  x = tf.convert_to_tensor(x)
  low = tf.constant(low, x.dtype)
  high = tf.constant(high, x.dtype)
  return low + tf.math.softplus(x - low) - tf.math.softplus(x - high)


def diag_normal_log_prob(x, loc, log_scale):
  """log N(x; loc, diag(exp(log_scale))^2) summed over the last axis.

  Args:
    x: [..., batch, D]; loc, log_scale: [batch, D] (broadcast against x).
  Returns:
    [..., batch] log density in nats.
  """
  eps = (x - loc) * tf.exp(-log_scale)
  return tf.reduce_sum(
    -0.5 * tf.square(eps) - log_scale - tf.constant(_HALF_LOG_TWO_PI, x.dtype), axis=-1
  )


# ----------------------------------------------------------------------------
# Planar flow
# ----------------------------------------------------------------------------


def _planar_reparameterize_u_and_c(u, w, delta):
  """(u_hat, c = w.u_hat = m(w.u)) -- see `planar_reparameterize_u`."""
  wu = tf.reduce_sum(w * u, axis=-1, keepdims=True)
  m = tf.constant(delta - 1.0, u.dtype) + tf.math.softplus(wu)
  # Guard ||w||^2 = 0 (then w.u_hat = w.u = 0 > -1 anyway).
  w_sq = tf.maximum(
    tf.reduce_sum(tf.square(w), axis=-1, keepdims=True), np.finfo(u.dtype.as_numpy_dtype).tiny
  )
  u_hat = u + ((m - wu) / w_sq) * w
  return u_hat, m[..., 0]


def planar_reparameterize_u(u, w, delta):
  """Invertibility reparameterisation of the planar-flow vector u.

  Rezende & Mohamed (2015), appendix A, with a margin delta > 0:
      u_hat = u + (m(w.u) - w.u) w / ||w||^2,   m(a) = -1 + delta + softplus(a),
  so that w.u_hat = m(w.u) >= -1 + delta, i.e. every layer has
  1 + u_hat.psi(z) >= delta > 0 (strictly invertible, log-det bounded below by
  log(delta)).

  Args:
    u, w: [..., D] raw parameters (e.g. [batch, K, D]).
    delta: Python float in (0, 1).
  Returns:
    u_hat with the shape of u.
  """
  u = tf.convert_to_tensor(u)
  w = tf.convert_to_tensor(w, dtype=u.dtype)
  return _planar_reparameterize_u_and_c(u, w, delta)[0]


def _layer_loop(step, state, params, reverse, layers_per_iteration):
  """Runs `state, out_k = step(state, params_k)` over the K layers, batch-major.

  Layers k = 0..K-1 in order (reverse=True: K-1..0).  `params` is a tuple of
  (tensor, axis) pairs: the layer axis of each tensor (e.g. -2 for [..., K, D],
  -1 for [..., K]); `params_k` is the tuple of their k-th slices along it.
  `out_k` is one tensor [..., 1].  The loop is a tf.while_loop (static trip
  count: XLA-friendly, quick to trace) whose body runs `layers_per_iteration`
  consecutive layers, Python-unrolled inside the body to amortise the
  per-iteration overhead (>= K: a plain Python loop).  Each iteration reads its
  chunk of layers with one tf.gather + one tf.unstack per parameter tensor.

  Returns:
    (final state tuple, outs [..., K]) with outs[..., k] = out_k[..., 0].
  """
  num_layers = params[0][0].shape[params[0][1]]
  unroll = max(1, min(int(layers_per_iteration), num_layers))
  num_chunks = num_layers // unroll
  if num_chunks <= 1:  # everything Python-unrolled
    num_chunks, unroll = 0, 0
  looped = num_chunks * unroll  # layers [0, looped) go through the while_loop
  state = tuple(state)
  rest_outs = {}

  def run_rest(state):
    order = range(looped, num_layers)
    for k in reversed(order) if reverse else order:
      state, rest_outs[k] = step(state, tuple(tf.gather(p, k, axis=ax) for p, ax in params))
    return tuple(state)

  if reverse:
    state = run_rest(state)
  parts = []
  if num_chunks:
    out_array = tf.TensorArray(state[0].dtype, size=num_chunks)
    offsets = tf.range(unroll)

    def body(i, out_array, *st):
      chunk = (num_chunks - 1 - i) if reverse else i
      idx = chunk * unroll + offsets
      ps = [tf.unstack(tf.gather(p, idx, axis=ax), num=unroll, axis=ax) for p, ax in params]
      chunk_outs = [None] * unroll
      for j in range(unroll - 1, -1, -1) if reverse else range(unroll):
        st, chunk_outs[j] = step(st, tuple(p[j] for p in ps))
      return (i + 1, out_array.write(chunk, tf.concat(chunk_outs, -1))) + tuple(st)

    loop_out = tf.while_loop(
      lambda i, *_: i < num_chunks,
      body,
      (tf.constant(0, tf.int32), out_array) + state,
      maximum_iterations=num_chunks,
    )
    state = tuple(loop_out[2:])
    stacked = loop_out[1].stack()  # [chunks, ..., unroll]
    rank = stacked.shape.rank
    stacked = tf.transpose(stacked, list(range(1, rank - 1)) + [0, rank - 1])
    parts.append(tf.reshape(stacked, tf.concat([tf.shape(stacked)[:-2], [looped]], 0)))
  if not reverse:
    state = run_rest(state)
  if rest_outs:
    parts.append(tf.concat([rest_outs[k] for k in range(looped, num_layers)], -1))
  return state, parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


class PlanarFlow(tfb.Bijector):
  """K stacked planar layers as one bijector (Rezende & Mohamed 2015, eq. 10-12).

  Layer k maps z_{k-1} -> z_k:
      z_k = z_{k-1} + u_k tanh(a_k),   a_k = w_k . z_{k-1} + b_k,
      log|det dz_k/dz_{k-1}| = log|1 + u_k . psi_k|,  psi_k = h'(a_k) w_k,
  i.e. log(1 + c_k s_k) with c_k = w_k . u_k and s_k = 1 - tanh^2(a_k).
  Layers run k = 0..K-1 (forward) and K-1..0 (inverse); the log-dets are
  summed after the layer loop from the stored tanh values.

  `u_hat` must already satisfy w_k . u_hat_k > -1 (use `planar_flow`, which
  applies `planar_reparameterize_u`); with its margin delta, 1 + c_k s_k >= delta.

  Inverse of one layer, y = z + u tanh(w.z + b): with t = w.z + b (the
  pre-activation) and r = w.y + b, t solves
      g(t) = t + c tanh(t) - r = 0,   g'(t) = 1 + c (1 - tanh^2 t) >= delta,
  a monotone scalar equation whose root lies in the bracket [r - |c|, r + |c|].
  g has a single inflection point, t = 0: on the root's side of it g is
  concave (c > 0) or convex (c < 0).  Newton started at the inflection point
  clipped into the bracket therefore converges monotonically: on a concave
  increasing piece the iterates approach the root from the left; on a convex
  piece the first step lands right of the root (it is clipped into the
  bracket) and the iterates then decrease monotonically to it.  Only the first
  step needs the bracket.  `newton_iterations` steps run without gradient
  (default 10 for float64: 1e-12 relative accuracy over c in [-1 + delta, 1e3],
  |r| <= 1e3; 8 for float32, which then sits at its rounding floor), and one
  last Newton step follows.  Then z = y - u tanh(t).

  Gradients of the inverse are exact implicit-function gradients.  Two ways:
    * custom_gradient=True (default): an analytic VJP.  For one layer,
      x = F^{-1}(y) with F(x) = x + u tanh(w.x + b), J = I + s u w^T, so
      y_bar = J^{-T} x_bar (Sherman-Morrison: v - w s (u.v) / (1 + c s)) and
      theta_bar = -(dF/dtheta)^T y_bar, plus the direct terms of
      ildj = -log(1 + c s) (c is an input of its own: its gradient reaches
      u_hat and w through the computation of c).  Only the cotangent recursion is sequential (one
      dot product per layer); the parameter gradients are vectorised over the
      layers afterwards.  The forward pass gets the same treatment
      (x_bar = y_bar + (s (u.y_bar) + fldj_bar dlog/da) w).  First-order
      gradients only (no gradient-of-gradient through the flow).
    * custom_gradient=False: plain autodiff, where the last Newton step is
      taken differentiably from the stop-gradient'ed root t*,
      t = t* - g(t*)/g'(t*), whose derivatives are dt/dtheta = -(dg/dtheta)/g'
      (exact up to the O(g(t*)) residual).  Kept as a cross-check.

  Args (batch shape [batch]; z may have extra leading sample dims [..., batch, D]):
    u_hat: [batch, K, D] constrained u.
    w:     [batch, K, D].
    b:     [batch, K].
    c:     optional [batch, K] = w . u_hat if already known (`planar_flow`
      passes m(w.u), saving one reduction); computed otherwise.
    newton_iterations: None (dtype default above) or an int.
    layers_per_iteration: layers run per tf.while_loop iteration (Python-
      unrolled inside the body); >= K unrolls the whole flow in Python.
    custom_gradient: analytic VJPs (True) or autodiff (False).
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
    custom_gradient=True,
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
      self._custom_gradient = bool(custom_gradient)
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

  def _log_det_from_tanh(self, ths):
    """fldj [..., batch] = sum_k log(1 + c_k (1 - tanh_k^2)), ths [..., batch, K]."""
    return tf.reduce_sum(tf.math.log1p(self._c * (1.0 - tf.square(ths))), axis=-1)

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
    args = (z, self._u_hat, self._w, self._b, self._c)
    if self._custom_gradient:
      return _planar_forward_custom(*args, self._layers_per_iteration)
    y, ths = _planar_forward(*args[:4], self._layers_per_iteration)
    return y, self._log_det_from_tanh(ths)

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
    args = (y, self._u_hat, self._w, self._b, self._c)
    if self._custom_gradient:
      return _planar_inverse_custom(*args, self._newton_iterations, self._layers_per_iteration)
    z, ths = _planar_inverse(
      *args, self._newton_iterations, self._layers_per_iteration, differentiable=True
    )
    return z, -self._log_det_from_tanh(ths)

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


# -- planar layer loops and their analytic VJPs ---------------------------------
# Batch-major throughout: u, w [batch, K, D], b, c [batch, K], states [..., batch, D],
# per-layer scalars [..., batch, K].  Notation per layer k: a = w.x + b,
# th = tanh(a), s = 1 - th^2, forward y = x + u th, log-det l = log(1 + c s),
# dl/da = -2 c th s / (1 + c s), dl/dc = s / (1 + c s).  The loops store only
# th_k; the layer inputs are recovered afterwards as
# x_k = x_0 + sum_{j<k} u_j th_j (a triangular matmul over the layer axis).


def _planar_forward(z, u_hat, w, b, layers_per_iteration):
  """Forward loop (layers 0..K-1): returns (y, ths [..., batch, K])."""

  def step(state, p):
    (x,) = state
    u_k, w_k, b_k = p
    th = tf.tanh(tf.reduce_sum(x * w_k, axis=-1, keepdims=True) + b_k)
    return (x + u_k * th,), th

  (y,), ths = _layer_loop(
    step,
    (z,),
    ((u_hat, -2), (w, -2), (b[..., tf.newaxis], -2)),
    reverse=False,
    layers_per_iteration=layers_per_iteration,
  )
  return y, ths


def _planar_inverse(y, u_hat, w, b, c, newton_iterations, layers_per_iteration, differentiable):
  """Inverse loop (layers K-1..0): returns (z, ths [..., batch, K]), ths at the
  recovered layer inputs.  differentiable=True takes the last Newton step with
  gradient (implicit-function gradients by autodiff)."""

  def step(state, p):
    (x,) = state
    u_k, w_k, b_k, c_k = p
    r = tf.reduce_sum(x * w_k, axis=-1, keepdims=True) + b_k  # w.y + b
    # Newton on g(t) = t + c tanh t - r from the inflection point, no gradient.
    r_sg = tf.stop_gradient(r)
    c_sg = tf.stop_gradient(c_k)
    one_plus_c = 1.0 + c_sg
    abs_c = tf.abs(c_sg)
    lo = r_sg - abs_c
    hi = r_sg + abs_c
    t = tf.clip_by_value(tf.zeros_like(r_sg), lo, hi)
    for i in range(newton_iterations):
      th = tf.tanh(t)
      t = t - (t + c_sg * th - r_sg) / (one_plus_c - c_sg * th * th)
      if i == 0:
        t = tf.clip_by_value(t, lo, hi)
    t = tf.stop_gradient(t)
    th = tf.tanh(t)
    if differentiable:  # the last step carries the implicit-function gradient
      t = t - (t + c_k * th - r) / (1.0 + c_k * (1.0 - th * th))
    else:
      t = t - (t + c_sg * th - r_sg) / (one_plus_c - c_sg * th * th)
    th = tf.tanh(t)
    return (x - u_k * th,), th

  params = ((u_hat, -2), (w, -2), (b[..., tf.newaxis], -2), (c[..., tf.newaxis], -2))
  (z,), ths = _layer_loop(
    step, (y,), params, reverse=True, layers_per_iteration=layers_per_iteration
  )
  return z, ths


def _cotangent_loop(v, u_hat, w, p, q, reverse, layers_per_iteration):
  """Sequential cotangent recursion v <- v + coef_k w_k, coef_k = p_k + q_k (u_k . v).

  v: [..., batch, D]; p, q: [..., batch, K].  Returns (final v, coefs [..., batch, K]).
  """

  def step(state, prm):
    (vec,) = state
    u_k, w_k, p_k, q_k = prm
    coef = p_k + q_k * tf.reduce_sum(u_k * vec, axis=-1, keepdims=True)
    return (vec + coef * w_k,), coef

  params = ((u_hat, -2), (w, -2), (p[..., tf.newaxis], -2), (q[..., tf.newaxis], -2))
  (v,), coefs = _layer_loop(
    step, (v,), params, reverse=reverse, layers_per_iteration=layers_per_iteration
  )
  return v, coefs


def _layer_cumsum(x, exclusive=False, reverse=False):
  """Cumulative sum over the layer axis of x [..., K, D] as a [K, K] triangular matmul.

  (XLA lowers tf.cumsum to an O(K^2) reduce-window and TF's cumsum kernel is slow
  along a non-minor axis; the matmul is faster in both.)
  """
  k = x.shape[-2]
  i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
  keep = (j >= i) if reverse else (j <= i)
  if exclusive:
    keep &= i != j
  tri = tf.constant(keep.astype(x.dtype.as_numpy_dtype))
  return tf.einsum("kj,...jd->...kd", tri, x)


def _sum_to_batch(x, rank):
  """Sums the leading sample axes of x so that it has `rank` dims."""
  extra = x.shape.rank - rank
  return tf.reduce_sum(x, axis=list(range(extra))) if extra > 0 else x


def _planar_forward_custom(z, u_hat, w, b, c, layers_per_iteration):
  """forward_and_log_det with an analytic VJP (see PlanarFlow)."""

  @tf.custom_gradient
  def fn(z, u_hat, w, b, c):
    y, ths = _planar_forward(z, u_hat, w, b, layers_per_iteration)
    s = 1.0 - tf.square(ths)
    one_plus_cs = 1.0 + c * s
    fldj = tf.reduce_sum(tf.math.log1p(c * s), axis=-1)

    def grad(dy, dfldj):
      dy = tf.zeros_like(y) if dy is None else dy
      dfldj = tf.zeros_like(fldj) if dfldj is None else dfldj
      g = dfldj[..., tf.newaxis]  # [..., batch, 1]
      dl_da = -2.0 * c * ths * s / one_plus_cs
      dl_dc = s / one_plus_cs
      # Layers K-1..0: x_bar = y_bar + a_bar w, a_bar = s (u.y_bar) + fldj_bar dl/da.
      dz, da = _cotangent_loop(
        dy, u_hat, w, g * dl_da, s, reverse=True, layers_per_iteration=layers_per_iteration
      )
      # y_bar_k (cotangent of layer k's output) = dy + sum_{j>k} a_bar_j w_j.
      dys = dy[..., tf.newaxis, :] + _layer_cumsum(
        da[..., tf.newaxis] * w, exclusive=True, reverse=True
      )
      xs = z[..., tf.newaxis, :] + _layer_cumsum(ths[..., tf.newaxis] * u_hat, exclusive=True)
      du = ths[..., tf.newaxis] * dys
      dw = da[..., tf.newaxis] * xs
      dc = g * dl_dc
      return (
        dz,
        _sum_to_batch(du, 3),
        _sum_to_batch(dw, 3),
        _sum_to_batch(da, 2),
        _sum_to_batch(dc, 2),
      )

    return (y, fldj), grad

  return fn(z, u_hat, w, b, c)


def _planar_inverse_custom(y, u_hat, w, b, c, newton_iterations, layers_per_iteration):
  """inverse_and_log_det with an analytic (implicit-function) VJP (see PlanarFlow)."""

  @tf.custom_gradient
  def fn(y, u_hat, w, b, c):
    z, ths = _planar_inverse(
      y, u_hat, w, b, c, newton_iterations, layers_per_iteration, differentiable=False
    )
    s = 1.0 - tf.square(ths)
    one_plus_cs = 1.0 + c * s
    ildj = -tf.reduce_sum(tf.math.log1p(c * s), axis=-1)

    def grad(dz, dildj):
      dz = tf.zeros_like(z) if dz is None else dz
      dildj = tf.zeros_like(ildj) if dildj is None else dildj
      g = dildj[..., tf.newaxis]  # [..., batch, 1]
      # Per layer, l = -log(1 + c s) (the ildj term):
      dl_da = 2.0 * c * ths * s / one_plus_cs
      dl_dc = -s / one_plus_cs
      rho = s / one_plus_cs
      # lambda_k = J_k^{-T}(x_bar + ildj_bar dl/da w)
      #          = x_bar + (ildj_bar dl/da / (1 + c s) - rho (u.x_bar)) w,
      # layers 0..K-1 (the reverse of the inverse's order); y_bar = lambda_{K-1}.
      dy, coefs = _cotangent_loop(
        dz,
        u_hat,
        w,
        g * dl_da / one_plus_cs,
        -rho,
        reverse=False,
        layers_per_iteration=layers_per_iteration,
      )
      lams = dz[..., tf.newaxis, :] + _layer_cumsum(coefs[..., tf.newaxis] * w)
      xs = z[..., tf.newaxis, :] + _layer_cumsum(ths[..., tf.newaxis] * u_hat, exclusive=True)
      db = g * dl_da - s * tf.reduce_sum(u_hat * lams, axis=-1)
      du = -ths[..., tf.newaxis] * lams
      dw = db[..., tf.newaxis] * xs
      dc = g * dl_dc
      return (
        dy,
        _sum_to_batch(du, 3),
        _sum_to_batch(dw, 3),
        _sum_to_batch(db, 2),
        _sum_to_batch(dc, 2),
      )

    return (z, ildj), grad

  return fn(y, u_hat, w, b, c)


def planar_flow(
  u,
  w,
  b,
  delta=0.05,
  newton_iterations=None,
  layers_per_iteration=8,
  custom_gradient=True,
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
    newton_iterations: stop-gradient Newton steps per layer in the inverse
      (None: 10 for float64, 8 otherwise).
    layers_per_iteration: layers per tf.while_loop iteration (>= K: Python loop).
    custom_gradient: analytic VJPs (default) or plain autodiff.
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
    custom_gradient=custom_gradient,
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


# ----------------------------------------------------------------------------
# Conditioners (Keras 3) and TFP flows built from them
# ----------------------------------------------------------------------------


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


class MADE(keras.layers.Layer):
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
    super().__init__(**kwargs)
    self.event_size = int(event_size)
    self.hidden_units = tuple(int(h) for h in hidden_units)
    if not self.hidden_units:
      raise ValueError("MADE needs at least one hidden layer.")
    self.context_dim = None if context_dim is None else int(context_dim)
    self.activation = keras.activations.get(activation)
    self._activation_name = activation
    self.log_scale_bound = float(log_scale_bound)
    self.output_init_scale = float(output_init_scale)

  def build(self, input_shape=None):
    d = self.event_size
    deg_in = np.arange(1, d + 1)
    degrees = [deg_in] + [_hidden_degrees(d, h) for h in self.hidden_units]
    masks = [(a[:, None] <= b[None, :]) for a, b in zip(degrees[:-1], degrees[1:])]
    deg_out = np.repeat(deg_in, 2)  # output column j -> dim j // 2
    masks.append(degrees[-1][:, None] < deg_out[None, :])
    self._masks = [m.astype(np.float64) for m in masks]
    sizes = (d,) + self.hidden_units
    _add_hidden_weights(self, sizes)
    if self.context_dim is not None:
      self.context_kernel = self.add_weight(
        shape=(self.context_dim, self.hidden_units[0]),
        initializer="glorot_uniform",
        name="context_kernel",
      )
    self.output_kernel = self.add_weight(
      shape=(self.hidden_units[-1], 2 * d),
      initializer=_small_init(self.output_init_scale),
      name="output_kernel",
    )
    self.output_bias = self.add_weight(shape=(2 * d,), initializer="zeros", name="output_bias")
    self.built = True

  def call(self, x, context=None):
    """x: [..., D]; context: [..., C] broadcastable -> (shift, log_scale) [..., D]."""
    dtype = self.compute_dtype
    h = x
    for i, (kernel, bias) in enumerate(_hidden_weights(self)):
      h = tf.matmul(h, kernel * tf.constant(self._masks[i], dtype)) + bias
      if i == 0 and self.context_dim is not None:
        if context is None:
          raise ValueError("This MADE was built with context_dim: pass context.")
        h = h + tf.matmul(context, self.context_kernel)
      h = self.activation(h)
    out = tf.matmul(h, self.output_kernel * tf.constant(self._masks[-1], dtype))
    out = out + self.output_bias
    out = tf.reshape(out, tf.concat([tf.shape(out)[:-1], [self.event_size, 2]], 0))
    shift = out[..., 0]
    bound = tf.constant(self.log_scale_bound, dtype)
    log_scale = bound * tf.tanh(out[..., 1] / bound)
    return shift, log_scale

  def get_config(self):
    config = super().get_config()
    config.update(
      event_size=self.event_size,
      hidden_units=self.hidden_units,
      context_dim=self.context_dim,
      activation=self._activation_name,
      log_scale_bound=self.log_scale_bound,
      output_init_scale=self.output_init_scale,
    )
    return config


class CouplingNet(keras.layers.Layer):
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
    super().__init__(**kwargs)
    self.input_units = int(input_units)
    self.output_units = int(output_units)
    self.hidden_units = tuple(int(h) for h in hidden_units)
    if not self.hidden_units:
      raise ValueError("CouplingNet needs at least one hidden layer.")
    self.context_dim = None if context_dim is None else int(context_dim)
    self.activation = keras.activations.get(activation)
    self._activation_name = activation
    self.log_scale_bound = float(log_scale_bound)
    self.output_init_scale = float(output_init_scale)

  def build(self, input_shape=None):
    sizes = (self.input_units,) + self.hidden_units
    _add_hidden_weights(self, sizes)
    if self.context_dim is not None:
      self.context_kernel = self.add_weight(
        shape=(self.context_dim, self.hidden_units[0]),
        initializer="glorot_uniform",
        name="context_kernel",
      )
    self.output_kernel = self.add_weight(
      shape=(self.hidden_units[-1], 2 * self.output_units),
      initializer=_small_init(self.output_init_scale),
      name="output_kernel",
    )
    self.output_bias = self.add_weight(
      shape=(2 * self.output_units,), initializer="zeros", name="output_bias"
    )
    self.built = True

  def call(self, x, context=None):
    """x: [..., d]; context: [..., C] -> (shift, log_scale) [..., output_units]."""
    h = x
    for i, (kernel, bias) in enumerate(_hidden_weights(self)):
      h = tf.matmul(h, kernel) + bias
      if i == 0 and self.context_dim is not None:
        if context is None:
          raise ValueError("This CouplingNet was built with context_dim: pass context.")
        h = h + tf.matmul(context, self.context_kernel)
      h = self.activation(h)
    out = tf.matmul(h, self.output_kernel) + self.output_bias
    shift = out[..., : self.output_units]
    bound = tf.constant(self.log_scale_bound, self.compute_dtype)
    log_scale = bound * tf.tanh(out[..., self.output_units :] / bound)
    return shift, log_scale

  def get_config(self):
    config = super().get_config()
    config.update(
      input_units=self.input_units,
      output_units=self.output_units,
      hidden_units=self.hidden_units,
      context_dim=self.context_dim,
      activation=self._activation_name,
      log_scale_bound=self.log_scale_bound,
      output_init_scale=self.output_init_scale,
    )
    return config


def _memoize_last(fn):
  """Wraps fn(x) to return the previous result when called again on the SAME tensor.

  TFP's MaskedAutoregressiveFlow calls its conditioner once in `_inverse(y)` and
  again in `_inverse_log_det_jacobian(y)` with the same `y` object; this avoids
  the second network pass.  Identity (`is`) comparison with a strong reference
  to the last input: never a false hit for a given set of weights (the same
  semantics as TFP's own bijector cache, which also keys on tensor identity).
  """
  memo = {}

  def wrapped(x):
    if memo and memo["x"] is x:
      return memo["out"]
    out = fn(x)
    memo["x"], memo["out"] = x, out
    return out

  return wrapped


def _reverse_permutation(event_size):
  return tfb.Permute(permutation=np.arange(event_size - 1, -1, -1))


def _stack(layers, event_size):
  """Chain applying layers[0] first, with order-reversing permutations between."""
  bijectors = []
  for k, layer in enumerate(layers):
    if k > 0:
      bijectors.append(_reverse_permutation(event_size))
    bijectors.append(layer)
  return tfb.Chain(list(reversed(bijectors)))


def maf_bijector(conditioners, context, event_size):
  """Stack of K masked autoregressive flows (Papamakarios et al. 2017).

  Each layer k is tfb.MaskedAutoregressiveFlow with shift_and_log_scale_fn
  y -> conditioners[k](y, context): forward y_d = x_d exp(s_d(y_<d)) + m_d(y_<d)
  (D sequential conditioner passes), inverse and its log-det in one pass, so the
  DENSITY at any z is one pass and sampling is sequential.  Reverse permutations
  between layers.

  Args:
    conditioners: list of K `MADE` layers (event_size D, context_dim C).
    context: [batch, C] tensor (or None if the MADEs take none).
    event_size: D.
  Returns:
    tfb.Chain acting on [..., batch, D].
  """
  layers = []
  for made in conditioners:
    fn = _memoize_last(lambda y, made=made: made(y, context))
    layers.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn))
  return _stack(layers, event_size)


def iaf_bijector(conditioners, context, event_size):
  """Stack of K inverse autoregressive flows (Kingma et al. 2016).

  Each layer is tfb.Invert(tfb.MaskedAutoregressiveFlow(...)): the forward
  (sampling) direction z_d -> (z_d - m_d(z_<d)) exp(-s_d(z_<d)) is one
  conditioner pass; the density at an arbitrary z needs the inverse, D
  sequential passes per layer (TFP's while_loop).  Same arguments as
  `maf_bijector`.
  """
  layers = []
  for made in conditioners:
    fn = _memoize_last(lambda y, made=made: made(y, context))
    layers.append(tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn)))
  return _stack(layers, event_size)


def realnvp_bijector(conditioners, context, event_size, num_masked):
  """Stack of K affine coupling layers (Dinh et al. 2017), tfb.RealNVP.

  Layer k keeps x_{1:d} (d = num_masked) and maps
  x_{d+1:D} -> x_{d+1:D} exp(s(x_{1:d}, h)) + m(x_{1:d}, h); both directions
  and the log-det are one pass.  Reverse permutations between layers so every
  coordinate gets transformed.

  Args:
    conditioners: list of K `CouplingNet` (input_units=d, output_units=D-d).
    context: [batch, C] tensor or None.
    event_size: D.  num_masked: d in [1, D-1].
  """
  layers = []
  for net in conditioners:

    def bijector_fn(x0, output_units, net=net, **condition_kwargs):
      del output_units, condition_kwargs
      shift, log_scale = net(x0, context)
      return tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale)])

    layers.append(tfb.RealNVP(num_masked=num_masked, bijector_fn=bijector_fn))
  return _stack(layers, event_size)


# ----------------------------------------------------------------------------
# Posterior layer
# ----------------------------------------------------------------------------


@gin.configurable("posterior")
class Posterior(keras.layers.Layer):
  """Encoder posterior q_phi(z|x): diagonal Normal base + optional flow.

  z_0 = loc + exp(log_scale) * eps,  eps ~ N(0, I);  z = f(z_0)
  log q(z|x) = log N(z_0; loc, diag(exp(log_scale))^2) - log|det df/dz_0|.

  kind:
    "gaussian": no flow (num_flows ignored).
    "planar":   K = num_flows planar layers with per-example parameters
                u, w: [batch, K, D], b: [batch, K] produced from the features
                (Rezende & Mohamed 2015).  Density at any z via the numerical
                inverse of `PlanarFlow`.
    "iaf":      K IAF layers (MADE conditioners taking the context).
    "maf":      K MAF layers.
    "realnvp":  K affine coupling layers (needs latent_dim >= 2).
  num_flows = 0 reduces every kind to the diagonal Gaussian.

  Weights (all owned and tracked by this Keras 3 layer):
    loc head Dense(F->D); log-scale head Dense(F->D) (small kernel, zero bias:
    scale ~ 1 at init).  The log-scale is bounded with `soft_clip` into
    (min_log_scale, max_log_scale) -- smooth, identity-like inside, so the
    scale can neither underflow nor explode and gradients never vanish at a
    hard boundary.
    planar: if hidden_units is set, a linear bottleneck Dense(F->hidden_units,
    no bias) then Dense(->K(2D+1)) producing [u | w | b] per layer (a rank
    `hidden_units` factorisation of the direct head -- the direct F->K(2D+1)
    matmul alone costs ~3 ms at F=500, K=80, D=32, batch 100 on 2 CPU cores);
    hidden_units=None: the direct Dense(F->K(2D+1)).  The output kernel is small
    and the bias is `planar_identity_bias`: the flow starts at (near) identity.
    Measured (bench/flows_speed.py, float32, 2 CPU cores, tf.function / XLA):
    sample_and_log_prob 2.3 / 1.8 ms, log_prob + gradient 10.9 / 5.3 ms with
    hidden_units=64; 5.0 / 4.9 ms and 18.5 / 10.7 ms with the direct head.
    iaf/maf/realnvp: a context head Dense(F->hidden_units) (the IAF paper's
    context h), and per flow layer one MADE / CouplingNet with
    `conditioner_layers` hidden layers of `hidden_units` units.

  Args:
    latent_dim: D.
    kind: one of POSTERIOR_KINDS.
    num_flows: K >= 0.
    hidden_units: conditioner width (see above).
    delta: planar invertibility margin (w.u_hat >= -1 + delta).
    newton_iterations: planar inverse Newton steps per layer (None: 10 for
      float64, 8 otherwise).
    layers_per_iteration: planar layers per tf.while_loop iteration (8 was the
      fastest with and without XLA at K=80 on 2 CPU cores).
    conditioner_layers: hidden layers of each MADE / CouplingNet.
    activation: conditioner activation.
    min_log_scale, max_log_scale: soft bounds of the base log-scale.
    flow_init_scale: stddev * sqrt(fan_in) of the flow heads' output kernels.
    **kwargs: keras.layers.Layer kwargs (name, dtype, ...).
  """

  def __init__(
    self,
    latent_dim,
    kind="gaussian",
    num_flows=0,
    hidden_units=64,
    delta=0.05,
    newton_iterations=None,
    layers_per_iteration=8,
    conditioner_layers=2,
    activation="elu",
    min_log_scale=-9.0,
    max_log_scale=3.0,
    flow_init_scale=1e-2,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if kind not in POSTERIOR_KINDS:
      raise ValueError(f"Unknown posterior kind {kind!r}; allowed: {', '.join(POSTERIOR_KINDS)}.")
    if int(num_flows) < 0:
      raise ValueError(f"num_flows must be >= 0, got {num_flows}.")
    if not 0.0 < delta < 1.0:
      raise ValueError(f"delta must be in (0, 1), got {delta}.")
    if not min_log_scale < max_log_scale:
      raise ValueError("min_log_scale must be < max_log_scale.")
    self.latent_dim = int(latent_dim)
    self.kind = kind
    self.num_flows = int(num_flows)
    self.hidden_units = None if hidden_units is None else int(hidden_units)
    self.delta = float(delta)
    self.newton_iterations = None if newton_iterations is None else int(newton_iterations)
    self.layers_per_iteration = int(layers_per_iteration)
    self.conditioner_layers = int(conditioner_layers)
    self.activation = activation
    self.min_log_scale = float(min_log_scale)
    self.max_log_scale = float(max_log_scale)
    self.flow_init_scale = float(flow_init_scale)
    self.has_flow = kind != "gaussian" and self.num_flows > 0

    d = self.latent_dim
    policy = self.dtype_policy
    self.loc_head = keras.layers.Dense(d, dtype=policy, name="loc")
    self.log_scale_head = keras.layers.Dense(
      d, kernel_initializer=_small_init(0.1), dtype=policy, name="log_scale"
    )
    if not self.has_flow:
      return
    if kind == "planar":
      k = self.num_flows
      if self.hidden_units:
        self.planar_bottleneck = keras.layers.Dense(
          self.hidden_units, use_bias=False, dtype=policy, name="planar_bottleneck"
        )
      bias = planar_identity_bias(k, d, self.delta).reshape(-1)
      self.planar_head = keras.layers.Dense(
        k * (2 * d + 1),
        kernel_initializer=_small_init(self.flow_init_scale),
        bias_initializer=keras.initializers.Constant(bias),
        dtype=policy,
        name="planar_params",
      )
      return
    if self.hidden_units is None:
      raise ValueError(f"kind={kind!r} needs hidden_units.")
    if self.conditioner_layers < 1:
      raise ValueError("conditioner_layers must be >= 1.")
    hidden = (self.hidden_units,) * self.conditioner_layers
    self.context_head = keras.layers.Dense(self.hidden_units, dtype=policy, name="context")
    if kind in ("iaf", "maf"):
      conditioners = [
        MADE(
          d,
          hidden_units=hidden,
          context_dim=self.hidden_units,
          activation=activation,
          output_init_scale=self.flow_init_scale,
          dtype=policy,
          name=f"made_{i}",
        )
        for i in range(self.num_flows)
      ]
    else:  # realnvp
      if d < 2:
        raise ValueError("kind='realnvp' needs latent_dim >= 2.")
      self.num_masked = d // 2
      conditioners = [
        CouplingNet(
          self.num_masked,
          d - self.num_masked,
          hidden_units=hidden,
          context_dim=self.hidden_units,
          activation=activation,
          output_init_scale=self.flow_init_scale,
          dtype=policy,
          name=f"coupling_{i}",
        )
        for i in range(self.num_flows)
      ]
    # One attribute per conditioner (a list would be missed by tf.train.Checkpoint).
    for i, net in enumerate(conditioners):
      setattr(self, f"conditioner_{i}", net)

  @property
  def conditioners(self):
    """The K MADE / CouplingNet layers (iaf/maf/realnvp), in flow order."""
    if not self.has_flow or self.kind == "planar":
      return []
    return [getattr(self, f"conditioner_{i}") for i in range(self.num_flows)]

  def build(self, input_shape):
    features = int(input_shape[-1])
    self.loc_head.build((None, features))
    self.log_scale_head.build((None, features))
    if self.has_flow:
      if self.kind == "planar":
        if self.hidden_units:
          self.planar_bottleneck.build((None, features))
          self.planar_head.build((None, self.hidden_units))
        else:
          self.planar_head.build((None, features))
      else:
        self.context_head.build((None, features))
        for net in self.conditioners:
          net.build()
    self.built = True

  def call(self, features):
    """features h [batch, F] -> dict of tensors.

    Always: "loc" [batch, D], "log_scale" [batch, D] (soft-clipped).
    planar: "u" [batch, K, D] (raw, before the invertibility
    reparameterisation), "w" [batch, K, D], "b" [batch, K].
    iaf/maf/realnvp: "context" [batch, hidden_units].
    """
    d = self.latent_dim
    out = {
      "loc": self.loc_head(features),
      "log_scale": soft_clip(self.log_scale_head(features), self.min_log_scale, self.max_log_scale),
    }
    if not self.has_flow:
      return out
    if self.kind == "planar":
      h = self.planar_bottleneck(features) if self.hidden_units else features
      p = tf.reshape(self.planar_head(h), [-1, self.num_flows, 2 * d + 1])
      out["u"] = p[..., :d]
      out["w"] = p[..., d : 2 * d]
      out["b"] = p[..., 2 * d]
    else:
      out["context"] = self.context_head(features)
    return out

  # -- flow construction ------------------------------------------------------

  def bijector(self, params):
    """The flow f as a TFP bijector from `call()` outputs (None if no flow)."""
    if not self.has_flow:
      return None
    if self.kind == "planar":
      return planar_flow(
        params["u"],
        params["w"],
        params["b"],
        delta=self.delta,
        newton_iterations=self.newton_iterations,
        layers_per_iteration=self.layers_per_iteration,
      )
    ctx = params["context"]
    if self.kind == "iaf":
      return iaf_bijector(self.conditioners, ctx, self.latent_dim)
    if self.kind == "maf":
      return maf_bijector(self.conditioners, ctx, self.latent_dim)
    return realnvp_bijector(self.conditioners, ctx, self.latent_dim, self.num_masked)

  def distribution(self, features):
    """tfd.Distribution with event shape [D], batch shape [batch].

    Independent(Normal(loc, exp(log_scale)), 1), transformed by the flow
    (TransformedDistribution) unless kind="gaussian" / num_flows=0.
    """
    params = self(features)
    base = tfd.Independent(
      tfd.Normal(params["loc"], tf.exp(params["log_scale"])), reinterpreted_batch_ndims=1
    )
    bij = self.bijector(params)
    if bij is None:
      return base
    return tfd.TransformedDistribution(base, bij)

  def sample_and_log_prob(self, features, seed=None, sample_shape=(), eps=None):
    """Reparameterised z ~ q(z|x) and log q(z|x) from ONE forward pass.

    Args:
      features: [batch, F].
      seed: int32 [2] stateless seed; eps ~ N(0, I) is drawn from it
        (tf.random.stateless_normal, alg="philox": XLA's default algorithm is
        ~6x slower on CPU).
      sample_shape: optional leading sample shape S (default none).
      eps: alternatively the standard-normal noise itself, [*S, batch, D]
        (e.g. replica-invariant noise drawn by the caller); overrides seed.
    Returns:
      z: [*S, batch, D]; log_q: [*S, batch] = log N(z_0) - fldj(z_0), with
      z_0 = loc + exp(log_scale) * eps.
    """
    params = self(features)
    loc, log_scale = params["loc"], params["log_scale"]
    if eps is None:
      if seed is None:
        raise ValueError("sample_and_log_prob needs `seed` or `eps`.")
      shape = tf.concat(
        [tf.constant(sample_shape, tf.int32, [len(sample_shape)]), tf.shape(loc)], 0
      )
      eps = tf.random.stateless_normal(shape, seed=seed, dtype=loc.dtype, alg="philox")
    else:
      eps = tf.convert_to_tensor(eps, dtype=loc.dtype)
    z0 = loc + tf.exp(log_scale) * eps
    base_lp = tf.reduce_sum(
      -0.5 * tf.square(eps) - log_scale - tf.constant(_HALF_LOG_TWO_PI, loc.dtype), axis=-1
    )
    bij = self.bijector(params)
    if bij is None:
      return z0, base_lp
    if isinstance(bij, PlanarFlow):
      z, fldj = bij.forward_and_log_det(z0)
    else:
      z = bij.forward(z0)
      fldj = bij.forward_log_det_jacobian(z0, event_ndims=1)  # cached intermediates
    return z, base_lp - fldj

  def log_prob(self, features, z):
    """log q(z|x) [..., batch] at ANY z [..., batch, D] (inverse flow for planar/IAF)."""
    params = self(features)
    loc, log_scale = params["loc"], params["log_scale"]
    z = tf.convert_to_tensor(z, dtype=loc.dtype)
    bij = self.bijector(params)
    if bij is None:
      return diag_normal_log_prob(z, loc, log_scale)
    if isinstance(bij, PlanarFlow):
      z0, ildj = bij.inverse_and_log_det(z)
    else:
      z0 = bij.inverse(z)
      ildj = bij.inverse_log_det_jacobian(z, event_ndims=1)  # cached intermediates
    return diag_normal_log_prob(z0, loc, log_scale) + ildj

  def mean(self, features):
    """[batch, D]: the base mean pushed through the flow, f(loc).

    (Not E[z] for a non-affine flow -- TransformedDistribution has no closed-form
    mean -- but the deterministic code of x, as in Rezende & Mohamed.)
    """
    params = self(features)
    bij = self.bijector(params)
    if bij is None:
      return params["loc"]
    if isinstance(bij, PlanarFlow):
      return bij.forward_and_log_det(params["loc"])[0]
    return bij.forward(params["loc"])

  def get_config(self):
    config = super().get_config()
    config.update(
      latent_dim=self.latent_dim,
      kind=self.kind,
      num_flows=self.num_flows,
      hidden_units=self.hidden_units,
      delta=self.delta,
      newton_iterations=self.newton_iterations,
      layers_per_iteration=self.layers_per_iteration,
      conditioner_layers=self.conditioner_layers,
      activation=self.activation,
      min_log_scale=self.min_log_scale,
      max_log_scale=self.max_log_scale,
      flow_init_scale=self.flow_init_scale,
    )
    return config


# gin replaces Posterior.__init__ by a (*args, **kwargs) wrapper; Keras 3 inspects
# the __init__ argspec of every layer class (for auto get_config) and fails on it.
# Expose the real signature again (inspect.signature follows __wrapped__).
Posterior.__init__.__signature__ = inspect.signature(Posterior.__init__)
