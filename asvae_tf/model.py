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

from asvae_tf import flows
from asvae_tf import heads
from asvae_tf import losses
from asvae_tf import networks
from asvae_tf import noise


def pair_swap(t):
  """Swaps rows 2i and 2i+1 of t [b, ...] (b even): an independent partner per row."""
  b = t.shape[0]
  if b is not None and b % 2:
    raise ValueError(f"AS-VAE needs an even per-replica batch size, got {b}")
  shape = tf.shape(t)
  paired = tf.reshape(t, tf.concat([[-1, 2], shape[1:]], 0))
  return tf.reshape(tf.reverse(paired, axis=[1]), shape)


def prior_log_prob(z):
  """log N(z; 0, I) summed over the code, z [b, D] -> [b]."""
  d = z.shape[-1]
  return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - 0.5 * d * math.log(2 * math.pi)


@dataclasses.dataclass
class Terms:
  """Per-example quantities ([b] unless noted) an objective is built from.

  Fields are None when the mode/objective does not need them.
  """
  x: tf.Tensor                                   # [b,H,W,C] data batch
  zq: Optional[tf.Tensor] = None                 # [b,D] z_phi(x, eps) ~ q(z|x)
  log_qzq: Optional[tf.Tensor] = None            # log q(zq | x)
  log_pzq: Optional[tf.Tensor] = None            # log p(zq)
  log_px_given_zq: Optional[tf.Tensor] = None    # log p(x | zq)
  zp: Optional[tf.Tensor] = None                 # [b,D] z ~ p(z)
  xp: Optional[tf.Tensor] = None                 # [b,H,W,C] x_theta(zp, xi)
  log_q_prior: Optional[tf.Tensor] = None        # log q(zp | xp)
  f1_real: Optional[tf.Tensor] = None            # f1(x, zq)
  f1_fake: Optional[tf.Tensor] = None            # f1(pair_swap(xp), zp)
  f2_real: Optional[tf.Tensor] = None            # f2(xp, zp)
  f2_fake: Optional[tf.Tensor] = None            # f2(x, pair_swap(zq))


class ASVAE(keras.Model):
  """AS-VAE (and its -r / -g variants and the VAE baseline) as one Keras 3 model.

  Args:
    image_shape: (H, W, C) of the data.
    latent_dim: D.
    objective: "asvae", "asvae_r", "asvae_g" or "vae" (see `losses`).
    encoder, decoder, discriminator: network factories (gin: @mlp_encoder, ...).
    likelihood: a `heads` likelihood class (gin: @bernoulli_likelihood, ...).

  Built from gin through `build_model` (gin name `model`).
  """

  def __init__(self, image_shape, latent_dim=32, objective="asvae",
               encoder=networks.mlp_encoder, decoder=networks.mlp_decoder,
               discriminator=networks.joint_discriminator,
               likelihood=heads.BernoulliLikelihood, name="asvae"):
    super().__init__(name=name)
    self.image_shape = tuple(int(s) for s in image_shape)
    self.latent_dim = int(latent_dim)
    self.objective = losses.get_objective(objective)
    self.likelihood = likelihood()
    h, w, c = self.image_shape
    self.encoder = encoder(name="encoder")
    self.posterior = flows.Posterior(self.latent_dim, name="posterior")
    self.decoder = decoder(output_shape=(h, w, c * self.likelihood.num_params), name="decoder")
    self.has_discriminators = bool(self.objective.discriminators)
    if self.has_discriminators:
      self.f1 = discriminator(name="f1")
      self.f2 = discriminator(name="f2")

  # ---- building blocks -------------------------------------------------------

  def build_all(self):
    """Creates every variable by one pass on a dummy batch of 2."""
    x = tf.zeros((2,) + self.image_shape)
    seed = tf.constant([0, 0], tf.int32)
    self.terms(x, seed, "generator", training=False)
    if self.has_discriminators:
      self.terms(x, seed, "discriminator", training=False)
    self.posterior_mean(x)

  @property
  def generator_variables(self):
    """theta and phi: encoder, posterior (flow conditioners) and decoder weights."""
    return (self.encoder.trainable_variables + self.posterior.trainable_variables
            + self.decoder.trainable_variables)

  @property
  def discriminator_variables(self):
    """psi1 and psi2."""
    if not self.has_discriminators:
      return []
    return self.f1.trainable_variables + self.f2.trainable_variables

  def encode(self, x, seed, training=False):
    """z ~ q(z|x) reparameterised and log q(z|x): x [b,H,W,C] -> ([b,D], [b])."""
    s = noise.split(seed, 2)
    h = self.encoder(x, seed=s[0], training=training)
    eps = noise.normal([tf.shape(x)[0], self.latent_dim] if x.shape[0] is None
                       else [x.shape[0], self.latent_dim], s[1], x.dtype)
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
    draw = noise.uniform if law == "uniform" else noise.normal
    return self.likelihood.rsample(params, noise=draw(shape, seed, params.dtype))

  def sample_prior(self, batch_size, seed, dtype=tf.float32):
    """z ~ p(z) = N(0, I): [batch_size, D]."""
    return noise.normal([batch_size, self.latent_dim], seed, dtype)

  # ---- objective terms -------------------------------------------------------

  def terms(self, x, seed, mode, training=True):
    """Per-example terms of eqs. (1), (5), (6), (11) for one batch.

    Args:
      x: [b, H, W, C] data batch (b static and even when discriminators are used).
      seed: int32 [2].
      mode: "generator" or "discriminator".
      training: applies dropout.
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
    s = noise.split(seed, 8)
    sg = (lambda t: t) if gen else tf.stop_gradient
    t = Terms(x=x)

    # Encoder branch: x ~ q(x), z = z_phi(x, eps).
    need_enc = (not gen) or obj.needs_encoder_branch
    if need_enc:
      zq, log_qzq = self.encode(x, s[0], training=training)
      t.zq, t.log_qzq = sg(zq), sg(log_qzq)
      if gen:
        params = self.decode(t.zq, seed=s[1], training=training)
        t.log_px_given_zq = self.likelihood.log_prob(params, x)
        t.log_pzq = prior_log_prob(t.zq)

    # Decoder branch: z ~ p(z), x' = x_theta(z, xi).
    need_dec = self.has_discriminators and ((not gen) or obj.needs_prior_log_q)
    if need_dec:
      t.zp = self.sample_prior(b, s[2], x.dtype)
      t.xp = sg(self.decoder_rsample(self.decode(t.zp, seed=s[3], training=training), s[4]))
      if gen:
        t.log_q_prior = self.posterior_log_prob(t.xp, t.zp, seed=s[5], training=training)

    # Discriminators: f1 of eq. (5), f2 of eq. (6).
    if use_eq5 and t.zq is not None:
      t.f1_real = self.f1(x, t.zq, seed=s[6], training=training)
    if use_eq6 and t.xp is not None:
      t.f2_real = self.f2(t.xp, t.zp, seed=s[7], training=training)
    if not gen:
      if use_eq5:
        t.f1_fake = self.f1(pair_swap(t.xp), t.zp, seed=noise.fold_in(s[6], 1),
                            training=training)
      if use_eq6:
        t.f2_fake = self.f2(x, pair_swap(t.zq), seed=noise.fold_in(s[7], 1),
                            training=training)
    return t

  def generator_loss(self, terms):
    """[b] loss of theta, phi for the configured objective."""
    return self.objective.generator(terms)

  def discriminator_loss(self, terms):
    """[b] loss of psi1, psi2 (eqs. 5, 6); None for the VAE baseline."""
    return losses.discriminator_loss(self.objective, terms)

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
          h, seed=noise.fold_in(seed, i), sample_shape=(chunk_size,))  # [c,b,D], [c,b]
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
        lambda i, *_: i < num_chunks, body,
        (tf.constant(0, tf.int32), tf.fill([b], neg_inf), tf.zeros([b], x.dtype)))
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
def build_model(image_shape, latent_dim=32, objective="asvae", encoder=networks.mlp_encoder,
                decoder=networks.mlp_decoder, discriminator=networks.joint_discriminator,
                likelihood=heads.BernoulliLikelihood):
  """Gin factory of `ASVAE` (Keras 3 layers cannot be gin-decorated classes)."""
  return ASVAE(image_shape, latent_dim=latent_dim, objective=objective, encoder=encoder,
               decoder=decoder, discriminator=discriminator, likelihood=likelihood)


def build_for_data(splits):
  """The gin-configured model for `splits` (data.Splits), built (all variables created).

  A model that cannot take images of the data's shape (e.g. a 32x32 conv config on
  28x28 data) raises config.ConfigError with one readable line.
  """
  from asvae_tf import config  # pylint: disable=g-import-not-at-top
  try:
    mdl = build_model(image_shape=splits.image_shape)
    mdl.build_all()
  except (ValueError, tf.errors.InvalidArgumentError) as e:
    raise config.ConfigError(
        f"the configured model does not fit images of shape {splits.image_shape} "
        f"(dataset {splits.name!r}): {' '.join(str(e).split())[:300]}") from None
  return mdl
