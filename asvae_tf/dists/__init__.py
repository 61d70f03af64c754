"""Distributions of the AS-VAE: the Gaussian density and the decoder likelihoods.

gaussian     the one diagonal-Gaussian log density, log N(z; 0, I), `soft_clip`
likelihoods  p_theta(x|z): `BernoulliLikelihood` (gin `bernoulli_likelihood`),
             `GaussianLikelihood` (gin `gaussian_likelihood`), the discretised
             Gaussian of section 5.1, `bits_per_dim`
(The encoder posterior q_phi(z|x), `Posterior`, is in `asvae_tf.flows.posterior`.)
"""

from asvae_tf.dists.gaussian import diag_normal_log_prob
from asvae_tf.dists.gaussian import normal_log_density
from asvae_tf.dists.gaussian import soft_clip
from asvae_tf.dists.gaussian import standard_normal_log_prob
from asvae_tf.dists.likelihoods import BernoulliLikelihood
from asvae_tf.dists.likelihoods import GaussianLikelihood
from asvae_tf.dists.likelihoods import Likelihood
from asvae_tf.dists.likelihoods import bits_per_dim
from asvae_tf.dists.likelihoods import discretized_gaussian_log_prob

__all__ = [
  "diag_normal_log_prob",
  "normal_log_density",
  "soft_clip",
  "standard_normal_log_prob",
  "Likelihood",
  "BernoulliLikelihood",
  "GaussianLikelihood",
  "discretized_gaussian_log_prob",
  "bits_per_dim",
]
