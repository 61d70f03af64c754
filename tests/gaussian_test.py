"""Tests of asvae_tf.dists.gaussian: the diagonal-Gaussian log density, log N(z; 0, I)
and soft_clip.  References: explicit NumPy formulas and TFP distributions, float64."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf import dists
from asvae_tf import flows
from asvae_tf.dists import gaussian

tfd = tfp.distributions


def _normal(seed, shape, dtype=tf.float64, scale=1.0):
  return scale * tf.random.stateless_normal(shape, [seed, 5], dtype=dtype)


def test_diag_normal_log_prob_matches_tfp_with_sample_dims():
  loc, log_scale = _normal(1, [4, 3]), _normal(2, [4, 3], scale=2.0)
  x = _normal(3, [2, 4, 3], scale=3.0)  # [S, batch, D] against [batch, D]
  ref = tfd.MultivariateNormalDiag(loc, tf.exp(log_scale)).log_prob(x).numpy()
  explicit = np.sum(
    -0.5 * ((x.numpy() - loc.numpy()) / np.exp(log_scale.numpy())) ** 2
    - log_scale.numpy()
    - 0.5 * np.log(2 * np.pi),
    -1,
  )
  lp = gaussian.diag_normal_log_prob(x, loc, log_scale)
  assert lp.shape == (2, 4)
  np.testing.assert_allclose(lp.numpy(), ref, rtol=1e-12)
  np.testing.assert_allclose(lp.numpy(), explicit, rtol=1e-12)


def test_diag_normal_log_prob_over_image_axes():
  loc, log_scale = _normal(4, [2, 3, 3, 2]), _normal(5, [2, 3, 3, 2])
  x = _normal(6, [2, 3, 3, 2])
  ref = tfd.Independent(tfd.Normal(loc, tf.exp(log_scale)), 3).log_prob(x).numpy()
  lp = gaussian.diag_normal_log_prob(x, loc, log_scale, axis=[1, 2, 3])
  np.testing.assert_allclose(lp.numpy(), ref, rtol=1e-12)


def test_normal_log_density_from_eps_and_midpoint_form():
  eps, log_scale = _normal(7, [5]), _normal(8, [5])
  got = gaussian.normal_log_density(eps, log_scale).numpy()
  want = tfd.Normal(0.0, tf.exp(log_scale)).log_prob(eps * tf.exp(log_scale)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-12)
  # log(h phi(m)) with log_scale = -log h (the discretised Gaussian's midpoint rule).
  h = np.array([1e-6, 1e-3, 0.5])
  m = np.array([0.0, -2.0, 1.5])
  midpoint = gaussian.normal_log_density(tf.constant(m), -tf.math.log(tf.constant(h)))
  phi = np.exp(-0.5 * m**2) / math.sqrt(2 * math.pi)
  np.testing.assert_allclose(midpoint.numpy(), np.log(h * phi), rtol=1e-13)


def test_standard_normal_log_prob():
  z = _normal(9, [3, 4, 5])
  ref = tfd.MultivariateNormalDiag(tf.zeros([5], tf.float64)).log_prob(z).numpy()
  np.testing.assert_allclose(gaussian.standard_normal_log_prob(z).numpy(), ref, rtol=1e-12)
  zero = tf.zeros_like(z)
  np.testing.assert_allclose(
    gaussian.standard_normal_log_prob(z).numpy(),
    gaussian.diag_normal_log_prob(z, zero, zero).numpy(),
    rtol=1e-12,
  )


def test_soft_clip_bounds_identity_inside_and_gradient():
  low, high = -9.0, 3.0
  x = tf.constant(np.linspace(-20.0, 15.0, 141))
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = gaussian.soft_clip(x, low, high)
  dy = tape.gradient(y, x).numpy()
  y, xs = y.numpy(), x.numpy()
  softplus = np.logaddexp(0.0, xs - low) - np.logaddexp(0.0, xs - high)
  np.testing.assert_allclose(y, low + softplus, rtol=1e-12, atol=1e-12)
  assert np.all(y > low) and np.all(y < high) and np.all(np.diff(y) > 0)
  assert np.all((dy > 0) & (dy < 1))
  # Near-identity inside: |soft_clip(x) - x| <= softplus(-d), d = distance to the nearer bound.
  inside = (xs > low) & (xs < high)
  d = np.minimum(xs - low, high - xs)[inside]
  assert np.all(np.abs(y - xs)[inside] <= np.logaddexp(0.0, -d) * (1 + 1e-12))
  # Saturates at the bounds far outside.
  far = gaussian.soft_clip(tf.constant([-1e3, 1e3], tf.float64), low, high).numpy()
  np.testing.assert_allclose(far, [low, high], rtol=1e-12)


def test_reexports():
  assert flows.soft_clip is gaussian.soft_clip is dists.soft_clip
  assert flows.diag_normal_log_prob is gaussian.diag_normal_log_prob is dists.diag_normal_log_prob
