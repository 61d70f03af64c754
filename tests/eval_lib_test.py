"""Tests of asvae_tf.eval_lib against known answers: a linear-Gaussian model with an
analytic log p(x) for the ELBO / IWAE bounds, hand-computed bits/dim and RMSE,
limiting cases of the Inception Score and the closed-form Frechet distance of
diagonal Gaussians.  All in float64 NumPy with fixed seeds."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import tensorflow as tf

from asvae_tf import eval_lib
from asvae_tf import heads

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------
# Linear-Gaussian model: z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D)
# ----------------------------------------------------------------------------


def _mvn_logpdf(y, mean, cov):
  """log N(y; mean, cov) for y, mean [..., n] (broadcast) and one cov [n, n]."""
  n = cov.shape[0]
  chol = np.linalg.cholesky(cov)
  r = np.broadcast_to(y - mean, np.broadcast_shapes(np.shape(y), np.shape(mean)))
  sol = scipy.linalg.solve_triangular(chol, r.reshape(-1, n).T, lower=True).T
  return (
    -0.5 * np.sum(sol**2, axis=-1).reshape(r.shape[:-1])
    - np.log(np.diag(chol)).sum()
    - 0.5 * n * _LOG_2PI
  )


class _LinearGaussian:
  """The model, N data points x drawn from it, the analytic log p(x) and posterior."""

  def __init__(self, d=2, big_d=5, s=0.5, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    self.d, self.big_d, self.s = d, big_d, s
    self.w = rng.normal(size=(big_d, d))
    self.b = rng.normal(size=big_d)
    z = rng.normal(size=(n, d))
    self.x = z @ self.w.T + self.b + s * rng.normal(size=(n, big_d))  # [N, D]
    # Marginal: x ~ N(b, W W^T + s^2 I).
    self.log_px = _mvn_logpdf(self.x, self.b, self.w @ self.w.T + s**2 * np.eye(big_d))
    # Posterior: z | x ~ N(mu, S), S = (I + W^T W / s^2)^-1, mu = S W^T (x - b) / s^2.
    self.post_prec = np.eye(d) + self.w.T @ self.w / s**2
    self.post_cov = np.linalg.inv(self.post_prec)
    self.post_mean = (self.x - self.b) @ self.w @ self.post_cov.T / s**2  # [N, d]

  def log_joint(self, z):
    """log p(x, z) for z [k, N, d] -> [k, N]."""
    log_pz = -0.5 * np.sum(z**2, axis=-1) - 0.5 * self.d * _LOG_2PI
    resid = (self.x - self.b - z @ self.w.T) / self.s
    log_px_z = -0.5 * np.sum(resid**2, axis=-1) - self.big_d * (math.log(self.s) + 0.5 * _LOG_2PI)
    return log_pz + log_px_z

  def log_weights(self, k, q_mean, q_cov, seed):
    """[k, N] log p(x, z) - log q(z|x), z ~ q = N(q_mean [N, d], q_cov [d, d])."""
    rng = np.random.default_rng(seed)
    z = q_mean + rng.normal(size=(k,) + q_mean.shape) @ np.linalg.cholesky(q_cov).T
    return self.log_joint(z) - _mvn_logpdf(z, q_mean, q_cov)


@pytest.fixture(scope="module")
def lg():
  return _LinearGaussian()


def test_linear_gaussian_reference_log_px(lg):
  ref = scipy.stats.multivariate_normal(lg.b, lg.w @ lg.w.T + lg.s**2 * np.eye(lg.big_d))
  np.testing.assert_allclose(lg.log_px[:5], ref.logpdf(lg.x[:5]), rtol=1e-12)


def test_exact_posterior_proposal_gives_log_px_for_every_k(lg):
  log_w = lg.log_weights(1000, lg.post_mean, lg.post_cov, seed=1)
  assert log_w.dtype == np.float64
  for k in (1, 10, 100, 1000):
    bound = eval_lib.iwae_bound(log_w[:k])
    assert bound.shape == lg.log_px.shape and bound.dtype == np.float64
    np.testing.assert_allclose(bound, lg.log_px, rtol=0, atol=1e-8)


def test_wrong_proposal_elbo_below_and_iwae_rises_to_log_px(lg):
  """q(z|x) = N(mu + delta, 1.5 S): the ELBO gap is the analytic KL(q || p(z|x)),
  the IWAE gap shrinks with k and is within Monte-Carlo error of 0 at k = 1000.

  Each k uses the same K = 1000 samples per x cut into K/k disjoint groups: each
  group is an independent L_k estimate, averaged (less noise for small k)."""
  big_k, n = 1000, lg.x.shape[0]
  delta = 0.5 * np.sqrt(np.diag(lg.post_cov))
  q_cov = 1.5 * lg.post_cov
  log_w = lg.log_weights(big_k, lg.post_mean + delta, q_cov, seed=2)
  kl = 0.5 * (
    np.trace(np.linalg.solve(lg.post_cov, q_cov))
    - lg.d
    + delta @ lg.post_prec @ delta
    + np.linalg.slogdet(lg.post_cov)[1]
    - np.linalg.slogdet(q_cov)[1]
  )
  assert kl > 0.5

  gaps, sems = {}, {}
  for k in (1, 10, 100, 1000):
    bound = eval_lib.iwae_bound(log_w.reshape(k, big_k // k * n)).reshape(big_k // k, n)
    gap_per_x = lg.log_px - bound.mean(axis=0)  # [N]
    gaps[k], sems[k] = eval_lib.mean_and_standard_error(gap_per_x)

  # ELBO (k = 1) <= log p(x), with the gap = KL(q || posterior) (same for every x).
  assert gaps[1] > 0
  assert abs(gaps[1] - kl) < 3 * sems[1]
  # The bound rises with k: each step by much more than the noise.
  for k_lo, k_hi in ((1, 10), (10, 100), (100, 1000)):
    assert gaps[k_lo] - gaps[k_hi] > 3 * max(sems[k_lo], sems[k_hi]), (gaps, sems)
  # k = 1000: log p(x) within Monte-Carlo error.
  assert abs(gaps[1000]) < 3 * sems[1000], (gaps, sems)
  assert gaps[1000] < 0.01 * gaps[1]


def test_chunked_log_mean_exp_matches_one_shot():
  """k = 5000 in uneven chunks == one shot to 1e-12, and still a valid bound."""
  sub = _LinearGaussian(n=200, seed=9)
  delta = 0.5 * np.sqrt(np.diag(sub.post_cov))
  log_w = sub.log_weights(5000, sub.post_mean + delta, 1.5 * sub.post_cov, seed=3)
  acc = eval_lib.LogMeanExp()
  start = 0
  for size in (1, 499, 1000, 0, 1500, 2000):
    acc.update(log_w[start : start + size])
    start += size
  assert acc.count == 5000
  one_shot = eval_lib.iwae_bound(log_w)
  np.testing.assert_allclose(acc.result(), one_shot, rtol=0, atol=1e-12)
  gap, sem = eval_lib.mean_and_standard_error(sub.log_px - one_shot)
  assert abs(gap) < 3 * sem + 1e-3


def test_log_mean_exp_stable_and_edge_cases():
  rng = np.random.default_rng(4)
  # Huge magnitudes: exp would overflow / underflow; the answer is analytic.
  base = np.array([1e4, -1e4, 0.0])
  log_w = base + rng.normal(size=(300, 3))
  expected = base + scipy.special.logsumexp(log_w - base, axis=0) - math.log(300)
  acc = eval_lib.LogMeanExp()
  for chunk in np.array_split(log_w, 7):
    acc.update(chunk)
  np.testing.assert_allclose(acc.result(), expected, rtol=1e-14)
  np.testing.assert_allclose(eval_lib.iwae_bound(log_w), expected, rtol=1e-14)
  # Small values: the naive formula log(mean(exp)).
  small = rng.normal(size=(20, 4))
  np.testing.assert_allclose(
    eval_lib.iwae_bound(small), np.log(np.mean(np.exp(small), axis=0)), rtol=1e-13
  )
  # All-zero weights give -inf (no nan); a later finite chunk recovers.
  acc = eval_lib.LogMeanExp()
  acc.update(np.full((2, 2), -np.inf))
  assert np.all(acc.result() == -np.inf)
  acc.update(np.array([[0.0, -np.inf]]))
  np.testing.assert_allclose(acc.result(), [math.log(1 / 3), -np.inf])
  # float32 in, float32 out; eager tf.Tensors accepted.
  assert eval_lib.iwae_bound(small.astype(np.float32)).dtype == np.float32
  np.testing.assert_array_equal(eval_lib.iwae_bound(tf.constant(small)), eval_lib.iwae_bound(small))
  # Errors.
  with pytest.raises(ValueError):
    eval_lib.LogMeanExp().result()
  acc = eval_lib.LogMeanExp()
  acc.update(np.zeros((2, 3)))
  with pytest.raises(ValueError):
    acc.update(np.zeros((2, 4)))


def test_mean_and_standard_error_hand_case():
  mean, sem = eval_lib.mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
  # var = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; sem = sqrt(5/3 / 4).
  assert mean == 2.5
  assert sem == pytest.approx(math.sqrt(5.0 / 12.0), rel=1e-14)


# ----------------------------------------------------------------------------
# bits/dim, RMSE
# ----------------------------------------------------------------------------


def test_bits_per_dim_hand_case():
  # 3072 dims at exactly 2 bits each: nll = 2 * 3072 * ln 2 nats.
  nll = np.array([2 * 3072 * math.log(2.0), 0.0])
  np.testing.assert_allclose(eval_lib.nats_to_bits_per_dim(nll, 3072), [2.0, 0.0], rtol=1e-15)
  # 100 nats on MNIST (784 dims): 100 / (784 * 0.6931471805599453) = 0.18401...
  bpd = eval_lib.nats_to_bits_per_dim(100.0, 784)
  assert bpd.dtype == np.float64
  assert float(bpd) == pytest.approx(100.0 / 543.4273895589971, rel=1e-14)
  assert float(bpd) == pytest.approx(float(heads.bits_per_dim(np.float64(100.0), 784)))


def test_rmse_hand_case():
  x = np.zeros((2, 2, 2, 1))
  x_hat = np.stack([np.full((2, 2, 1), 3.0 / 255.0), np.full((2, 2, 1), -4.0 / 255.0)])
  # Per-image MSE in grey levels: 9 and 16; RMSE = sqrt(12.5).
  np.testing.assert_allclose(eval_lib.mean_squared_error(x, x_hat), [9.0, 16.0], rtol=1e-13)
  assert eval_lib.rmse(x, x_hat) == pytest.approx(math.sqrt(12.5), rel=1e-13)
  assert eval_lib.rmse(x, x_hat, scale=1.0) == pytest.approx(math.sqrt(12.5) / 255, rel=1e-13)
  assert eval_lib.rmse(x, x) == 0.0


# ----------------------------------------------------------------------------
# Inception Score
# ----------------------------------------------------------------------------


def test_inception_score_uniform_is_one():
  mean, std = eval_lib.inception_score(np.full((100, 10), 0.1), num_splits=10)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_balanced_is_num_classes():
  num_classes = 10
  labels = np.tile(np.arange(num_classes), 50)  # every split of 50 is balanced
  probs = np.eye(num_classes)[labels]
  mean, std = eval_lib.inception_score(probs, num_splits=10)
  assert mean == pytest.approx(num_classes, rel=1e-12) and std == pytest.approx(0, abs=1e-9)
  # Less confident, still balanced: the marginal stays uniform, so
  # KL(p(y|x) || p(y)) = log C - H(p) and IS = C exp(-H(p)) < C.
  soft = 0.98 * probs + 0.002  # 0.982 on the label, 0.002 else
  entropy = -(0.982 * math.log(0.982) + 9 * 0.002 * math.log(0.002))
  mean_soft, _ = eval_lib.inception_score(soft, num_splits=10)
  assert mean_soft == pytest.approx(num_classes * math.exp(-entropy), rel=1e-12)


def test_inception_score_hand_case_and_split_std():
  # One split: p1 = (1, 0), p2 = (.5, .5); marginal (.75, .25);
  # KL1 = log(4/3), KL2 = .5 log(2/3) + .5 log 2; IS = exp((KL1 + KL2) / 2).
  kl1 = math.log(4.0 / 3.0)
  kl2 = 0.5 * math.log(2.0 / 3.0) + 0.5 * math.log(2.0)
  mean, std = eval_lib.inception_score([[1.0, 0.0], [0.5, 0.5]], num_splits=1)
  assert mean == pytest.approx(math.exp(0.5 * (kl1 + kl2)), rel=1e-14) and std == 0.0
  # Split 1 uniform (IS 1), split 2 one-hot balanced over 2 classes (IS 2).
  probs = [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]
  mean, std = eval_lib.inception_score(probs, num_splits=2)
  assert mean == pytest.approx(1.5, rel=1e-14) and std == pytest.approx(0.5, rel=1e-14)
  with pytest.raises(ValueError):  # logits, not probabilities
    eval_lib.inception_score([[2.0, -1.0], [0.3, 0.1]], num_splits=1)


# ----------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------

# Diagonal Gaussians: FD = ||mu1 - mu2||^2 + sum_i (sqrt v1_i - sqrt v2_i)^2
#                        = (1 + 4 + 0) + ((1 - 2)^2 + (2 - 1)^2 + 0) = 7.
_MU1, _VAR1 = np.array([0.0, 0.0, 0.0]), np.array([1.0, 4.0, 9.0])
_MU2, _VAR2 = np.array([1.0, 2.0, 0.0]), np.array([4.0, 1.0, 9.0])
_FD = 7.0


def test_frechet_distance_closed_form_diagonal_and_rotated():
  assert eval_lib.frechet_distance(_MU1, np.diag(_VAR1), _MU2, np.diag(_VAR2)) == (
    pytest.approx(_FD, rel=1e-12)
  )
  # A common rotation of both Gaussians leaves the distance unchanged.
  q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
  fd = eval_lib.frechet_distance(
    q @ _MU1, q @ np.diag(_VAR1) @ q.T, q @ _MU2, q @ np.diag(_VAR2) @ q.T
  )
  assert fd == pytest.approx(_FD, rel=1e-10)


def test_fid_identical_sets_is_zero():
  feats = np.random.default_rng(6).normal(size=(500, 16))
  assert abs(eval_lib.fid_from_features(feats, feats)) < 1e-6
  # Fewer samples than features: singular covariances, still ~0.
  few = np.random.default_rng(7).normal(size=(8, 16))
  assert abs(eval_lib.fid_from_features(few, few)) < 1e-6


def test_fid_from_large_samples_approaches_closed_form():
  # Sampling error of the estimate: std ~ 2 sqrt(sum_i dmu_i^2 (v1_i + v2_i) / n)
  # ~ 0.03 at n = 1e5 (dominated by ||mu1 - mu2||^2); tolerance 0.15 = 5 std.
  rng = np.random.default_rng(8)
  n = 100000
  f1 = _MU1 + np.sqrt(_VAR1) * rng.normal(size=(n, 3))
  f2 = _MU2 + np.sqrt(_VAR2) * rng.normal(size=(n, 3))
  assert eval_lib.fid_from_features(f1, f2) == pytest.approx(_FD, abs=0.15)


def test_frechet_distance_non_finite_sqrt_falls_back_to_eps(monkeypatch):
  real_sqrtm = scipy.linalg.sqrtm
  calls = []

  def flaky_sqrtm(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

  monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
  fd = eval_lib.frechet_distance(_MU1, np.diag(_VAR1), _MU2, np.diag(_VAR2), eps=1e-6)
  assert len(calls) == 2
  np.testing.assert_allclose(
    calls[1], (np.diag(_VAR1) + 1e-6 * np.eye(3)) @ (np.diag(_VAR2) + 1e-6 * np.eye(3))
  )
  assert fd == pytest.approx(_FD, abs=1e-5)
