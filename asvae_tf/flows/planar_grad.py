"""Hand-written VJPs of the planar flow's forward pass and numerical inverse.

`PlanarFlow` computes (y, fldj) and (z, ildj) through `_planar_forward_custom`
and `_planar_inverse_custom`: the layer loops of `planar_loops` wrapped in
tf.custom_gradient with analytic vector-Jacobian products.  First-order
gradients only (no gradient-of-gradient through the flow).

Notation (batch-major: u, w [batch, K, D], b, c [batch, K], states
[..., batch, D], per-layer scalars [..., batch, K]), per layer k: a = w.x + b,
th = tanh(a), s = 1 - th^2, forward y = x + u th, log-det l = log(1 + c s),
dl/da = -2 c th s / (1 + c s), dl/dc = s / (1 + c s).  c = w.u_hat is an input
of its own: its gradient reaches u_hat and w through the computation of c.
The loops store only th_k; the layer inputs are recovered afterwards as
x_k = x_0 + sum_{j<k} u_j th_j (a triangular matmul over the layer axis).

Forward, layers K-1..0: with y_bar the cotangent of the layer output,
    a_bar = s (u.y_bar) + fldj_bar dl/da,   x_bar = y_bar + a_bar w,
    u_bar = th y_bar,  w_bar = a_bar x,  b_bar = a_bar,  c_bar = fldj_bar dl/dc.

Inverse: the gradients are exact implicit-function gradients.  For one layer,
x = F^{-1}(y) with F(x) = x + u tanh(w.x + b), J = I + s u w^T, so
y_bar = J^{-T} x_bar (Sherman-Morrison: v - w s (u.v) / (1 + c s)) and
theta_bar = -(dF/dtheta)^T y_bar, plus the direct terms of ildj = -log(1 + c s).
Layers 0..K-1 (the reverse of the inverse's order):
    lambda_k = J_k^{-T}(x_bar + ildj_bar dl/da w)
             = x_bar + (ildj_bar dl/da / (1 + c s) - rho (u.x_bar)) w,
    rho = s / (1 + c s),  with here l = -log(1 + c s); y_bar = lambda_{K-1}.

In both directions only the cotangent recursion is sequential (one dot product
per layer, `_cotangent_loop`); the parameter gradients are vectorised over the
layers afterwards.

XLA for the loops alone (`jit_compile=True`, train.jit_compile = 'flow'): the three
loops (forward, inverse, cotangent recursion) never need autodiff (the VJPs above are
their gradients), so each runs as its own tf.function(jit_compile=True), which fuses a
layer's ~10 small ops into a few kernels, while the rest of the step stays in TF.
"""

import numpy as np
import tensorflow as tf

from asvae_tf.flows.planar_loops import _layer_loop
from asvae_tf.flows.planar_loops import _planar_forward
from asvae_tf.flows.planar_loops import _planar_inverse

__all__ = []


def _loops(jit_compile):
  """(forward, inverse, cotangent) loop functions, XLA-compiled when jit_compile."""
  if not jit_compile:
    return _planar_forward, _planar_inverse, _cotangent_loop
  return _XLA_LOOPS


def _cotangent_loop(v, u_hat, w, p, q, reverse, layers_per_iteration):
  """Sequential cotangent recursion v <- v + coef_k w_k, coef_k = p_k + q_k (u_k . v).

  Args:
    v: [..., batch, D]; u_hat, w: [batch, K, D]; p, q: [..., batch, K].
  Returns:
    (final v [..., batch, D], coefs [..., batch, K]).
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


# Traced once per (shapes, static arguments); the arguments after the tensors are ints/bools.
_XLA_LOOPS = tuple(
  tf.function(f, jit_compile=True, autograph=False)
  for f in (_planar_forward, _planar_inverse, _cotangent_loop)
)


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


def _no_grad(*tensors):
  return [tf.stop_gradient(t) for t in tensors]


def _planar_forward_custom(z, u_hat, w, b, c, layers_per_iteration, jit_compile=False):
  """forward_and_log_det with an analytic VJP (see the module docstring).

  Args:
    z: [..., batch, D]; u_hat, w: [batch, K, D]; b, c: [batch, K].
    jit_compile: run the layer loops as XLA-compiled functions.
  Returns:
    (y [..., batch, D], fldj [..., batch]).
  """

  @tf.custom_gradient
  def fn(z, u_hat, w, b, c):
    # The loop runs without gradient (stop_gradient): `grad` below is the gradient, and
    # a while_loop that may be differentiated keeps every iteration's intermediates.
    forward_loop, _, cotangent_loop = _loops(jit_compile)
    y, ths = forward_loop(*_no_grad(z, u_hat, w, b), layers_per_iteration)
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
      dz, da = cotangent_loop(
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


def _planar_inverse_custom(
  y, u_hat, w, b, c, newton_iterations, layers_per_iteration, jit_compile=False
):
  """inverse_and_log_det with an analytic (implicit-function) VJP (see the module docstring).

  Args:
    y: [..., batch, D]; u_hat, w: [batch, K, D]; b, c: [batch, K].
    jit_compile: run the layer loops as XLA-compiled functions.
  Returns:
    (z [..., batch, D], ildj [..., batch]).
  """

  @tf.custom_gradient
  def fn(y, u_hat, w, b, c):
    _, inverse_loop, cotangent_loop = _loops(jit_compile)
    z, ths = inverse_loop(*_no_grad(y, u_hat, w, b, c), newton_iterations, layers_per_iteration)
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
      # lambda_k, layers 0..K-1; y_bar = lambda_{K-1}.
      dy, coefs = cotangent_loop(
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
