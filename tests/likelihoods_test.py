"""Tests of asvae_tf.dists.likelihoods: Bernoulli / Gaussian likelihood heads, the discretised
Gaussian of section 5.1 and bits/dim.  References: explicit NumPy formulas,
math.erf, TFP distributions; float64 where exactness is asserted."""

import math

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf.dists import likelihoods

tfd = tfp.distributions


def _normal(seed, shape, dtype=tf.float64, scale=1.0):
  return scale * tf.random.stateless_normal(shape, [seed, 11], dtype=dtype)


def _phi(x):
  return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _phi_tail(x):
  """Phi(x) for x < 0 without cancellation: erfc(-x / sqrt 2) / 2."""
  return 0.5 * math.erfc(-x / math.sqrt(2.0))


# ----------------------------------------------------------------------------
# Bernoulli
# ----------------------------------------------------------------------------


def test_bernoulli_log_prob_matches_formula():
  lik = likelihoods.BernoulliLikelihood()
  logits = _normal(1, [3, 4, 4, 1], scale=3.0)
  x = tf.cast(_normal(2, [3, 4, 4, 1]) > 0, tf.float64)
  p = 1.0 / (1.0 + np.exp(-logits.numpy()))
  ref = np.sum(x.numpy() * np.log(p) + (1 - x.numpy()) * np.log(1 - p), axis=(1, 2, 3))
  np.testing.assert_allclose(lik.log_prob(logits, x).numpy(), ref, rtol=1e-12)
  dist = lik.distribution(logits)
  assert dist.event_shape == [4, 4, 1] and dist.batch_shape == [3]
  np.testing.assert_allclose(dist.log_prob(x).numpy(), ref, rtol=1e-12)
  np.testing.assert_allclose(lik.mean(logits).numpy(), p, rtol=1e-12)
  # [0, 1] probabilities as targets: the cross-entropy form.
  xp = tf.sigmoid(_normal(3, [3, 4, 4, 1]))
  ref_p = np.sum(xp.numpy() * np.log(p) + (1 - xp.numpy()) * np.log(1 - p), axis=(1, 2, 3))
  np.testing.assert_allclose(lik.log_prob(logits, xp).numpy(), ref_p, rtol=1e-12)


def test_bernoulli_relaxed_rsample():
  lik = likelihoods.BernoulliLikelihood(reparameterization="relaxed", temperature=0.5)
  assert lik.noise == "uniform" and lik.num_params == 1
  logits = _normal(4, [2, 3, 3, 1], scale=2.0)
  seed = tf.constant([5, 6], tf.int32)
  with tf.GradientTape() as tape:
    tape.watch(logits)
    x = lik.rsample(logits, seed)
    loss = tf.reduce_sum(x * tf.range(18, dtype=tf.float64)[None, :, None, None][:, :3])
  x = x.numpy()
  assert x.shape == (2, 3, 3, 1)
  assert (x > 0).all() and (x < 1).all()
  grad = tape.gradient(loss, logits)
  assert grad is not None and np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).max() > 0
  np.testing.assert_array_equal(lik.rsample(logits, seed).numpy(), x)
  assert np.abs(lik.rsample(logits, tf.constant([5, 7], tf.int32)).numpy() - x).max() > 1e-3
  # Given the uniform noise: the binary Concrete sample, explicitly.
  u = tf.random.stateless_uniform([2, 3, 3, 1], [1, 2], dtype=tf.float64)
  ref = 1.0 / (1.0 + np.exp(-(logits.numpy() + np.log(u.numpy()) - np.log1p(-u.numpy())) / 0.5))
  np.testing.assert_allclose(lik.rsample(logits, noise=u).numpy(), ref, rtol=1e-12)


def test_bernoulli_relaxed_rsample_has_the_relaxed_bernoulli_law():
  """Empirical CDF of 20000 draws vs tfd.RelaxedBernoulli(temperature, logits).cdf.
  DKW: P(sup |F_n - F| > 0.015) <= 2 exp(-2 n 0.015^2) = 2.5e-4 (and the draw
  is fixed by the seed)."""
  temperature, logit = 0.5, 0.7
  lik = likelihoods.BernoulliLikelihood("relaxed", temperature=temperature)
  params = tf.fill([20000, 1, 1, 1], tf.constant(logit, tf.float64))
  x = np.sort(lik.rsample(params, tf.constant([8, 9], tf.int32)).numpy().ravel())
  grid = np.array([0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
  ecdf = np.searchsorted(x, grid, side="right") / x.size
  cdf = (
    tfd.RelaxedBernoulli(
      tf.constant(temperature, tf.float64), logits=tf.constant(logit, tf.float64)
    )
    .cdf(grid)
    .numpy()
  )
  np.testing.assert_allclose(ecdf, cdf, atol=0.015)


def test_bernoulli_straight_through_rsample():
  """Binary values with the law Bernoulli(sigmoid(l)) and the relaxed sample's gradient."""
  relaxed = likelihoods.BernoulliLikelihood("relaxed", temperature=0.5)
  st = likelihoods.BernoulliLikelihood("straight_through", temperature=0.5)
  assert st.noise == "uniform"
  logits = _normal(4, [2, 3, 3, 1], scale=2.0)
  u = tf.random.stateless_uniform([2, 3, 3, 1], [1, 2], dtype=tf.float64)
  weights = tf.reshape(tf.range(18, dtype=tf.float64), [2, 3, 3, 1])
  grads = []
  for lik in (st, relaxed):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      x = lik.rsample(logits, noise=u)
      loss = tf.reduce_sum(x * weights)
    grads.append(tape.gradient(loss, logits).numpy())
    if lik is st:
      hard = x.numpy()
  # Forward: exactly the Bernoulli sample 1[l + logistic(u) > 0] (the relaxed one > 1/2).
  want = (logits.numpy() + np.log(u.numpy()) - np.log1p(-u.numpy()) > 0).astype(np.float64)
  np.testing.assert_array_equal(hard, want)
  # Backward: the relaxed sample's gradient.
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)
  assert np.abs(grads[0]).max() > 0
  # Law: 20000 draws at logit 0.7 have mean sigmoid(0.7) = 0.668 (sd 0.0033).
  params = tf.fill([20000, 1, 1, 1], tf.constant(0.7, tf.float64))
  draws = st.rsample(params, tf.constant([8, 9], tf.int32)).numpy()
  assert set(np.unique(draws)) == {0.0, 1.0}
  assert abs(draws.mean() - 1 / (1 + math.exp(-0.7))) < 0.015


def test_bernoulli_mean_mode_and_bad_value():
  lik = likelihoods.BernoulliLikelihood(reparameterization="mean")
  logits = _normal(10, [2, 3, 3, 1])
  np.testing.assert_allclose(
    lik.rsample(logits, tf.constant([1, 2])).numpy(), tf.sigmoid(logits).numpy()
  )
  np.testing.assert_allclose(
    lik.rsample(logits, noise=tf.zeros_like(logits)).numpy(), tf.sigmoid(logits).numpy()
  )
  with pytest.raises(ValueError):
    likelihoods.BernoulliLikelihood(reparameterization="gumbel")
  with pytest.raises(ValueError):
    likelihoods.BernoulliLikelihood(temperature=0.0)
  with pytest.raises(ValueError):
    likelihoods.BernoulliLikelihood().log_prob(logits[..., 0], logits[..., 0])


# ----------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------


def test_gaussian_log_prob_mean_and_rsample():
  lik = likelihoods.GaussianLikelihood(min_log_scale=-3.0, max_log_scale=1.0)
  assert lik.num_params == 2 and lik.noise == "normal"
  loc = _normal(11, [2, 3, 3, 2])
  log_scale = _normal(12, [2, 3, 3, 2], scale=2.0)  # some beyond the clamp
  params = tf.concat([loc, log_scale], axis=-1)
  x = _normal(13, [2, 3, 3, 2])
  ls = np.clip(log_scale.numpy(), -3.0, 1.0)
  ref = np.sum(
    -0.5 * ((x.numpy() - loc.numpy()) / np.exp(ls)) ** 2 - ls - 0.5 * np.log(2 * np.pi),
    axis=(1, 2, 3),
  )
  np.testing.assert_allclose(lik.log_prob(params, x).numpy(), ref, rtol=1e-12)
  dist = lik.distribution(params)
  assert dist.event_shape == [3, 3, 2] and dist.batch_shape == [2]
  np.testing.assert_allclose(dist.log_prob(x).numpy(), ref, rtol=1e-12)
  np.testing.assert_allclose(lik.mean(params).numpy(), loc.numpy())
  xi = _normal(14, [2, 3, 3, 2])
  np.testing.assert_allclose(
    lik.rsample(params, noise=xi).numpy(), loc.numpy() + np.exp(ls) * xi.numpy(), rtol=1e-12
  )
  seed = tf.constant([3, 3], tf.int32)
  with tf.GradientTape() as tape:
    tape.watch(params)
    sample = lik.rsample(params, seed)
  assert tape.gradient(sample, params) is not None
  np.testing.assert_array_equal(lik.rsample(params, seed).numpy(), sample.numpy())


def _bins_batch(locs, log_scales, dtype):
  """Every (loc, log_scale) pair against all 256 pixel values: [R, 256, 1, 1]."""
  r = len(locs)
  pixels = np.tile(np.arange(256), (r, 1)).reshape(r, 256, 1, 1)
  loc = np.repeat(np.asarray(locs, float)[:, None], 256, 1).reshape(r, 256, 1, 1)
  ls = np.repeat(np.asarray(log_scales, float)[:, None], 256, 1).reshape(r, 256, 1, 1)
  return tf.constant(pixels, tf.int32), tf.constant(loc, dtype), tf.constant(ls, dtype)


EXTREME_LOCS = [0.5, -3.0, 5.0, 0.0, 1.0, 0.3, 0.7, 100.0, -100.0, 0.5, 0.5, 0.12]
EXTREME_LOG_SCALES = [math.log(0.1), 0.0, 0.0, -9.0, -9.0, 5.0, -12.0, 0.0, 0.0, -6.0, 3.0, 12.0]


@pytest.mark.parametrize("dtype,tol", [(tf.float64, 1e-12), (tf.float32, 1e-5)])
def test_discretized_gaussian_sums_to_one(dtype, tol):
  rng = np.random.RandomState(0)
  locs = EXTREME_LOCS + list(rng.uniform(-0.5, 1.5, 8))
  log_scales = EXTREME_LOG_SCALES + list(rng.uniform(-8, 2, 8))
  pixels, loc, ls = _bins_batch(locs, log_scales, dtype)
  with tf.GradientTape() as tape:
    tape.watch([loc, ls])
    lp = likelihoods.discretized_gaussian_log_prob(pixels, loc, log_scale=ls)
    total = tf.reduce_sum(lp)
  lp = lp.numpy()[..., 0, 0].astype(np.float64)
  assert np.isfinite(lp).all()
  assert np.isfinite(lp[:, 0]).all() and np.isfinite(lp[:, 255]).all()
  np.testing.assert_allclose(np.exp(np.logaddexp.reduce(lp, axis=1)), 1.0, atol=tol)
  assert all(np.isfinite(g.numpy()).all() for g in tape.gradient(total, [loc, ls]))


def test_discretized_gaussian_matches_erf_reference():
  """log P(bin) vs an explicit math.erf formula where the erf difference is
  accurate (non-tail bins), edge bins taking the tails."""
  rng = np.random.RandomState(1)
  locs = rng.uniform(0, 1, 6)
  scales = np.exp(rng.uniform(-4, -1, 6))
  pixels, loc, ls = _bins_batch(locs, np.log(scales), tf.float64)
  lp = likelihoods.discretized_gaussian_log_prob(pixels, loc, scale=tf.exp(ls)).numpy()[..., 0, 0]
  checked = 0
  for r, (m, s) in enumerate(zip(locs, scales)):
    for i in range(256):
      lo = -math.inf if i == 0 else (i / 256 - m) / s
      hi = math.inf if i == 255 else ((i + 1) / 256 - m) / s
      p = (_phi(hi) if hi < math.inf else 1.0) - (_phi(lo) if lo > -math.inf else 0.0)
      if p > 1e-6:  # erf differences lose accuracy below that
        np.testing.assert_allclose(lp[r, i], math.log(p), rtol=1e-9)
        checked += 1
  assert checked > 100


def test_discretized_gaussian_hand_computed():
  loc, scale = 0.5, 0.1
  ref = _phi((129 / 256 - 0.5) / 0.1) - _phi((128 / 256 - 0.5) / 0.1)
  lp = likelihoods.discretized_gaussian_log_prob(
    tf.constant([[[[128]]]], tf.uint8),
    tf.constant([[[[loc]]]], tf.float64),
    scale=tf.constant(scale, tf.float64),
  )
  np.testing.assert_allclose(np.exp(lp.numpy()), ref, rtol=1e-12)
  edges = likelihoods.discretized_gaussian_log_prob(
    tf.constant([0.0, 255.0], tf.float64)[:, None, None, None],
    tf.constant([[[[loc]]]], tf.float64),
    log_scale=tf.constant(math.log(scale), tf.float64),
  )
  np.testing.assert_allclose(
    np.exp(edges.numpy().ravel()),
    [_phi_tail((1 / 256 - 0.5) / 0.1), _phi_tail(-(255 / 256 - 0.5) / 0.1)],
    rtol=1e-12,
  )


def test_gaussian_discretized_log_prob_sums_pixels_any_pixel_dtype():
  lik = likelihoods.GaussianLikelihood()
  params = tf.concat(
    [tf.sigmoid(_normal(15, [2, 3, 3, 3])), _normal(16, [2, 3, 3, 3], scale=1.5) - 3.0], -1
  )
  pix = np.random.RandomState(2).randint(0, 256, size=(2, 3, 3, 3))
  loc, log_scale = lik.loc_and_log_scale(params)
  per_pixel = likelihoods.discretized_gaussian_log_prob(pix, loc, log_scale=log_scale)
  ref = np.sum(per_pixel.numpy(), axis=(1, 2, 3))
  for dtype in (tf.uint8, tf.int32, tf.int64, tf.float32, tf.float64):
    np.testing.assert_allclose(
      lik.discretized_log_prob(params, tf.constant(pix, dtype)).numpy(), ref, rtol=1e-12
    )


def test_bits_per_dim_hand_computed():
  nll = 3.5 * 3072 * math.log(2.0)
  np.testing.assert_allclose(
    likelihoods.bits_per_dim(tf.constant(nll, tf.float64), 3072).numpy(), 3.5, rtol=1e-14
  )
  np.testing.assert_allclose(
    likelihoods.bits_per_dim(tf.constant([784.0 * math.log(2.0)]), 784), [1.0], rtol=1e-6
  )


def test_likelihoods_are_gin_configurable():
  gin.clear_config()
  try:
    gin.parse_config(
      ["bernoulli_likelihood.temperature = 0.25", "gaussian_likelihood.min_log_scale = -5.0"]
    )
    assert likelihoods.BernoulliLikelihood().temperature == 0.25
    assert likelihoods.GaussianLikelihood().min_log_scale == -5.0
  finally:
    gin.clear_config()
