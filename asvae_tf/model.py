"""The AS-VAE model: encoder + posterior, decoder + likelihood head, two joint
discriminators, and the per-example terms every objective is built from.

Shapes: images x [b, H, W, C] float in [0, 1]; codes z [b, D]. The prior is
p(z) = N(0, I_D). All randomness comes from stateless seeds (int32 [2]) through
`rng`, so a step is a pure function of (weights, batch, seed) and does not
depend on how the global batch is split over replicas.

`ASVAE.terms` evaluates the per-example terms of eqs. (1), (5), (6), (11) (terms.py);
`losses` turns them into the objectives; `ratios` holds the 'joint' / 'explicit'
estimators of the log-ratios f1, f2.
"""

import math

import keras
import tensorflow as tf

from asvae_tf import errors
from asvae_tf import flows
from asvae_tf import gin_config
from asvae_tf.dists import likelihoods
from asvae_tf import losses
from asvae_tf import nets
from asvae_tf import rng
from asvae_tf import ratios
from asvae_tf import terms as terms_lib
from asvae_tf.nets.layers import constant_row
from asvae_tf.terms import Terms, pair_swap  # noqa: F401  (re-exported)


prior_log_prob = ratios.prior_log_prob  # log N(z; 0, I) summed over the code, [b]


class ASVAE(keras.Model):
  """AS-VAE (and its -r / -g variants and the VAE baseline) as one Keras 3 model.

  Args:
    image_shape: (H, W, C) of the data.
    latent_dim: D.
    objective: "asvae", "asvae_r", "asvae_g" or "vae" (see `losses`).
    encoder, decoder, discriminator: network factories (gin: @mlp_encoder, ...).
    likelihood: a `dists.likelihoods` class (gin: @bernoulli_likelihood, ...).
    ratio_estimator: "joint" (f = network(x, z), the paper) or "explicit" (explicit
      part + learned residual, see `ratios`), for f1 and (unless f2_estimator is
      set) f2.
    f2_estimator: None (same as ratio_estimator), "joint" or "explicit".
    f1_residual_inputs: "x" (the residual of an explicit f1 sees x only; its z input
      is held at 0), "xz", or "none" (f1 = its explicit part; eq. (5) trains nothing;
      theta, phi train exactly as with "x": `ratios`).
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
    f2_input_noise: sigma >= 0 of the Gaussian instance noise added to every image the
      x-marginal discriminator D of an explicit f2 sees (generated and data alike; see
      `ratios`, "Instance noise on D"). 0: none (the default).
    f2_decoder_weight: lambda > 0 on D(x') + h(z') in the generator loss (explicit f2;
      1 is eq. (11); ignored without f2): `ratios`, "Weight of the decoder's ...".

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
    encoder=nets.mlp_encoder,
    decoder=nets.mlp_decoder,
    discriminator=nets.joint_discriminator,
    likelihood=likelihoods.BernoulliLikelihood,
    ratio_estimator="joint",
    f2_estimator=None,
    f1_residual_inputs="x",
    f2_marginal_samples=1,
    generator_pass_dropout=True,
    r1_gamma=0.0,
    f2_decoder_gradient=None,
    f2_input_noise=0.0,
    f2_decoder_weight=1.0,
    name="asvae",
  ):
    super().__init__(name=name)
    f2_estimator, f2_decoder_gradient = ratios.check_settings(
      ratio_estimator, f2_estimator, f1_residual_inputs, f2_decoder_gradient,
      f2_marginal_samples, r1_gamma, f2_input_noise,
    )  # fmt: skip
    self.image_shape = tuple(int(s) for s in image_shape)
    self.latent_dim = int(latent_dim)
    self.objective = losses.get_objective(objective)
    ratios.check_f2_use(objective, "eq6" in self.objective.discriminators, f2_estimator,
                        f2_input_noise, f2_decoder_weight)  # fmt: skip
    self.f1_explicit = ratio_estimator == "explicit"
    self.f2_explicit = f2_estimator == "explicit"
    self.f1_residual_inputs = f1_residual_inputs
    self.f2_marginal_samples = int(f2_marginal_samples)
    self.generator_pass_dropout = bool(generator_pass_dropout)
    self.r1_gamma = float(r1_gamma)
    self.f2_decoder_gradient = f2_decoder_gradient
    self.f2_input_noise = float(f2_input_noise)
    self.f2_decoder_weight = float(f2_decoder_weight)
    self.likelihood = likelihood()
    h, w, c = self.image_shape
    self.encoder = encoder(name="encoder")
    # The posterior (flow, log-determinants, inverse) computes in the variable dtype: float32
    # under a mixed policy, whose encoder / decoder / discriminators compute in 16 bits.
    self.posterior = flows.Posterior(
      self.latent_dim, name="posterior", dtype=self.dtype_policy.variable_dtype
    )
    self.decoder = decoder(output_shape=(h, w, c * self.likelihood.num_params), name="decoder")
    # An explicit f1 without residual ('none') is its explicit part: eq. (5) trains nothing.
    self.learns_f1 = "eq5" in self.objective.discriminators and f1_residual_inputs != "none"
    self.has_discriminators = self.learns_f1 or "eq6" in self.objective.discriminators
    self.f1 = None
    if self.has_discriminators:
      f1 = discriminator(name="f1")  # joint f1, or the residual of an explicit f1
      # 'none': untracked, built once for its initial draw, then dropped (see `f1_logit`)
      object.__setattr__(self, "_f1_init_only", None if self.learns_f1 else f1)
      self.f1 = f1 if self.learns_f1 else None
      self.f2 = discriminator(name="f2")  # joint f2, or D(x) of an explicit f2
      if self.f2_explicit:
        self.f2_z = discriminator(name="f2_z")  # h(z) of an explicit f2

  # ---- building blocks -------------------------------------------------------

  def build_all(self):
    """Creates every variable by one pass on a dummy batch of 2."""
    x = tf.zeros((2,) + self.image_shape, self.variable_dtype)
    seed = tf.constant([0, 0], tf.int32)
    self.terms(x, seed, "generator", training=False)
    if self.has_discriminators:
      self.terms(x, seed, "discriminator", training=False)
    self.posterior_mean(x)
    object.__setattr__(self, "_f1_init_only", None)  # only its initial draw mattered

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
    out = (self.f1.trainable_variables if self.f1 is not None else []) + (
      self.f2.trainable_variables
    )
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
    if self.f1 is not None and self.f1_explicit and self.f1_residual_inputs == "x":
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
    explicit = ratios.explicit_f1(log_q, prior_log_prob(z))
    if self.f1 is None:  # f1_residual_inputs = 'none'
      shadow = getattr(self, "_f1_init_only", None)
      if shadow is not None and not shadow.built:
        shadow(x, constant_row(z))  # its initial draw, as with 'x': same init for the rest
      return explicit
    z_in = z if self.f1_residual_inputs == "xz" else constant_row(z)
    residual = self.f1(x, z_in, seed=seed, training=training)
    return explicit + residual_weight * residual

  def f2_residual(self, x, z, seed=None, training=False):
    """D(x) + h(z) of an explicit f2, [b]."""
    s = [None, None] if seed is None else [rng.fold_in(seed, i) for i in (2, 3)]
    return self.f2(x, constant_row(z), seed=s[0], training=training) + self.f2_z(
      constant_row(x), z, seed=s[1], training=training
    )

  # ---- objective terms -------------------------------------------------------

  def terms(self, x, seed, mode, training=True, adversarial_weight=1.0):
    """Per-example terms of eqs. (1), (5), (6), (11) for one batch (`terms.compute`)."""
    return terms_lib.compute(self, x, seed, mode, training, adversarial_weight)

  def terms_shared(self, x, seed, training=True, adversarial_weight=1.0):
    """(generator Terms, discriminator Terms) of one shared pass (`terms.compute_shared`)."""
    return terms_lib.compute_shared(self, x, seed, training, adversarial_weight)

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


# Gin factory `model` of ASVAE (Keras 3 layers cannot be gin-decorated classes).
build_model = gin_config.factory(ASVAE, "model", denylist=["image_shape"])


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
