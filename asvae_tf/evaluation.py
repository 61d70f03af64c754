"""Evaluates a trained model with the metrics of section 5.1 (gin name `evaluate`).

`evaluate(model_dir)` rebuilds the model from the parsed gin config (normally
model_dir/operative_config.gin plus overrides), restores a checkpoint, and on the
test split (or the validation split) computes

  * the negative ELBO of eq. (1) and the IWAE bound with k samples (nats per image;
    both from the SAME k posterior samples per image, so iwae_nll <= neg_elbo for
    every image), with standard errors over images;
  * for Gaussian heads (natural images) both again in bits/dim with the
    discretised likelihood of section 5.1 (the nats figures then use it too);
  * reconstruction RMSE (decoder mean at the posterior mean, clipped to [0, 1]),
    in grey levels of [0, 255] for natural images (256 |x - x_hat|: one level is
    1/256 of the unit interval) and on [0, 1] for binary data;
  * sample quality of `num_generated` decoder means of prior draws: Inception Score
    and FID against the split with an InceptionV3 read from `inception_weights`,
    and for MNIST the classifier score and FID in the feature space of the CNN of
    `classifier_dir` (tools/train_classifier.py), with its test accuracy.

It writes OUTPUT/metrics.json (OUTPUT = model_dir/eval by default; written
atomically) and TensorBoard scalars under model_dir/summaries/eval at the
checkpoint's step. Sample-quality metrics whose network is not configured are
skipped with a one-line note (their reason is recorded under "skipped");
a configured file that is missing is an error before any work starts.
"""

import json
import math
import os
import time

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from asvae_tf import config
from asvae_tf import data
from asvae_tf import eval_lib
from asvae_tf import export_lib
from asvae_tf import feature_nets
from asvae_tf import model as model_lib
from asvae_tf import rng

METRICS_FILE = "metrics.json"


class _Progress:
  """Logs `what i/n ... ETA` about every 10% of a long loop."""

  def __init__(self, what, total):
    self.what, self.total, self.start, self.next = what, total, time.time(), 0.1

  def update(self, done):
    if done / self.total >= self.next or done == self.total:
      elapsed = time.time() - self.start
      eta = elapsed * (self.total - done) / max(done, 1)
      logging.info(
        "%s: %d/%d (%.0f s elapsed, ETA %.0f s)", self.what, done, self.total, elapsed, eta
      )
      self.next = math.floor(done / self.total * 10 + 1) / 10


def _batches(x, batch_size):
  for i in range(0, len(x), batch_size):
    yield i // batch_size, x[i : i + batch_size]


def likelihood_bounds(
  mdl, images, num_importance_samples, seed, batch_size=100, chunk_size=100, discretized=False
):
  """Per-image IWAE bound and k-sample ELBO, float64 [N] each (log-likelihoods, nats).

  images: float32 [N, H, W, C] (binary, or bin centres when discretized).
  Batch j uses the seed fold_in(seed, j).
  """
  fn = tf.function(
    lambda x, s: mdl.importance_bounds(
      x, num_importance_samples, s, chunk_size=chunk_size, discretized=discretized
    ),
    autograph=False,
  )  # explicit tf.while_loop; autograph only slows tracing
  iwae, elbo = [], []
  progress = _Progress(f"IWAE k={num_importance_samples}", len(images))
  for j, x in _batches(images, batch_size):
    a, b = fn(tf.constant(x), rng.fold_in(seed, j))
    iwae.append(a.numpy().astype(np.float64))
    elbo.append(b.numpy().astype(np.float64))
    progress.update(min((j + 1) * batch_size, len(images)))
  return np.concatenate(iwae), np.concatenate(elbo)


def ratio_diagnostics(mdl, images, seed, batch_size=100):
  """Exact KL term and what f1 charges for it, on `images` (one z per image).

  Returns {"kl_exact": mean of log q(z|x) - log p(z), z ~ q(z|x) (the KL of eq. 1,
  exact density, one-sample Monte Carlo)} plus, when the model has an f1,
  "ratio_f1_mean" (mean f1(x, z), the residual included) and "ratio_gap"
  (ratio_f1_mean - kl_exact: 0 for an f1 that charges the KL in full, up to the
  x-only term log q(x) - log p_theta(x) of f1*).
  """
  has_f1 = mdl.has_discriminators and "eq5" in mdl.objective.discriminators

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
  """Decoder means at the posterior means, clipped to [0, 1]: float32 [N, H, W, C]."""
  fn = tf.function(lambda x: tf.clip_by_value(mdl.reconstruct(x), 0.0, 1.0), autograph=False)
  return np.concatenate([fn(tf.constant(x)).numpy() for _, x in _batches(images, batch_size)])


def generate(mdl, num, seed, batch_size=500):
  """`num` decoder means of prior draws, clipped to [0, 1]: float32 [num, H, W, C]."""
  fn = tf.function(lambda n, s: tf.clip_by_value(mdl.sample(n, s)[0], 0.0, 1.0), autograph=False)
  out = []
  for j, start in enumerate(range(0, num, batch_size)):
    out.append(fn(min(batch_size, num - start), rng.fold_in(seed, j)).numpy())
  return np.concatenate(out)


def sample_quality(net, generated, real, num_splits):
  """(score mean, score std, score of the real images, FID real vs generated)."""
  probs_gen, feats_gen = net.predict(generated)
  probs_real, feats_real = net.predict(real)
  score, score_std = eval_lib.inception_score(probs_gen, num_splits)
  real_score, _ = eval_lib.inception_score(probs_real, num_splits)
  return score, score_std, real_score, eval_lib.fid_from_features(feats_real, feats_gen)


def _is_discretized(mdl):
  return hasattr(mdl.likelihood, "discretized_log_prob")


def _write_json_atomic(obj, path):
  tmp = path + ".partial"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


@gin.configurable("evaluate", denylist=["model_dir", "checkpoint"])
def evaluate(
  model_dir,
  checkpoint=None,
  split="test",
  batch_size=100,
  max_examples=None,
  num_importance_samples=1000,
  iwae_chunk_size=100,
  num_generated=10000,
  num_splits=10,
  seed=0,
  inception_weights=None,
  classifier_dir=None,
  output_dir=None,
):
  """Evaluates a checkpoint of model_dir; returns the metrics dict it writes.

  Args:
    model_dir: training model_dir (checkpoints/, best/, summaries/).
    checkpoint: None/"latest", "best", or a checkpoint prefix.
    split: "test" (binarised once for MNIST) or "validation".
    batch_size: images per likelihood batch.
    max_examples: evaluate only the first N images of the split (None = all).
    num_importance_samples: k of the IWAE bound (the ELBO uses the same k samples).
    iwae_chunk_size: samples per chunk (memory ~ batch_size * chunk_size images).
    num_generated: generated images for IS / FID / classifier metrics (0 = skip).
    num_splits: splits of the Inception / classifier score.
    seed: evaluation seed (posterior samples, generated images).
    inception_weights: local InceptionV3 weights file (None = skip IS/FID).
    classifier_dir: directory from tools/train_classifier.py (None = skip).
    output_dir: where metrics.json goes (default model_dir/eval).
  """
  if split not in ("test", "validation"):
    raise config.ConfigError(f"evaluate.split must be 'test' or 'validation', got {split!r}")
  for name, value, minimum in (
    ("num_importance_samples", num_importance_samples, 1),
    ("batch_size", batch_size, 1),
    ("iwae_chunk_size", iwae_chunk_size, 1),
    ("num_generated", num_generated, 0),
  ):
    if not isinstance(value, int) or value < minimum:
      raise config.ConfigError(f"evaluate.{name} must be an integer >= {minimum}, got {value!r}")
  if not isinstance(num_splits, int) or num_splits < 1:
    raise config.ConfigError(f"evaluate.num_splits must be an integer >= 1, got {num_splits!r}")
  if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
    raise config.ConfigError(
      f"evaluate.max_examples must be None or an integer >= 1, got {max_examples!r}"
    )
  if num_generated and num_generated < max(2, num_splits):
    raise config.ConfigError(
      f"evaluate.num_generated={num_generated} must be 0 or >= max(2, num_splits={num_splits})"
    )
  checkpoint = export_lib.resolve_checkpoint(model_dir, checkpoint)
  nets, skipped = {}, {}
  if inception_weights:  # Fail before any work if a configured file is missing.
    nets["inception"] = feature_nets.InceptionNet(inception_weights)
  else:
    skipped["inception"] = "evaluate.inception_weights (--inception_weights) not set"
  if classifier_dir:
    nets["classifier"] = feature_nets.Classifier(classifier_dir)
  else:
    skipped["classifier"] = "evaluate.classifier_dir (--classifier_dir) not set"
  if not num_generated:
    for key in nets:
      skipped[key] = "evaluate.num_generated = 0"
    nets = {}

  splits = data.load_splits()
  raw = splits.test if split == "test" else splits.validation
  if max_examples:
    raw = raw[:max_examples]
  if len(raw) == 0:
    raise data.DataError(f"the {split} split of {splits.name} is empty")
  eval_images = raw
  if splits.binary:  # Binary likelihoods are evaluated on data binarised once.
    eval_images = (
      splits.test_binarized[: len(raw)]
      if split == "test" and splits.test_binarized is not None
      else data._binarize_once(raw)
    )  # pylint: disable=protected-access
  x = data.to_float(eval_images, splits.binary)
  real = data.to_float(raw, splits.binary)  # grey levels (binary) or bin centres
  if nets and len(real) < max(2, num_splits):
    raise config.ConfigError(
      f"IS/FID need at least max(2, evaluate.num_splits={num_splits}) "
      f"real images; the {split} split has {len(real)}"
    )
  if "classifier" in nets and nets["classifier"].image_shape != splits.image_shape:
    raise config.ConfigError(
      f"classifier expects images {nets['classifier'].image_shape}, data has {splits.image_shape}"
    )

  mdl = model_lib.build_for_data(splits)
  step = export_lib.restore_model(mdl, checkpoint)
  discretized = _is_discretized(mdl)
  logging.info(
    "evaluating %s (step %d) on %d %s images of %s", checkpoint, step, len(x), split, splits.name
  )
  seeds = rng.split(tf.constant([seed, 7], tf.int32), 2)
  metrics = dict(
    checkpoint=checkpoint,
    step=step,
    dataset=splits.name,
    split=split,
    num_examples=int(len(x)),
    data=splits.note,
    num_importance_samples=num_importance_samples,
    likelihood="discretized_gaussian"
    if discretized
    else type(mdl.likelihood).__name__.replace("Likelihood", "").lower(),
    skipped=skipped,
    seconds={},
  )

  t0 = time.time()
  iwae, elbo = likelihood_bounds(
    mdl, x, num_importance_samples, seeds[0], batch_size, iwae_chunk_size, discretized
  )
  if not (np.all(np.isfinite(iwae)) and np.all(np.isfinite(elbo))):
    raise FloatingPointError(
      f"non-finite likelihood bound for {np.sum(~np.isfinite(iwae))} "
      f"images: the checkpoint is broken"
    )
  metrics["neg_elbo"], metrics["neg_elbo_se"] = eval_lib.mean_and_standard_error(-elbo)
  metrics["iwae_nll"], metrics["iwae_nll_se"] = eval_lib.mean_and_standard_error(-iwae)
  if discretized:
    dims = int(np.prod(splits.image_shape))
    for key, bpd_key in (("neg_elbo", "neg_elbo_bits_per_dim"), ("iwae_nll", "iwae_bits_per_dim")):
      metrics[bpd_key] = float(eval_lib.nats_to_bits_per_dim(metrics[key], dims))
      metrics[bpd_key + "_se"] = float(eval_lib.nats_to_bits_per_dim(metrics[key + "_se"], dims))
  metrics.update(ratio_diagnostics(mdl, x, rng.fold_in(seeds[0], 10**6), batch_size))
  metrics["seconds"]["likelihood"] = time.time() - t0

  t0 = time.time()
  # Grey levels: binary data in [0, 1]; 8-bit data has x = (i + 1/2) / 256, so one
  # grey level is 1/256 and 256 (x - x_hat) is the error in grey levels of [0, 255].
  scale = 1.0 if splits.binary else 256.0
  metrics["rmse"] = eval_lib.rmse(x, reconstructions(mdl, x, batch_size), scale=scale)
  metrics["rmse_pixel_scale"] = "[0, 1]" if splits.binary else "[0, 255]"
  metrics["seconds"]["rmse"] = time.time() - t0

  if nets:
    t0 = time.time()
    generated = generate(mdl, num_generated, seeds[1])
    metrics["num_generated"] = num_generated
    metrics["seconds"]["generate"] = time.time() - t0
  for key, net in nets.items():
    t0 = time.time()
    logging.info("%s metrics on %d generated and %d real images", key, num_generated, len(real))
    score, std, real_score, fid = sample_quality(net, generated, real, num_splits)
    prefix = "inception_score" if key == "inception" else "classifier_score"
    metrics[prefix], metrics[prefix + "_std"], metrics[prefix + "_real"] = score, std, real_score
    metrics["fid" if key == "inception" else "classifier_fid"] = fid
    metrics["seconds"][key] = time.time() - t0
  if "classifier" in nets:
    metrics["classifier_test_accuracy"] = nets["classifier"].metadata.get("test_accuracy")
    metrics["classifier_dir"] = classifier_dir
  if "inception" in nets:
    metrics["inception_weights"] = inception_weights

  out = output_dir or os.path.join(model_dir, "eval")
  os.makedirs(out, exist_ok=True)
  _write_json_atomic(metrics, os.path.join(out, METRICS_FILE))
  writer = tf.summary.create_file_writer(os.path.join(model_dir, "summaries", "eval"))
  with writer.as_default(step=step):
    for k, v in metrics.items():
      if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
        tf.summary.scalar(f"eval/{k}", v)
    if nets:
      tf.summary.image("eval/generated", generated[:16], max_outputs=16)
  writer.flush()
  metrics["metrics_file"] = os.path.join(out, METRICS_FILE)
  return metrics


def format_table(metrics):
  """Human-readable table of a metrics dict (the CLI's output)."""
  rows = [
    ("checkpoint", f"{metrics['checkpoint']} (step {metrics['step']})"),
    ("data", f"{metrics['dataset']} {metrics['split']}, {metrics['num_examples']} images"),
    ("-ELBO (eq. 1)", f"{metrics['neg_elbo']:.3f} +- {metrics['neg_elbo_se']:.3f} nats"),
    (
      f"IWAE NLL (k={metrics['num_importance_samples']})",
      f"{metrics['iwae_nll']:.3f} +- {metrics['iwae_nll_se']:.3f} nats",
    ),
  ]
  if "iwae_bits_per_dim" in metrics:
    rows += [
      (
        "-ELBO bits/dim",
        f"{metrics['neg_elbo_bits_per_dim']:.4f} +- {metrics['neg_elbo_bits_per_dim_se']:.4f}",
      ),
      (
        "IWAE bits/dim",
        f"{metrics['iwae_bits_per_dim']:.4f} +- {metrics['iwae_bits_per_dim_se']:.4f}",
      ),
    ]
  rows.append((f"RMSE (pixels in {metrics['rmse_pixel_scale']})", f"{metrics['rmse']:.4f}"))
  if "inception_score" in metrics:
    rows += [
      (
        "Inception Score",
        f"{metrics['inception_score']:.3f} +- "
        f"{metrics['inception_score_std']:.3f} (real data "
        f"{metrics['inception_score_real']:.3f})",
      ),
      ("FID", f"{metrics['fid']:.3f}"),
    ]
  if "classifier_score" in metrics:
    rows += [
      (
        "classifier score",
        f"{metrics['classifier_score']:.3f} +- "
        f"{metrics['classifier_score_std']:.3f} (real data "
        f"{metrics['classifier_score_real']:.3f})",
      ),
      ("classifier FID", f"{metrics['classifier_fid']:.3f}"),
      ("classifier test accuracy", f"{metrics['classifier_test_accuracy']:.4f}"),
    ]
  for key, reason in metrics.get("skipped", {}).items():
    rows.append((f"{key} metrics", f"skipped: {reason}"))
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
