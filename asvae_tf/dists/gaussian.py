"""The package's one Gaussian log density, and the smooth clamp of Gaussian log-scales.

A Normal N(loc, scale^2) with scale = exp(log_scale) has, per coordinate,
    log N(x; loc, scale^2) = -eps^2 / 2 - log_scale - log(2 pi) / 2,
    eps = (x - loc) exp(-log_scale)   (the standardised residual).
`normal_log_density` is that expression, elementwise, from eps; every diagonal
Gaussian of the package sums it:
  * `diag_normal_log_prob(x, loc, log_scale, axis)`: the density at x of a
    diagonal Gaussian, summed over `axis` (the posterior's base distribution,
    axis=-1 over [..., batch, D] codes; the Gaussian decoder likelihood,
    axis=[1, 2, 3] over [N, H, W, C] pixels);
  * the posterior's reparameterised sample z_0 = loc + exp(log_scale) eps sums it
    at the noise eps it drew (no round trip through z_0);
  * the midpoint rule of the discretised Gaussian, log(h phi(m)), is it with
    eps = m and log_scale = -log h.
`standard_normal_log_prob(z)` is log N(z; 0, I) summed over the last axis (the
AS-VAE prior p(z)).  `soft_clip` is the smooth clamp the posterior applies to its
log-scale.

dtype follows the inputs (float32 or float64); Python-float constants are cast to it.
"""

import math

import tensorflow as tf

__all__ = [
  "HALF_LOG_TWO_PI",
  "normal_log_density",
  "diag_normal_log_prob",
  "standard_normal_log_prob",
  "soft_clip",
]

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def normal_log_density(eps, log_scale):
  """Elementwise log N(x; loc, exp(log_scale)^2) from eps = (x - loc) exp(-log_scale).

  Args:
    eps: [...] standardised residuals.
    log_scale: broadcastable to eps.
  Returns:
    [...] (the broadcast shape) -eps^2 / 2 - log_scale - log(2 pi) / 2, in nats.
  """
  return -0.5 * tf.square(eps) - log_scale - tf.constant(HALF_LOG_TWO_PI, eps.dtype)


def diag_normal_log_prob(x, loc, log_scale, axis=-1):
  """log N(x; loc, diag(exp(log_scale))^2), summed over `axis`.

  Args:
    x: [..., batch, D] (or [N, H, W, C] with axis=[1, 2, 3]).
    loc, log_scale: broadcastable to x, e.g. [batch, D] against [S, batch, D].
    axis: the event axes summed over (default the last).
  Returns:
    x's shape without `axis`, e.g. [..., batch]: log density in nats.
  """
  eps = (x - loc) * tf.exp(-log_scale)
  return tf.reduce_sum(normal_log_density(eps, log_scale), axis=axis)


def standard_normal_log_prob(z):
  """log N(z; 0, I) summed over the last axis: [..., D] -> [...].

  = -|z|^2 / 2 - D log(2 pi) / 2 (D static).
  """
  d = z.shape[-1]
  return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * d * math.log(2 * math.pi)


def soft_clip(x, low, high):
  """Smooth, monotone clamp of `x` into (low, high), elementwise (any shape).

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
