"""The per-example terms every objective is built from (`Terms`), computed for a model.

`compute(mdl, x, seed, mode)` evaluates, for one batch, what eqs. (1), (5), (6) and (11)
need (`ASVAE.terms` calls it):
  - "generator": what eq. (11) needs, with gradients flowing into theta, phi;
  - "discriminator": real/fake pairs of eqs. (5) and (6), with the encoder and
    decoder outputs stop-gradient'ed so only psi1, psi2 are trained;
  - "shared" (`compute_shared`, train.update_scheme = 'shared'): ONE encoder and decoder
    pass feeds both: the generator's terms as in "generator", and the discriminator's
    real/fake pairs on stop-gradient'ed copies of the same codes and samples.
Negative ("fake") pairs of eqs. (5)/(6) need independent partners: within each pair of
rows (2i, 2i+1) the partners are swapped (`pair_swap`), which pairs a code with an
independent draw and stays replica-invariant for even per-replica batches.

Seeds: `compute` splits its seed into 8 streams: 0 encoder, 1 decoder (data branch),
2 prior z, 3 decoder (prior branch), 4 decoder noise xi, 5 sleep-term encoder, 6 f1,
7 f2 (fixed: changing them changes every run's numbers).
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from asvae_tf import ratios
from asvae_tf import rng
from asvae_tf.nets.layers import constant_row


def pair_swap(t):
  """Swaps rows 2i and 2i+1 of t [b, ...] (b even): an independent partner per row."""
  b = t.shape[0]
  if b is not None and b % 2:
    raise ValueError(f"AS-VAE needs an even per-replica batch size, got {b}")
  shape = tf.shape(t)
  paired = tf.reshape(t, tf.concat([[-1, 2], shape[1:]], 0))
  return tf.reshape(tf.reverse(paired, axis=[1]), shape)


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


def f2_explicit_part(mdl, xp, zp, params_p, seed):
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
  k = mdl.f2_marginal_samples

  def e2(x_in):
    return mdl.likelihood.log_prob(params_fixed, x_in) - ratios.log_marginal_estimate(
      mdl, x_in, seed, k
    )

  return ratios.path_only(e2, xp)


def _with_r1(net_fn, inputs, want):
  """net_fn(*inputs), and its R1 norms when want (else None)."""
  if not want:
    return net_fn(*inputs), None
  return ratios.logit_and_input_grad_sq(net_fn, inputs)


def compute_shared(mdl, x, seed, training=True, adversarial_weight=1.0):
  """(generator Terms, discriminator Terms) from one encoder / decoder pass.

  The generator's Terms are exactly `compute(..., "generator")`'s, except that the
  encoder and decoder branches are always computed (the discriminators need both).
  The discriminator's Terms pair the same zq, zp and x' (stop-gradient'ed: eqs. (5), (6)
  train psi1, psi2 only) with their own network seeds (streams 6, 7 folded with 8), so
  their dropout masks are independent of the generator's. Against "alternating" (a
  discriminator pass, then a generator pass with its own draws) this saves one encoder
  + flow and one decoder forward pass per step, and the generator sees the
  discriminators of the START of the step (simultaneous updates) rather than the
  freshly updated ones.

  The decoder is deliberately NOT called once on [zq; zp] stacked, although the
  discriminators are (`_two_calls`): that call would wait for the encoder and the flow
  (zq), so the prior branch (x', the sleep term's encoder and flow inverse, D(x')) could
  no longer run beside the posterior branch. Measured on gin/mnist_fast.gin (one
  intra-op thread, 9 paired runs): 4% slower, slower in 8 of 9 (docs/results.md, "Speed").
  """
  obj = mdl.objective
  s = rng.split(seed, 8)
  t = Terms(x=x)
  zq, log_qzq = mdl.encode(x, s[0], training=training)
  t.zq, t.log_qzq = zq, log_qzq
  t.log_pzq = ratios.prior_log_prob(zq)
  if obj.needs_encoder_branch:
    params = mdl.decode(zq, seed=s[1], training=training)
    t.log_px_given_zq = mdl.likelihood.log_prob(params, x)
  t.zp = mdl.sample_prior(x.shape[0], s[2], x.dtype)
  params_p = mdl.decode(t.zp, seed=s[3], training=training)
  t.xp = mdl.decoder_rsample(params_p, s[4])
  if obj.needs_prior_log_q:
    x_sleep = tf.stop_gradient(t.xp) if mdl.f2_decoder_gradient == "marginal" else t.xp
    t.log_q_prior = mdl.posterior_log_prob(x_sleep, t.zp, seed=s[5], training=training)
  d_training = training and mdl.generator_pass_dropout
  use_eq5 = "eq5" in obj.discriminators
  use_eq6 = "eq6" in obj.discriminators
  _generator_ratios(mdl, t, s, use_eq5, use_eq6, d_training, adversarial_weight, params_p)
  sg = tf.stop_gradient
  d = Terms(x=x, zq=sg(zq), log_qzq=sg(log_qzq), log_pzq=sg(t.log_pzq), zp=t.zp, xp=sg(t.xp))
  s_d = tf.concat([s[:6], tf.stack([rng.fold_in(s[6], 8), rng.fold_in(s[7], 8)])], 0)
  _discriminator_ratios(mdl, d, s_d, use_eq5, use_eq6, training, stacked=True)
  return t, d


def compute(mdl, x, seed, mode, training=True, adversarial_weight=1.0):
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
    `Terms`; only what `mdl.objective` needs in this mode is computed.
  """
  if mode not in ("generator", "discriminator"):
    raise ValueError(f"mode must be 'generator' or 'discriminator', got {mode!r}")
  obj = mdl.objective
  gen = mode == "generator"
  use_eq5 = "eq5" in obj.discriminators
  use_eq6 = "eq6" in obj.discriminators
  b = x.shape[0]
  s = rng.split(seed, 8)
  sg = (lambda t: t) if gen else tf.stop_gradient
  d_training = training and (mdl.generator_pass_dropout or not gen)
  t = Terms(x=x)

  # Encoder branch: x ~ q(x), z = z_phi(x, eps).
  need_enc = (not gen) or obj.needs_encoder_branch
  if need_enc:
    zq, log_qzq = mdl.encode(x, s[0], training=training)
    t.zq, t.log_qzq = sg(zq), sg(log_qzq)
    t.log_pzq = ratios.prior_log_prob(t.zq)
    if gen:
      params = mdl.decode(t.zq, seed=s[1], training=training)
      t.log_px_given_zq = mdl.likelihood.log_prob(params, x)

  # Decoder branch: z ~ p(z), x' = x_theta(z, xi).
  need_dec = mdl.has_discriminators and ((not gen) or obj.needs_prior_log_q)
  if need_dec:
    t.zp = mdl.sample_prior(b, s[2], x.dtype)
    params_p = mdl.decode(t.zp, seed=s[3], training=training)
    t.xp = sg(mdl.decoder_rsample(params_p, s[4]))
    if gen:  # the sleep term; "marginal" keeps its gradient to phi only
      x_sleep = tf.stop_gradient(t.xp) if mdl.f2_decoder_gradient == "marginal" else t.xp
      t.log_q_prior = mdl.posterior_log_prob(x_sleep, t.zp, seed=s[5], training=training)

  if gen:
    _generator_ratios(
      mdl, t, s, use_eq5, use_eq6, d_training, adversarial_weight, params_p if need_dec else None
    )
  else:
    _discriminator_ratios(mdl, t, s, use_eq5, use_eq6, d_training)
  return t


def _generator_ratios(mdl, t, s, use_eq5, use_eq6, d_training, weight, params_p):
  """f1(x, zq) and f2(xp, zp) as eq. (11) sees them."""
  if use_eq5 and t.zq is not None:
    t.f1_real = mdl.f1_logit(
      t.x, t.zq, t.log_qzq, seed=s[6], training=d_training, residual_weight=weight
    )
  if use_eq6 and t.xp is not None:
    weight = weight * mdl.f2_decoder_weight  # lambda (ratios: "Weight of the decoder's ...")
    if mdl.f2_explicit:
      x_d = ratios.noisy_input(t.xp, mdl.f2_input_noise, rng.fold_in(s[7], 13))
      t.f2_real = weight * mdl.f2_residual(x_d, t.zp, seed=s[7], training=d_training)
      if mdl.f2_decoder_gradient == "exact":  # E2 moves nothing in the other modes
        t.f2_explicit = f2_explicit_part(mdl, t.xp, t.zp, params_p, rng.fold_in(s[7], 4))
        t.f2_real += t.f2_explicit
    else:
      t.f2_real = weight * mdl.f2(t.xp, t.zp, seed=s[7], training=d_training)


def _two_calls(net_fn, first, second, seeds, r1_on, stacked):
  """net_fn on two input lists of the same batch b: ([b], [b], R1 norms [b] of the inputs
  at index r1_on (0 or 1), or None when r1_on is None).

  net_fn(*inputs, seed=...) must be per-example (no batch statistics). stacked: ONE call on
  the inputs concatenated along the batch (`compute_shared`: bigger matmuls, one weight
  cast per network under a mixed policy), with seeds[0]'s dropout masks for both halves;
  otherwise two calls with seeds[0] and seeds[1] (the alternating scheme's draws).
  """
  if stacked:
    both = [tf.concat([a, b], 0) for a, b in zip(first, second)]
    out, sq = _with_r1(lambda *a: net_fn(*a, seed=seeds[0]), both, r1_on is not None)
    out_a, out_b = tf.split(out, 2)
    return out_a, out_b, None if sq is None else tf.split(sq, 2)[r1_on]
  outs, sq = [], None
  for i, inputs in enumerate((first, second)):
    out, sq_i = _with_r1(lambda *a, i=i: net_fn(*a, seed=seeds[i]), inputs, r1_on == i)
    outs.append(out)
    sq = sq_i if r1_on == i else sq
  return outs[0], outs[1], sq


def _discriminator_ratios(mdl, t, s, use_eq5, use_eq6, training, stacked=False):
  """Real and fake logits of eqs. (5) and (6) (encoder/decoder outputs fixed); stacked:
  each network sees its two inputs in one call (`_two_calls`)."""
  want_r1 = mdl.r1_gamma > 0
  r1_on = 0 if want_r1 else None
  r1 = []
  if use_eq5 and mdl.learns_f1:  # (f1_residual_inputs 'none': nothing to train)
    x_fake, z_fake = pair_swap(t.xp), t.zp
    seeds = (s[6], rng.fold_in(s[6], 1))
    if mdl.f1_explicit:
      log_q_fake = tf.stop_gradient(mdl.posterior_log_prob(x_fake, z_fake))
      if mdl.f1_residual_inputs == "xz":
        real, fake = [t.x, t.zq], [x_fake, z_fake]
      else:  # x-only residual: z held at 0
        real, fake = [t.x], [x_fake]

      def residual(x_in, z_in=None, seed=None):
        z_in = constant_row(t.zq) if z_in is None else z_in
        return mdl.f1(x_in, z_in, seed=seed, training=training)

      res_real, res_fake, sq = _two_calls(residual, real, fake, seeds, r1_on, stacked)
      t.f1_real = ratios.explicit_f1(t.log_qzq, t.log_pzq) + res_real
      t.f1_fake = ratios.explicit_f1(log_q_fake, ratios.prior_log_prob(z_fake)) + res_fake
    else:
      t.f1_real, t.f1_fake, sq = _two_calls(
        lambda a, c, seed: mdl.f1(a, c, seed=seed, training=training),
        [t.x, t.zq], [x_fake, z_fake], seeds, r1_on, stacked,
      )  # fmt: skip
    r1.append(sq)
  if use_eq6:
    if mdl.f2_explicit:
      # Marginals of eq. (6): D on x' (label 1) vs data x (0); h on prior z (1) vs
      # aggregate-posterior z (0). R1 on D at the data.
      zeros_z = constant_row(t.zp)  # one zero row, broadcast inside the network
      sigma = mdl.f2_input_noise  # instance noise (ratios, "Instance noise on D")
      x_gen = ratios.noisy_input(t.xp, sigma, rng.fold_in(s[7], 11))
      x_data = ratios.noisy_input(t.x, sigma, rng.fold_in(s[7], 12))
      t.f2x_real, t.f2x_fake, sq = _two_calls(
        lambda a, seed: mdl.f2(a, zeros_z, seed=seed, training=training),
        [x_gen], [x_data], (s[7], rng.fold_in(s[7], 1)), None if r1_on is None else 1, stacked,
      )  # fmt: skip
      zeros_x = constant_row(t.x)
      t.f2z_real, t.f2z_fake, _ = _two_calls(
        lambda c, seed: mdl.f2_z(zeros_x, c, seed=seed, training=training),
        [t.zp], [pair_swap(t.zq)], (rng.fold_in(s[7], 2), rng.fold_in(s[7], 3)), None, stacked,
      )  # fmt: skip
    else:
      t.f2_real, t.f2_fake, sq = _two_calls(
        lambda a, c, seed: mdl.f2(a, c, seed=seed, training=training),
        [t.xp, t.zp], [t.x, pair_swap(t.zq)], (s[7], rng.fold_in(s[7], 1)), r1_on, stacked,
      )  # fmt: skip
    r1.append(sq)
  if want_r1:
    t.r1 = tf.add_n(r1)
