"""Tests of asvae_tf.flows: planar flow (forward, log-det, numerical inverse, VJPs),
IAF / MAF / RealNVP stacks and their conditioners.

References are independent of the code under test: a NumPy planar flow, an
unrolled plain-TF planar flow differentiated by tf.GradientTape, autodiff
Jacobians + slogdet, central finite differences, TFP distributions.  Tiny shapes,
float64 where exactness is asserted.  (The Posterior layer: posterior_test.py.)
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf import flows
from asvae_tf.flows import planar_grad

tfd = tfp.distributions

DELTA = 0.05


def _normal(seed, shape, dtype=tf.float64, scale=1.0):
  return scale * tf.random.stateless_normal(shape, [seed, 7], dtype=dtype)


def _np_planar_forward(z, u, w, b, delta):
  """Rezende & Mohamed planar flow in NumPy, raw u reparameterised (appendix A)."""
  wu = np.sum(w * u, -1, keepdims=True)
  m = -1.0 + delta + np.log1p(np.exp(wu))
  u_hat = u + (m - wu) * w / np.sum(w * w, -1, keepdims=True)
  ldj = np.zeros(z.shape[:-1])
  for k in range(u.shape[1]):
    t = np.tanh(np.sum(z * w[:, k], -1) + b[:, k])
    ldj += np.log(np.abs(1.0 + (1.0 - t**2) * np.sum(u_hat[:, k] * w[:, k], -1)))
    z = z + u_hat[:, k] * t[..., None]
  return z, ldj


def _random_planar(seed, batch, k, d, dtype=tf.float64):
  return (
    _normal(seed, [batch, k, d], dtype),
    _normal(seed + 1, [batch, k, d], dtype),
    _normal(seed + 2, [batch, k], dtype),
  )


# ----------------------------------------------------------------------------
# Planar flow
# ----------------------------------------------------------------------------


def test_reparameterisation_enforces_margin():
  u, w, _ = _random_planar(1, 5, 6, 4)
  u = tf.concat([u, -10.0 * w, 50.0 * w], axis=1)  # adversarial: w.u << -1 and >> 0
  w = tf.concat([w, w, w], axis=1)
  u_hat = flows.planar_reparameterize_u(u, w, DELTA)
  c = tf.reduce_sum(u_hat * w, -1).numpy()
  assert c.min() >= -1.0 + DELTA - 1e-12
  wu = tf.reduce_sum(u * w, -1).numpy()
  np.testing.assert_allclose(c, -1.0 + DELTA + np.log1p(np.exp(wu)), rtol=1e-12)
  # w = 0: finite (the ||w||^2 guard), w.u_hat = 0 > -1.
  u_hat0 = flows.planar_reparameterize_u(u[:, :1], tf.zeros_like(u[:, :1]), DELTA)
  assert np.isfinite(u_hat0.numpy()).all()


@pytest.mark.parametrize("k,lpi", [(1, 8), (5, 2), (20, 8), (13, 4)])
def test_planar_forward_matches_numpy(k, lpi):
  u, w, b = _random_planar(2, 6, k, 3)
  z = _normal(5, [6, 3])
  flow = flows.planar_flow(u, w, b, delta=DELTA, layers_per_iteration=lpi)
  y, fldj = flow.forward_and_log_det(z)
  y_ref, ldj_ref = _np_planar_forward(z.numpy(), u.numpy(), w.numpy(), b.numpy(), DELTA)
  np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(fldj.numpy(), ldj_ref, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(flow.forward(z).numpy(), y_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
  "k,lpi,sample_shape",
  [(0, 8, []), (1, 8, []), (5, 1, [2]), (20, 8, []), (20, 3, [2]), (20, 100, [])],
)
def test_planar_round_trip_float64(k, lpi, sample_shape):
  u, w, b = _random_planar(3, 6, k, 4)
  z = _normal(9, sample_shape + [6, 4])
  flow = flows.planar_flow(u, w, b, delta=DELTA, layers_per_iteration=lpi)
  y, fldj = flow.forward_and_log_det(z)
  x, ildj = flow.inverse_and_log_det(tf.identity(y))
  np.testing.assert_allclose(x.numpy(), z.numpy(), rtol=0, atol=1e-8)
  np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=0, atol=1e-8)
  # Through the TFP API (tf.identity defeats the bijector cache).
  np.testing.assert_allclose(flow.inverse(tf.identity(y)).numpy(), z.numpy(), atol=1e-8)
  if k == 0:
    np.testing.assert_array_equal(y.numpy(), z.numpy())
    np.testing.assert_array_equal(fldj.numpy(), np.zeros(sample_shape + [6]))


@pytest.mark.parametrize("k", [20, 80])
def test_planar_round_trip_float32_posterior_params(k):
  """float32 round trip at the scales a randomly initialised Posterior produces."""
  post = flows.Posterior(8, kind="planar", num_flows=k, hidden_units=16)
  h = _normal(4, [16, 30], tf.float32)
  params = post(h)
  flow = post.bijector(params)
  z = _normal(5, [16, 8], tf.float32)
  y = flow.forward(z)
  np.testing.assert_allclose(flow.inverse(tf.identity(y)).numpy(), z.numpy(), atol=1e-4)


def test_planar_round_trip_float32_standard_normal_params():
  """N(0, 1) u, w, b: 1e-4 for a few layers; for many layers the float32 inverse
  is checked against the float64 inverse of the SAME float32 inputs, with the
  backward-stability bound |dx| <= C eps32 ||J^{-1}|| ||y|| (C = 16): with
  N(0,1) params in D=8 the map itself is so ill-conditioned that no float32
  method can do better than that bound (measured ratio <= 3.2)."""
  u, w, b = _random_planar(6, 40, 3, 8, tf.float32)
  z = _normal(7, [40, 8], tf.float32)
  flow = flows.planar_flow(u, w, b, delta=DELTA)
  y = flow.forward(z)
  np.testing.assert_allclose(flow.inverse(tf.identity(y)).numpy(), z.numpy(), atol=1e-4)

  u, w, b = _random_planar(8, 40, 20, 8, tf.float32)
  y32 = _normal(9, [40, 8], tf.float32)
  x32 = flows.planar_flow(u, w, b, delta=DELTA).inverse(y32).numpy()
  c64 = lambda t: tf.cast(t, tf.float64)  # noqa: E731
  flow64 = flows.planar_flow(c64(u), c64(w), c64(b), delta=DELTA)
  y64 = c64(y32)
  with tf.GradientTape() as tape:
    tape.watch(y64)
    x64 = flow64.inverse(y64)
  jac_inv = tape.batch_jacobian(x64, y64).numpy()
  bound = (
    16
    * np.finfo(np.float32).eps
    * np.linalg.norm(jac_inv, 2, axis=(1, 2))
    * (1.0 + np.abs(y32.numpy()).max(-1))
  )
  err = np.abs(x32 - x64.numpy()).max(-1)
  assert (err <= bound).all(), (err / bound).max()


def test_planar_newton_hard_cases():
  """One layer, D = 1 (w = 1, u_hat = c): the default iteration count solves
  g(t) = t + c tanh t - r = 0 to 1e-12 relative in float64 over c from the
  invertibility margin to 1e3 and |r| up to 1e3."""
  cs = np.array([-1 + DELTA, -1 + DELTA + 1e-7, -0.5, 0.0, 0.5, 10.0, 1e3])
  rs = np.array([0.0, 1e-6, -1e-3, 0.3, -2.0, 7.0, -50.0, 1e3, -1e3])
  c, r = [a.ravel() for a in np.meshgrid(cs, rs)]
  n = c.size
  bvals = np.linspace(-3, 3, n)
  flow = flows.PlanarFlow(c.reshape(n, 1, 1), np.ones((n, 1, 1)), bvals.reshape(n, 1))
  y = tf.constant((r - bvals).reshape(n, 1))  # r = w.y + b
  x = flow.inverse(y).numpy()[:, 0]
  t = x + bvals
  np.testing.assert_array_less(np.abs(t + c * np.tanh(t) - r), 1e-12 * (1 + np.abs(r)))
  np.testing.assert_allclose(
    flow.forward(tf.constant(x[:, None])).numpy()[:, 0], y.numpy()[:, 0], rtol=1e-12, atol=1e-12
  )


def test_planar_log_det_matches_autodiff_jacobian():
  u, w, b = _random_planar(10, 5, 6, 4)
  z = _normal(11, [5, 4])
  flow = flows.planar_flow(u, w, b, delta=DELTA, layers_per_iteration=4)
  with tf.GradientTape() as tape:
    tape.watch(z)
    y, fldj = flow.forward_and_log_det(z)
  _, logdet = tf.linalg.slogdet(tape.batch_jacobian(y, z))
  np.testing.assert_allclose(fldj.numpy(), logdet.numpy(), rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(
    flow.forward_log_det_jacobian(z, event_ndims=1).numpy(), logdet.numpy(), rtol=1e-10, atol=1e-10
  )
  # The inverse: its own Jacobian, and ildj = -fldj at the image.
  y_new = tf.identity(y)
  with tf.GradientTape() as tape:
    tape.watch(y_new)
    x, ildj = flow.inverse_and_log_det(y_new)
  _, logdet_inv = tf.linalg.slogdet(tape.batch_jacobian(x, y_new))
  np.testing.assert_allclose(ildj.numpy(), logdet_inv.numpy(), rtol=1e-8, atol=1e-8)
  np.testing.assert_allclose(
    flow.inverse_log_det_jacobian(tf.identity(y), event_ndims=1).numpy(),
    -fldj.numpy(),
    rtol=1e-8,
    atol=1e-8,
  )


def _solve_planar_layer(r, c):
  """Root t of t + c tanh(t) = r, without gradient (NumPy, float64).

  g(t) = t + c tanh(t) - r is increasing (g' >= delta) with its root in
  [r - |c|, r + |c|]: 200 bisection steps, then two Newton steps to polish.
  """
  r = r.numpy()
  c = np.broadcast_to(c.numpy(), r.shape)
  lo, hi = r - np.abs(c), r + np.abs(c)
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    below = mid + c * np.tanh(mid) - r < 0
    lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
  t = 0.5 * (lo + hi)
  for _ in range(2):
    t = t - (t + c * np.tanh(t) - r) / (1.0 + c * (1.0 - np.tanh(t) ** 2))
  return tf.constant(t)


def _tf_planar_reference(direction, x, u, w, b, delta):
  """Planar flow (value, log-det) in plain, unrolled TF: differentiable by tf.GradientTape.

  Appendix-A reparameterisation of the raw u, then layer by layer: forward
  y = x + u_hat tanh(w.x + b), log-det log(1 + (w.u_hat)(1 - tanh^2)).  Inverse
  (layers K-1..0): the pre-activation t* of t + c tanh t = r = w.y + b is solved
  without gradient (`_solve_planar_layer`); one differentiable Newton step from
  it, t = t* - g(t*) / g'(t*), carries the implicit-function derivative
  dt = -dg / g' (exact up to the O(g(t*)) residual).
  """
  wu = tf.reduce_sum(w * u, -1, keepdims=True)
  m = -1.0 + delta + tf.math.softplus(wu)
  u_hat = u + (m - wu) * w / tf.reduce_sum(w * w, -1, keepdims=True)
  c = tf.reduce_sum(w * u_hat, -1)  # [batch, K]
  sign = 1.0 if direction == "forward" else -1.0
  log_det = tf.zeros_like(x[..., 0])
  layers = range(u.shape[1])
  for k in layers if direction == "forward" else reversed(layers):
    t = tf.reduce_sum(x * w[:, k], -1) + b[:, k]  # forward: a; inverse: r
    if direction == "inverse":
      t_root = _solve_planar_layer(t, c[:, k])
      th = tf.tanh(t_root)
      t = t_root - (t_root + c[:, k] * th - t) / (1.0 + c[:, k] * (1.0 - th * th))
    th = tf.tanh(t)
    x = x + sign * u_hat[:, k] * th[..., tf.newaxis]
    log_det = log_det + sign * tf.math.log(1.0 + c[:, k] * (1.0 - th * th))
  return x, log_det


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("k,lpi,sample_shape", [(6, 4, []), (9, 2, [2])])
def test_planar_custom_vjp_matches_autodiff(direction, k, lpi, sample_shape, jit):
  """Analytic VJPs == TF autodiff of an independent unrolled flow (float64), with the
  layer loops in TF and XLA-compiled (jit_compile, train.jit_compile = 'flow')."""
  u, w, b = _random_planar(12, 5, k, 3)
  z = _normal(13, sample_shape + [5, 3])
  cot_z, cot_l = _normal(14, sample_shape + [5, 3]), _normal(15, sample_shape + [5])
  results = {}
  traces = sum(f.experimental_get_tracing_count() for f in planar_grad._XLA_LOOPS)
  for impl in ("flow", "reference"):
    with tf.GradientTape() as tape:
      tape.watch([u, w, b, z])
      if impl == "flow":
        flow = flows.planar_flow(u, w, b, delta=DELTA, layers_per_iteration=lpi, jit_compile=jit)
        fn = flow.forward_and_log_det if direction == "forward" else flow.inverse_and_log_det
        out, ld = fn(z)
      else:
        out, ld = _tf_planar_reference(direction, z, u, w, b, DELTA)
      loss = tf.reduce_sum(out * cot_z) + tf.reduce_sum(ld * cot_l)
    results[impl] = [out, ld] + tape.gradient(loss, [u, w, b, z])
    assert all(g is not None for g in results[impl])
  for got, want in zip(results["flow"], results["reference"]):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-11)
  # The XLA-compiled loops ran (each case has shapes of its own: a new trace) or did not.
  new_traces = sum(f.experimental_get_tracing_count() for f in planar_grad._XLA_LOOPS) - traces
  assert (new_traces >= 2) if jit else (new_traces == 0)


def test_planar_inverse_gradients_match_finite_differences():
  """d/dtheta of sum(x) + sum(ildj), x = f^{-1}(y): tape vs central differences."""
  u, w, b = _random_planar(16, 3, 4, 3)
  y = _normal(17, [3, 3])
  args = [u, w, b, y]

  def loss(u, w, b, y):
    x, ildj = flows.planar_flow(u, w, b, delta=DELTA).inverse_and_log_det(y)
    return tf.reduce_sum(x * tf.constant([1.0, -2.0, 0.5], tf.float64)) + tf.reduce_sum(ildj)

  with tf.GradientTape() as tape:
    tape.watch(args)
    value = loss(*args)
  grads = tape.gradient(value, args)
  rng = np.random.RandomState(0)
  step = 1e-6
  for i, (arg, grad) in enumerate(zip(args, grads)):
    assert grad is not None
    for _ in range(3):
      index = tuple(rng.randint(s) for s in arg.shape)
      basis = np.zeros(arg.shape)
      basis[index] = step
      plus = [a + basis if j == i else a for j, a in enumerate(args)]
      minus = [a - basis if j == i else a for j, a in enumerate(args)]
      fd = (loss(*plus) - loss(*minus)).numpy() / (2 * step)
      # central FD: truncation O(step^2) ~ 1e-12, rounding ~ eps |f| / step ~ 1e-9
      np.testing.assert_allclose(grad.numpy()[index], fd, rtol=1e-6, atol=1e-7)


def test_planar_tfp_cache_solves_inverse_once():
  u, w, b = _random_planar(18, 4, 3, 3)
  flow = flows.planar_flow(u, w, b, delta=DELTA)
  calls = []
  original = flow.inverse_and_log_det

  def counting(y):
    calls.append(1)
    return original(y)

  flow.inverse_and_log_det = counting
  base = tfd.Independent(tfd.Normal(tf.zeros([4, 3], tf.float64), 1.0), 1)
  dist = tfd.TransformedDistribution(base, flow)
  z = _normal(19, [4, 3])
  lp = dist.log_prob(z)
  assert len(calls) == 1
  x, ildj = original(z)
  np.testing.assert_allclose(lp.numpy(), (base.log_prob(x) + ildj).numpy(), rtol=1e-12)


def test_planar_batch_shape_and_validation():
  u, w, b = _random_planar(20, 4, 3, 2)
  flow = flows.planar_flow(u, w, b, delta=DELTA, validate_args=True)
  assert flow.forward_min_event_ndims == 1
  assert flow.experimental_batch_shape().as_list() == [4]
  bad = flows.PlanarFlow(-3.0 * w, w, b, validate_args=True)  # w.u = -3 ||w||^2 < -1
  with pytest.raises(tf.errors.InvalidArgumentError):
    bad.forward(_normal(21, [4, 2]))


# ----------------------------------------------------------------------------
# IAF / MAF / RealNVP
# ----------------------------------------------------------------------------


def _randomise(layer, seed, scale=0.3):
  """Non-trivial weights (the near-identity init would make tests too easy)."""
  rng = np.random.RandomState(seed)
  for v in layer.trainable_variables:
    v.assign(scale * rng.normal(size=v.shape))


@pytest.mark.parametrize("kind", ["iaf", "maf", "realnvp"])
def test_tfp_flows_round_trip_and_log_det(kind):
  post = flows.Posterior(4, kind=kind, num_flows=3, hidden_units=8, dtype="float64")
  h = _normal(22, [5, 6])
  params = post(h)
  _randomise(post, 1)
  params = post(h)
  bij = post.bijector(params)
  z = _normal(23, [5, 4])
  with tf.GradientTape() as tape:
    tape.watch(z)
    y = bij.forward(z)
  fldj = bij.forward_log_det_jacobian(z, event_ndims=1)
  _, logdet = tf.linalg.slogdet(tape.batch_jacobian(y, z))
  np.testing.assert_allclose(fldj.numpy(), logdet.numpy(), rtol=1e-9, atol=1e-9)
  y_new = tf.identity(y)
  np.testing.assert_allclose(bij.inverse(y_new).numpy(), z.numpy(), atol=1e-10)
  np.testing.assert_allclose(
    bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1), -fldj.numpy(), rtol=1e-9, atol=1e-9
  )


def test_made_is_autoregressive():
  made = flows.MADE(5, hidden_units=(7, 6), context_dim=3, dtype="float64")
  made.build()
  _randomise(made, 2, scale=1.0)
  x = _normal(24, [4, 5])
  ctx = _normal(25, [4, 3])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    shift, log_scale = made(x, ctx)
  for out in (shift, log_scale):
    jac = tape.batch_jacobian(out, x).numpy()  # [b, out d, in d]
    assert np.all(jac[:, np.triu_indices(5)[0], np.triu_indices(5)[1]] == 0.0)
    assert np.abs(jac[:, np.tril_indices(5, -1)[0], np.tril_indices(5, -1)[1]]).max() > 0
  assert len(made.trainable_variables) == 7  # 2 x (kernel, bias), context, out kernel+bias
