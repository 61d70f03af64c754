"""Tests of asvae_tf.flows.posterior: the Posterior layer (gin `posterior`) of every kind.

References are independent of the code under test: a NumPy planar flow, explicit
diagonal-Gaussian formulas, TFP distributions, central finite differences, the
eager path for XLA.  Tiny shapes, float64 where exactness is asserted.
"""

import os
import tempfile

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf import errors
from asvae_tf import flows
from asvae_tf.flows import posterior as posterior_lib

tfd = tfp.distributions


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


def _randomise(layer, seed, scale=0.3):
  """Non-trivial weights (the near-identity init would make tests too easy)."""
  rng = np.random.RandomState(seed)
  for v in layer.trainable_variables:
    v.assign(scale * rng.normal(size=v.shape))


KINDS = ["gaussian", "planar", "iaf", "maf", "realnvp"]


def _posterior(kind, num_flows=3, d=3, **kwargs):
  kwargs.setdefault("hidden_units", 6)
  return posterior_lib.Posterior(d, kind=kind, num_flows=num_flows, dtype="float64", **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_log_q_consistency(kind):
  post = _posterior(kind)
  h = _normal(26, [4, 5])
  post(h)
  _randomise(post, 3, scale=0.2)
  seed = tf.constant([1, 2], tf.int32)
  z, log_q = post.sample_and_log_prob(h, seed)
  assert z.shape == (4, 3) and log_q.shape == (4,)
  z_any = tf.identity(z)
  np.testing.assert_allclose(post.log_prob(h, z_any).numpy(), log_q.numpy(), rtol=1e-9, atol=1e-9)
  dist = post.distribution(h)
  assert dist.event_shape == [3] and dist.batch_shape == [4]
  np.testing.assert_allclose(
    dist.log_prob(tf.identity(z)).numpy(), log_q.numpy(), rtol=1e-9, atol=1e-9
  )
  # Reparameterised: eps given explicitly reproduces the seeded draw.
  eps = tf.random.stateless_normal([4, 3], seed, dtype=tf.float64, alg="philox")
  z2, log_q2 = post.sample_and_log_prob(h, eps=eps)
  np.testing.assert_array_equal(z2.numpy(), z.numpy())
  np.testing.assert_array_equal(log_q2.numpy(), log_q.numpy())
  # Same seed: bit-identical; another seed: different.
  z3, _ = post.sample_and_log_prob(h, seed)
  np.testing.assert_array_equal(z3.numpy(), z.numpy())
  z4, _ = post.sample_and_log_prob(h, tf.constant([1, 3], tf.int32))
  assert np.abs(z4.numpy() - z.numpy()).max() > 1e-3


@pytest.mark.parametrize("kind", ["gaussian", "planar", "iaf"])
def test_posterior_without_flow_is_diagonal_gaussian(kind):
  post = _posterior(kind, num_flows=0)
  h = _normal(27, [4, 5])
  params = post(h)
  assert set(params) == {"loc", "log_scale"}
  loc, log_scale = params["loc"].numpy(), params["log_scale"].numpy()
  z = _normal(28, [4, 3])
  ref = tfd.MultivariateNormalDiag(loc, np.exp(log_scale)).log_prob(z).numpy()
  explicit = np.sum(
    -0.5 * ((z.numpy() - loc) / np.exp(log_scale)) ** 2 - log_scale - 0.5 * np.log(2 * np.pi), -1
  )
  np.testing.assert_allclose(post.log_prob(h, z).numpy(), ref, rtol=1e-12)
  np.testing.assert_allclose(post.log_prob(h, z).numpy(), explicit, rtol=1e-12)
  np.testing.assert_allclose(post.distribution(h).log_prob(z).numpy(), ref, rtol=1e-12)
  np.testing.assert_allclose(post.mean(h).numpy(), loc)
  assert len(post.trainable_variables) == 4


def test_posterior_mean_planar_is_flow_of_loc():
  post = _posterior("planar", num_flows=4)
  h = _normal(29, [4, 5])
  post(h)
  _randomise(post, 4, scale=0.3)
  p = {k: v.numpy() for k, v in post(h).items()}
  ref, _ = _np_planar_forward(p["loc"], p["u"], p["w"], p["b"], post.delta)
  np.testing.assert_allclose(post.mean(h).numpy(), ref, rtol=1e-12, atol=1e-12)


def test_posterior_initial_flow_is_near_identity_and_scale_near_one():
  keras.utils.set_random_seed(0)  # the init is random: make the test independent of order
  post = posterior_lib.Posterior(4, kind="planar", num_flows=5, hidden_units=8)
  h = _normal(30, [6, 10], tf.float32)
  params = post(h)
  z = _normal(31, [6, 4], tf.float32)
  y, fldj = post.bijector(params).forward_and_log_det(z)
  assert np.abs(y.numpy() - z.numpy()).max() < 0.1
  assert np.abs(fldj.numpy()).max() < 0.1
  assert np.abs(params["log_scale"].numpy()).max() < 0.3


# Trainable variables per kind (K flows, C conditioner layers = 2):
#   loc (2) + log_scale (2); planar + bottleneck kernel + head (2);
#   iaf/maf/realnvp + context head (2) + K * (2 hidden x (kernel, bias) + context
#   kernel + output kernel + output bias = 7).
EXPECTED_NUM_VARIABLES = {
  "gaussian": 4,
  "planar": 7,
  "iaf": 4 + 2 + 3 * 7,
  "maf": 4 + 2 + 3 * 7,
  "realnvp": 4 + 2 + 3 * 7,
}


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_variables_tracked_and_checkpointed(kind):
  h = _normal(32, [4, 5])
  z = _normal(33, [4, 3])
  a, b = _posterior(kind), _posterior(kind)
  a(h)
  b(h)
  _randomise(a, 5, scale=0.2)
  assert len(a.trainable_variables) == EXPECTED_NUM_VARIABLES[kind]
  assert len({v.path for v in a.trainable_variables}) == len(a.trainable_variables)
  if kind == "planar":
    assert a.planar_head.kernel.shape == (6, 3 * (2 * 3 + 1))
  assert np.abs(a.log_prob(h, z).numpy() - b.log_prob(h, z).numpy()).max() > 1e-6
  path = tf.train.Checkpoint(layer=a).save(os.path.join(tempfile.mkdtemp(), "ckpt"))
  tf.train.Checkpoint(layer=b).restore(path).assert_consumed()
  for va, vb in zip(a.trainable_variables, b.trainable_variables):
    np.testing.assert_array_equal(va.numpy(), vb.numpy())
  np.testing.assert_array_equal(a.log_prob(h, z).numpy(), b.log_prob(h, z).numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_log_prob_gradients_match_finite_differences(kind):
  """Gradients of sum(log q(z|x)) at a fixed arbitrary z w.r.t. every weight,
  3 entries per variable, central differences with step 1e-6 in float64
  (truncation ~1e-12, rounding ~eps |f| / step ~1e-9; tolerance 1e-6 relative)."""
  post = _posterior(kind, num_flows=2)
  h = _normal(34, [3, 5])
  z = _normal(35, [3, 3])
  post(h)
  _randomise(post, 6, scale=0.3)
  loss = tf.function(lambda: tf.reduce_sum(post.log_prob(h, z)))
  with tf.GradientTape() as tape:
    value = tf.reduce_sum(post.log_prob(h, z))
  grads = tape.gradient(value, post.trainable_variables)
  rng = np.random.RandomState(1)
  step = 1e-6
  for var, grad in zip(post.trainable_variables, grads):
    assert grad is not None, var.path
    grad = tf.convert_to_tensor(grad).numpy()
    for _ in range(3):
      index = tuple(rng.randint(s) for s in var.shape)
      original = var.numpy()
      bumped = original.copy()
      bumped[index] += step
      var.assign(bumped)
      plus = loss().numpy()
      bumped[index] -= 2 * step
      var.assign(bumped)
      minus = loss().numpy()
      var.assign(original)
      fd = (plus - minus) / (2 * step)
      np.testing.assert_allclose(grad[index], fd, rtol=1e-6, atol=1e-7, err_msg=var.path)


def test_posterior_planar_xla_matches_eager():
  post = _posterior("planar", num_flows=6)
  h = _normal(36, [4, 5])
  z = _normal(37, [4, 3])
  post(h)
  _randomise(post, 7, scale=0.3)
  variables = post.trainable_variables

  def log_prob_and_grad(h, z):
    with tf.GradientTape() as tape:
      lp = post.log_prob(h, z)
      loss = tf.reduce_sum(lp)
    return lp, tape.gradient(loss, variables)

  def sample(h, seed):
    return post.sample_and_log_prob(h, seed)

  lp, grads = log_prob_and_grad(h, z)
  lp_x, grads_x = tf.function(log_prob_and_grad, jit_compile=True)(h, z)
  np.testing.assert_allclose(lp_x.numpy(), lp.numpy(), rtol=1e-10, atol=1e-10)
  for g, g_x in zip(grads, grads_x):
    assert g is not None and g_x is not None
    np.testing.assert_allclose(g_x.numpy(), g.numpy(), rtol=1e-9, atol=1e-10)
  # Sampling: given the same eps, XLA == eager.  (XLA's stateless RNG kernels
  # draw other numbers than TF's for the same seed, so compare through eps, and
  # check that the seeded XLA draw is deterministic and self-consistent.)
  eps = _normal(38, [4, 3])
  z_e, lq_e = post.sample_and_log_prob(h, eps=eps)
  z_x, lq_x = tf.function(lambda h, e: post.sample_and_log_prob(h, eps=e), jit_compile=True)(h, eps)
  np.testing.assert_allclose(z_x.numpy(), z_e.numpy(), rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(lq_x.numpy(), lq_e.numpy(), rtol=1e-10, atol=1e-10)
  seed = tf.constant([3, 4], tf.int32)
  sample_xla = tf.function(sample, jit_compile=True)
  z1, lq1 = sample_xla(h, seed)
  z2, _ = sample_xla(h, seed)
  np.testing.assert_array_equal(z1.numpy(), z2.numpy())
  np.testing.assert_allclose(
    post.log_prob(h, tf.identity(z1)).numpy(), lq1.numpy(), rtol=1e-9, atol=1e-9
  )


def test_posterior_float32_and_sample_shape():
  post = posterior_lib.Posterior(3, kind="planar", num_flows=2, hidden_units=4)
  h = _normal(38, [4, 5], tf.float32)
  z, log_q = post.sample_and_log_prob(h, tf.constant([0, 1]), sample_shape=(2,))
  assert z.dtype == tf.float32 and z.shape == (2, 4, 3) and log_q.shape == (2, 4)
  np.testing.assert_allclose(
    post.log_prob(h, tf.identity(z)).numpy(), log_q.numpy(), rtol=1e-4, atol=1e-4
  )


def test_posterior_bad_arguments():
  with pytest.raises(errors.ConfigError, match="gaussian, planar, iaf, maf, realnvp"):
    posterior_lib.Posterior(3, kind="radial")
  with pytest.raises(errors.ConfigError):
    posterior_lib.Posterior(1, kind="realnvp", num_flows=2)
  with pytest.raises(errors.ConfigError):
    posterior_lib.Posterior(3, kind="planar", num_flows=-1)
  with pytest.raises(errors.ConfigError):
    posterior_lib.Posterior(3, kind="planar", delta=1.5)
  with pytest.raises(ValueError):  # ConfigError is a ValueError
    posterior_lib.Posterior(3, kind="maf", num_flows=1, hidden_units=None)


def test_flows_reexports_the_posterior():
  assert flows.Posterior is posterior_lib.Posterior
  assert flows.POSTERIOR_KINDS == posterior_lib.POSTERIOR_KINDS
  assert flows.POSTERIOR_KINDS == ("gaussian", "planar", "iaf", "maf", "realnvp")
  assert {"Posterior", "POSTERIOR_KINDS"} <= set(dir(flows))
  with pytest.raises(AttributeError):
    _ = flows.NoSuchName


def test_posterior_is_gin_configurable():
  gin.clear_config()
  try:
    gin.parse_config(
      ["posterior.kind = 'maf'", "posterior.num_flows = 2", "posterior.hidden_units = 5"]
    )
    post = posterior_lib.Posterior(3, name="configured")
    assert (post.kind, post.num_flows, post.hidden_units) == ("maf", 2, 5)
  finally:
    gin.clear_config()
