"""Decoder likelihoods p_theta(x|z) ("heads"): parameter tensors -> tfd distributions.

The decoder network outputs `params` of shape [N, H, W, C * num_params] (NHWC).
A likelihood head turns it into
  * `distribution(params)`: a tfd.Distribution with event shape [H, W, C]
    (tfd.Independent, reinterpreted_batch_ndims=3), batch shape [N];
  * `log_prob(params, x)`: log p(x|z) in nats, [N];
  * `mean(params)`: E[x|z], [N, H, W, C];
  * `rsample(params, seed=None, noise=None)`: the reparameterised sample
    x' = x_theta(z, xi) of eq. (11) of the paper, [N, H, W, C].  Either a
    stateless `seed` (int32 [2]) or the standard noise `xi` itself (`noise`,
    [N, H, W, C]; its law is named by the head's `noise` attribute: "uniform",
    "normal" or "none") -- the latter lets the caller draw replica-invariant noise.

Randomness is stateless and asks for the Philox algorithm explicitly: under XLA
the default alg="auto_select" costs ~1.5 ms per [100, 32] draw on this CPU
against ~0.05 ms for "philox".  (XLA's stateless kernels draw other numbers than
TF's for the same seed; a seed reproduces bit-identically within one mode.)

Section 5.1 (natural images): training on dequantised pixels ((i + U[0,1]) / 256)
with `GaussianLikelihood.log_prob`; at test time the discretised likelihood
P(x in [i/256, (i+1)/256] | z) (`discretized_log_prob`), reported in bits/dim
(`bits_per_dim`).

Gin names: `bernoulli_likelihood` (BernoulliLikelihood), `gaussian_likelihood`
(GaussianLikelihood); a model takes the class, e.g. model.likelihood = @bernoulli_likelihood.
"""

import math

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf import errors
from asvae_tf import rng
from asvae_tf.dists import gaussian

tfd = tfp.distributions

__all__ = [
  "Likelihood",
  "BernoulliLikelihood",
  "GaussianLikelihood",
  "discretized_gaussian_log_prob",
  "bits_per_dim",
]

_LOG_2 = math.log(2.0)


def bits_per_dim(nll_nats, num_dims):
  """Negative log-likelihood in nats -> bits per dimension: nll / (num_dims ln 2)."""
  nll_nats = tf.convert_to_tensor(nll_nats)
  return nll_nats / tf.constant(num_dims * _LOG_2, nll_nats.dtype)


def _log_ndtr(x):
  """log Phi(x) = log(erfc(-x / sqrt 2) / 2), accurate in both tails (tfp.math.logerfc)."""
  return tfp.math.logerfc(-x * tf.constant(1.0 / math.sqrt(2.0), x.dtype)) - tf.constant(
    _LOG_2, x.dtype
  )


def _log_ndtr_diff(hi, lo):
  """log(Phi(hi) - Phi(lo)) for hi > lo with (hi + lo) <= 0 (left half: no cancellation
  of Phi near 1), via log-sub-exp of log Phi values."""
  return tfp.math.log_sub_exp(_log_ndtr(hi), _log_ndtr(lo))


def discretized_gaussian_log_prob(pixels, loc, log_scale=None, scale=None, num_bins=256):
  """Per-pixel log P(x in bin i | loc, scale) under a Gaussian, [N, H, W, C].

  Bin i (i = 0..num_bins-1) is [i/num_bins, (i+1)/num_bins]; the edge bins take
  the tails: bin 0 = (-inf, 1/num_bins], bin num_bins-1 = [(num_bins-1)/num_bins, inf)
  (section 5.1 of the paper: p(x = i | z) = P(x in [i/256, (i+1)/256] | z)).

  Numerics, with a = (lower - loc)/scale, b = (upper - loc)/scale, h = b - a,
  m = (a + b)/2:
    * edge bins: log Phi(b) (bin 0) and log Phi(-a) (last bin), with
      log Phi(x) = logerfc(-x / sqrt 2) - log 2 (accurate in both tails);
    * interior bins: log(Phi(b) - Phi(a)) as a log-sub-exp of log Phi values,
      evaluated on the side of the Gaussian where the bin lies (reflecting
      a, b -> -b, -a when m > 0), so no 1 - Phi cancellation and no log(0) for
      bins far in either tail;
    * bins narrow relative to the scale (h (1 + |m|) < 1e-2), where the
      difference of log-CDFs would cancel: the midpoint rule with its
      second-order correction, log(h phi(m)) + log1p(h^2 (m^2 - 1) / 24)
      (relative error O((h (1 + |m|))^4 / 1920) < 1e-11).
  Unselected branches get safe inputs, so gradients are finite everywhere.

  Args:
    pixels: integers 0..num_bins-1, any int or float dtype, [N, H, W, C].
    loc: [N, H, W, C] in the [0, 1] pixel scale.
    log_scale / scale: exactly one of them, broadcastable to loc.
    num_bins: number of pixel levels (256 for 8-bit images).
  Returns:
    [N, H, W, C] log-probabilities (nats), dtype of loc.
  """
  loc = tf.convert_to_tensor(loc)
  dtype = loc.dtype
  if (log_scale is None) == (scale is None):
    raise ValueError("Pass exactly one of log_scale and scale.")
  if log_scale is not None:
    inv_scale = tf.exp(-tf.convert_to_tensor(log_scale, dtype))
  else:
    inv_scale = 1.0 / tf.convert_to_tensor(scale, dtype)
  i = tf.cast(pixels, dtype)
  width = tf.constant(1.0 / num_bins, dtype)
  a = (i * width - loc) * inv_scale
  b = ((i + 1.0) * width - loc) * inv_scale
  return _standardised_bin_log_prob(a, b, i <= 0.0, i >= num_bins - 1.0)


def _standardised_bin_log_prob(a, b, is_first, is_last):
  """log P(bin) from its standardised edges a < b, [N, H, W, C] each.

  is_first / is_last (bool, same shape): the edge bins, which take the tails
  (-inf, b] and [a, inf).  The numerics of `discretized_gaussian_log_prob`.
  """
  h = b - a
  m = 0.5 * (a + b)

  # Narrow bins: midpoint rule with its second-order correction.
  narrow = h * (1.0 + tf.abs(m)) < 1e-2
  h_n = tf.where(narrow, h, tf.ones_like(h) * 1e-3)
  m_n = tf.where(narrow, m, tf.zeros_like(m))
  # log(h phi(m)) = -m^2 / 2 + log h - log(2 pi) / 2: the Gaussian log density at
  # eps = m with log_scale = -log h.
  narrow_lp = gaussian.normal_log_density(m_n, -tf.math.log(h_n)) + tf.math.log1p(
    tf.square(h_n) * (tf.square(m_n) - 1.0) / 24.0
  )

  # Wide interior bins: log(Phi(hi) - Phi(lo)) on the left half after reflection.
  flip = m > 0.0
  hi = tf.where(flip, -a, b)
  lo = tf.where(flip, -b, a)
  wide = ~narrow & ~is_first & ~is_last
  hi_w = tf.where(wide, hi, tf.zeros_like(hi))
  lo_w = tf.where(wide, lo, -tf.ones_like(lo))
  wide_lp = _log_ndtr_diff(hi_w, lo_w)

  # Edge bins: one tail each (safe inputs elsewhere).
  first_lp = _log_ndtr(tf.where(is_first, b, tf.zeros_like(b)))
  last_lp = _log_ndtr(tf.where(is_last, -a, tf.zeros_like(a)))

  lp = tf.where(narrow, narrow_lp, wide_lp)
  lp = tf.where(is_first, first_lp, lp)
  return tf.where(is_last, last_lp, lp)


class Likelihood:
  """Interface of a decoder likelihood head (see the module docstring).

  Attributes:
    num_params: parameters per pixel channel (the decoder emits C * num_params
      channels).
    noise: law of the standard noise `rsample` consumes: "uniform", "normal" or
      "none" (deterministic).
  """

  num_params = None
  noise = "none"

  def _check(self, params):
    params = tf.convert_to_tensor(params)
    if params.shape.rank != 4:
      raise ValueError(f"params must be [N, H, W, C * {self.num_params}], got {params.shape}.")
    if params.shape[-1] is not None and params.shape[-1] % self.num_params:
      raise ValueError(
        f"The channel dim of params ({params.shape[-1]}) is not a "
        f"multiple of num_params={self.num_params}."
      )
    return params

  def distribution(self, params):
    raise NotImplementedError

  def log_prob(self, params, x):
    raise NotImplementedError

  def mean(self, params):
    raise NotImplementedError

  def rsample(self, params, seed=None, noise=None):
    raise NotImplementedError

  def _noise(self, shape, dtype, seed, noise, sampler):
    if noise is not None:
      return tf.convert_to_tensor(noise, dtype)
    if seed is None:
      raise ValueError("rsample needs `seed` or `noise`.")
    return sampler(shape, seed, dtype)  # rng.stateless_uniform / stateless_normal


@gin.configurable("bernoulli_likelihood")
class BernoulliLikelihood(Likelihood):
  """Independent Bernoulli pixels with logits = params, [N, H, W, C] (MNIST).

  log p(x|z) = sum x log sigmoid(l) + (1 - x) log sigmoid(-l) (x in [0, 1]:
  binary pixels, or [0, 1] probabilities as cross-entropy targets).

  rsample, for eq. (11):
    reparameterization="relaxed": a Concrete / tfd.RelaxedBernoulli(temperature,
      logits) sample (Maddison et al. 2017; Jang et al. 2017):
        x' = sigmoid((l + log U - log(1 - U)) / temperature),  U ~ U(0, 1),
      so P(x' <= x) = sigmoid(temperature * logit(x) - l).  noise = "uniform".
    reparameterization="straight_through": the exact Bernoulli sample
      x' = 1[l + log U - log(1 - U) > 0] (the hard version of the relaxed sample
      above: binary like the data, so the discriminators of eqs. (5)/(6) cannot
      tell real from generated images by their support) with the gradient of
      the relaxed sample (straight-through: x' = relaxed + stop_gradient(hard -
      relaxed)).  noise = "uniform".
    reparameterization="straight_through_linear": the same exact Bernoulli sample
      with a gradient that does not vanish on saturated logits: d x' / d l =
      1 / (4 temperature), the relaxed sample's slope at l = 0 with no noise
      (Bengio et al. 2013's straight-through estimator, slope-matched). The
      relaxed sample's gradient sigmoid'((l + L) / t) / t is ~0 for a pixel whose
      logit is far from 0, so a decoder that has saturated (e.g. an AS-VAE-g
      that has collapsed) gets no signal from the discriminators to leave that
      state.  noise = "uniform".
    reparameterization="mean": x' = sigmoid(l) (deterministic; noise = "none").
  """

  REPARAMETERIZATIONS = ("relaxed", "straight_through", "straight_through_linear", "mean")

  num_params = 1

  def __init__(self, reparameterization="relaxed", temperature=0.5):
    if reparameterization not in self.REPARAMETERIZATIONS:
      raise errors.ConfigError(
        f"bernoulli_likelihood.reparameterization must be one of {self.REPARAMETERIZATIONS}, "
        f"got {reparameterization!r}."
      )
    if not temperature > 0:
      raise errors.ConfigError(f"bernoulli_likelihood.temperature must be > 0, got {temperature}.")
    self.reparameterization = reparameterization
    self.temperature = float(temperature)
    self.noise = "none" if reparameterization == "mean" else "uniform"

  def distribution(self, params):
    logits = self._check(params)
    return tfd.Independent(
      tfd.Bernoulli(logits=logits, dtype=logits.dtype), reinterpreted_batch_ndims=3
    )

  def log_prob(self, params, x):
    logits = self._check(params)
    x = tf.convert_to_tensor(x, logits.dtype)
    return -tf.reduce_sum(
      tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=[1, 2, 3]
    )

  def mean(self, params):
    return tf.sigmoid(self._check(params))

  def rsample(self, params, seed=None, noise=None):
    """[N, H, W, C] relaxed / straight-through sample (or the mean); noise = U(0, 1) draws."""
    logits = self._check(params)
    if self.reparameterization == "mean":
      return tf.sigmoid(logits)
    u = self._noise(tf.shape(logits), logits.dtype, seed, noise, rng.stateless_uniform)
    eps = np.finfo(logits.dtype.as_numpy_dtype).eps
    u = tf.clip_by_value(u, eps, 1.0 - eps)  # keep the logistic noise finite
    logistic = tf.math.log(u) - tf.math.log1p(-u)
    relaxed = tf.sigmoid((logits + logistic) / tf.constant(self.temperature, logits.dtype))
    if self.reparameterization == "relaxed":
      return relaxed
    hard = tf.cast(logits + logistic > 0, logits.dtype)
    if self.reparameterization == "straight_through_linear":
      slope = logits / tf.constant(4.0 * self.temperature, logits.dtype)
      return hard + (slope - tf.stop_gradient(slope))
    return relaxed + tf.stop_gradient(hard - relaxed)


@gin.configurable("gaussian_likelihood")
class GaussianLikelihood(Likelihood):
  """Independent Gaussian pixels (natural images, pixels in [0, 1]).

  params [N, H, W, 2C]: the first C channels are the loc, the last C the log
  scale, hard-clamped to [min_log_scale, max_log_scale] (as PixelCNN++ bounds
  its log-scales; exp(-7) ~ 9e-4 is below the 1/256 bin width).
  rsample: x' = loc + exp(log_scale) * xi, xi ~ N(0, I) (noise = "normal").
  """

  num_params = 2
  noise = "normal"

  def __init__(self, min_log_scale=-7.0, max_log_scale=2.0):
    if not min_log_scale < max_log_scale:
      raise errors.ConfigError(
        "gaussian_likelihood.min_log_scale must be < gaussian_likelihood.max_log_scale, got "
        f"{min_log_scale} and {max_log_scale}."
      )
    self.min_log_scale = float(min_log_scale)
    self.max_log_scale = float(max_log_scale)

  def loc_and_log_scale(self, params):
    """params [N, H, W, 2C] -> (loc, clamped log_scale), each [N, H, W, C]."""
    params = self._check(params)
    loc, log_scale = tf.split(params, 2, axis=-1)
    dtype = params.dtype
    log_scale = tf.clip_by_value(
      log_scale, tf.constant(self.min_log_scale, dtype), tf.constant(self.max_log_scale, dtype)
    )
    return loc, log_scale

  def distribution(self, params):
    loc, log_scale = self.loc_and_log_scale(params)
    return tfd.Independent(tfd.Normal(loc, tf.exp(log_scale)), reinterpreted_batch_ndims=3)

  def log_prob(self, params, x):
    """Continuous log-density (nats) of x [N, H, W, C] (e.g. dequantised pixels), [N]."""
    loc, log_scale = self.loc_and_log_scale(params)
    x = tf.convert_to_tensor(x, loc.dtype)
    return gaussian.diag_normal_log_prob(x, loc, log_scale, axis=[1, 2, 3])

  def mean(self, params):
    return self.loc_and_log_scale(params)[0]

  def rsample(self, params, seed=None, noise=None):
    """[N, H, W, C] loc + scale * xi; noise = N(0, 1) draws if given."""
    loc, log_scale = self.loc_and_log_scale(params)
    xi = self._noise(tf.shape(loc), loc.dtype, seed, noise, rng.stateless_normal)
    return loc + tf.exp(log_scale) * xi

  def discretized_log_prob(self, params, pixels, num_bins=256):
    """Section 5.1: log P(x in [i/256, (i+1)/256] | z) summed over pixels, [N] nats.

    pixels: integers 0..255 (any int or float dtype), [N, H, W, C].
    """
    loc, log_scale = self.loc_and_log_scale(params)
    return tf.reduce_sum(
      discretized_gaussian_log_prob(pixels, loc, log_scale=log_scale, num_bins=num_bins),
      axis=[1, 2, 3],
    )
