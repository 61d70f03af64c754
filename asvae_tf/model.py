"""The AS-VAE model: encoder + posterior, decoder + likelihood head, two joint
discriminators, and the per-example terms every objective is built from.

Shapes: images x [b, H, W, C] float in [0, 1]; codes z [b, D]. The prior is
p(z) = N(0, I_D). All randomness comes from stateless seeds (int32 [2]) through
`noise`, so a step is a pure function of (weights, batch, seed) and does not
depend on how the global batch is split over replicas.

`Terms` are computed in two modes:
  - "generator": what eq. (11) needs, with gradients flowing into theta, phi;
  - "discriminator": real/fake pairs of eqs. (5) and (6), with the encoder and
    decoder outputs stop-gradient'ed so only psi1, psi2 are trained.
Negative ("fake") pairs of eqs. (5)/(6) need independent partners: within each
pair of rows (2i, 2i+1) the partners are swapped (`pair_swap`), which pairs a
code with an independent draw and stays replica-invariant for even per-replica
batches.
"""

import dataclasses
import math
from typing import Optional

import gin
import keras
import tensorflow as tf

from asvae_tf import errors
from asvae_tf import flows
from asvae_tf import heads
from asvae_tf import losses
from asvae_tf import networks
from asvae_tf import rng
from asvae_tf import ratios


def pair_swap(t):
  """Swaps rows 2i and 2i+1 of t [b, ...] (b even): an independent partner per row."""
  b = t.shape[0]
  if b is not None and b % 2:
    raise ValueError(f"AS-VAE needs an even per-replica batch size, got {b}")
  shape = tf.shape(t)
  paired = tf.reshape(t, tf.concat([[-1, 2], shape[1:]], 0))
  return tf.reshape(tf.reverse(paired, axis=[1]), shape)


prior_log_prob = ratios.prior_log_prob  # log N(z; 0, I) summed over the code, [b]


@dataclasses.dataclass
class Terms:
  """Per-example quantities ([b] unless noted) an objective is built from.

  Fields are None when the mode/objective does not need them. With the 'explicit'
  estimator (see `ratios`), f1_* and f2_real are explicit part + learned residual,
  and eq. (6) is trained on its marginals: f2x_* = D(x), f2z_* = h(z).
  """

  x: tf.Tensor  # [b,H,W,C] data batch
  zq: Optional[tf.Tensor] = None  # [b,D] z_phi(x, eps) ~ q(z|x)
  log_qzq: Optional[tf.Tensor] = None  # log q(zq | x)
  log_pzq: Optional[tf.Tensor] = None  # log p(zq)
  log_px_given_zq: Optional[tf.Tensor] = None  # log p(x | zq)
  zp: Optional[tf.Tensor] = None  # [b,D] z ~ p(z)
  xp: Optional[tf.Tensor] = None  # [b,H,W,C] x_theta(zp, xi)
  log_q_prior: Optional[tf.Tensor] = None  # log q(zp | xp)
  f1_real: Optional[tf.Tensor] = None  # f1(x, zq)
  f1_fake: Optional[tf.Tensor] = None  # f1(pair_swap(xp), zp)
  f2_real: Optional[tf.Tensor] = None  # f2(xp, zp)
  f2_fake: Optional[tf.Tensor] = None  # f2(x, pair_swap(zq)) ('joint' only)
  f2_explicit: Optional[tf.Tensor] = None  # E2(xp, zp) (explicit f2, 'exact' mode)
  f2x_real: Optional[tf.Tensor] = None  # D(xp)  ('explicit' f2, discriminator)
  f2x_fake: Optional[tf.Tensor] = None  # D(x)
  f2z_real: Optional[tf.Tensor] = None  # h(zp)
  f2z_fake: Optional[tf.Tensor] = None  # h(pair_swap(zq))
  r1: Optional[tf.Tensor] = None  # squared input-gradient norms (R1), [b]


class ASVAE(keras.Model):
  """AS-VAE (and its -r / -g variants and the VAE baseline) as one Keras 3 model.

  Args:
    image_shape: (H, W, C) of the data.
    latent_dim: D.
    objective: "asvae", "asvae_r", "asvae_g" or "vae" (see `losses`).
    encoder, decoder, discriminator: network factories (gin: @mlp_encoder, ...).
    likelihood: a `heads` likelihood class (gin: @bernoulli_likelihood, ...).
    ratio_estimator: "joint" (f = network(x, z), the paper) or "explicit" (explicit
      part + learned residual, see `ratios`), for f1 and (unless f2_estimator is
      set) f2.
    f2_estimator: None (same as ratio_estimator), "joint" or "explicit".
    f1_residual_inputs: "x" (the residual of an explicit f1 sees x only; its z input
      is held at 0) or "xz".
    f2_marginal_samples: k of the importance-sampling estimate of log p_theta(x) in
      an explicit f2's E2 (>= 1).
    generator_pass_dropout: apply the discriminators' dropout when they are
      evaluated inside the generator update (False: dropout only when they train).
    f2_decoder_gradient: how an explicit f2 and the sleep term -log q_phi(z|x') of
      eq. (11) move the decoder theta (see `ratios.DECODER_GRADIENTS`): "exact",
      "marginal" or "marginal_infomax"; None: "marginal" for an explicit f2 (the mode
      that worked, see the README's ablation), "exact" for a joint one.
    r1_gamma: weight of the R1 penalty gamma/2 E||grad_input f||^2: for a joint f1 / f2
      at the label-1 pairs of eq. (5) / (6) ((x, z ~ q(z|x)) / (x', z ~ p(z))), for an
      explicit f1 at the residual's inputs of the data pairs, for an explicit f2 on D
      at the data x (h is not penalised). On a joint f1 it caps f1's slope in z (a
      negative control).

  The explicit parts assume the encoder and decoder are evaluated consistently: the
  shipped configs use no encoder / decoder dropout (with dropout, log q(z|x) of the
  data pairs is taken with it and the fake pairs' without).

  Built from gin through `build_model` (gin name `model`).
  """

  def __init__(
    self,
    image_shape,
    latent_dim=32,
    objective="asvae",
    encoder=networks.mlp_encoder,
    decoder=networks.mlp_decoder,
    discriminator=networks.joint_discriminator,
    likelihood=heads.BernoulliLikelihood,
    ratio_estimator="joint",
    f2_estimator=None,
    f1_residual_inputs="x",
    f2_marginal_samples=1,
    generator_pass_dropout=True,
    r1_gamma=0.0,
    f2_decoder_gradient=None,
    name="asvae",
  ):
    super().__init__(name=name)
    f2_estimator = ratio_estimator if f2_estimator is None else f2_estimator
    if f2_decoder_gradient is None:
      f2_decoder_gradient = "marginal" if f2_estimator == "explicit" else "exact"
    for what, value, choices in (
      ("ratio_estimator", ratio_estimator, ratios.ESTIMATORS),
      ("f2_estimator", f2_estimator, ratios.ESTIMATORS),
      ("f1_residual_inputs", f1_residual_inputs, ratios.RESIDUAL_INPUTS),
      ("f2_decoder_gradient", f2_decoder_gradient, ratios.DECODER_GRADIENTS),
    ):
      if value not in choices:
        raise errors.ConfigError(f"model.{what} must be one of {choices}, got {value!r}")
    if (
      isinstance(f2_marginal_samples, bool)
      or not isinstance(f2_marginal_samples, int)
      or f2_marginal_samples < 1
    ):
      raise errors.ConfigError(
        f"model.f2_marginal_samples must be an int >= 1, got {f2_marginal_samples!r}"
      )
    if not (isinstance(r1_gamma, (int, float)) and r1_gamma >= 0):
      raise errors.ConfigError(f"model.r1_gamma must be >= 0, got {r1_gamma!r}")
    self.image_shape = tuple(int(s) for s in image_shape)
    self.latent_dim = int(latent_dim)
    self.objective = losses.get_objective(objective)
    self.f1_explicit = ratio_estimator == "explicit"
    self.f2_explicit = f2_estimator == "explicit"
    self.f1_residual_inputs = f1_residual_inputs
    self.f2_marginal_samples = int(f2_marginal_samples)
    self.generator_pass_dropout = bool(generator_pass_dropout)
    self.r1_gamma = float(r1_gamma)
    if f2_decoder_gradient != "exact" and not self.f2_explicit:
      raise errors.ConfigError(
        f"model.f2_decoder_gradient={f2_decoder_gradient!r} needs an explicit f2 "
        f"(model.ratio_estimator / model.f2_estimator = 'explicit'); a joint f2 uses 'exact'"
      )
    self.f2_decoder_gradient = f2_decoder_gradient
    self.likelihood = likelihood()
    h, w, c = self.image_shape
    self.encoder = encoder(name="encoder")
    self.posterior = flows.Posterior(self.latent_dim, name="posterior")
    self.decoder = decoder(output_shape=(h, w, c * self.likelihood.num_params), name="decoder")
    self.has_discriminators = bool(self.objective.discriminators)
    if self.has_discriminators:
      self.f1 = discriminator(name="f1")  # joint f1, or the residual of an explicit f1
      self.f2 = discriminator(name="f2")  # joint f2, or D(x) of an explicit f2
      if self.f2_explicit:
        self.f2_z = discriminator(name="f2_z")  # h(z) of an explicit f2

  # ---- building blocks -------------------------------------------------------

  def build_all(self):
    """Creates every variable by one pass on a dummy batch of 2."""
    x = tf.zeros((2,) + self.image_shape, self.compute_dtype)
    seed = tf.constant([0, 0], tf.int32)
    self.terms(x, seed, "generator", training=False)
    if self.has_discriminators:
      self.terms(x, seed, "discriminator", training=False)
    self.posterior_mean(x)

  @property
  def generator_variables(self):
    """theta and phi: encoder, posterior (flow conditioners) and decoder weights."""
    return (
      self.encoder.trainable_variables
      + self.posterior.trainable_variables
      + self.decoder.trainable_variables
    )

  @property
  def discriminator_variables(self):
    """psi1 and psi2 (for an explicit f2: D and h)."""
    if not self.has_discriminators:
      return []
    out = self.f1.trainable_variables + self.f2.trainable_variables
    if self.f2_explicit:
      out += self.f2_z.trainable_variables
    return out

  @property
  def idle_variables(self):
    """Discriminator weights that never train: the first kernel of each input path that an
    explicit estimator's residual holds at 0 (f1's z path for an x-only residual, D's z
    path, h's x path). Their inputs are 0, so their gradient is exactly 0; the path then
    adds a learned constant through its bias. Listed so that checks of "every weight
    trained" can skip them (a residual network without the unused path would not have
    them; the configured joint network is reused to keep one set of architectures)."""
    if not self.has_discriminators:
      return []
    paths = []
    if self.f1_explicit and self.f1_residual_inputs == "x":
      paths.append(getattr(self.f1, "z_path", None))
    if self.f2_explicit:
      paths += [getattr(self.f2, "z_path", None), getattr(self.f2_z, "x_path", None)]
    out = []
    for path in paths:
      first = getattr(getattr(path, "convs", path), "conv_0", None) or getattr(
        path, "dense_0", None
      )
      if first is not None and first.built:
        out.append(first.kernel)
    return out

  def encode(self, x, seed, training=False):
    """z ~ q(z|x) reparameterised and log q(z|x): x [b,H,W,C] -> ([b,D], [b])."""
    s = rng.split(seed, 2)
    h = self.encoder(x, seed=s[0], training=training)
    eps = rng.normal(
      [tf.shape(x)[0], self.latent_dim] if x.shape[0] is None else [x.shape[0], self.latent_dim],
      s[1],
      x.dtype,
    )
    return self.posterior.sample_and_log_prob(h, eps=eps)

  def posterior_log_prob(self, x, z, seed=None, training=False):
    """log q(z|x) at ANY z: x [b,H,W,C], z [b,D] -> [b]."""
    return self.posterior.log_prob(self.encoder(x, seed=seed, training=training), z)

  def posterior_mean(self, x):
    """Base mean pushed through the flow: x [b,H,W,C] -> [b,D]."""
    return self.posterior.mean(self.encoder(x))

  def decode(self, z, seed=None, training=False):
    """Likelihood parameters of p(x|z): z [b,D] -> [b,H,W,C*num_params]."""
    return self.decoder(z, seed=seed, training=training)

  def decoder_rsample(self, params, seed):
    """x_theta(z, xi): reparameterised decoder sample, [b,H,W,C] (eq. 11)."""
    law = self.likelihood.noise
    if law == "none":  # deterministic, e.g. the Bernoulli mean
      return self.likelihood.rsample(params)
    shape = params.shape[:-1].as_list() + [self.image_shape[-1]]
    if shape[0] is None:
      shape = tf.concat([tf.shape(params)[:1], shape[1:]], 0)
    draw = rng.uniform if law == "uniform" else rng.normal
    return self.likelihood.rsample(params, noise=draw(shape, seed, params.dtype))

  def sample_prior(self, batch_size, seed, dtype=tf.float32):
    """z ~ p(z) = N(0, I): [batch_size, D]."""
    return rng.normal([batch_size, self.latent_dim], seed, dtype)

  # ---- ratio estimators ------------------------------------------------------

  def f1_logit(self, x, z, log_q, seed=None, training=False, residual_weight=1.0):
    """f1(x, z) [b]; log_q = log q_phi(z|x) [b] (used by the explicit estimator only)."""
    if not self.f1_explicit:
      return residual_weight * self.f1(x, z, seed=seed, training=training)
    z_in = z if self.f1_residual_inputs == "xz" else tf.zeros_like(z)
    residual = self.f1(x, z_in, seed=seed, training=training)
    return ratios.explicit_f1(log_q, prior_log_prob(z)) + residual_weight * residual

  def f2_residual(self, x, z, seed=None, training=False):
    """D(x) + h(z) of an explicit f2, [b]."""
    s = [None, None] if seed is None else [rng.fold_in(seed, i) for i in (2, 3)]
    return self.f2(x, tf.zeros_like(z), seed=s[0], training=training) + self.f2_z(
      tf.zeros_like(x), z, seed=s[1], training=training
    )

  def f2_explicit_part(self, xp, zp, params_p, seed):
    """E2(x', z) = log p_theta(x'|z) - log p^_theta(x') for eq. (11), [b].

    f2 is a fixed function in eq. (11), so E2 enters with its path gradient through
    x' only (`ratios.path_only`). Both of its terms use that same estimator: when
    q_phi(.|x') is sharp their path gradients nearly cancel, sample by sample (E2 is
    the decoder's pointwise mutual information). Replacing only the first by a
    closed-form expectation breaks that cancellation: with the linear straight-through
    Bernoulli sample the uncancelled -d log p^(x')/dx' then feeds the decoder's logits
    back into themselves and they diverge (measured: AS-VAE-g's -ELBO reached 1e7
    nats within 200 steps).
    """
    params_fixed = tf.stop_gradient(params_p)
    k = self.f2_marginal_samples

    def e2(x_in):
      return self.likelihood.log_prob(params_fixed, x_in) - ratios.log_marginal_estimate(
        self, x_in, seed, k
      )

    return ratios.path_only(e2, xp)

  def _with_r1(self, net_fn, inputs, want):
    """net_fn(*inputs), and its R1 norms when want (else None)."""
    if not want:
      return net_fn(*inputs), None
    return ratios.logit_and_input_grad_sq(net_fn, inputs)

  # ---- objective terms -------------------------------------------------------

  def terms(self, x, seed, mode, training=True, adversarial_weight=1.0):
    """Per-example terms of eqs. (1), (5), (6), (11) for one batch.

    Args:
      x: [b, H, W, C] data batch (b static and even when discriminators are used).
      seed: int32 [2].
      mode: "generator" or "discriminator".
      training: applies dropout (in the generator pass, to the discriminators only
        when generator_pass_dropout).
      adversarial_weight: scalar multiplying the learned ratio terms in the
        generator pass (the whole f of a joint estimator, the residual of an
        explicit one): the warm-up of train.adversarial_warmup_steps.
    Returns:
      `Terms`; only what `self.objective` needs in this mode is computed.
    """
    if mode not in ("generator", "discriminator"):
      raise ValueError(f"mode must be 'generator' or 'discriminator', got {mode!r}")
    obj = self.objective
    gen = mode == "generator"
    use_eq5 = "eq5" in obj.discriminators
    use_eq6 = "eq6" in obj.discriminators
    b = x.shape[0]
    s = rng.split(seed, 8)
    sg = (lambda t: t) if gen else tf.stop_gradient
    d_training = training and (self.generator_pass_dropout or not gen)
    t = Terms(x=x)

    # Encoder branch: x ~ q(x), z = z_phi(x, eps).
    need_enc = (not gen) or obj.needs_encoder_branch
    if need_enc:
      zq, log_qzq = self.encode(x, s[0], training=training)
      t.zq, t.log_qzq = sg(zq), sg(log_qzq)
      t.log_pzq = prior_log_prob(t.zq)
      if gen:
        params = self.decode(t.zq, seed=s[1], training=training)
        t.log_px_given_zq = self.likelihood.log_prob(params, x)

    # Decoder branch: z ~ p(z), x' = x_theta(z, xi).
    need_dec = self.has_discriminators and ((not gen) or obj.needs_prior_log_q)
    if need_dec:
      t.zp = self.sample_prior(b, s[2], x.dtype)
      params_p = self.decode(t.zp, seed=s[3], training=training)
      t.xp = sg(self.decoder_rsample(params_p, s[4]))
      if gen:  # the sleep term; "marginal" keeps its gradient to phi only
        x_sleep = tf.stop_gradient(t.xp) if self.f2_decoder_gradient == "marginal" else t.xp
        t.log_q_prior = self.posterior_log_prob(x_sleep, t.zp, seed=s[5], training=training)

    if gen:
      self._generator_ratios(
        t, s, use_eq5, use_eq6, d_training, adversarial_weight, params_p if need_dec else None
      )
    else:
      self._discriminator_ratios(t, s, use_eq5, use_eq6, d_training)
    return t

  def _generator_ratios(self, t, s, use_eq5, use_eq6, d_training, weight, params_p):
    """f1(x, zq) and f2(xp, zp) as eq. (11) sees them."""
    if use_eq5 and t.zq is not None:
      t.f1_real = self.f1_logit(
        t.x, t.zq, t.log_qzq, seed=s[6], training=d_training, residual_weight=weight
      )
    if use_eq6 and t.xp is not None:
      if self.f2_explicit:
        t.f2_real = weight * self.f2_residual(t.xp, t.zp, seed=s[7], training=d_training)
        if self.f2_decoder_gradient == "exact":  # E2 moves nothing in the other modes
          t.f2_explicit = self.f2_explicit_part(t.xp, t.zp, params_p, rng.fold_in(s[7], 4))
          t.f2_real += t.f2_explicit
      else:
        t.f2_real = weight * self.f2(t.xp, t.zp, seed=s[7], training=d_training)

  def _discriminator_ratios(self, t, s, use_eq5, use_eq6, training):
    """Real and fake logits of eqs. (5) and (6) (encoder/decoder outputs fixed)."""
    want_r1 = self.r1_gamma > 0
    r1 = []
    if use_eq5:
      x_fake, z_fake = pair_swap(t.xp), t.zp
      if self.f1_explicit:
        log_q_fake = tf.stop_gradient(self.posterior_log_prob(x_fake, z_fake))
        residual_z = self.f1_residual_inputs == "xz"
        real_inputs = [t.x, t.zq] if residual_z else [t.x]

        def residual(x_in, z_in=None):
          z_in = tf.zeros_like(t.zq) if z_in is None else z_in
          return self.f1(x_in, z_in, seed=s[6], training=training)

        res_real, sq = self._with_r1(residual, real_inputs, want_r1)
        t.f1_real = ratios.explicit_f1(t.log_qzq, t.log_pzq) + res_real
        t.f1_fake = ratios.explicit_f1(log_q_fake, prior_log_prob(z_fake)) + self.f1(
          x_fake,
          z_fake if residual_z else tf.zeros_like(z_fake),
          seed=rng.fold_in(s[6], 1),
          training=training,
        )
      else:
        t.f1_real, sq = self._with_r1(
          lambda a, c: self.f1(a, c, seed=s[6], training=training), [t.x, t.zq], want_r1
        )
        t.f1_fake = self.f1(x_fake, z_fake, seed=rng.fold_in(s[6], 1), training=training)
      r1.append(sq)
    if use_eq6:
      if self.f2_explicit:
        # Marginals of eq. (6): D on x' (label 1) vs data x (0); h on prior z (1) vs
        # aggregate-posterior z (0). R1 on D at the data.
        zeros_z = tf.zeros_like(t.zp)
        t.f2x_real = self.f2(t.xp, zeros_z, seed=s[7], training=training)
        t.f2x_fake, sq = self._with_r1(
          lambda a: self.f2(a, zeros_z, seed=rng.fold_in(s[7], 1), training=training),
          [t.x],
          want_r1,
        )
        zeros_x = tf.zeros_like(t.x)
        t.f2z_real = self.f2_z(zeros_x, t.zp, seed=rng.fold_in(s[7], 2), training=training)
        t.f2z_fake = self.f2_z(
          zeros_x, pair_swap(t.zq), seed=rng.fold_in(s[7], 3), training=training
        )
      else:
        t.f2_real, sq = self._with_r1(
          lambda a, c: self.f2(a, c, seed=s[7], training=training), [t.xp, t.zp], want_r1
        )
        t.f2_fake = self.f2(t.x, pair_swap(t.zq), seed=rng.fold_in(s[7], 1), training=training)
      r1.append(sq)
    if want_r1:
      t.r1 = tf.add_n(r1)

  def generator_loss(self, terms):
    """[b] loss of theta, phi for the configured objective."""
    return self.objective.generator(terms)

  def discriminator_loss(self, terms):
    """[b] loss of psi1, psi2 (eqs. 5, 6, + R1); None for the VAE baseline."""
    return losses.discriminator_loss(self.objective, terms, r1_gamma=self.r1_gamma)

  # ---- evaluation helpers ----------------------------------------------------

  def negative_elbo(self, x, seed):
    """-ELBO of eq. (1) with one posterior sample, [b] nats."""
    z, log_q = self.encode(x, seed)
    log_px = self.likelihood.log_prob(self.decode(z), x)
    return losses.vae(log_px, prior_log_prob(z), log_q)

  def reconstruct(self, x):
    """Decoder mean at the posterior mean: [b,H,W,C] -> [b,H,W,C]."""
    return self.likelihood.mean(self.decode(self.posterior_mean(x)))

  def sample(self, batch_size, seed):
    """Decoder means of prior draws: ([batch_size,H,W,C] images, [batch_size,D] codes)."""
    z = self.sample_prior(batch_size, seed)
    return self.likelihood.mean(self.decode(z)), z

  def eval_log_px(self, params, x, discretized=False):
    """log p(x|z) for evaluation, [b] nats.

    discretized=False: the head's log_prob (the training likelihood).
    discretized=True (Gaussian heads, section 5.1): log P(pixel bin | z) of the
      8-bit pixels i = round(256 x - 1/2), i.e. x must be bin centres
      (i + 1/2) / 256 as produced by `data.to_float` / `data.eval_dataset`.
    """
    if not discretized:
      return self.likelihood.log_prob(params, x)
    if not hasattr(self.likelihood, "discretized_log_prob"):
      raise ValueError(f"{type(self.likelihood).__name__} has no discretised likelihood")
    pixels = tf.clip_by_value(tf.round(x * 256.0 - 0.5), 0.0, 255.0)
    return self.likelihood.discretized_log_prob(params, pixels)

  def importance_bounds(self, x, num_samples, seed, chunk_size=64, discretized=False):
    """IWAE bound and k-sample ELBO estimate from the same k samples, each [b] nats.

    With log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x):
      iwae = log (1/k) sum_k exp(log w_k)    (Burda et al., 2016), and
      elbo = (1/k) sum_k log w_k             (eq. 1, k-sample Monte Carlo estimate).
    Jensen gives iwae >= elbo for every image and every draw. The k samples are
    drawn in chunks of `chunk_size` (static) with a running logsumexp and sum, so
    memory is O(chunk_size * b) whatever k is (k = 5000 fits); the last chunk is
    masked. Chunk i uses the seed fold_in(seed, i).

    Args:
      x: [b, H, W, C] images.
      num_samples: k >= 1, Python int or int32 scalar tensor.
      seed: int32 [2].
      chunk_size: Python int, samples per chunk.
      discretized: use the discretised likelihood (see `eval_log_px`).
    Returns:
      (iwae [b], elbo [b]).
    """
    chunk_size = int(chunk_size)
    x = tf.convert_to_tensor(x)
    k = tf.cast(num_samples, tf.int32)
    b = tf.shape(x)[0]
    h = self.encoder(x)
    x_tiled = tf.tile(x, [chunk_size, 1, 1, 1])  # chunk-major: row s * b + i
    neg_inf = tf.constant(-math.inf, x.dtype)

    def body(i, acc, total):
      z, log_q = self.posterior.sample_and_log_prob(
        h, seed=rng.fold_in(seed, i), sample_shape=(chunk_size,)
      )  # [c,b,D], [c,b]
      params = self.decode(tf.reshape(z, [-1, self.latent_dim]))
      log_px = tf.reshape(self.eval_log_px(params, x_tiled, discretized), [chunk_size, b])
      log_w = log_px + prior_log_prob(z) - log_q
      valid = (tf.range(chunk_size) + i * chunk_size < k)[:, None]
      total += tf.reduce_sum(tf.where(valid, log_w, tf.zeros_like(log_w)), axis=0)
      log_w = tf.where(valid, log_w, neg_inf)
      acc = tf.reduce_logsumexp(tf.concat([acc[None], log_w], 0), axis=0)
      return i + 1, acc, total

    num_chunks = (k + chunk_size - 1) // chunk_size
    _, acc, total = tf.while_loop(
      lambda i, *_: i < num_chunks,
      body,
      (tf.constant(0, tf.int32), tf.fill([b], neg_inf), tf.zeros([b], x.dtype)),
    )
    k_float = tf.cast(k, x.dtype)
    return acc - tf.math.log(k_float), total / k_float

  def iwae_log_likelihood(self, x, num_samples, seed, chunk_size=64, discretized=False):
    """Importance-weighted lower bound of log p(x) (Burda et al.), [b] nats.

    log p(x) >= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k;
    see `importance_bounds` for the chunking and the arguments.
    """
    return self.importance_bounds(x, num_samples, seed, chunk_size, discretized)[0]

  def reconstruction_errors(self, x, seed):
    """Validation reconstruction losses used for early stopping (section 5).

    recon_x: mean squared error per pixel between x and its reconstruction
      (decoder mean at the posterior mean), [b].
    recon_z: mean squared error per latent dimension between z ~ p(z) and
      z'' = posterior mean of x' = decoder mean of z (z -> x' -> z''), [b].
    """
    axes = list(range(1, len(self.image_shape) + 1))
    recon_x = tf.reduce_mean(tf.square(x - self.reconstruct(x)), axis=axes)
    xz, z = self.sample(tf.shape(x)[0] if x.shape[0] is None else x.shape[0], seed)
    recon_z = tf.reduce_mean(tf.square(z - self.posterior_mean(xz)), axis=-1)
    return recon_x, recon_z


@gin.configurable("model", denylist=["image_shape"])
def build_model(
  image_shape,
  latent_dim=32,
  objective="asvae",
  encoder=networks.mlp_encoder,
  decoder=networks.mlp_decoder,
  discriminator=networks.joint_discriminator,
  likelihood=heads.BernoulliLikelihood,
  ratio_estimator="joint",
  f2_estimator=None,
  f1_residual_inputs="x",
  f2_marginal_samples=1,
  generator_pass_dropout=True,
  r1_gamma=0.0,
  f2_decoder_gradient=None,
):
  """Gin factory of `ASVAE` (Keras 3 layers cannot be gin-decorated classes)."""
  return ASVAE(
    image_shape,
    latent_dim=latent_dim,
    objective=objective,
    encoder=encoder,
    decoder=decoder,
    discriminator=discriminator,
    likelihood=likelihood,
    ratio_estimator=ratio_estimator,
    f2_estimator=f2_estimator,
    f1_residual_inputs=f1_residual_inputs,
    f2_marginal_samples=f2_marginal_samples,
    generator_pass_dropout=generator_pass_dropout,
    r1_gamma=r1_gamma,
    f2_decoder_gradient=f2_decoder_gradient,
  )


def build_for_data(splits):
  """The gin-configured model for `splits` (data.Splits), built (all variables created).

  A model that cannot take images of the data's shape (e.g. a 32x32 conv config on
  28x28 data) raises errors.ConfigError with one readable line.
  """
  try:
    mdl = build_model(image_shape=splits.image_shape)
    mdl.build_all()
  except errors.ConfigError:
    raise
  except (ValueError, tf.errors.InvalidArgumentError) as e:
    raise errors.ConfigError(
      f"the configured model does not fit images of shape {splits.image_shape} "
      f"(dataset {splits.name!r}): {errors.one_line(e, 300)}"
    ) from None
  return mdl
