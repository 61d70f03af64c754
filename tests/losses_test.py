"""losses.py against hand-computed values and Lemma 1 / Corollary 1.1 optima."""

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import losses


def _np_logsig(a):
  return -np.log1p(np.exp(-a))


def test_vae_is_negative_elbo():
  log_px = tf.constant([-80.0, -100.5])
  log_pz = tf.constant([-30.0, -31.0])
  log_qz = tf.constant([-20.0, -25.5])
  np.testing.assert_allclose(
    losses.vae(log_px, log_pz, log_qz).numpy(), [80 + 30 - 20, 100.5 + 31 - 25.5], rtol=1e-6
  )


def test_eq11_halves_and_sum():
  f1, lpx = tf.constant([0.5, -1.0]), tf.constant([-90.0, -85.0])
  f2, lqz = tf.constant([2.0, 0.0]), tf.constant([10.0, -3.0])
  np.testing.assert_allclose(losses.asvae_r(f1, lpx).numpy(), [90.5, 84.0])
  np.testing.assert_allclose(losses.asvae_g(f2, lqz).numpy(), [-8.0, 3.0])
  np.testing.assert_allclose(losses.asvae(f1, lpx, f2, lqz).numpy(), [82.5, 87.0])


@pytest.mark.parametrize("fn", [losses.discriminator_eq5, losses.discriminator_eq6])
def test_discriminator_losses_are_binary_cross_entropy(fn):
  real = np.array([3.0, -2.0, 0.0, 40.0], np.float64)
  fake = np.array([-1.0, 5.0, 0.0, -40.0], np.float64)
  want = -(_np_logsig(real) + _np_logsig(-fake))  # -[log s(real) + log(1 - s(fake))]
  np.testing.assert_allclose(fn(tf.constant(real), tf.constant(fake)).numpy(), want, rtol=1e-12)


def test_discriminator_optimum_is_log_density_ratio():
  # Lemma 1: over free logits f on a finite space, E_p[-log s(f)] + E_q[-log(1-s(f))]
  # is minimised at f = log p - log q (this is what eqs. (5), (6) rely on, eq. (7)).
  p = tf.constant([0.1, 0.2, 0.3, 0.4], tf.float64)
  q = tf.constant([0.4, 0.3, 0.2, 0.1], tf.float64)

  def eq5_expected(f):
    # E_p over real pairs + E_q over fake pairs, each isolated by an infinite partner logit.
    real_part = losses.discriminator_eq5(f, tf.fill(tf.shape(f), tf.constant(-np.inf, f.dtype)))
    fake_part = losses.discriminator_eq5(tf.fill(tf.shape(f), tf.constant(np.inf, f.dtype)), f)
    return tf.reduce_sum(p * real_part + q * fake_part)

  f_star = tf.Variable(tf.math.log(p) - tf.math.log(q))
  with tf.GradientTape() as tape:
    loss = eq5_expected(f_star)
  np.testing.assert_allclose(tape.gradient(loss, f_star).numpy(), 0.0, atol=1e-12)
  f_off = tf.Variable(f_star + 0.3)
  with tf.GradientTape() as tape:
    loss = eq5_expected(f_off)
  assert np.all(np.abs(tape.gradient(loss, f_off).numpy()) > 1e-3)


def test_objective_registry():
  assert set(losses.OBJECTIVES) == {"vae", "asvae_r", "asvae_g", "asvae"}
  assert losses.get_objective("vae").discriminators == ()
  assert losses.get_objective("asvae_r").discriminators == ("eq5",)
  assert losses.get_objective("asvae_g").discriminators == ("eq6",)
  assert losses.get_objective("asvae").discriminators == ("eq5", "eq6")
  assert losses.get_objective("asvae").needs_prior_log_q
  assert not losses.get_objective("asvae_r").needs_prior_log_q
  with pytest.raises(ValueError, match="asvae_r"):
    losses.get_objective("gan")
