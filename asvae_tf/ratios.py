"""Density-ratio estimators f1, f2 of eqs. (5)-(7): 'joint' (the paper) and 'explicit'.

The paper estimates both log-ratios of eq. (7) with joint networks f(x, z) trained
by logistic regression (eqs. 5, 6). A logistic logit saturates long before it can
express the 100-nat ratios a flow posterior produces, so on MNIST the encoder
shrinks q(z|x) without paying for it (docs/design.md, "Ratio estimators"; the
ablations of docs/results.md measure it). The 'explicit' estimator writes each
optimum as a part we can compute plus a part a network learns, and keeps the
optimum of eqs. (5)-(7) in its family.

f1 (eq. 5). With q(x, z) = q(x) q_phi(z|x):
    f1*(x, z) = log q(x, z) - log p_theta(x) p(z)
              = [log q_phi(z|x) - log p(z)]  +  [log q(x) - log p_theta(x)].
              =        explicit part          +   x-only residual r1(x)
  Every posterior here has an exact density at any z, so the first bracket is
  computed; r1 is a network of x only (gin `model.f1_residual_inputs = 'x'`) or of
  (x, z) ('xz': a superset family, whose z-gradient is estimator bias the encoder
  feels). Trained by eq. (5) unchanged, with the explicit part a fixed offset (no
  gradient to psi1); the family contains f1*, so Proposition 1 still holds.
  Caveat, measured: eq. (5)'s real and fake pairs are already separated by tens of
  nats by the explicit part, so the logistic loss is saturated and r1 gets almost no
  gradient: it stays near its initial value (|E f1 - KL| < 1 nat in the ablation)
  instead of learning log q(x) - log p_theta(x) (= -D* of f2 below; sharing D would
  fix that). With an x-only residual this moves no gradient of theta or phi; an
  (x, z) residual's near-random z-gradient is noise the encoder feels.
  In the first half of eq. (11) the explicit part keeps its gradient to phi:
      f1(x, z_phi) - log p_theta(x|z_phi)
        = log q_phi(z_phi|x) - log p(z_phi) - log p_theta(x|z_phi) + r1(x),
  i.e. the negative ELBO of eq. (1) plus a term constant in (theta, phi): AS-VAE-r
  with an x-only residual has EXACTLY the VAE's gradient, sample by sample.
  `model.f1_residual_inputs = 'none'` drops r1: f1 is the explicit part alone and eq. (5)
  trains nothing. Since an x-only r1 moves no gradient of theta or phi (and draws from its
  own random streams), the encoder, flow and decoder train exactly as with 'x', without
  r1's networks and without the encoder pass and flow inverse that eq. (5)'s fake pairs
  (x'_swapped, z') cost; only the logged f1 / eq5 values differ (the ratio gap is 0).

f2 (eq. 6). With p(x, z) = p(z) p_theta(x|z) and q_phi(z) = E_q(x) q_phi(z|x):
    f2*(x, z) = log p_theta(x, z) - log q(x) q_phi(z)
              = [log p_theta(x|z) - log p_theta(x)] + [log p_theta(x) - log q(x)]
                + [log p(z) - log q_phi(z)]
              =        E2(x, z)          +        D(x)          +      h(z).
  E2 is the decoder's pointwise mutual information; log p_theta(x) is estimated by
  importance sampling with `k` draws of q_phi(.|x) (`log_marginal_estimate`). D and
  h are the log-ratios of the x- and z-MARGINALS of eq. (6)'s two pair
  distributions, so they are learned by logistic regression on those marginals
  (generated x' vs data x; prior z vs aggregate-posterior z), whose optima are
  exactly D* and h*: E2 + D* + h* = f2*, the optimum of eq. (6). Training D and h on
  the marginals instead of through eq. (6)'s joint loss matters: with E2 in the
  logit, eq. (6)'s real and fake pairs are separated by hundreds of nats, the loss
  saturates, and the residual would get no gradient at all.
  In the second half of eq. (11), f2 is a fixed function of (x, z) (the paper's
  convention): theta moves it only through x' = x_theta(z, xi), so E2 is used with
  its path gradient only (`path_only`), both of its terms through the same sample
  (see `model.ASVAE.f2_explicit_part` for why a closed-form expectation of the
  first term alone diverges).

Shapes: x [b, H, W, C], z [b, D]; every function returns [b] unless noted.
"""

import math

import tensorflow as tf

from asvae_tf import errors
from asvae_tf import rng
from asvae_tf.dists import gaussian

ESTIMATORS = ("joint", "explicit")
RESIDUAL_INPUTS = ("x", "xz", "none")

# How the decoder branch of eq. (11) moves theta with an explicit f2 (gin
# `model.f2_decoder_gradient`). With f2 = f2*, the branch's theta-gradient is
#   grad KL(p_theta(x) || q(x))  +  grad E_p KL(p_theta(z|x) || q_phi(z|x)),
# the first carried by D(x') (path gradient), the second by E2 and the sleep term
# -log q_phi(z|x') together (their path gradients nearly cancel when q_phi(z|x) is
# close to the decoder's posterior).
#   "exact": both, as derived (E2 estimated with k importance samples).
#   "marginal": the first only; the sleep term trains phi alone and E2 is dropped.
#     Dropping a term that is >= 0 and 0 at p(x, z) = q(x, z) leaves that point a
#     minimiser of what theta and phi descend, so Proposition 1's optimum is kept.
#   "marginal_infomax": D(x') plus the sleep term's full path gradient, without E2:
#     theta then also descends -I_p(x; z) (the decoder's mutual information, as in
#     InfoGAN), which moves the optimum off p = q. An ablation row, not the paper.
DECODER_GRADIENTS = ("exact", "marginal", "marginal_infomax")

# Instance noise on D (gin `model.f2_input_noise` = sigma > 0, explicit f2 only). D sees
# x + sigma * eps, eps ~ N(0, I), for the generated x' and the data x alike (in the
# discriminator and the generator passes; fresh eps each time), so its logistic optimum is
# log p_sigma(x) - log q_sigma(x), the log-ratio of the two marginals convolved with
# N(0, sigma^2 I), and the decoder's 'marginal' gradient descends KL(p_sigma || q_sigma).
# Convolution with a Gaussian is injective on distributions (its characteristic function
# exp(-sigma^2 |t|^2 / 2) never vanishes), so KL(p_sigma || q_sigma) = 0 iff
# p_theta(x) = q(x): the optimum of Proposition 1 is kept. The smoothed marginals overlap
# where binary images do not (Arjovsky & Bottou 2017, the paper's ref. [22]; Sonderby et
# al. 2017), which keeps D's gradient informative. E2 (mode 'exact') still uses x' itself.

# Weight of the decoder's adversarial term (gin `model.f2_decoder_weight` = lambda > 0, an
# explicit f2 only). The generator loss of eq. (11) uses lambda * (D(x') + h(z')), the
# learned part of f2 = E2 + D + h at the generated pair; h(z') (z' from the prior) moves
# nothing. With D = D* = log p_theta(x) - log q(x), lambda x D's path gradient descends
# lambda * KL(p_theta(x) || q(x)), so theta and phi descend, in mode
#   'marginal': KL(q(x, z) || p_theta(x, z)) + lambda * KL(p_theta(x) || q(x));
#   'exact':    the same + E_p KL(p_theta(z|x) || q_phi(z|x)) (E2 and the sleep term).
# Every term is >= 0 and 0 at p_theta(x, z) = q_phi(x, z), where D* = h* = 0, so every
# lambda > 0 keeps Proposition 1's optimum; lambda = 1 is eq. (11). (A joint f2 is refused:
# its learned part is all of f2* = log p(x, z) - log q(x) q(z), whose path gradient at
# p = q is the pointwise mutual information's, cancelled by the sleep term only at
# lambda = 1.) When the family cannot reach p = q, lambda > 1 weights the mode-seeking half
# of the symmetric KL more: sharper samples, for some ELBO (docs/results.md). Caveats: D is
# trained on binary images and the decoder moves through a relaxed straight-through sample,
# so D's input gradient is an estimate and lambda scales its error too; with instance noise
# the second term is KL(p_sigma || q_sigma).


SettingError = errors.ConfigError  # compatibility alias; raise errors.ConfigError


def check_settings(ratio_estimator, f2_estimator, f1_residual_inputs, f2_decoder_gradient,
                   f2_marginal_samples, r1_gamma, f2_input_noise=0.0):  # fmt: skip
  """Checks the `model.*` ratio-estimator settings; resolves the None defaults.

  Returns:
    (f2_estimator, f2_decoder_gradient): f2_estimator None -> ratio_estimator;
    f2_decoder_gradient None -> 'marginal' for an explicit f2, 'exact' for a joint one.
  Raises:
    errors.ConfigError (one line) for the first bad value.
  """
  f2_estimator = ratio_estimator if f2_estimator is None else f2_estimator
  if f2_decoder_gradient is None:
    f2_decoder_gradient = "marginal" if f2_estimator == "explicit" else "exact"
  for what, value, choices in (
    ("ratio_estimator", ratio_estimator, ESTIMATORS),
    ("f2_estimator", f2_estimator, ESTIMATORS),
    ("f1_residual_inputs", f1_residual_inputs, RESIDUAL_INPUTS),
    ("f2_decoder_gradient", f2_decoder_gradient, DECODER_GRADIENTS),
  ):
    if value not in choices:
      raise errors.ConfigError(f"model.{what} must be one of {choices}, got {value!r}")
  if f1_residual_inputs == "none" and ratio_estimator != "explicit":
    raise errors.ConfigError(
      "model.f1_residual_inputs = 'none' needs model.ratio_estimator = 'explicit' "
      "(f1 is then its explicit part alone)"
    )
  samples = f2_marginal_samples
  if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
    raise errors.ConfigError(f"model.f2_marginal_samples must be an int >= 1, got {samples!r}")
  if not (isinstance(r1_gamma, (int, float)) and r1_gamma >= 0):
    raise errors.ConfigError(f"model.r1_gamma must be >= 0, got {r1_gamma!r}")
  noise = f2_input_noise
  if isinstance(noise, bool) or not (isinstance(noise, (int, float)) and 0 <= noise < math.inf):
    raise errors.ConfigError(f"model.f2_input_noise must be a finite number >= 0, got {noise!r}")
  if noise > 0 and f2_estimator != "explicit":
    raise errors.ConfigError(
      "model.f2_input_noise needs an explicit f2 (model.ratio_estimator / model.f2_estimator "
      "= 'explicit'): it smooths the x-marginal discriminator D"
    )
  if f2_decoder_gradient != "exact" and f2_estimator != "explicit":
    raise errors.ConfigError(
      f"model.f2_decoder_gradient={f2_decoder_gradient!r} needs an explicit f2 "
      f"(model.ratio_estimator / model.f2_estimator = 'explicit'); a joint f2 uses 'exact'"
    )
  return f2_estimator, f2_decoder_gradient


def check_f2_use(objective, trains_f2, f2_estimator, f2_input_noise, weight):
  """Checks the f2 settings against the objective (errors.ConfigError, one line).

  Instance noise needs an objective that trains f2. A `model.f2_decoder_weight` other
  than 1 needs an explicit f2 when the objective trains one (see "Weight of the decoder's
  adversarial term"); objectives without f2 have no such term and accept any valid weight
  (gin files built on gin/mnist.gin switch the objective without resetting it).
  """
  if f2_input_noise and not trains_f2:
    raise errors.ConfigError(
      f"model.f2_input_noise = {f2_input_noise} has no effect: objective {objective!r} "
      f"trains no f2 (use 'asvae' or 'asvae_g', or leave it at 0)"
    )
  if isinstance(weight, bool) or not (isinstance(weight, (int, float)) and 0 < weight < math.inf):
    raise errors.ConfigError(f"model.f2_decoder_weight must be a finite number > 0, got {weight!r}")
  if weight != 1 and trains_f2 and f2_estimator != "explicit":
    raise errors.ConfigError(
      f"model.f2_decoder_weight = {weight} needs an explicit f2 (model.ratio_estimator / "
      "model.f2_estimator = 'explicit'): with a joint f2 it moves the optimum off p = q; "
      "set model.f2_decoder_weight = 1.0 for a joint f2"
    )


def noisy_input(x, sigma, seed):
  """x + sigma * eps, eps ~ N(0, I) of x's shape (stateless, from seed); x if sigma == 0."""
  if not sigma:
    return x
  return x + tf.cast(sigma, x.dtype) * rng.normal(x.shape, seed, x.dtype)


def explicit_f1(log_q_z_given_x, log_p_z):
  """Explicit part of f1*: log q_phi(z|x) - log p(z), [b]."""
  return log_q_z_given_x - log_p_z


def log_marginal_estimate(model, x, seed, num_samples):
  """Importance-sampling estimate of log p_theta(x), [b] nats.

  log p^(x) = log (1/k) sum_k p_theta(x|z_k) p(z_k) / q_phi(z_k|x), z_k ~ q_phi(z|x)
  (k = num_samples, static). Its expectation is a lower bound of log p_theta(x)
  that tightens with k (the IWAE bound); k = 1 is the one-sample ELBO.
  """
  b = tf.shape(x)[0]
  h = model.encoder(x)
  z, log_q = model.posterior.sample_and_log_prob(h, seed=seed, sample_shape=(num_samples,))
  params = model.decode(tf.reshape(z, [-1, model.latent_dim]))
  x_tiled = tf.tile(x, [num_samples, 1, 1, 1])  # sample-major: row s * b + i
  log_px = tf.reshape(model.likelihood.log_prob(params, x_tiled), [num_samples, b])
  log_w = log_px + prior_log_prob(z) - log_q
  return tf.reduce_logsumexp(log_w, axis=0) - math.log(num_samples)


prior_log_prob = gaussian.standard_normal_log_prob  # log p(z) = log N(z; 0, I), [..., D] -> [...]


def path_only(fn, x):
  """fn(x) [b] whose gradient flows only through x (fn's own weights held fixed).

  Value: fn(x). Gradient: d fn / d x evaluated at x, chained into whatever x
  depends on. This is eq. (11)'s convention that f is a fixed function of (x, z):
  the surrogate  stop(fn(x)) + <stop(d fn/dx), x - stop(x)>  has the same value
  and, w.r.t. anything upstream of x, the same first derivative as fn with frozen
  weights. fn must be per-example (row i of the output depends on row i of x only).
  """
  x0 = tf.stop_gradient(x)
  with tf.GradientTape() as tape:
    tape.watch(x0)
    y = fn(x0)
  g = tf.stop_gradient(tape.gradient(y, x0))
  axes = list(range(1, len(x.shape)))
  return tf.stop_gradient(y) + tf.reduce_sum(g * (x - x0), axis=axes)


def logit_and_input_grad_sq(net_fn, inputs):
  """(net_fn(*inputs) [b], sum_i ||d net_fn / d inputs_i||^2 per example [b]).

  The squared input-gradient norm of R1 (Mescheder et al., 2018), differentiable
  (double backprop) so the discriminator loss can penalise it.
  """
  with tf.GradientTape() as tape:
    for t in inputs:
      tape.watch(t)
    y = net_fn(*inputs)
  grads = tape.gradient(y, inputs)
  sq = tf.add_n([tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape)))) for g in grads])
  return y, sq
