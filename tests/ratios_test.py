"""ratios.py and the 'explicit' estimator: exact explicit parts, the VAE identity, f1*
on a linear-Gaussian model, path-only gradients, R1, the Bernoulli closed form."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from asvae_tf.dists import likelihoods
from asvae_tf import losses
from asvae_tf import rng
from asvae_tf import ratios
from conftest import tiny_asvae

SEED = tf.constant([3, 4], tf.int32)


def _model(objective="asvae", kind="planar", dtype="float32", **kw):
  return tiny_asvae(objective, kind, dtype, **kw)


def _x(b=4, dtype=tf.float32):
  return tf.cast(tf.random.stateless_uniform([b, 4, 4, 1], [1, 1]) < 0.5, dtype)


def _zero_residual(net):
  for v in net.logit.trainable_variables:
    v.assign(tf.zeros_like(v))


@pytest.mark.parametrize("kind", ["planar", "gaussian"])
def test_explicit_part_is_log_q_minus_log_p_float64(kind):
  """f1 with a zero residual = log q(z|x) - log p(z), q by the change of variables with an
  autodiff Jacobian of eps -> z, p by scipy (float64)."""
  mdl = _model(kind=kind, dtype="float64", ratio_estimator="explicit")
  _zero_residual(mdl.f1)
  x = _x(dtype=tf.float64)
  eps = tf.random.stateless_normal([4, 3], [7, 7], dtype=tf.float64)
  h = mdl.encoder(x)
  with tf.GradientTape() as tape:
    tape.watch(eps)
    z, log_q = mdl.posterior.sample_and_log_prob(h, eps=eps)
  _, logdet = tf.linalg.slogdet(tape.batch_jacobian(z, eps))
  log_q_ref = stats.norm.logpdf(eps.numpy()).sum(-1) - logdet.numpy()
  log_p_ref = stats.norm.logpdf(z.numpy()).sum(-1)
  np.testing.assert_allclose(log_q.numpy(), log_q_ref, rtol=0, atol=1e-9)
  f1 = mdl.f1_logit(x, z, log_q).numpy()
  np.testing.assert_allclose(f1, log_q_ref - log_p_ref, rtol=0, atol=1e-9)
  # At a z the encoder did NOT produce (a prior draw), through the flow's inverse.
  zp = tf.random.stateless_normal([4, 3], [8, 8], dtype=tf.float64)
  log_q_zp = mdl.posterior_log_prob(x, zp)
  np.testing.assert_allclose(
    mdl.f1_logit(x, zp, log_q_zp).numpy(),
    log_q_zp.numpy() - stats.norm.logpdf(zp.numpy()).sum(-1),
    rtol=0,
    atol=1e-9,
  )


def _generator_grads(mdl, x, seed):
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(mdl.generator_loss(mdl.terms(x, seed, "generator", training=False)))
  return tape.gradient(loss, mdl.generator_variables)


@pytest.mark.parametrize("inputs,zero", [("x", False), ("xz", True)])
def test_first_half_of_eq11_has_the_elbo_gradient_float64(inputs, zero):
  """AS-VAE-r with an explicit f1: an x-only residual (any weights) or an (x, z) residual
  at zero gives eq. (11)'s first half the negative ELBO's gradient in theta and phi."""
  vae = _model("vae", dtype="float64")
  r = _model("asvae_r", dtype="float64", ratio_estimator="explicit", f1_residual_inputs=inputs)
  for a, b in zip(r.generator_variables, vae.generator_variables):
    a.assign(b)
  if zero:
    _zero_residual(r.f1)
  x = _x(dtype=tf.float64)
  g_vae = _generator_grads(vae, x, SEED)
  g_r = _generator_grads(r, x, SEED)
  assert len(g_vae) == len(g_r) and all(g is not None for g in g_r)
  for a, b, v in zip(g_r, g_vae, vae.generator_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-10, err_msg=v.path)
  # Not vacuous: the joint estimator's gradient differs from the ELBO's.
  joint = _model("asvae_r", dtype="float64")
  for a, b in zip(joint.generator_variables, vae.generator_variables):
    a.assign(b)
  g_joint = _generator_grads(joint, x, SEED)
  assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(g_joint, g_vae)) > 1e-3


def test_xz_residual_z_gradient_reaches_the_encoder():
  """A nonzero (x, z) residual moves phi (the bias an x-only residual avoids)."""
  vae = _model("vae", dtype="float64")
  r = _model("asvae_r", dtype="float64", ratio_estimator="explicit", f1_residual_inputs="xz")
  for a, b in zip(r.generator_variables, vae.generator_variables):
    a.assign(b)
  x = _x(dtype=tf.float64)
  diff = [
    float(tf.reduce_max(tf.abs(a - b)))
    for a, b in zip(_generator_grads(r, x, SEED), _generator_grads(vae, x, SEED))
  ]
  assert max(diff) > 1e-6


def _linear_gaussian_pairs(random_state, n):
  """x ~ q(x) = N(0, 4); q(z|x) = N(0.4 x, 0.5^2); p(z) = N(0, 1); p(x|z) = N(1.5 z, 1).

  Returns real pairs (x, z ~ q(z|x)), fake pairs (x' ~ p(x|z'), z ~ p(z)), and f1* at
  the real and fake pairs: log q(z|x) + log q(x) - log p(x) - log p(z), p(x) = N(0, 3.25).
  """
  x = random_state.normal(0, 2.0, n)
  zq = 0.4 * x + 0.5 * random_state.normal(size=n)
  zp, zp2 = random_state.normal(size=n), random_state.normal(size=n)
  xp = 1.5 * zp2 + random_state.normal(size=n)

  def f1_star(a, c):
    return (
      stats.norm.logpdf(c, 0.4 * a, 0.5)
      + stats.norm.logpdf(a, 0, 2.0)
      - stats.norm.logpdf(a, 0, math.sqrt(3.25))
      - stats.norm.logpdf(c)
    )

  def explicit(a, c):
    return stats.norm.logpdf(c, 0.4 * a, 0.5) - stats.norm.logpdf(c)

  return (x, zq), (xp, zp), f1_star, explicit


def _fit_eq5(net_inputs, offset_fn, real, fake, steps=1500):
  """Trains logit = offset + MLP(inputs) by eq. (5); returns the logit function."""
  width = len(net_inputs(real[0][:1], real[1][:1]))
  mlp = keras.Sequential(
    [
      keras.Input((width,)),
      keras.layers.Dense(32, activation="tanh"),
      keras.layers.Dense(32, activation="tanh"),
      keras.layers.Dense(1),
    ]
  )
  opt = keras.optimizers.Adam(3e-3)

  def logit(a, c):
    inp = tf.constant(np.stack(net_inputs(a, c), -1), tf.float32)
    return tf.constant(offset_fn(a, c), tf.float32) + tf.squeeze(mlp(inp), -1)

  def prepared(pairs):
    return (
      tf.constant(np.stack(net_inputs(*pairs), -1), tf.float32),
      tf.constant(offset_fn(*pairs), tf.float32),
    )

  (real_in, real_off), (fake_in, fake_off) = prepared(real), prepared(fake)

  @tf.function
  def step(i):
    with tf.GradientTape() as tape:
      f_real = tf.gather(real_off, i) + tf.squeeze(mlp(tf.gather(real_in, i)), -1)
      f_fake = tf.gather(fake_off, i) + tf.squeeze(mlp(tf.gather(fake_in, i)), -1)
      loss = tf.reduce_mean(losses.discriminator_eq5(f_real, f_fake))
    grads = tape.gradient(loss, mlp.trainable_variables)
    opt.apply_gradients(zip(grads, mlp.trainable_variables))

  random_state = np.random.RandomState(1)
  for _ in range(steps):
    step(tf.constant(random_state.randint(0, len(real[0]), 256)))
  return logit


def test_explicit_f1_approaches_the_optimum_on_a_linear_gaussian_model():
  """Eq. (5) with the explicit part recovers f1* on held-out pairs to 0.25 nats RMS; the
  joint network of (x, z), trained the same way, is measured beside it (and is worse)."""
  keras.utils.set_random_seed(0)
  random_state = np.random.RandomState(0)
  real, fake, f1_star, explicit = _linear_gaussian_pairs(random_state, 20000)
  (hx, hz), (hxp, hzp), _, _ = _linear_gaussian_pairs(np.random.RandomState(9), 2000)
  held_x, held_z = np.concatenate([hx, hxp]), np.concatenate([hz, hzp])
  target = f1_star(held_x, held_z)

  exp_logit = _fit_eq5(lambda a, c: [a / 2.0], explicit, real, fake)
  joint_logit = _fit_eq5(lambda a, c: [a / 2.0, c], lambda a, c: np.zeros_like(a), real, fake)
  rms = lambda f: float(np.sqrt(np.mean((f(held_x, held_z).numpy() - target) ** 2)))  # noqa: E731
  rms_explicit, rms_joint = rms(exp_logit), rms(joint_logit)
  print(
    f"f1 RMS error on held-out pairs: explicit {rms_explicit:.3f}, joint {rms_joint:.3f} "
    f"(f1* spread {target.std():.2f})"
  )
  assert rms_explicit < 0.25
  assert rms_explicit < rms_joint


def test_path_only_moves_upstream_but_not_the_function_weights():
  w = tf.Variable(3.0, dtype=tf.float64)
  theta = tf.Variable(2.0, dtype=tf.float64)
  u = tf.constant([[1.0, -1.0]], tf.float64)
  with tf.GradientTape(persistent=True) as tape:
    x = theta * u
    y = ratios.path_only(lambda a: w * tf.reduce_sum(a**2, axis=1), x)
  np.testing.assert_allclose(y.numpy(), [3.0 * 8.0])
  # d/dtheta of w * sum((theta u)^2) with w fixed: 2 w theta sum(u^2) = 24.
  np.testing.assert_allclose(tape.gradient(y, theta).numpy(), 24.0)
  assert tape.gradient(y, w) is None


def test_r1_norm_of_a_linear_function():
  a = tf.constant([[1.0, 2.0], [3.0, 4.0]], tf.float64)
  c = tf.constant([[0.5], [1.5]], tf.float64)
  w1, w2 = tf.constant([[2.0], [-1.0]], tf.float64), tf.constant([[3.0]], tf.float64)
  y, sq = ratios.logit_and_input_grad_sq(lambda p, q: tf.squeeze(p @ w1 + (q**2) @ w2, -1), [a, c])
  np.testing.assert_allclose(y.numpy(), [0.0 + 0.75, 2.0 + 6.75])
  # ||(2, -1)||^2 + (3 * 2 q)^2
  np.testing.assert_allclose(sq.numpy(), [5.0 + 9.0, 5.0 + 81.0])


def test_log_marginal_estimate_is_the_iwae_bound():
  mdl = _model("asvae", dtype="float64", ratio_estimator="explicit")
  x = _x(dtype=tf.float64)
  for k in (1, 5):
    # The same draws as the evaluation's IWAE bound (its first chunk uses fold_in(seed, 0)).
    got = ratios.log_marginal_estimate(mdl, x, rng.fold_in(SEED, 0), k).numpy()
    want = mdl.importance_bounds(x, k, SEED, chunk_size=k)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
  xs = tf.tile(x, [200, 1, 1, 1])
  lo = float(tf.reduce_mean(ratios.log_marginal_estimate(mdl, xs, SEED, 1)))
  hi = float(tf.reduce_mean(ratios.log_marginal_estimate(mdl, xs, SEED, 50)))
  ref = float(tf.reduce_mean(mdl.importance_bounds(x, 5000, SEED, chunk_size=500)[0]))
  assert lo < hi <= ref + 0.05  # a lower bound that tightens with k


def test_linear_straight_through_gradient_does_not_vanish_when_saturated():
  logits = tf.constant([-40.0, -8.0, 0.0, 8.0, 40.0], tf.float32)[None, :, None, None]
  u = tf.fill(tf.shape(logits), 0.3)
  for reparam, saturated_grad in (
    ("straight_through", 0.0),
    ("straight_through_linear", 1 / (4 * 0.5)),
  ):
    head = likelihoods.BernoulliLikelihood(reparam, temperature=0.5)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      x = head.rsample(logits, noise=u)
      total = tf.reduce_sum(x)
    g = tape.gradient(total, logits).numpy().ravel()
    np.testing.assert_array_equal(x.numpy().ravel(), [0, 0, 0, 1, 1])  # u = 0.3: l > 0.847
    np.testing.assert_allclose(g[[0, 4]], saturated_grad, atol=1e-12)


def test_explicit_f2_terms_and_gradient_routing():
  mdl = _model("asvae", ratio_estimator="explicit", r1_gamma=1.0, f2_decoder_gradient="exact")
  x = _x()
  t = mdl.terms(x, SEED, "generator", training=False)
  assert t.f2_explicit is not None and t.f2_real.shape == (4,)
  d = mdl.terms(x, SEED, "discriminator", training=False)
  for f in ("f2x_real", "f2x_fake", "f2z_real", "f2z_fake", "r1"):
    assert getattr(d, f).shape == (4,), f
  assert d.f2_fake is None
  # eq. (6) on the marginals + eq. (5) + R1.
  want = (
    losses.discriminator_eq5(d.f1_real, d.f1_fake)
    + losses.discriminator_eq6_marginals(d.f2x_real, d.f2x_fake, d.f2z_real, d.f2z_fake)
    + 0.5 * d.r1
  )
  np.testing.assert_allclose(mdl.discriminator_loss(d).numpy(), want.numpy(), rtol=1e-6)
  # The discriminator loss moves psi only; the generator loss moves theta, phi only.
  with tf.GradientTape(persistent=True) as tape:
    g_loss = tf.reduce_sum(mdl.generator_loss(mdl.terms(x, SEED, "generator")))
    d_loss = tf.reduce_sum(mdl.discriminator_loss(mdl.terms(x, SEED, "discriminator")))
  assert all(g is None for g in tape.gradient(d_loss, mdl.generator_variables))
  # Every psi weight but the zero-fed first kernels (model.idle_variables: no gradient).
  idle = {id(v) for v in mdl.idle_variables}
  for v, g in zip(mdl.discriminator_variables, tape.gradient(d_loss, mdl.discriminator_variables)):
    assert (g is None) == (id(v) in idle), v.path
  assert all(g is not None for g in tape.gradient(g_loss, mdl.generator_variables))


def test_adversarial_weight_scales_only_the_learned_terms():
  mdl = _model(
    "asvae", ratio_estimator="explicit", generator_pass_dropout=False, f2_decoder_gradient="exact"
  )
  x = _x()
  t0 = mdl.terms(x, SEED, "generator", adversarial_weight=0.0)
  t1 = mdl.terms(x, SEED, "generator", adversarial_weight=1.0)
  np.testing.assert_allclose(t0.f1_real.numpy(), (t0.log_qzq - t0.log_pzq).numpy(), rtol=1e-6)
  np.testing.assert_allclose(t0.f2_real.numpy(), t0.f2_explicit.numpy(), rtol=1e-6)
  residual = mdl.f2_residual(t1.xp, t1.zp)
  np.testing.assert_allclose(
    t1.f2_real.numpy(), (t1.f2_explicit + residual).numpy(), rtol=1e-5, atol=1e-5
  )
  joint = _model("asvae", generator_pass_dropout=False)
  assert not np.any(joint.terms(x, SEED, "generator", adversarial_weight=0.0).f1_real.numpy())


@pytest.mark.parametrize(
  "kw,needle",
  [
    (dict(ratio_estimator="exact"), "model.ratio_estimator"),
    (dict(f2_estimator="mine"), "model.f2_estimator"),
    (dict(f1_residual_inputs="z"), "model.f1_residual_inputs"),
    (dict(f2_marginal_samples=0), "model.f2_marginal_samples"),
    (dict(r1_gamma=-1.0), "model.r1_gamma"),
    (dict(f2_decoder_gradient="none"), "model.f2_decoder_gradient"),
    (dict(f2_decoder_gradient="marginal"), "needs an explicit f2"),
    (dict(ratio_estimator="explicit", f2_input_noise=-0.1), "model.f2_input_noise"),
    (dict(ratio_estimator="explicit", f2_input_noise=float("inf")), "model.f2_input_noise"),
    (dict(f2_input_noise=0.5), "f2_input_noise needs an explicit f2"),
    (dict(f2_decoder_weight=0.0), "model.f2_decoder_weight"),
    (dict(f2_decoder_weight=-2.0), "model.f2_decoder_weight"),
    (dict(f2_decoder_weight=float("inf")), "model.f2_decoder_weight"),
    (dict(f2_decoder_weight=True), "model.f2_decoder_weight"),
    (dict(f2_decoder_weight=2.0), "f2_decoder_weight = 2.0 needs an explicit f2"),
    (dict(f1_residual_inputs="none"), "'none' needs model.ratio_estimator = 'explicit'"),
    (
      dict(ratio_estimator="explicit", f2_estimator="joint", f2_decoder_weight=3.0),
      "needs an explicit f2",
    ),
  ],
)
def test_bad_estimator_settings_are_clear_errors(kw, needle):
  with pytest.raises(ratios.SettingError, match=needle):
    _model("asvae", **kw)


def test_instance_noise_without_an_f2_is_a_config_error():
  with pytest.raises(ratios.SettingError, match="trains no f2"):
    _model("asvae_r", ratio_estimator="explicit", f2_input_noise=0.5)


def test_f2_decoder_weight_leaves_objectives_without_f2_unchanged():
  """gin/mnist.gin sets lambda = 4; a VAE or AS-VAE-r built from it has no f2 term, and its
  loss is the one at lambda = 1."""
  x = _x()
  for objective, estimator in (("vae", "joint"), ("asvae_r", "explicit"), ("asvae_r", "joint")):
    kw = dict(ratio_estimator=estimator, generator_pass_dropout=False)
    a, b = _model(objective, **kw), _model(objective, f2_decoder_weight=4.0, **kw)
    b.set_weights(a.get_weights())
    la = a.generator_loss(a.terms(x, SEED, "generator", training=False))
    lb = b.generator_loss(b.terms(x, SEED, "generator", training=False))
    np.testing.assert_array_equal(la.numpy(), lb.numpy())


@pytest.mark.parametrize("mode", ["marginal", "exact"])
def test_f2_decoder_weight_scales_the_decoder_adversarial_gradient_only(mode):
  """model.f2_decoder_weight = lambda: the generator loss's f2 term is lambda x (D(x') +
  h(z')) (+ E2 in 'exact', unweighted), so (float64) the gradient of the loss w.r.t. the
  decoder, encoder and flow is grad(loss at lambda = 1) + (lambda - 1) grad(D(x') + h(z')),
  and the other terms are unchanged."""
  kw = dict(
    ratio_estimator="explicit",
    f2_decoder_gradient=mode,
    generator_pass_dropout=False,
    dtype="float64",
  )
  lam = 3.0
  base, weighted = _model("asvae", **kw), _model("asvae", f2_decoder_weight=lam, **kw)
  weighted.set_weights(base.get_weights())
  x = _x(dtype=tf.float64)

  def grads(mdl):
    with tf.GradientTape(persistent=True) as tape:
      t = mdl.terms(x, SEED, "generator", training=False)
      learned = mdl.f2_residual(t.xp, t.zp)  # D(x') + h(z') at weight 1, same x'
      loss, dh = tf.reduce_sum(mdl.generator_loss(t)), tf.reduce_sum(learned)
    variables = mdl.generator_variables
    return t, learned, [tape.gradient(v, variables) for v in (loss, dh)]

  t1, learned1, (g_loss1, g_f2_1) = grads(base)
  t3, _, (g_loss3, _) = grads(weighted)
  e2 = 0.0 if t1.f2_explicit is None else t1.f2_explicit.numpy()
  np.testing.assert_allclose(t1.f2_real.numpy(), learned1.numpy() + e2, rtol=1e-10)
  np.testing.assert_allclose(t3.f2_real.numpy(), lam * learned1.numpy() + e2, rtol=1e-10)
  for name in ("f1_real", "log_px_given_zq", "log_q_prior"):
    np.testing.assert_array_equal(getattr(t3, name).numpy(), getattr(t1, name).numpy())
  for gl1, gf1, gl3 in zip(g_loss1, g_f2_1, g_loss3):
    gf1 = 0.0 if gf1 is None else gf1.numpy()
    np.testing.assert_allclose(gl3.numpy(), gl1.numpy() + (lam - 1.0) * gf1, rtol=1e-9, atol=1e-12)
  assert any(g is not None and np.any(g.numpy()) for g in g_f2_1)  # D(x') moves theta


@pytest.mark.parametrize(
  "mode,decoder_moved_by_sleep", [("exact", True), ("marginal", False), ("marginal_infomax", True)]
)
def test_decoder_gradient_modes_route_the_sleep_term(mode, decoder_moved_by_sleep):
  """'marginal': the sleep term -log q(z|x') trains phi only, so theta's gradient of the
  AS-VAE-g loss is f2's; the other modes also move theta through the sleep term."""
  mdl = _model(
    "asvae_g", ratio_estimator="explicit", f2_decoder_gradient=mode, generator_pass_dropout=False
  )
  x = _x()
  with tf.GradientTape(persistent=True) as tape:
    t = mdl.terms(x, SEED, "generator", training=False)
    loss = tf.reduce_sum(mdl.generator_loss(t))
    f2 = tf.reduce_sum(t.f2_real)
  dec = mdl.decoder.trainable_variables
  diff = max(
    float(tf.reduce_max(tf.abs(a - b)))
    for a, b in zip(tape.gradient(loss, dec), tape.gradient(f2, dec))
  )
  assert (diff > 1e-6) == decoder_moved_by_sleep, diff
  # phi always learns from the sleep term.
  assert all(g is not None for g in tape.gradient(loss, mdl.encoder.trainable_variables))
  assert (mode == "exact") == (t.f2_explicit is not None)


def test_idle_variables_are_exactly_the_zero_fed_first_kernels():
  mdl = _model("asvae", ratio_estimator="explicit")
  x = _x()
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(mdl.discriminator_loss(mdl.terms(x, SEED, "discriminator")))
  grads = tape.gradient(loss, mdl.discriminator_variables)
  idle = {id(v) for v in mdl.idle_variables}
  assert len(idle) == 3
  for v, g in zip(mdl.discriminator_variables, grads):
    assert (id(v) in idle) == (g is None or not np.any(g.numpy())), v.path
  assert not _model("asvae").idle_variables  # joint networks see both inputs


def test_decoder_gradient_default_follows_the_f2_estimator():
  assert _model("asvae", ratio_estimator="explicit").f2_decoder_gradient == "marginal"
  assert _model("asvae").f2_decoder_gradient == "exact"


def test_instance_noise_reaches_d_on_generated_and_data_images_alike():
  """model.f2_input_noise = sigma: D sees x + sigma * eps for x' and for the data (fresh
  eps for each), in the discriminator pass and the generator pass; h does not. The decoder
  still gets D's path gradient through x' + sigma * eps. (sigma = 0 leaves training
  bit-identical: the shipped AS-VAE configs reproduce their quality tables.)"""
  sigma = 0.5
  x = _x()
  kw = dict(ratio_estimator="explicit", generator_pass_dropout=False)
  noisy = _model("asvae_g", f2_input_noise=sigma, **kw)
  plain = _model("asvae_g", **kw)
  plain.set_weights(noisy.get_weights())
  s7 = rng.split(SEED, 8)[7]
  d_noisy = noisy.terms(x, SEED, "discriminator", training=False)
  d_plain = plain.terms(x, SEED, "discriminator", training=False)
  zeros_z = tf.zeros_like(d_noisy.zp)
  for logit, image, stream in ((d_noisy.f2x_real, d_plain.xp, 11), (d_noisy.f2x_fake, x, 12)):
    eps = rng.normal(image.shape, rng.fold_in(s7, stream))
    np.testing.assert_allclose(
      logit.numpy(), noisy.f2(image + sigma * eps, zeros_z).numpy(), rtol=1e-6, atol=1e-6
    )
    assert np.std(eps.numpy()) > 0.5  # really noise: D's inputs moved
  assert not np.allclose(d_noisy.f2x_fake.numpy(), d_plain.f2x_fake.numpy())
  np.testing.assert_array_equal(d_noisy.f2z_real.numpy(), d_plain.f2z_real.numpy())  # h: none
  np.testing.assert_array_equal(d_noisy.xp.numpy(), d_plain.xp.numpy())  # same x'

  with tf.GradientTape() as tape:
    g = noisy.terms(x, SEED, "generator", training=False)
    loss = tf.reduce_sum(noisy.generator_loss(g))
  eps = rng.normal(g.xp.shape, rng.fold_in(s7, 13))
  expected = noisy.f2_residual(g.xp + sigma * eps, g.zp)
  np.testing.assert_allclose(g.f2_real.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
  grads = tape.gradient(loss, noisy.decoder.trainable_variables)
  assert all(np.all(np.isfinite(v.numpy())) for v in grads)
  assert any(np.any(v.numpy() != 0) for v in grads)
