"""What the controller does between runs of training steps (orbit's "actions").

Each action has a period in steps (0 = never) and runs when the controller reaches a
multiple of it, and at the last step:
  TrainSummaries  training-metric means over the window -> TensorBoard summaries/train/,
                  the progress line (losses, accuracies, ratios, img/s, ETA), guard counters
  ImageSummaries  64 samples (8 a row) and 32 (input, reconstruction) pairs (4 a row) as
                  readable pictures (`images.picture`: scaled >= 600 px wide, separators)
  Validation      -ELBO, recon_x, recon_z on the validation split (summaries/validation/);
                  the best checkpoint and early stopping on the early-stopping metric
The -ELBO has one tag in both runs, NEG_ELBO_TAG, so TensorBoard overlays training and
validation; the old tags (train `generator/neg_elbo`, validation `neg_elbo`) stay for one
release.
"""

import time

from absl import logging
import numpy as np
import tensorflow as tf

from asvae_tf import data
from asvae_tf import images
from asvae_tf import progress
from asvae_tf import rng

EARLY_STOPPING_METRICS = ("recon", "elbo")
NEG_ELBO_TAG = "loss/neg_elbo"  # the -ELBO (nats / image) in summaries/train and /validation
_TRAIN_NEG_ELBO = "generator/neg_elbo"  # the training metric it comes from (old tag)
_SHOWN_RATIOS = ("ratio/kl_exact", "ratio/f1_mean", "ratio/f2_mean")


def due(every, step):
  """True if a period-`every` action runs at `step` (every = 0: never)."""
  return bool(every) and step % every == 0


class TrainSummaries:
  """Accumulates per-chunk metric sums; writes their window means every `every` steps."""

  def __init__(self, writer, every, trainer, num_steps, chief):
    self.writer, self.every, self.trainer = writer, every, trainer
    self.num_steps, self.chief = num_steps, chief
    self.skipped_total = 0
    self._reset_window(trainer_step=int(trainer.step.numpy()))
    self._run_start, self._run_start_step = time.time(), self._last_step

  def _reset_window(self, trainer_step):
    self._sums, self._count, self._skipped = {}, 0, 0
    self._last_step, self._last_time, self._pending_clock = trainer_step, time.time(), False

  def record(self, chunk_sums, good, skipped):
    """Adds a chunk's metric sums over its `good` steps; counts its skipped steps."""
    for k, v in chunk_sums.items():
      self._sums[k] = self._sums.get(k, 0.0) + v
    self._count += good
    self._skipped += skipped
    self.skipped_total += skipped

  def restart(self, step):
    """After a rollback to `step`: img/s is timed from now (the window's sums carry on)."""
    self._last_step, self._last_time, self._pending_clock = step, time.time(), False

  def restart_clock(self):
    """img/s measures training steps only: restart the clock after the other actions."""
    if self._pending_clock:
      self._last_time, self._pending_clock = time.time(), False

  def guard(self, step, skipped):
    if self.chief:
      with self.writer.as_default(step=step):
        tf.summary.scalar("guard/skipped_steps", skipped)
        tf.summary.scalar("guard/skipped_steps_total", self.skipped_total)
        tf.summary.scalar("guard/rollbacks", int(self.trainer.rollbacks.numpy()))

  def __call__(self, step):
    now = time.time()
    img_s = (
      (step - self._last_step) * self.trainer.global_batch_size / max(now - self._last_time, 1e-9)
    )
    rate = (step - self._run_start_step) / max(now - self._run_start, 1e-9)
    means = {k: v / self._count for k, v in self._sums.items()} if self._count else {}
    if self.chief:
      self._write(step, means, img_s)
    self.guard(step, self._skipped)
    shown = " | ".join(
      f"{k.split('/')[-1]} {means[k]:.4g}"
      for k in sorted(means)
      if k.startswith("loss/")
      or k.endswith("neg_elbo")
      or k.endswith("accuracy")
      or k in _SHOWN_RATIOS
    )
    eta = progress.format_eta((self.num_steps - step) / rate if rate > 0 else float("inf"))
    logging.info(
      "step %d/%d | %s | skipped %d | %.0f img/s | ETA %s",
      step, self.num_steps, shown, self._skipped, img_s, eta,
    )  # fmt: skip
    self._reset_window(step)
    self._pending_clock = True

  def _write(self, step, means, img_s):
    trainer = self.trainer
    with self.writer.as_default(step=step):
      for k, v in means.items():
        tf.summary.scalar(k, v)
      if _TRAIN_NEG_ELBO in means:
        tf.summary.scalar(NEG_ELBO_TAG, means[_TRAIN_NEG_ELBO])
      tf.summary.scalar("speed/images_per_second", img_s)
      tf.summary.scalar("learning_rate/generator", float(trainer.g_opt.learning_rate.numpy()))
      if trainer.model.has_discriminators:
        tf.summary.scalar("learning_rate/discriminator", float(trainer.d_opt.learning_rate.numpy()))


class ImageSummaries:
  """64 prior samples and 32 (input, reconstruction) pairs as pictures (`images.picture`)."""

  def __init__(self, writer, mdl, seed, inputs):
    """inputs: float32 [n >= 32, H, W, C] inputs for the reconstructions, or None."""
    self.writer, self.model, self.images = writer, mdl, inputs
    self.seed = rng.run_seed(seed, "summary_images")

  def __call__(self, step):
    with self.writer.as_default(step=step):
      samples, _ = self.model.sample(64, rng.fold_in(self.seed, step))
      tf.summary.image("samples", images.picture(samples.numpy(), 8)[None])
      if self.images is not None:
        x = self.images[:32]
        pairs = images.pairs(x, self.model.reconstruct(x))
        tf.summary.image("reconstructions", images.picture(pairs, 4)[None])  # 4 pairs per row


def make_validation_fn(mdl):
  """tf.function (x [b,H,W,C], seed [2]) -> summed (-ELBO, recon_x, recon_z) over the batch."""

  @tf.function(autograph=False)
  def batch_fn(x, seed):
    neg_elbo = mdl.negative_elbo(x, seed)
    recon_x, recon_z = mdl.reconstruction_errors(x, rng.fold_in(seed, 1))
    return tf.reduce_sum(neg_elbo), tf.reduce_sum(recon_x), tf.reduce_sum(recon_z)

  return batch_fn


def validation_batches(splits, batch_size, seed):
  """Validation images as a list of float32 batches (binary data binarised once, fixed)."""
  pixels = splits.validation
  if len(pixels) == 0:
    return []
  if splits.binary:
    pixels = data.binarize_once(pixels, seed)  # 0/1, fixed
  return [x for x in data.eval_dataset(pixels, batch_size, splits.binary)]


def validate(batch_fn, batches, seed, early_stopping_metric="recon"):
  """Validation means: negative ELBO (nats/image), recon_x, recon_z, and the early-stopping
  metric: their average ('recon', section 5) or the -ELBO ('elbo')."""
  totals = np.zeros(3)
  for i, x in enumerate(batches):
    totals += np.array([t.numpy() for t in batch_fn(x, rng.fold_in(seed, i))])
  n = sum(int(x.shape[0]) for x in batches)
  neg_elbo, recon_x, recon_z = totals / n
  metric = 0.5 * (recon_x + recon_z) if early_stopping_metric == "recon" else neg_elbo
  return {
    "neg_elbo": neg_elbo,
    "recon_x": recon_x,
    "recon_z": recon_z,
    "early_stopping_metric": metric,
  }


class Validation:
  """Validates; keeps the best checkpoint; decides early stopping (trainer state)."""

  def __init__(self, writer, trainer, keeper, batches, seed, metric, patience, chief):
    self.writer, self.trainer, self.keeper, self.batches = writer, trainer, keeper, batches
    self.seed, self.metric, self.patience, self.chief = seed, metric, patience, chief
    self.fn = make_validation_fn(trainer.model)

  def __call__(self, step):
    """Returns the validation means (see `validate`)."""
    trainer = self.trainer
    val = validate(self.fn, self.batches, rng.run_seed(self.seed, "validation"), self.metric)
    if self.chief:
      with self.writer.as_default(step=step):
        for k, v in val.items():
          tf.summary.scalar(k, v)
        tf.summary.scalar(NEG_ELBO_TAG, val["neg_elbo"])
    logging.info(
      "validation at step %d | -ELBO %.3f nats | recon_x %.5f | recon_z %.5f",
      step, val["neg_elbo"], val["recon_x"], val["recon_z"],
    )  # fmt: skip
    if val["early_stopping_metric"] < trainer.best_metric.numpy():
      trainer.best_metric.assign(val["early_stopping_metric"])
      trainer.bad_validations.assign(0)
      self.keeper.save_best(step)
    else:
      trainer.bad_validations.assign_add(1)
      if self.patience and trainer.bad_validations.numpy() >= self.patience:
        trainer.stopped_early.assign(True)
        logging.info(
          "early stopping at step %d: no improvement in %d validations", step, self.patience
        )
    return val
