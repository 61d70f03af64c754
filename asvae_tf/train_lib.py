"""Distributed AS-VAE training: strategy, tf.function steps, checkpoints, summaries.

Pattern (as in tensorflow/models orbit): everything is built under
`strategy.scope()`; a `tf.function` loop pulls per-replica batches from a
distributed iterator, runs the per-replica step with `strategy.run` and reduces
the metrics with `strategy.reduce`. Per-replica losses are averaged with the
GLOBAL batch size (`tf.nn.compute_average_loss`) because Keras 3 optimizers sum
gradients over replicas.

Determinism and resumption: the noise of global step s is keyed on (train.seed,
s) (`noise.step_seed`) and the data batch of step s is a pure function of
(dataset, train.seed, s) (`data.train_dataset`), so the checkpointed step
counter IS the RNG state and the data position. Rerunning the same command
restores the latest checkpoint of model_dir/checkpoints and continues.

model_dir layout:
  operative_config.gin        gin bindings actually used
  checkpoints/ckpt-<step>.*   model, both optimizers, step, early-stopping state
  best/ckpt-<step>.*          weights with the best validation reconstruction loss
  summaries/train/            TensorBoard: losses, discriminator accuracy/logits, lr, img/s, images
  summaries/validation/       TensorBoard: -ELBO, recon_x, recon_z, early-stopping metric
"""

import math
import os
import tempfile
import time

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from asvae_tf import config
from asvae_tf import data
from asvae_tf import export_lib
from asvae_tf import model as model_lib
from asvae_tf import noise

STRATEGIES = ("mirrored", "default", "multi_worker")


def make_strategy(name):
  """'mirrored' (all local devices), 'default' (no distribution) or 'multi_worker' (TF_CONFIG)."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise config.ConfigError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy):
  """True on the worker that writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  cluster = resolver.cluster_spec().as_dict()
  return task_type == "chief" or (task_type == "worker" and task_id == 0
                                  and "chief" not in cluster)


def _write_dir(model_dir, strategy):
  """model_dir on the chief; a throw-away temporary dir on other workers (TF's pattern)."""
  if is_chief(strategy):
    return model_dir
  return tempfile.mkdtemp(prefix="asvae_worker_")


def _image_grid(images, rows):
  """[n, H, W, C] -> [1, rows*H, (n/rows)*W, C] for tf.summary.image."""
  n, h, w, c = images.shape
  cols = n // rows
  grid = tf.reshape(images[:rows * cols], [rows, cols, h, w, c])
  grid = tf.transpose(grid, [0, 2, 1, 3, 4])
  return tf.reshape(grid, [1, rows * h, cols * w, c])


class Trainer:
  """Holds the built model, optimizers, checkpointing and the compiled functions."""

  def __init__(self, strategy, mdl, global_batch_size, seed, disc_steps, jit_compile):
    self.strategy = strategy
    self.model = mdl
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.disc_steps = disc_steps if mdl.has_discriminators else 0
    with strategy.scope():
      with gin.config_scope("generator"):
        self.g_opt = config.make_optimizer()
      with gin.config_scope("discriminator"):
        self.d_opt = config.make_optimizer()
      self.g_opt.build(mdl.generator_variables)
      if mdl.has_discriminators:
        self.d_opt.build(mdl.discriminator_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
      self.best_metric = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
      self.bad_validations = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.stopped_early = tf.Variable(False, trainable=False)
    self._grad_fns = {m: tf.function(self._make_grad_fn(m), jit_compile=True) if jit_compile
                      else self._make_grad_fn(m) for m in ("generator", "discriminator")}
    self.loop = tf.function(self._loop)

  # ---- per-replica computation ----------------------------------------------

  def _make_grad_fn(self, mode):
    mdl, gbs = self.model, self.global_batch_size
    variables = (mdl.generator_variables if mode == "generator"
                 else mdl.discriminator_variables)

    def grad_fn(x, seed):
      with tf.GradientTape() as tape:
        terms = mdl.terms(x, seed, mode, training=True)
        per_example = (mdl.generator_loss(terms) if mode == "generator"
                       else mdl.discriminator_loss(terms))
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=gbs)
      grads = tape.gradient(loss, variables)
      return grads, _metrics(terms, mode, loss, gbs)

    return grad_fn

  def _replica_step(self, x, step):
    seed = noise.step_seed(self.seed, step)
    metrics = {}
    for k in range(self.disc_steps):
      grads, metrics = self._grad_fns["discriminator"](x, noise.fold_in(seed, k + 1))
      self.d_opt.apply_gradients(zip(grads, self.model.discriminator_variables))
    grads, g_metrics = self._grad_fns["generator"](x, noise.fold_in(seed, 0))
    self.g_opt.apply_gradients(zip(grads, self.model.generator_variables))
    metrics.update(g_metrics)
    return metrics

  def _one_step(self, iterator):
    per_replica = self.strategy.run(self._replica_step,
                                    args=(next(iterator), self.step.read_value()))
    self.step.assign_add(1)
    return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  def _loop(self, iterator, num_steps):
    """Runs num_steps >= 1 (int32 scalar tensor) training steps; returns mean metrics."""
    sums = self._one_step(iterator)
    for _ in tf.range(num_steps - 1):
      metrics = self._one_step(iterator)
      sums = {k: sums[k] + metrics[k] for k in sums}
    return {k: v / tf.cast(num_steps, v.dtype) for k, v in sums.items()}


def _metrics(terms, mode, loss, global_batch_size):
  """Per-replica metric contributions; summed over replicas they are global means."""
  def mean(v):
    return tf.reduce_sum(tf.cast(v, tf.float32)) / global_batch_size

  out = {f"loss/{mode}": loss}
  if mode == "generator":
    for name in ("log_px_given_zq", "log_q_prior", "f1_real", "f2_real"):
      value = getattr(terms, name)
      if value is not None:
        out[f"generator/{name}"] = mean(value)
    if terms.log_px_given_zq is not None:
      out["generator/neg_elbo"] = mean(-(terms.log_px_given_zq + terms.log_pzq - terms.log_qzq))
  else:
    for eq, real, fake in (("eq5", terms.f1_real, terms.f1_fake),
                           ("eq6", terms.f2_real, terms.f2_fake)):
      if fake is None:
        continue
      out[f"discriminator/{eq}_accuracy"] = 0.5 * (mean(real > 0) + mean(fake < 0))
      out[f"discriminator/{eq}_real_logit"] = mean(real)
      out[f"discriminator/{eq}_fake_logit"] = mean(fake)
  return out


def make_validation_fn(mdl):
  """tf.function (x [b,H,W,C], seed [2]) -> summed (-ELBO, recon_x, recon_z) over the batch."""
  @tf.function
  def batch_fn(x, seed):
    neg_elbo = mdl.negative_elbo(x, seed)
    recon_x, recon_z = mdl.reconstruction_errors(x, noise.fold_in(seed, 1))
    return tf.reduce_sum(neg_elbo), tf.reduce_sum(recon_x), tf.reduce_sum(recon_z)
  return batch_fn


def _validate(batch_fn, images, seed):
  """Validation means: negative ELBO (nats/image), recon_x, recon_z and their average."""
  totals = np.zeros(3)
  for i, x in enumerate(images):
    totals += np.array([t.numpy() for t in batch_fn(x, noise.fold_in(seed, i))])
  n = sum(int(x.shape[0]) for x in images)
  neg_elbo, recon_x, recon_z = totals / n
  return {"neg_elbo": neg_elbo, "recon_x": recon_x, "recon_z": recon_z,
          "early_stopping_metric": 0.5 * (recon_x + recon_z)}


def _validation_batches(splits, batch_size, seed):
  """Validation images as a list of float32 batches (binary data binarised once, fixed)."""
  images = splits.validation
  if len(images) == 0:
    return []
  if splits.binary:
    rng = np.random.RandomState(seed)
    images = (rng.uniform(size=images.shape) < images / 255.0).astype(np.uint8)  # 0/1
  return [x for x in data.eval_dataset(images, batch_size, splits.binary)]


def _format_eta(seconds):
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@gin.configurable("train", denylist=["model_dir"])
def train(model_dir,
          num_steps=gin.REQUIRED,
          batch_size=100,
          seed=0,
          checkpoint_every=1000,
          summary_every=100,
          validate_every=1000,
          image_every=5000,
          discriminator_steps=1,
          strategy="mirrored",
          jit_compile=False,
          early_stopping_patience=0,
          keep_checkpoints=3):
  """Trains the gin-configured model on the gin-configured dataset.

  Args:
    model_dir: output directory (see module docstring for its layout).
    num_steps: total generator steps (each consumes one global batch).
    batch_size: GLOBAL batch size (split over replicas; per-replica size must be even).
    seed: run seed; noise and data order are pure functions of (seed, step).
    checkpoint_every, summary_every, validate_every, image_every: in steps (0 = never;
      a checkpoint is always written at the end).
    discriminator_steps: discriminator updates per generator update.
    strategy: "mirrored", "default" or "multi_worker" (TF_CONFIG).
    jit_compile: XLA-compile the per-replica loss/gradient computation.
    early_stopping_patience: stop after this many validations without improvement of
      the average validation reconstruction loss of x and z (section 5); 0 = off.
    keep_checkpoints: how many recent checkpoints to keep.
  Returns:
    dict with the final step, the last training metrics and the last validation metrics.
  """
  if num_steps <= 0:
    raise config.ConfigError(f"train.num_steps must be positive, got {num_steps}")
  if batch_size <= 0:
    raise config.ConfigError(f"train.batch_size must be positive, got {batch_size}")
  if not 0 <= seed < 2 ** 31:
    raise config.ConfigError(f"train.seed must be in [0, 2**31), got {seed}")
  strat = make_strategy(strategy)
  replicas = strat.num_replicas_in_sync
  if batch_size % replicas or (batch_size // replicas) % 2:
    raise config.ConfigError(f"train.batch_size={batch_size} must split into an even per-replica "
                     f"batch over {replicas} replicas")
  write_dir = _write_dir(model_dir, strat)
  chief = is_chief(strat)

  splits = data.load_splits()
  logging.info("data: %s", splits.note)
  logging.info("strategy: %s with %d replica(s); global batch %d", strategy, replicas,
               batch_size)
  keras.utils.set_random_seed(seed)  # Deterministic weight initialisation.
  with strat.scope():
    mdl = model_lib.build_model(image_shape=splits.image_shape)
    mdl.build_all()
  trainer = Trainer(strat, mdl, batch_size, seed, discriminator_steps, jit_compile)

  ckpt = tf.train.Checkpoint(model=mdl, generator_optimizer=trainer.g_opt,
                             discriminator_optimizer=trainer.d_opt, step=trainer.step,
                             best_metric=trainer.best_metric,
                             bad_validations=trainer.bad_validations,
                             stopped_early=trainer.stopped_early)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(write_dir, "checkpoints"),
                                       max_to_keep=keep_checkpoints, step_counter=trainer.step)
  best_manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=mdl, step=trainer.step), os.path.join(write_dir, "best"),
      max_to_keep=1, step_counter=trainer.step)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if latest:
    ckpt.restore(latest).assert_consumed()
    logging.info("resumed from %s at step %d", latest, int(trainer.step.numpy()))
  config.write_operative_config(write_dir)

  start = int(trainer.step.numpy())
  result = {"step": start, "train": {}, "validation": {}}
  if start >= num_steps or bool(trainer.stopped_early.numpy()):
    logging.info("nothing to do: step %d of %d%s", start, num_steps,
                 " (stopped early)" if trainer.stopped_early.numpy() else "")
    return result

  dist_data = strat.distribute_datasets_from_function(
      lambda ctx: data.train_dataset(splits.train, batch_size, seed, splits.binary,
                                     start_step=start, input_context=ctx))
  iterator = iter(dist_data)
  val_batches = _validation_batches(splits, batch_size, seed)
  if early_stopping_patience and not val_batches:
    raise config.ConfigError("train.early_stopping_patience needs a validation split; "
                             "set dataset.validation_size > 0 or the patience to 0")
  validation_fn = make_validation_fn(mdl)
  train_writer = tf.summary.create_file_writer(os.path.join(write_dir, "summaries", "train"))
  val_writer = tf.summary.create_file_writer(os.path.join(write_dir, "summaries", "validation"))

  def due(every, step):
    return every and step % every == 0

  step, last_time, last_step = start, time.time(), start
  run_start, run_start_step = last_time, start
  sums, count, window_done = {}, 0, False
  while step < num_steps:
    boundaries = [num_steps] + [(step // e + 1) * e for e in
                                (checkpoint_every, summary_every, validate_every, image_every) if e]
    n = min(boundaries) - step
    metrics = trainer.loop(iterator, tf.constant(n, tf.int32))
    step += n
    metrics = {k: float(v.numpy()) for k, v in metrics.items()}
    for k, v in metrics.items():
      if not math.isfinite(v):
        raise FloatingPointError(f"non-finite {k}={v} at step {step}")
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + v * n
    count += n
    result["train"], result["step"] = metrics, step

    if due(summary_every, step) or step == num_steps:
      now = time.time()
      img_s = (step - last_step) * batch_size / max(now - last_time, 1e-9)
      rate = (step - run_start_step) / max(now - run_start, 1e-9)
      means = {k: v / count for k, v in sums.items()}
      if chief:
        with train_writer.as_default(step=step):
          for k, v in means.items():
            tf.summary.scalar(k, v)
          tf.summary.scalar("speed/images_per_second", img_s)
          tf.summary.scalar("learning_rate/generator",
                            float(trainer.g_opt.learning_rate.numpy()))
          if mdl.has_discriminators:
            tf.summary.scalar("learning_rate/discriminator",
                              float(trainer.d_opt.learning_rate.numpy()))
      shown = " | ".join(f"{k.split('/')[-1]} {means[k]:.4g}" for k in sorted(means)
                         if k.startswith("loss/") or k.endswith("neg_elbo")
                         or k.endswith("accuracy"))
      logging.info("step %d/%d | %s | %.0f img/s | ETA %s", step, num_steps, shown, img_s,
                   _format_eta((num_steps - step) / rate if rate > 0 else float("inf")))
      sums, count, last_step = {}, 0, step
      window_done = True

    if chief and (due(image_every, step) or step == num_steps):
      with train_writer.as_default(step=step):
        samples, _ = mdl.sample(64, noise.fold_in(tf.constant([seed, 1], tf.int32), step))
        tf.summary.image("samples", _image_grid(samples, 8))
        if val_batches or len(splits.test):
          x = val_batches[0][:32] if val_batches else tf.constant(
              data.to_float(splits.test[:32], splits.binary))
          pairs = tf.reshape(tf.stack([x, mdl.reconstruct(x)], axis=1),
                             [-1] + list(x.shape[1:]))
          tf.summary.image("reconstructions", _image_grid(pairs, 8))

    if val_batches and (due(validate_every, step) or step == num_steps):
      val = _validate(validation_fn, val_batches, tf.constant([seed, 2], tf.int32))
      result["validation"] = val
      if chief:
        with val_writer.as_default(step=step):
          for k, v in val.items():
            tf.summary.scalar(k, v)
      logging.info("validation at step %d | -ELBO %.3f nats | recon_x %.5f | recon_z %.5f",
                   step, val["neg_elbo"], val["recon_x"], val["recon_z"])
      if val["early_stopping_metric"] < trainer.best_metric.numpy():
        trainer.best_metric.assign(val["early_stopping_metric"])
        trainer.bad_validations.assign(0)
        best_manager.save(checkpoint_number=step)
      else:
        trainer.bad_validations.assign_add(1)
        if early_stopping_patience and trainer.bad_validations.numpy() >= early_stopping_patience:
          trainer.stopped_early.assign(True)
          logging.info("early stopping at step %d: no improvement in %d validations", step,
                       early_stopping_patience)

    if due(checkpoint_every, step) or step == num_steps or trainer.stopped_early.numpy():
      path = manager.save(checkpoint_number=step)
      logging.info("saved checkpoint %s", path)
    if trainer.stopped_early.numpy():
      break
    if window_done:  # img/s measures training steps only, not the work above.
      last_time, window_done = time.time(), False

  train_writer.flush()
  val_writer.flush()
  gin_path = config.write_operative_config(write_dir)
  if chief:
    with open(gin_path) as f:
      export_lib.export(mdl, os.path.join(model_dir, "saved_model"), f.read(),
                        step=int(trainer.step.numpy()), dataset=splits.name)
  return result
