"""NumPy metrics of section 5.1: standard errors, bits/dim, RMSE, Inception Score, FID.

Pure functions on arrays, no model and no I/O (was `asvae_tf.eval_lib`).  Everything
here is NumPy / SciPy (evaluation runs eagerly, outside any graph): inputs may be NumPy
arrays, Python numbers or eager tf.Tensors (converted with `np.asarray`); floating
inputs keep their dtype (so float64 in gives float64 out), integer inputs are promoted
to float64.  Notation: N data points, C classes, D features.

Likelihood: `mean_and_standard_error`, `nats_to_bits_per_dim` (the per-image bounds
themselves come from the model: `evaluation.bounds.likelihood_bounds`).

Reconstruction: `mean_squared_error`, `rmse` (pixel scale stated explicitly).

Sample quality: `inception_score` (Salimans et al., 2016), `frechet_distance` and
`fid_from_features` (Heusel et al., 2017).  The networks producing p(y|x) and the
features are in `evaluation.feature_nets`.
"""

import math

import numpy as np
import scipy.linalg
import scipy.special

from asvae_tf.dists import likelihoods

__all__ = [
  "mean_and_standard_error",
  "nats_to_bits_per_dim",
  "mean_squared_error",
  "rmse",
  "inception_score",
  "frechet_distance",
  "fid_from_features",
]


def _as_float_array(x):
  """np.asarray(x); floating dtypes kept, anything else promoted to float64."""
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.floating):
    x = x.astype(np.float64)
  return x


# ----------------------------------------------------------------------------
# Likelihood
# ----------------------------------------------------------------------------


def mean_and_standard_error(values):
  """Sample mean and standard error of the mean, over all entries of `values`.

  Args:
    values: any shape, n = values.size entries treated as i.i.d. draws
      (e.g. per-image NLL [N]).

  Returns:
    (mean, sem) as Python floats: mean = sum v_i / n and
    sem = s / sqrt(n) with s^2 = sum (v_i - mean)^2 / (n - 1) (unbiased variance).
    sem is nan for n = 1.
  """
  values = _as_float_array(values).ravel()
  n = values.size
  if n == 0:
    raise ValueError("mean_and_standard_error of an empty array")
  mean = float(values.mean())
  if n < 2:
    return mean, float("nan")
  return mean, float(values.std(ddof=1) / math.sqrt(n))


def nats_to_bits_per_dim(nll_nats, num_dims):
  """Negative log-likelihood in nats -> bits per dimension.

  bpd = nll / (num_dims * ln 2), elementwise (same shape as `nll_nats`);
  num_dims = H * W * C of one image (3072 for CIFAR-10).  Delegates to
  `asvae_tf.dists.likelihoods.bits_per_dim`; returns a NumPy array (0-d for a scalar).
  """
  return np.asarray(likelihoods.bits_per_dim(_as_float_array(nll_nats), num_dims))


# ----------------------------------------------------------------------------
# Reconstruction
# ----------------------------------------------------------------------------


def mean_squared_error(x, x_hat, scale=255.0):
  """Per-example mean squared error on the pixel scale `scale`, [N].

  Args:
    x, x_hat: [N, ...] images with pixels in [0, 1] (the data pipeline's range).
    scale: pixel values are multiplied by this before differencing; 255.0 gives
      errors in 8-bit grey levels, 1.0 on the [0, 1] scale.

  Returns:
    [N]: mse_n = mean_{pixels}((scale * (x_n - x_hat_n))^2).  Accumulate these
    over batches and take sqrt(mean) for the data-set RMSE (`rmse`).
  """
  x = _as_float_array(x)
  x_hat = _as_float_array(x_hat)
  if x.shape != x_hat.shape:
    raise ValueError(f"shape mismatch: x {x.shape} vs x_hat {x_hat.shape}")
  diff = (x - x_hat) * x.dtype.type(scale)
  return np.square(diff).reshape(diff.shape[0], -1).mean(axis=1)


def rmse(x, x_hat, scale=255.0):
  """Root mean squared reconstruction error over all pixels, on scale `scale`.

  rmse = sqrt(mean_{n, pixels}((scale * (x - x_hat))^2)), x and x_hat in [0, 1].
  With the default scale = 255 the result is in 8-bit grey levels, the scale of
  the paper's CIFAR-10 RMSE of 3.36; divide by 255 for the [0, 1] scale.  Note
  this is the root of the mean over the whole set, not the mean of per-image
  RMSEs.  Returns a Python float.
  """
  return float(np.sqrt(mean_squared_error(x, x_hat, scale).mean()))


# ----------------------------------------------------------------------------
# Sample quality
# ----------------------------------------------------------------------------


def inception_score(probs, num_splits=10):
  """Inception Score of Salimans et al. (2016): mean and std over splits.

  Args:
    probs: [N, C], class probabilities p(y|x_n) of N generated images (rows sum
      to 1: softmax outputs, not logits).
    num_splits: the N images are cut into this many contiguous, near-equal
      parts (np.array_split), as in the reference implementation.

  Returns:
    (mean, std) as Python floats of IS_s over splits s (std with ddof = 0), where
    for a split S with marginal p_S(y) = mean_{n in S} p(y|x_n):
      IS_s = exp( mean_{n in S} KL(p(y|x_n) || p_S(y)) ),
      KL(p || q) = sum_y p(y) (log p(y) - log q(y))   (0 log 0 = 0).
    1 <= IS <= C: IS = 1 when every p(y|x) is the same, IS = C for confident
    (one-hot) predictions spread evenly over the C classes.
  """
  probs = _as_float_array(probs)
  if probs.ndim != 2:
    raise ValueError(f"probs must be [N, C], got shape {probs.shape}")
  if not 1 <= num_splits <= probs.shape[0]:
    raise ValueError(f"num_splits = {num_splits} must be in [1, N = {probs.shape[0]}]")
  if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
    raise ValueError("probs rows must be probability vectors (softmax outputs)")
  scores = []
  for part in np.array_split(probs, num_splits, axis=0):
    marginal = part.mean(axis=0, keepdims=True)
    kl = (scipy.special.xlogy(part, part) - scipy.special.xlogy(part, marginal)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  scores = np.asarray(scores)
  return float(scores.mean()), float(scores.std())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (the FID formula).

  Args:
    mu1, mu2: [D] means; sigma1, sigma2: [D, D] covariances.
    eps: if sqrtm(sigma1 sigma2) is not finite (singular product), eps * I is
      added to both covariances and the square root recomputed.
    Computed in float64 whatever the input dtype.

  Returns:
    Python float
      d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2}),
    the squared 2-Wasserstein distance of the two Gaussians.  The square root is
    scipy.linalg.sqrtm; round-off may give it a small imaginary part, which is
    dropped (ValueError if |imag| on its diagonal exceeds 1e-3).  d^2 may come
    out as a tiny negative number (round-off) for equal Gaussians.
  """
  mu1 = np.atleast_1d(_as_float_array(mu1)).astype(np.float64)
  mu2 = np.atleast_1d(_as_float_array(mu2)).astype(np.float64)
  sigma1 = np.atleast_2d(_as_float_array(sigma1)).astype(np.float64)
  sigma2 = np.atleast_2d(_as_float_array(sigma2)).astype(np.float64)
  if mu1.shape != mu2.shape:
    raise ValueError(f"mean shapes differ: {mu1.shape} vs {mu2.shape}")
  d = mu1.shape[0]
  if sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f"covariances must be [{d}, {d}], got {sigma1.shape} and {sigma2.shape}")

  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = np.eye(d) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    max_imag = np.max(np.abs(np.diagonal(covmean).imag))
    if max_imag > 1e-3:
      raise ValueError(f"sqrtm(sigma1 sigma2) has imaginary part {max_imag}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(feats1, feats2, eps=1e-6):
  """Frechet Inception Distance between two sets of network features.

  Args:
    feats1: [N1, D], feats2: [N2, D] (e.g. InceptionV3 pool3 activations of real
      and of generated images), N1, N2 >= 2.

  Returns:
    Python float: `frechet_distance` of the Gaussians fitted to each set, with
    mu = feature mean and sigma = unbiased sample covariance (np.cov, ddof = 1).
  """
  feats1 = _as_float_array(feats1).astype(np.float64)
  feats2 = _as_float_array(feats2).astype(np.float64)
  for name, f in (("feats1", feats1), ("feats2", feats2)):
    if f.ndim != 2 or f.shape[0] < 2:
      raise ValueError(f"{name} must be [N >= 2, D], got shape {f.shape}")
  if feats1.shape[1] != feats2.shape[1]:
    raise ValueError(f"feature sizes differ: {feats1.shape[1]} vs {feats2.shape[1]}")
  mu1, mu2 = feats1.mean(axis=0), feats2.mean(axis=0)
  sigma1 = np.atleast_2d(np.cov(feats1, rowvar=False))
  sigma2 = np.atleast_2d(np.cov(feats2, rowvar=False))
  return frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)
