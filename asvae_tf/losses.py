"""AS-VAE objectives as pure functions of per-example tensors (Pu et al., 2017).

Notation (paper): encoder joint q_phi(x, z) = q(x) q_phi(z|x); decoder joint
p_theta(x, z) = p(z) p_theta(x|z); f1 = f_psi1, f2 = f_psi2 are discriminator
logits. Every function returns a PER-EXAMPLE loss of shape [b] to be minimised;
the training loop averages with the GLOBAL batch size
(`tf.nn.compute_average_loss`). No function here touches a network: they are
checked against hand-computed values in tests/losses_test.py.

Term-level functions:
  vae                eq. (1): negative ELBO.
  asvae_r            first half of eq. (11):  f1(x, z_phi(x,eps)) - log p_theta(x | z_phi(x,eps)).
  asvae_g            second half of eq. (11): f2(x_theta(z,xi), z) - log q_phi(z | x_theta(z,xi)).
  asvae              eq. (11): asvae_r + asvae_g.
  discriminator_eq5  -L_A1 of eq. (5): real = (x, z ~ q_phi(z|x)), fake = (x' ~ p_theta(x|z'), z ~ p(z)).
  discriminator_eq6  -L_A2 of eq. (6): real = (x' ~ p_theta(x|z), z ~ p(z)), fake = (x, z ~ q_phi(z|x~)).

Objectives (`OBJECTIVES`, chosen with the gin binding `model.objective`) pair a
generator loss with the discriminator losses it needs:
  vae      eq. (1), no discriminator (baseline).
  asvae_r  generator: first half of eq. (11); discriminator: eq. (5).
  asvae_g  generator: second half of eq. (11); discriminator: eq. (6).
  asvae    generator: eq. (11); discriminators: eqs. (5) and (6).
"""

import dataclasses
from typing import Callable, Tuple

import tensorflow as tf


def vae(log_px_given_z, log_pz, log_qz_given_x):
  """Negative ELBO, eq. (1): -[log p(x|z) + log p(z) - log q(z|x)], z ~ q(z|x). All [b]."""
  return -(log_px_given_z + log_pz - log_qz_given_x)


def asvae_r(f1_encoder, log_px_given_z):
  """First half of eq. (11), minimised over theta, phi (it is -L_VAEx of eq. (8)).

  Args:
    f1_encoder: [b] f_psi1(x, z) at z = z_phi(x, eps) ~ q_phi(z|x).
    log_px_given_z: [b] log p_theta(x | z) at the same z.
  """
  return f1_encoder - log_px_given_z


def asvae_g(f2_decoder, log_qz_given_x):
  """Second half of eq. (11), minimised over theta, phi (it is -L_VAEz of eq. (9)).

  Args:
    f2_decoder: [b] f_psi2(x', z) at z ~ p(z), x' = x_theta(z, xi) (reparameterised).
    log_qz_given_x: [b] log q_phi(z | x') at that PRIOR z.
  """
  return f2_decoder - log_qz_given_x


def asvae(f1_encoder, log_px_given_z, f2_decoder, log_qz_given_x):
  """Eq. (11): the full AS-VAE encoder/decoder loss, [b]."""
  return asvae_r(f1_encoder, log_px_given_z) + asvae_g(f2_decoder, log_qz_given_x)


def _binary_logistic(real_logits, fake_logits):
  # -[log sigma(real) + log(1 - sigma(fake))] = softplus(-real) + softplus(fake).
  return tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits)


def discriminator_eq5(f1_real, f1_fake):
  """-L_A1 of eq. (5), minimised over psi1. [b] each.

  f1_real = f1(x, z), x ~ q(x), z ~ q_phi(z|x);
  f1_fake = f1(x', z), x' ~ p_theta(x|z'), z, z' independent draws of p(z).
  At the optimum f1 = log q_phi(x, z) - log p_theta(x) p(z), eq. (7).
  """
  return _binary_logistic(f1_real, f1_fake)


def discriminator_eq6(f2_real, f2_fake):
  """-L_A2 of eq. (6), minimised over psi2. [b] each.

  f2_real = f2(x', z), z ~ p(z), x' ~ p_theta(x|z);
  f2_fake = f2(x, z), x ~ q(x), z ~ q_phi(z|x~) for another data point x~.
  At the optimum f2 = log p_theta(x, z) - log q_phi(z) q(x), eq. (7).
  """
  return _binary_logistic(f2_real, f2_fake)


@dataclasses.dataclass(frozen=True)
class Objective:
  """How an objective turns model terms (see `model.Terms`) into losses.

  Attributes:
    name: the gin-facing name.
    generator: Terms -> [b] loss for the encoder/decoder (theta, phi).
    discriminators: which of "eq5" (f1) and "eq6" (f2) are trained.
    needs_prior_log_q: whether the generator needs log q_phi(z | x') at prior z
      (the costly inverse of a flow posterior): the decoder branch of eq. (11).
    needs_encoder_branch: whether the generator needs z ~ q_phi(z|x) and
      log p_theta(x|z): the encoder branch (eq. 1 / first half of eq. 11).
  """

  name: str
  generator: Callable
  discriminators: Tuple[str, ...]
  needs_prior_log_q: bool
  needs_encoder_branch: bool


OBJECTIVES = {
  "vae": Objective(
    "vae",
    lambda t: vae(t.log_px_given_zq, t.log_pzq, t.log_qzq),
    (),
    needs_prior_log_q=False,
    needs_encoder_branch=True,
  ),
  "asvae_r": Objective(
    "asvae_r",
    lambda t: asvae_r(t.f1_real, t.log_px_given_zq),
    ("eq5",),
    needs_prior_log_q=False,
    needs_encoder_branch=True,
  ),
  "asvae_g": Objective(
    "asvae_g",
    lambda t: asvae_g(t.f2_real, t.log_q_prior),
    ("eq6",),
    needs_prior_log_q=True,
    needs_encoder_branch=False,
  ),
  "asvae": Objective(
    "asvae",
    lambda t: asvae(t.f1_real, t.log_px_given_zq, t.f2_real, t.log_q_prior),
    ("eq5", "eq6"),
    needs_prior_log_q=True,
    needs_encoder_branch=True,
  ),
}


def get_objective(name):
  """Returns the `Objective` called `name`; ValueError naming the choices otherwise."""
  if name not in OBJECTIVES:
    raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
  return OBJECTIVES[name]


def discriminator_eq6_marginals(dx_real, dx_fake, hz_real, hz_fake):
  """Eq. (6) for an explicit f2 = E2 + D(x) + h(z), trained on its marginals, [b].

  dx_real = D(x'), x' ~ p_theta(x) (label 1); dx_fake = D(x), x ~ q(x) (label 0);
  hz_real = h(z), z ~ p(z) (label 1); hz_fake = h(z), z ~ q_phi(z) (label 0).
  The optima are D* = log p_theta(x) - log q(x) and h* = log p(z) - log q_phi(z)
  (Lemma 1 on each marginal), and E2 + D* + h* is eq. (7)'s f2* (see `ratios`).
  """
  return _binary_logistic(dx_real, dx_fake) + _binary_logistic(hz_real, hz_fake)


def r1_penalty(grad_sq_norm, gamma):
  """R1 (Mescheder et al., 2018): gamma / 2 * ||grad_input f||^2 at real inputs, [b]."""
  return 0.5 * gamma * grad_sq_norm


def discriminator_loss(objective, terms, r1_gamma=0.0):
  """Sum of the objective's discriminator losses (eqs. 5/6) + R1, [b]; None for `vae`."""
  losses = []
  if "eq5" in objective.discriminators and terms.f1_fake is not None:  # None: f1 learns nothing
    losses.append(discriminator_eq5(terms.f1_real, terms.f1_fake))
  if "eq6" in objective.discriminators:
    if terms.f2x_real is not None:
      losses.append(
        discriminator_eq6_marginals(terms.f2x_real, terms.f2x_fake, terms.f2z_real, terms.f2z_fake)
      )
    else:
      losses.append(discriminator_eq6(terms.f2_real, terms.f2_fake))
  if losses and r1_gamma > 0:
    losses.append(r1_penalty(terms.r1, r1_gamma))
  return tf.add_n(losses) if losses else None
