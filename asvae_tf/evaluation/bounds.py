"""The TF loops over a trained model that evaluation needs, batch by batch.

Each function compiles one `tf.function` over a model method and runs it eagerly over
the images in batches (images: float32 [N, H, W, C] in [0, 1]; seeds: int32 [2],
batch j of a seeded loop uses `rng.fold_in(seed, j)`, so results do not depend on
anything but the seed and the batch size):

  * `likelihood_bounds`: per-image IWAE bound and k-sample ELBO (log-likelihoods, nats);
  * `ratio_diagnostics`: the exact KL term of eq. (1) and what f1 charges for it;
  * `reconstructions`: decoder means at the posterior means;
  * `generate`: decoder means of prior draws.
"""

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
