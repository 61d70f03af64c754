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
  * sample quality of `num_generated` decoder means of prior draws: Inception Score and
    FID against the split (or `fid_reference_stats`) with the 2015 TF Inception graph of
    `inception_graph` (comparable) or Keras' InceptionV3 of `inception_weights` (not),
    and for MNIST the classifier score and FID in the feature space of the CNN of
    `classifier_dir` (tools/train_classifier.py), with its test accuracy.

It writes OUTPUT/metrics.json (OUTPUT = model_dir/eval by default; written
atomically) and TensorBoard scalars under model_dir/summaries/eval at the
checkpoint's step. Sample-quality metrics whose network is not configured are
skipped with a one-line note (their reason is recorded under "skipped");
a configured file that is missing is an error before any work starts.

`format_table(metrics)` is the command line's human-readable view of the result.
"""

import contextlib
import json
import os
import time

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from asvae_tf import data
from asvae_tf import errors
from asvae_tf import model as model_lib
from asvae_tf import rng
from asvae_tf.evaluation import bounds
from asvae_tf.evaluation import feature_nets
from asvae_tf.evaluation import inception_graph as inception_lib
from asvae_tf.evaluation import metrics as metrics_lib
from asvae_tf import checkpoints

METRICS_FILE = "metrics.json"


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
  inception_graph=None,
  fid_reference_stats=None,
  classifier_dir=None,
  output_dir=None,
):
  """Evaluates a checkpoint of model_dir; returns the metrics dict it writes.

  Args:
    model_dir: training model_dir (checkpoints/, best/, summaries/).
    checkpoint: None (checkpoints.DEFAULT: "best" if model_dir/best has one, else
      "latest"), "latest", "best", or a checkpoint prefix.
    split: "test" (binarised once for MNIST) or "validation".
    batch_size: images per likelihood batch.
    max_examples: evaluate only the first N images of the split (None = all).
    num_importance_samples: k of the IWAE bound (the ELBO uses the same k samples).
    iwae_chunk_size: samples per chunk (memory ~ batch_size * chunk_size images).
    num_generated: generated images for IS / FID / classifier metrics (0 = skip).
    num_splits: splits of the Inception / classifier score.
    seed: evaluation seed (posterior samples, generated images).
    inception_weights: local Keras InceptionV3 weights file (IS/FID NOT comparable).
    inception_graph: the 2015 TF Inception GraphDef (comparable IS/FID); neither set:
      IS/FID skipped. fid_reference_stats: TTUR mu/sigma .npz the FID is against.
    classifier_dir: directory from tools/train_classifier.py (None = skip).
    output_dir: where metrics.json goes (default model_dir/eval).
  Raises (before any work): errors.ConfigError (bad settings, a checkpoint of another
    model), errors.DataError, FileNotFoundError (checkpoint, configured network file);
    FloatingPointError: a non-finite likelihood bound.
  """
  _check_settings(
    split,
    batch_size,
    max_examples,
    num_importance_samples,
    iwae_chunk_size,
    num_generated,
    num_splits,
  )
  checkpoints.resolve_checkpoint(model_dir, checkpoint)  # no checkpoint: fail before any work
  inception = inception_lib.make_inception(inception_weights, inception_graph, fid_reference_stats)
  nets, skipped = _feature_nets(inception, classifier_dir, num_generated)
  splits, x, real = _load_images(split, max_examples, nets, num_splits)
  mdl = model_lib.build_for_data(splits)
  checkpoint, step = checkpoints.restore_latest_intact(mdl, model_dir, checkpoint)
  logging.info(
    "evaluating %s (step %d) on %d %s images of %s", checkpoint, step, len(x), split, splits.name
  )
  metrics = _header(mdl, checkpoint, step, splits, split, len(x), num_importance_samples, skipped)
  seeds = rng.split(rng.run_seed(seed, "evaluation"), 2)
  _add_model_metrics(
    metrics, mdl, x, splits, num_importance_samples, seeds[0], batch_size, iwae_chunk_size
  )
  generated = _add_sample_quality(metrics, mdl, nets, real, num_generated, num_splits, seeds[1])
  return _write_outputs(metrics, model_dir, output_dir, step, generated)


# ----------------------------------------------------------------------------
# The stages of `evaluate`, in order.
# ----------------------------------------------------------------------------


def _check_settings(
  split,
  batch_size,
  max_examples,
  num_importance_samples,
  iwae_chunk_size,
  num_generated,
  num_splits,
):
  """Raises errors.ConfigError naming the first bad `evaluate.*` setting."""
  if split not in ("test", "validation"):
    raise errors.ConfigError(f"evaluate.split must be 'test' or 'validation', got {split!r}")
  for name, value, minimum in (
    ("num_importance_samples", num_importance_samples, 1),
    ("batch_size", batch_size, 1),
    ("iwae_chunk_size", iwae_chunk_size, 1),
    ("num_generated", num_generated, 0),
  ):
    if not isinstance(value, int) or value < minimum:
      raise errors.ConfigError(f"evaluate.{name} must be an integer >= {minimum}, got {value!r}")
  if not isinstance(num_splits, int) or num_splits < 1:
    raise errors.ConfigError(f"evaluate.num_splits must be an integer >= 1, got {num_splits!r}")
  if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
    raise errors.ConfigError(
      f"evaluate.max_examples must be None or an integer >= 1, got {max_examples!r}"
    )
  if num_generated and num_generated < max(2, num_splits):
    raise errors.ConfigError(
      f"evaluate.num_generated={num_generated} must be 0 or >= max(2, num_splits={num_splits})"
    )


def _feature_nets(inception, classifier_dir, num_generated):
  """(nets, skipped): {"inception"/"classifier": feature net} and {key: why not run}.

  A configured network is loaded even when num_generated = 0, so a missing file is an
  error before any work starts.
  """
  nets, skipped = {}, {}
  if inception:
    nets["inception"] = inception
  else:
    skipped["inception"] = inception_lib.NOT_SET
  if classifier_dir:
    nets["classifier"] = feature_nets.Classifier(classifier_dir)
  else:
    skipped["classifier"] = "evaluate.classifier_dir (--classifier_dir) not set"
  if not num_generated:
    for key in nets:
      skipped[key] = "evaluate.num_generated = 0"
    nets = {}
  return nets, skipped


def _load_images(split, max_examples, nets, num_splits):
  """(splits, x, real) of the gin-configured data set.

  x: float32 [N, H, W, C], the images the likelihoods and RMSE are computed on (binary
  data binarised once, with the stored binarisation of the test split when there is one);
  real: float32 [N, H, W, C], the same images as grey levels (binary data) or bin centres,
  the reference of IS / FID. Raises errors.ConfigError if the feature nets `nets` cannot
  score them (too few images for num_splits, another image shape).
  """
  splits = data.load_splits()
  raw = splits.test if split == "test" else splits.validation
  if max_examples:
    raw = raw[:max_examples]
  if len(raw) == 0:
    raise errors.DataError(f"the {split} split of {splits.name} is empty")
  eval_images = raw
  if splits.binary:  # Binary likelihoods are evaluated on data binarised once.
    eval_images = (
      splits.test_binarized[: len(raw)]
      if split == "test" and splits.test_binarized is not None
      else data.binarize_once(raw)
    )
  real = data.to_float(raw, splits.binary)  # grey levels (binary) or bin centres
  _check_feature_net_inputs(nets, splits, split, real, num_splits)
  return splits, data.to_float(eval_images, splits.binary), real


def _check_feature_net_inputs(nets, splits, split, real, num_splits):
  """Raises errors.ConfigError if the configured feature nets cannot score this data."""
  if nets and len(real) < max(2, num_splits):
    raise errors.ConfigError(
      f"IS/FID need at least max(2, evaluate.num_splits={num_splits}) "
      f"real images; the {split} split has {len(real)}"
    )
  if "classifier" in nets and nets["classifier"].image_shape != splits.image_shape:
    raise errors.ConfigError(
      f"classifier expects images {nets['classifier'].image_shape}, data has {splits.image_shape}"
    )


def _is_discretized(mdl):
  """True for likelihoods with a discretised 8-bit form (Gaussian heads, natural images)."""
  return hasattr(mdl.likelihood, "discretized_log_prob")


def _header(mdl, checkpoint, step, splits, split, num_examples, num_importance_samples, skipped):
  """The metrics dict before any metric: what was evaluated, and how."""
  return dict(
    checkpoint=checkpoint,
    step=step,
    dataset=splits.name,
    split=split,
    num_examples=int(num_examples),
    data=splits.note,
    num_importance_samples=num_importance_samples,
    likelihood="discretized_gaussian"
    if _is_discretized(mdl)
    else type(mdl.likelihood).__name__.replace("Likelihood", "").lower(),
    skipped=skipped,
    seconds={},
  )


@contextlib.contextmanager
def _timed(metrics, name):
  """Records the wall time of the block as metrics["seconds"][name]."""
  start = time.time()
  yield
  metrics["seconds"][name] = time.time() - start


def _likelihood_metrics(mdl, x, splits, num_importance_samples, seed, batch_size, chunk_size):
  """-ELBO and IWAE NLL (nats, and bits/dim when discretised) with standard errors,
  plus `bounds.ratio_diagnostics`. x: float32 [N, H, W, C]; seed: int32 [2]."""
  discretized = _is_discretized(mdl)
  iwae, elbo = bounds.likelihood_bounds(
    mdl, x, num_importance_samples, seed, batch_size, chunk_size, discretized
  )
  if not (np.all(np.isfinite(iwae)) and np.all(np.isfinite(elbo))):
    raise FloatingPointError(
      f"non-finite likelihood bound for {np.sum(~np.isfinite(iwae))} "
      f"images: the checkpoint is broken"
    )
  out = {}
  out["neg_elbo"], out["neg_elbo_se"] = metrics_lib.mean_and_standard_error(-elbo)
  out["iwae_nll"], out["iwae_nll_se"] = metrics_lib.mean_and_standard_error(-iwae)
  if discretized:
    dims = int(np.prod(splits.image_shape))
    for key, bpd_key in (("neg_elbo", "neg_elbo_bits_per_dim"), ("iwae_nll", "iwae_bits_per_dim")):
      out[bpd_key] = float(metrics_lib.nats_to_bits_per_dim(out[key], dims))
      out[bpd_key + "_se"] = float(metrics_lib.nats_to_bits_per_dim(out[key + "_se"], dims))
  out.update(bounds.ratio_diagnostics(mdl, x, rng.fold_in(seed, 10**6), batch_size))
  return out


def _add_model_metrics(
  metrics, mdl, x, splits, num_importance_samples, seed, batch_size, chunk_size
):
  """Adds the likelihood and RMSE metrics of x (float32 [N, H, W, C]) and their seconds."""
  with _timed(metrics, "likelihood"):
    metrics.update(
      _likelihood_metrics(mdl, x, splits, num_importance_samples, seed, batch_size, chunk_size)
    )
  with _timed(metrics, "rmse"):
    metrics.update(_rmse_metrics(mdl, x, splits.binary, batch_size))


def _rmse_metrics(mdl, x, binary, batch_size):
  """{"rmse", "rmse_pixel_scale"} of the reconstructions of x (float32 [N, H, W, C])."""
  # Grey levels: binary data in [0, 1]; 8-bit data has x = (i + 1/2) / 256, so one
  # grey level is 1/256 and 256 (x - x_hat) is the error in grey levels of [0, 255].
  scale = 1.0 if binary else 256.0
  return {
    "rmse": metrics_lib.rmse(x, bounds.reconstructions(mdl, x, batch_size), scale=scale),
    "rmse_pixel_scale": "[0, 1]" if binary else "[0, 255]",
  }


def _add_sample_quality(metrics, mdl, nets, real, num_generated, num_splits, seed):
  """Adds the IS / FID / classifier metrics of `num_generated` prior samples (seed int32
  [2]) and their seconds; returns the samples, float32 [num_generated, H, W, C], or None
  when no feature net runs."""
  if not nets:
    return None
  with _timed(metrics, "generate"):
    generated = bounds.generate(mdl, num_generated, seed)
  metrics["num_generated"] = num_generated
  for key, net in nets.items():
    with _timed(metrics, key):
      logging.info("%s metrics on %d generated and %d real images", key, num_generated, len(real))
      score, std, real_score, fid = feature_nets.sample_quality(net, generated, real, num_splits)
      prefix = "inception_score" if key == "inception" else "classifier_score"
      metrics[prefix], metrics[prefix + "_std"], metrics[prefix + "_real"] = score, std, real_score
      metrics["fid" if key == "inception" else "classifier_fid"] = fid
  if "classifier" in nets:
    metrics["classifier_test_accuracy"] = nets["classifier"].metadata.get("test_accuracy")
    metrics["classifier_dir"] = nets["classifier"].directory
  if "inception" in nets:
    metrics.update(nets["inception"].provenance)  # which network; comparable or not
  return generated


def _write_json_atomic(obj, path):
  """json.dump to path + ".partial", then rename: readers never see half a file."""
  tmp = path + ".partial"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _write_outputs(metrics, model_dir, output_dir, step, generated):
  """Writes metrics.json and the eval summaries; returns metrics + "metrics_file".

  generated: float32 [num_generated, H, W, C] (its first 16 go to TensorBoard) or None.
  """
  out = output_dir or os.path.join(model_dir, "eval")
  os.makedirs(out, exist_ok=True)
  _write_json_atomic(metrics, os.path.join(out, METRICS_FILE))
  writer = tf.summary.create_file_writer(os.path.join(model_dir, "summaries", "eval"))
  with writer.as_default(step=step):
    for k, v in metrics.items():
      if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
        tf.summary.scalar(f"eval/{k}", v)
    if generated is not None:
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
    is_label, fid_label = inception_lib.table_labels(metrics)
    rows += [
      (
        is_label,
        f"{metrics['inception_score']:.3f} +- "
        f"{metrics['inception_score_std']:.3f} (real data "
        f"{metrics['inception_score_real']:.3f})",
      ),
      (fid_label, f"{metrics['fid']:.3f}"),
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
