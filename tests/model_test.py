"""model.py: terms of eqs. (1), (5), (6), (11), gradient routing, pairing, helpers."""

import math

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf.dists import likelihoods
from asvae_tf import model as model_lib
from conftest import tiny_asvae

SEED = tf.constant([5, 6], tf.int32)


def _model(objective, kind="planar", likelihood=likelihoods.BernoulliLikelihood):
  return tiny_asvae(objective, kind, likelihood=likelihood)


def _x(b=4):
  return tf.cast(tf.random.stateless_uniform([b, 4, 4, 1], [1, 1]) < 0.5, tf.float32)


def test_pair_swap():
  t = tf.reshape(tf.range(12), [6, 2])
  np.testing.assert_array_equal(model_lib.pair_swap(t).numpy()[:, 0], [2, 0, 6, 4, 10, 8])
  with pytest.raises(ValueError, match="even"):
    model_lib.pair_swap(tf.zeros([3, 2]))


def test_prior_log_prob_is_standard_normal():
  z = tf.constant([[0.3, -1.2, 2.0]], tf.float64)
  want = sum(-0.5 * v * v - 0.5 * math.log(2 * math.pi) for v in [0.3, -1.2, 2.0])
  np.testing.assert_allclose(model_lib.prior_log_prob(z).numpy(), [want], rtol=1e-12)


@pytest.mark.parametrize("objective", ["vae", "asvae_r", "asvae_g", "asvae"])
def test_gradient_routing(objective):
  mdl = _model(objective)
  x = _x()
  with tf.GradientTape(persistent=True) as tape:
    gen = mdl.generator_loss(mdl.terms(x, SEED, "generator"))
    disc_terms = mdl.terms(x, SEED, "discriminator")
    disc = mdl.discriminator_loss(disc_terms)
  assert gen.shape == (4,)
  g_grads = tape.gradient(gen, mdl.generator_variables)
  # Every encoder/posterior/decoder weight gets a gradient from the generator loss...
  assert all(g is not None for g in g_grads), [
    v.path for v, g in zip(mdl.generator_variables, g_grads) if g is None
  ]
  if objective == "vae":
    assert disc is None and not mdl.discriminator_variables
    return
  # ...while the discriminator loss reaches only psi (inputs are stop-gradient'ed).
  assert all(g is None for g in tape.gradient(disc, mdl.generator_variables))
  d_grads = tape.gradient(disc, mdl.discriminator_variables)
  used = {"asvae_r": ["f1"], "asvae_g": ["f2"], "asvae": ["f1", "f2"]}[objective]
  for v, g in zip(mdl.discriminator_variables, d_grads):
    assert (g is not None) == any(v.path.startswith(f"{u}/") for u in used), v.path


def test_vae_terms_match_negative_elbo():
  mdl = _model("vae", kind="gaussian")
  x = _x()
  t = mdl.terms(x, SEED, "generator", training=False)
  h = mdl.encoder(x)
  # Recompute by hand: same eps (from noise keyed on the same seed) through the posterior.
  want = -(
    mdl.likelihood.log_prob(mdl.decode(t.zq), x)
    + model_lib.prior_log_prob(t.zq)
    - mdl.posterior.log_prob(h, t.zq)
  )
  np.testing.assert_allclose(mdl.generator_loss(t).numpy(), want.numpy(), rtol=1e-5)


def test_asvae_terms_are_eq11_of_the_parts():
  mdl = _model("asvae")
  x = _x()
  t = mdl.terms(x, SEED, "generator", training=False)
  # Second half of eq. (11): log q(z | x') at the PRIOR draw; checked against TFP's own
  # TransformedDistribution.log_prob (an independent path through the bijector).
  dist = mdl.posterior.distribution(mdl.encoder(t.xp))
  np.testing.assert_allclose(
    t.log_q_prior.numpy(), dist.log_prob(tf.identity(t.zp)).numpy(), rtol=1e-4
  )
  np.testing.assert_allclose(t.f2_real.numpy(), mdl.f2(t.xp, t.zp).numpy(), rtol=1e-6)
  want = t.f1_real - t.log_px_given_zq + t.f2_real - t.log_q_prior
  np.testing.assert_allclose(mdl.generator_loss(t).numpy(), want.numpy(), rtol=1e-6)
  assert np.all((t.xp.numpy() > 0) & (t.xp.numpy() < 1))  # relaxed Bernoulli sample
  # The decoder gets gradient through x' from the second half of eq. (11) alone.
  with tf.GradientTape() as tape:
    t2 = mdl.terms(x, SEED, "generator", training=False)
    second_half = tf.reduce_sum(t2.f2_real - t2.log_q_prior)
  assert all(g is not None for g in tape.gradient(second_half, mdl.decoder.trainable_variables))


def test_straight_through_decoder_samples_are_binary():
  mdl = _model("asvae", likelihood=lambda: likelihoods.BernoulliLikelihood("straight_through"))
  for mode in ("generator", "discriminator"):
    xp = mdl.terms(_x(), SEED, mode, training=False).xp.numpy()
    assert set(np.unique(xp)) <= {0.0, 1.0}


def test_fake_pairs_use_independent_partners():
  mdl = _model("asvae")
  x = _x()
  t = mdl.terms(x, SEED, "discriminator", training=False)
  np.testing.assert_allclose(
    t.f1_fake.numpy(), mdl.f1(model_lib.pair_swap(t.xp), t.zp).numpy(), rtol=1e-6
  )
  np.testing.assert_allclose(
    t.f2_fake.numpy(), mdl.f2(x, model_lib.pair_swap(t.zq)).numpy(), rtol=1e-6
  )


def test_sample_reconstruct_and_reconstruction_errors():
  mdl = _model("asvae")
  x = _x()
  images, z = mdl.sample(6, SEED)
  assert images.shape == (6, 4, 4, 1) and z.shape == (6, 3)
  assert np.all((images.numpy() >= 0) & (images.numpy() <= 1))
  recon = mdl.reconstruct(x)
  recon_x, recon_z = mdl.reconstruction_errors(x, SEED)
  np.testing.assert_allclose(
    recon_x.numpy(), np.mean((x.numpy() - recon.numpy()) ** 2, axis=(1, 2, 3)), rtol=1e-6
  )
  xz, zz = mdl.sample(4, SEED)
  np.testing.assert_allclose(
    recon_z.numpy(), np.mean((zz.numpy() - mdl.posterior_mean(xz).numpy()) ** 2, axis=1), rtol=1e-5
  )


_GEN_FIELDS = ("zq", "log_qzq", "log_pzq", "log_px_given_zq", "zp", "xp", "log_q_prior",
               "f1_real", "f2_real", "f2_explicit")  # fmt: skip
_DISC_FIELDS = ("f1_real", "f1_fake", "f2_real", "f2_fake", "f2x_real", "f2x_fake", "f2z_real",
                "f2z_fake", "r1")  # fmt: skip


@pytest.mark.parametrize(
  "estimator,r1_gamma", [("joint", 0.0), ("explicit", 0.0), ("joint", 1.0), ("explicit", 1.0)]
)
def test_shared_pass_equals_the_two_alternating_passes(estimator, r1_gamma):
  """update_scheme='shared': without dropout (the only use of the discriminators' own
  seeds), one shared pass gives the generator pass's terms and gradients and the
  discriminator pass's, for the same seed (independent reference: the two passes). The
  shared pass calls each discriminator once on its real and fake inputs stacked; with R1,
  its penalty must come from the same half (the real pairs; for D, the data)."""
  kwargs = {"ratio_estimator": estimator, "r1_gamma": r1_gamma}
  if estimator == "explicit":
    kwargs["f2_decoder_gradient"] = "marginal"
  mdl = tiny_asvae("asvae", "planar", **kwargs)
  x = _x()
  with tf.GradientTape(persistent=True) as tape:
    # training=False: no dropout, whose masks the shared pass draws from its own seeds.
    gen = mdl.terms(x, SEED, "generator", training=False)
    disc = mdl.terms(x, SEED, "discriminator", training=False)
    s_gen, s_disc = mdl.terms_shared(x, SEED, training=False)
    losses = [mdl.generator_loss(gen), mdl.discriminator_loss(disc)]
    s_losses = [mdl.generator_loss(s_gen), mdl.discriminator_loss(s_disc)]
  for fields, a, b in ((_GEN_FIELDS, gen, s_gen), (_DISC_FIELDS, disc, s_disc)):
    for name in fields:
      want, got = getattr(a, name), getattr(b, name)
      assert (want is None) == (got is None), name
      if want is not None:
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
  for variables, loss, s_loss in (
    (mdl.generator_variables, losses[0], s_losses[0]),
    (mdl.discriminator_variables, losses[1], s_losses[1]),
  ):
    for v, g, sg in zip(
      variables, tape.gradient(loss, variables), tape.gradient(s_loss, variables)
    ):
      assert (g is None) == (sg is None), v.path
      if g is not None:
        np.testing.assert_allclose(sg.numpy(), g.numpy(), rtol=1e-5, atol=1e-6, err_msg=v.path)
  # The discriminator's loss of the shared pass reaches only psi.
  assert all(g is None for g in tape.gradient(s_losses[1], mdl.generator_variables))
