"""Tests of asvae_tf.evaluation.metrics against known answers: hand-computed standard
errors, bits/dim and RMSE, limiting cases of the Inception Score and the closed-form
Frechet distance of diagonal Gaussians.  All in float64 NumPy with fixed seeds.  Also
the progress / ETA log lines of the evaluation loops (asvae_tf.progress)."""

import math

import numpy as np
import pytest
import scipy.linalg

from asvae_tf import progress
from asvae_tf.dists import likelihoods
from asvae_tf.evaluation import metrics


def test_mean_and_standard_error_hand_case():
  mean, sem = metrics.mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
  # var = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; sem = sqrt(5/3 / 4).
  assert mean == 2.5
  assert sem == pytest.approx(math.sqrt(5.0 / 12.0), rel=1e-14)


# ----------------------------------------------------------------------------
# bits/dim, RMSE
# ----------------------------------------------------------------------------


def test_bits_per_dim_hand_case():
  # 3072 dims at exactly 2 bits each: nll = 2 * 3072 * ln 2 nats.
  nll = np.array([2 * 3072 * math.log(2.0), 0.0])
  np.testing.assert_allclose(metrics.nats_to_bits_per_dim(nll, 3072), [2.0, 0.0], rtol=1e-15)
  # 100 nats on MNIST (784 dims): 100 / (784 * 0.6931471805599453) = 0.18401...
  bpd = metrics.nats_to_bits_per_dim(100.0, 784)
  assert bpd.dtype == np.float64
  assert float(bpd) == pytest.approx(100.0 / 543.4273895589971, rel=1e-14)
  assert float(bpd) == pytest.approx(float(likelihoods.bits_per_dim(np.float64(100.0), 784)))


def test_rmse_hand_case():
  x = np.zeros((2, 2, 2, 1))
  x_hat = np.stack([np.full((2, 2, 1), 3.0 / 255.0), np.full((2, 2, 1), -4.0 / 255.0)])
  # Per-image MSE in grey levels: 9 and 16; RMSE = sqrt(12.5).
  np.testing.assert_allclose(metrics.mean_squared_error(x, x_hat), [9.0, 16.0], rtol=1e-13)
  assert metrics.rmse(x, x_hat) == pytest.approx(math.sqrt(12.5), rel=1e-13)
  assert metrics.rmse(x, x_hat, scale=1.0) == pytest.approx(math.sqrt(12.5) / 255, rel=1e-13)
  assert metrics.rmse(x, x) == 0.0


# ----------------------------------------------------------------------------
# Inception Score
# ----------------------------------------------------------------------------


def test_inception_score_uniform_is_one():
  mean, std = metrics.inception_score(np.full((100, 10), 0.1), num_splits=10)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_balanced_is_num_classes():
  num_classes = 10
  labels = np.tile(np.arange(num_classes), 50)  # every split of 50 is balanced
  probs = np.eye(num_classes)[labels]
  mean, std = metrics.inception_score(probs, num_splits=10)
  assert mean == pytest.approx(num_classes, rel=1e-12) and std == pytest.approx(0, abs=1e-9)
  # Less confident, still balanced: the marginal stays uniform, so
  # KL(p(y|x) || p(y)) = log C - H(p) and IS = C exp(-H(p)) < C.
  soft = 0.98 * probs + 0.002  # 0.982 on the label, 0.002 else
  entropy = -(0.982 * math.log(0.982) + 9 * 0.002 * math.log(0.002))
  mean_soft, _ = metrics.inception_score(soft, num_splits=10)
  assert mean_soft == pytest.approx(num_classes * math.exp(-entropy), rel=1e-12)


def test_inception_score_hand_case_and_split_std():
  # One split: p1 = (1, 0), p2 = (.5, .5); marginal (.75, .25);
  # KL1 = log(4/3), KL2 = .5 log(2/3) + .5 log 2; IS = exp((KL1 + KL2) / 2).
  kl1 = math.log(4.0 / 3.0)
  kl2 = 0.5 * math.log(2.0 / 3.0) + 0.5 * math.log(2.0)
  mean, std = metrics.inception_score([[1.0, 0.0], [0.5, 0.5]], num_splits=1)
  assert mean == pytest.approx(math.exp(0.5 * (kl1 + kl2)), rel=1e-14) and std == 0.0
  # Split 1 uniform (IS 1), split 2 one-hot balanced over 2 classes (IS 2).
  probs = [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]
  mean, std = metrics.inception_score(probs, num_splits=2)
  assert mean == pytest.approx(1.5, rel=1e-14) and std == pytest.approx(0.5, rel=1e-14)
  with pytest.raises(ValueError):  # logits, not probabilities
    metrics.inception_score([[2.0, -1.0], [0.3, 0.1]], num_splits=1)


# ----------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------

# Diagonal Gaussians: FD = ||mu1 - mu2||^2 + sum_i (sqrt v1_i - sqrt v2_i)^2
#                        = (1 + 4 + 0) + ((1 - 2)^2 + (2 - 1)^2 + 0) = 7.
_MU1, _VAR1 = np.array([0.0, 0.0, 0.0]), np.array([1.0, 4.0, 9.0])
_MU2, _VAR2 = np.array([1.0, 2.0, 0.0]), np.array([4.0, 1.0, 9.0])
_FD = 7.0


def test_frechet_distance_closed_form_diagonal_and_rotated():
  assert metrics.frechet_distance(_MU1, np.diag(_VAR1), _MU2, np.diag(_VAR2)) == (
    pytest.approx(_FD, rel=1e-12)
  )
  # A common rotation of both Gaussians leaves the distance unchanged.
  q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
  fd = metrics.frechet_distance(
    q @ _MU1, q @ np.diag(_VAR1) @ q.T, q @ _MU2, q @ np.diag(_VAR2) @ q.T
  )
  assert fd == pytest.approx(_FD, rel=1e-10)


def test_fid_identical_sets_is_zero():
  feats = np.random.default_rng(6).normal(size=(500, 16))
  assert abs(metrics.fid_from_features(feats, feats)) < 1e-6
  # Fewer samples than features: singular covariances, still ~0.
  few = np.random.default_rng(7).normal(size=(8, 16))
  assert abs(metrics.fid_from_features(few, few)) < 1e-6


def test_fid_from_large_samples_approaches_closed_form():
  # Sampling error of the estimate: std ~ 2 sqrt(sum_i dmu_i^2 (v1_i + v2_i) / n)
  # ~ 0.03 at n = 1e5 (dominated by ||mu1 - mu2||^2); tolerance 0.15 = 5 std.
  rng = np.random.default_rng(8)
  n = 100000
  f1 = _MU1 + np.sqrt(_VAR1) * rng.normal(size=(n, 3))
  f2 = _MU2 + np.sqrt(_VAR2) * rng.normal(size=(n, 3))
  assert metrics.fid_from_features(f1, f2) == pytest.approx(_FD, abs=0.15)


def test_frechet_distance_non_finite_sqrt_falls_back_to_eps(monkeypatch):
  real_sqrtm = scipy.linalg.sqrtm
  calls = []

  def flaky_sqrtm(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

  monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
  fd = metrics.frechet_distance(_MU1, np.diag(_VAR1), _MU2, np.diag(_VAR2), eps=1e-6)
  assert len(calls) == 2
  np.testing.assert_allclose(
    calls[1], (np.diag(_VAR1) + 1e-6 * np.eye(3)) @ (np.diag(_VAR2) + 1e-6 * np.eye(3))
  )
  assert fd == pytest.approx(_FD, abs=1e-5)


# ----------------------------------------------------------------------------
# Progress / ETA
# ----------------------------------------------------------------------------


def test_progress_logs_about_every_tenth_with_elapsed_and_eta(monkeypatch):
  lines = []
  monkeypatch.setattr(progress.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  clock = iter([0.0, 30.0, 3725.0])  # read at the start and by each logged update
  p = progress.Progress("IWAE k=5", 100, clock=lambda: next(clock))
  p.update(5)  # below 10%: silent
  p.update(25)  # 30 s for 25 of 100 -> 90 s to go
  p.update(27)  # still in the same tenth: silent
  p.update(100)
  assert lines == [
    "IWAE k=5: 25/100 (0:00:30 elapsed, ETA 0:01:30)",
    "IWAE k=5: 100/100 (1:02:05 elapsed, ETA 0:00:00)",
  ]
  assert progress.format_eta(float("inf")) == "?" and progress.format_eta(90000) == "25:00:00"
