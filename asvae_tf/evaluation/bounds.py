"""The TF loops over a trained model that evaluation needs, batch by batch.

Each function compiles one `tf.function` over a model method and runs it eagerly over
the images in batches (images: float32 [N, H, W, C] in [0, 1]; seeds: int32 [2],
batch j of a seeded loop uses `rng.fold_in(seed, j)`, so results do not depend on
anything but the seed and the batch size):

  * `likelihood_bounds`: per-image IWAE bound and k-sample ELBO (log-likelihoods, nats);
  * `refine_proposal`: fits the encoder to the images with the decoder frozen, so that
    a later `likelihood_bounds` is a tighter bound on the same model's likelihood;
  * `ratio_diagnostics`: the exact KL term of eq. (1) and what f1 charges for it;
  * `reconstructions`: decoder means at the posterior means;
  * `generate`: decoder means of prior draws.
"""

import keras
import numpy as np
import tensorflow as tf

from asvae_tf import model as model_lib
from asvae_tf import rng
from asvae_tf.progress import Progress


def _batches(x, batch_size):
  """(j, x[j * batch_size : (j + 1) * batch_size]) for j = 0, 1, ...; the last may be short."""
  for i in range(0, len(x), batch_size):
    yield i // batch_size, x[i : i + batch_size]


def likelihood_bounds(
  mdl, images, num_importance_samples, seed, batch_size=100, chunk_size=100, discretized=False
):
  """Per-image IWAE bound and k-sample ELBO, float64 [N] each (log-likelihoods, nats).

  Both come from the SAME k = num_importance_samples posterior samples per image, so
  iwae >= elbo image by image.

  Args:
    mdl: a built, restored `model.ASVAE`.
    images: float32 [N, H, W, C] (binary, or bin centres when discretized).
    num_importance_samples: k.
    seed: int32 [2]; batch j uses the seed fold_in(seed, j).
    batch_size: images per batch.
    chunk_size: samples per chunk (memory ~ batch_size * chunk_size images).
    discretized: use the discretised likelihood of 8-bit pixels (Gaussian heads).
  Returns:
    (iwae [N], elbo [N]), float64.
  """
  fn = tf.function(
    lambda x, s: mdl.importance_bounds(
      x, num_importance_samples, s, chunk_size=chunk_size, discretized=discretized
    ),
    autograph=False,
  )  # explicit tf.while_loop; autograph only slows tracing
  iwae, elbo = [], []
  progress = Progress(f"IWAE k={num_importance_samples}", len(images))
  for j, x in _batches(images, batch_size):
    a, b = fn(tf.constant(x), rng.fold_in(seed, j))
    iwae.append(a.numpy().astype(np.float64))
    elbo.append(b.numpy().astype(np.float64))
    progress.update(min((j + 1) * batch_size, len(images)))
  return np.concatenate(iwae), np.concatenate(elbo)


def refine_proposal(mdl, images, passes, learning_rate, seed, batch_size=100):
  """Fits phi (encoder and posterior) to `images` by the one-sample ELBO of eq. (1), with
  theta (the decoder) frozen: Adam, `passes` shuffled passes in batches of batch_size.

  The IWAE bound E log (1/k) sum_i p_theta(x, z_i) / q(z_i|x), z_i ~ q, is below
  log p_theta(x) for ANY proposal q. theta does not move, so a `likelihood_bounds` after
  this bounds the same model's likelihood, only more tightly. What it gains is a lower bound
  on the part of the bound's gap that is due to the encoder's amortisation (Cremer et al.,
  2018, "Inference suboptimality in variational autoencoders", fit each image's own
  posterior; this fits one network to all the images, for a few passes). Fitting the proposal to test
  images is evaluation, not training: no weight of the model p_theta changes.

  Args:
    mdl: a built, restored `model.ASVAE`; its encoder and posterior variables change
      in place (restore the checkpoint to undo).
    images: float32 [N, H, W, C].
    passes: number of passes over the images.
    learning_rate: Adam's learning rate.
    seed: int32 [2], split in two: pass p's order is the argsort of uniforms from
      fold_in(first, p), step i's posterior noise comes from fold_in(second, i).
    batch_size: images per step.
  Returns:
    float64 [passes]: the mean one-sample -ELBO (nats) of each pass, during it.
  Raises:
    ValueError: passes < 0, learning_rate <= 0 or batch_size < 1.
  """
  if passes < 0 or not learning_rate > 0 or batch_size < 1:
    raise ValueError(
      f"refine_proposal needs passes >= 0, learning_rate > 0 and batch_size >= 1, got "
      f"{passes}, {learning_rate}, {batch_size}"
    )
  phi = mdl.encoder.trainable_variables + mdl.posterior.trainable_variables
  optimizer = keras.optimizers.Adam(learning_rate)

  def step(x, s):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(mdl.negative_elbo(x, s))
    optimizer.apply_gradients(zip(tape.gradient(loss, phi), phi))
    return loss

  fn, (order_seed, noise) = tf.function(step, autograph=False), rng.split(seed, 2)
  per_pass, i = [], 0
  progress = Progress("refining the proposal", passes * len(images))
  for p in range(passes):
    order = tf.argsort(
      tf.random.stateless_uniform([len(images)], rng.fold_in(order_seed, p))
    ).numpy()
    losses = []
    for _, x in _batches(images[order], batch_size):
      losses.append(float(fn(tf.constant(x), rng.fold_in(noise, i))) * len(x))
      i += 1
    per_pass.append(sum(losses) / len(images))
    progress.update((p + 1) * len(images))
  return np.array(per_pass, np.float64)


def ratio_diagnostics(mdl, images, seed, batch_size=100):
  """Exact KL term and what f1 charges for it, on `images` (one z per image).

  Args:
    mdl: a built, restored `model.ASVAE`.
    images: float32 [N, H, W, C].
    seed: int32 [2]; batch j uses fold_in(seed, j).
    batch_size: images per batch.
  Returns:
    {"kl_exact": mean of log q(z|x) - log p(z), z ~ q(z|x) (the KL of eq. 1,
    exact density, one-sample Monte Carlo)} plus, when the model has an f1,
    "ratio_f1_mean" (mean f1(x, z), the residual included) and "ratio_gap"
    (ratio_f1_mean - kl_exact: 0 for an f1 that charges the KL in full, up to the
    x-only term log q(x) - log p_theta(x) of f1*). Python floats.
  """
  has_f1 = "eq5" in mdl.objective.discriminators and (mdl.f1 is not None or mdl.f1_explicit)

  def batch(x, s):
    z, log_q = mdl.encode(x, s)
    kl = log_q - model_lib.prior_log_prob(z)
    f1 = mdl.f1_logit(x, z, log_q) if has_f1 else tf.zeros_like(kl)
    return tf.reduce_sum(kl), tf.reduce_sum(f1)

  fn = tf.function(batch, autograph=False)
  kl, f1 = 0.0, 0.0
  for j, x in _batches(images, batch_size):
    a, b = fn(tf.constant(x), rng.fold_in(seed, j))
    kl, f1 = kl + float(a), f1 + float(b)
  out = {"kl_exact": kl / len(images)}
  if has_f1:
    out["ratio_f1_mean"] = f1 / len(images)
    out["ratio_gap"] = out["ratio_f1_mean"] - out["kl_exact"]
  return out


def reconstructions(mdl, images, batch_size=100):
  """Decoder means at the posterior means, clipped to [0, 1].

  images: float32 [N, H, W, C] -> float32 [N, H, W, C].
  """
  fn = tf.function(lambda x: tf.clip_by_value(mdl.reconstruct(x), 0.0, 1.0), autograph=False)
  return np.concatenate([fn(tf.constant(x)).numpy() for _, x in _batches(images, batch_size)])


def generate(mdl, num, seed, batch_size=500):
  """`num` decoder means of prior draws, clipped to [0, 1]: float32 [num, H, W, C].

  seed: int32 [2]; batch j of batch_size draws uses fold_in(seed, j).
  """
  fn = tf.function(lambda n, s: tf.clip_by_value(mdl.sample(n, s)[0], 0.0, 1.0), autograph=False)
  out = []
  for j, start in enumerate(range(0, num, batch_size)):
    out.append(fn(min(batch_size, num - start), rng.fold_in(seed, j)).numpy())
  return np.concatenate(out)
