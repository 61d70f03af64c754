"""Distributed AS-VAE training: strategy, tf.function steps, checkpoints, summaries.

Pattern (as in tensorflow/models orbit): everything is built under
`strategy.scope()`; a `tf.function` loop pulls per-replica batches from a
distributed iterator, runs the per-replica step with `strategy.run` and reduces
the metrics with `strategy.reduce`. Per-replica losses are averaged with the
GLOBAL batch size (`tf.nn.compute_average_loss`) because Keras 3 optimizers sum
gradients over replicas.

Determinism and resumption: the noise of global step s is keyed on (train.seed,
s) (`rng.step_seed`) and the data batch of step s is a pure function of
(dataset, train.seed, s) (`data.train_dataset`), so the checkpointed step
counter IS the RNG state and the data position. Rerunning the same command
restores the latest checkpoint of model_dir/checkpoints and continues.

Kill safety: `tf.train.CheckpointManager` writes a checkpoint's files (shards in
`ckpt-N_temp/`, then merged into `ckpt-N.index` / `.data-*`) BEFORE it rewrites
the `checkpoint` state file (atomically, by rename), and resumption only follows
that state file, so a process killed at any point resumes from the last complete
checkpoint. A fresh run saves `ckpt-0` before its first step.

Non-finite guard: every update (discriminator and generator) checks its loss and
gradients with `tf.math.is_finite`, agrees on the verdict over all replicas and
workers (all-reduce) and applies the optimizer only when everything is finite
(`tf.cond`), so a bad step leaves weights, Adam moments and optimizer iterations
untouched (the data position still advances). After `train.max_bad_steps`
consecutive bad steps training rolls back to the last checkpoint (multiplying the
learning rates by `train.rollback_lr_factor`); after `train.max_rollbacks`
rollbacks it stops with `TrainingDivergedError`. Checkpoints are only written
after a good step and only with finite weights.

model_dir layout:
  operative_config.gin        gin bindings actually used
  checkpoints/ckpt-<step>.*   model, both optimizers, step, early-stopping and guard state
  best/ckpt-<step>.*          weights with the best validation reconstruction loss
  summaries/train/            TensorBoard: losses, discriminator accuracy/logits, lr, img/s,
                              images, guard/skipped_steps, guard/rollbacks
  summaries/validation/       TensorBoard: -ELBO, recon_x, recon_z, early-stopping metric
Non-chief workers of a multi-worker run write the same layout to
model_dir/workertemp_<task_id>, deleted when training ends (TensorFlow's pattern).
"""

import contextlib
import hashlib
import math
import os
import signal
import time

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from asvae_tf import config
from asvae_tf.errors import CheckpointMismatchError, TrainingDivergedError
from asvae_tf import data
from asvae_tf import export_lib
from asvae_tf import model as model_lib
from asvae_tf import rng

STRATEGIES = ("mirrored", "default", "multi_worker")

# Test-only fault injection: ASVAE_TEST_KILL_AT="<point>:<step>[,<point>:<step>...]" makes
# the process SIGKILL itself at <point> of the checkpoint save at global step <step>:
#   before_save  training reached <step>, nothing of ckpt-<step> written yet
#   mid_write    ckpt-<step>'s shards written to ckpt-<step>_temp/, not yet merged
#   after_write  ckpt-<step>.index/.data-* in place, `checkpoint` state file not updated
#   after_save   ckpt-<step> fully saved and recorded
KILL_ENV = "ASVAE_TEST_KILL_AT"
KILL_POINTS = ("before_save", "mid_write", "after_write", "after_save")


def make_strategy(name):
  """'mirrored' (all local devices), 'default' (no distribution) or 'multi_worker' (TF_CONFIG)."""
  if name == "mirrored":
    # On CPUs MirroredStrategy all-reduces with collective ops whose keys start from a
    # class-level base: a second strategy in the same process (a second training run in
    # a notebook, a benchmark or a test session) would reuse the first one's keys and
    # fail with "Shape mismatch in the collective instance". Give each its own range, as
    # TensorFlow's own strategy_combinations do.
    tf.distribute.MirroredStrategy._collective_key_base += 100000  # pylint: disable=protected-access
    return tf.distribute.MirroredStrategy()
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise config.ConfigError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")


def _task(strategy):
  """(task_type, task_id) of this process; (None, None) outside a cluster."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return None, None
  return resolver.task_type, resolver.task_id


def is_chief(strategy):
  """True on the worker that writes checkpoints, summaries and exports."""
  task_type, task_id = _task(strategy)
  if task_type is None:
    return True
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def _write_dir(model_dir, strategy):
  """model_dir on the chief; model_dir/workertemp_<task_id> on other workers.

  TensorFlow's multi-worker pattern (tutorials "Custom training loop with Keras and
  MultiWorkerMirroredStrategy" / "Multi-worker training with Keras"): every worker
  runs the same save calls (they may contain collectives) but only the chief writes
  to the real location; the others write to a per-task temporary directory that is
  deleted afterwards (`train` removes it when it returns or fails). A stale one left
  by a killed run is removed first, so its checkpoints are never used.
  """
  if is_chief(strategy):
    return model_dir
  _, task_id = _task(strategy)
  path = os.path.join(model_dir, f"workertemp_{task_id}")
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.makedirs(path)
  return path


def _image_grid(images, rows):
  """[n, H, W, C] -> [1, rows*H, (n/rows)*W, C] for tf.summary.image."""
  n, h, w, c = images.shape
  cols = n // rows
  grid = tf.reshape(images[: rows * cols], [rows, cols, h, w, c])
  grid = tf.transpose(grid, [0, 2, 1, 3, 4])
  return tf.reshape(grid, [1, rows * h, cols * w, c])


def _kill_points():
  """{(point, step)} parsed from ASVAE_TEST_KILL_AT (test-only)."""
  spec = os.environ.get(KILL_ENV, "").strip()
  points = set()
  for item in filter(None, (s.strip() for s in spec.split(","))):
    point, _, step = item.partition(":")
    if point not in KILL_POINTS or not step.isdigit():
      raise config.ConfigError(
        f"{KILL_ENV} items must be <point>:<step> with point in {KILL_POINTS}, got {item!r}"
      )
    points.add((point, int(step)))
  return points


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def _kill_inside_tf_saver():
  """Makes TF's checkpoint writer SIGKILL the process between shard writes and merge."""
  from tensorflow.python.checkpoint import functional_saver  # pylint: disable=g-import-not-at-top

  def merge_then_never(*args, **kwargs):
    del args, kwargs
    _die()

  original = functional_saver.gen_io_ops.merge_v2_checkpoints
  functional_saver.gen_io_ops.merge_v2_checkpoints = merge_then_never
  try:
    yield
  finally:
    functional_saver.gen_io_ops.merge_v2_checkpoints = original


class Trainer:
  """Holds the built model, optimizers, checkpointing and the compiled functions."""

  def __init__(
    self,
    strategy,
    mdl,
    global_batch_size,
    seed,
    disc_steps,
    jit_compile,
    max_bad_steps=10,
    inject_nan_at_steps=(),
    inject_nan_passes=0,
    adversarial_warmup_steps=0,
  ):
    self.strategy = strategy
    self.model = mdl
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.disc_steps = disc_steps if mdl.has_discriminators else 0
    self.max_bad_steps = int(max_bad_steps)
    self.adversarial_warmup_steps = int(adversarial_warmup_steps)
    self.inject_nan_at_steps = tuple(int(s) for s in inject_nan_at_steps)
    self.inject_nan_passes = int(inject_nan_passes)
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
      # Non-finite guard state (checkpointed: a resumed run replays it exactly).
      self.consecutive_bad = tf.Variable(
        0, dtype=tf.int64, trainable=False, name="consecutive_bad_steps"
      )
      self.rollbacks = tf.Variable(0, dtype=tf.int64, trainable=False, name="rollbacks")
    self._grad_fns = {
      m: tf.function(self._make_grad_fn(m), jit_compile=True)
      if jit_compile
      else self._make_grad_fn(m)
      for m in ("generator", "discriminator")
    }
    # Autograph is needed for the loop's tensor control flow only; the model code uses
    # explicit tf.while_loop/tf.cond, and converting it costs seconds of tracing.
    self._replica_step = tf.autograph.experimental.do_not_convert(self._replica_step)
    self.loop = tf.function(self._loop)
    self.weights_finite = tf.function(self._weights_finite, autograph=False)

  def checkpointed(self):
    """Everything a checkpoint holds (the dict for tf.train.Checkpoint)."""
    return dict(
      model=self.model,
      generator_optimizer=self.g_opt,
      discriminator_optimizer=self.d_opt,
      step=self.step,
      best_metric=self.best_metric,
      bad_validations=self.bad_validations,
      stopped_early=self.stopped_early,
      consecutive_bad_steps=self.consecutive_bad,
      rollbacks=self.rollbacks,
    )

  def state_variables(self):
    """(name, variable) of the model, both optimizers and the step, in a fixed order."""
    out = [(f"model/{v.path}", v) for v in self.model.variables]
    for name, opt in (("generator_optimizer", self.g_opt), ("discriminator_optimizer", self.d_opt)):
      out += [(f"{name}/{i}/{v.path}", v) for i, v in enumerate(opt.variables)]
    return out + [("step", self.step)]

  def weights_digest(self):
    """sha256 of every model and optimizer variable and the step (same on all workers)."""
    h = hashlib.sha256()
    for name, v in self.state_variables():
      value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
      h.update(name.encode())
      h.update(str(value.dtype).encode() + str(value.shape).encode())
      h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()

  def _weights_finite(self):
    flags = [
      tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))
      for _, v in self.state_variables()
      if tf.as_dtype(v.dtype).is_floating
    ]
    return tf.reduce_all(tf.stack(flags))

  # ---- per-replica computation ----------------------------------------------

  def _make_grad_fn(self, mode):
    mdl, gbs = self.model, self.global_batch_size
    variables = mdl.generator_variables if mode == "generator" else mdl.discriminator_variables

    def grad_fn(x, seed, poison, adversarial_weight):
      with tf.GradientTape() as tape:
        terms = mdl.terms(x, seed, mode, training=True, adversarial_weight=adversarial_weight)
        per_example = (
          mdl.generator_loss(terms) if mode == "generator" else mdl.discriminator_loss(terms)
        )
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=gbs) * poison
      grads = tape.gradient(loss, variables)
      # One sum per gradient: NaN/Inf anywhere make it non-finite (cheaper than is_finite
      # on every element; a finite gradient summing past float32's range is also skipped).
      total = loss + tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])
      return grads, _metrics(terms, mode, loss, gbs), tf.math.is_finite(total)

    return grad_fn

  def _guarded_apply(self, opt, grads, variables, finite):
    """Applies grads only if loss and gradients are finite on EVERY replica/worker.

    Returns the global verdict (bool scalar, equal on all replicas). On a bad verdict
    nothing of the optimizer runs: weights, moments and `iterations` stay unchanged.
    """
    ctx = tf.distribute.get_replica_context()
    bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    ok = tf.equal(bad, 0.0)
    variables = list(variables)

    def apply(g):
      opt.apply_gradients(zip(g, variables))

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
      tf.cond(ok, lambda: apply(grads), lambda: None)
    else:
      # Keras' LossScaleOptimizer pattern: a cond whose branch calls merge_call (as
      # apply_gradients does under Mirrored/MultiWorkerMirrored strategies) must be
      # built in cross-replica context.
      def cross_replica(distribution, grads, ok):
        first_ok = distribution.experimental_local_results(ok)[0]
        tf.cond(
          first_ok,
          lambda: distribution.extended.call_for_each_replica(apply, args=(grads,)),
          lambda: None,
        )

      ctx.merge_call(cross_replica, args=(grads, ok))
    return ok

  def _poison(self, step):
    """1.0, or NaN in the steps ending at the test-only train.inject_nan_at_steps."""
    if not self.inject_nan_at_steps:
      return tf.constant(1.0)
    hit = tf.reduce_any(tf.equal(step + 1, tf.constant(self.inject_nan_at_steps, tf.int64)))
    if self.inject_nan_passes > 0:
      hit = tf.logical_and(hit, self.rollbacks < self.inject_nan_passes)
    return tf.where(hit, tf.constant(np.nan, tf.float32), tf.constant(1.0))

  def _replica_step(self, x, step):
    # MultiWorkerMirroredStrategy's distributed datasets lose the static batch size.
    per_replica = self.global_batch_size // self.strategy.num_replicas_in_sync
    x = tf.ensure_shape(x, [per_replica] + list(self.model.image_shape))
    seed = rng.step_seed(self.seed, step)
    poison = self._poison(step)
    weight = adversarial_weight(step, self.adversarial_warmup_steps)
    metrics, ok = {}, tf.constant(True)
    for k in range(self.disc_steps):
      grads, metrics, finite = self._grad_fns["discriminator"](
        x, rng.fold_in(seed, k + 1), poison, weight
      )
      ok = tf.logical_and(
        ok, self._guarded_apply(self.d_opt, grads, self.model.discriminator_variables, finite)
      )
    grads, g_metrics, finite = self._grad_fns["generator"](
      x, rng.fold_in(seed, 0), poison, weight
    )
    ok = tf.logical_and(
      ok, self._guarded_apply(self.g_opt, grads, self.model.generator_variables, finite)
    )
    metrics.update(g_metrics)
    return metrics, ok

  def _one_step(self, iterator):
    metrics, ok = self.strategy.run(
      self._replica_step, args=(next(iterator), self.step.read_value())
    )
    ok = self.strategy.experimental_local_results(ok)[0]  # equal on all replicas
    self.step.assign_add(1)
    self.consecutive_bad.assign(tf.where(ok, tf.constant(0, tf.int64), self.consecutive_bad + 1))
    metrics = {
      k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in metrics.items()
    }
    # A bad step's metrics are NaN/Inf: they are left out of the sums.
    return {k: tf.where(ok, v, tf.zeros_like(v)) for k, v in metrics.items()}, ok

  def _loop(self, iterator, num_steps):
    """Runs up to num_steps >= 1 (int32 scalar tensor) training steps.

    Stops early once train.max_bad_steps consecutive steps were non-finite.
    Returns (metric sums over the good steps, number of good steps, steps run).
    """
    sums, ok = self._one_step(iterator)
    good = tf.cast(ok, tf.int32)
    done = tf.constant(1)
    for _ in tf.range(num_steps - 1):
      if self.consecutive_bad >= self.max_bad_steps:
        break
      metrics, ok = self._one_step(iterator)
      sums = {k: sums[k] + metrics[k] for k in sums}
      good += tf.cast(ok, tf.int32)
      done += 1
    return sums, good, done


def adversarial_weight(step, warmup_steps):
  """Warm-up weight of the learned ratio terms of eq. (11) in the step that ends at global
  step step + 1: min(1, (step + 1) / warmup_steps), or 1 without warm-up (float32 scalar)."""
  if warmup_steps <= 0:
    return tf.constant(1.0)
  return tf.minimum(1.0, tf.cast(step + 1, tf.float32) / warmup_steps)


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
      # What f1 should charge (exact, eq. 7's explicit part) beside what it charges.
      out["ratio/kl_exact"] = mean(terms.log_qzq - terms.log_pzq)
      if terms.f1_real is not None:
        out["ratio/f1_mean"] = mean(terms.f1_real)
        out["ratio/gap"] = out["ratio/f1_mean"] - out["ratio/kl_exact"]
    if terms.f2_real is not None:
      out["ratio/f2_mean"] = mean(terms.f2_real)
      if terms.f2_explicit is not None:
        out["ratio/f2_explicit"] = mean(terms.f2_explicit)
  else:
    for eq, real, fake in (
      ("eq5", terms.f1_real, terms.f1_fake),
      ("eq6", terms.f2_real, terms.f2_fake),
      ("eq6_x", terms.f2x_real, terms.f2x_fake),
      ("eq6_z", terms.f2z_real, terms.f2z_fake),
    ):
      if fake is None:
        continue
      out[f"discriminator/{eq}_accuracy"] = 0.5 * (mean(real > 0) + mean(fake < 0))
      out[f"discriminator/{eq}_real_logit"] = mean(real)
      out[f"discriminator/{eq}_fake_logit"] = mean(fake)
  return out


def make_validation_fn(mdl):
  """tf.function (x [b,H,W,C], seed [2]) -> summed (-ELBO, recon_x, recon_z) over the batch."""

  @tf.function(autograph=False)
  def batch_fn(x, seed):
    neg_elbo = mdl.negative_elbo(x, seed)
    recon_x, recon_z = mdl.reconstruction_errors(x, rng.fold_in(seed, 1))
    return tf.reduce_sum(neg_elbo), tf.reduce_sum(recon_x), tf.reduce_sum(recon_z)

  return batch_fn


def _validate(batch_fn, images, seed, early_stopping_metric="recon"):
  """Validation means: negative ELBO (nats/image), recon_x, recon_z, and the early-stopping
  metric: their average ('recon', section 5) or the -ELBO ('elbo')."""
  totals = np.zeros(3)
  for i, x in enumerate(images):
    totals += np.array([t.numpy() for t in batch_fn(x, rng.fold_in(seed, i))])
  n = sum(int(x.shape[0]) for x in images)
  neg_elbo, recon_x, recon_z = totals / n
  metric = 0.5 * (recon_x + recon_z) if early_stopping_metric == "recon" else neg_elbo
  return {
    "neg_elbo": neg_elbo,
    "recon_x": recon_x,
    "recon_z": recon_z,
    "early_stopping_metric": metric,
  }


def _validation_batches(splits, batch_size, seed):
  """Validation images as a list of float32 batches (binary data binarised once, fixed)."""
  images = splits.validation
  if len(images) == 0:
    return []
  if splits.binary:
    random_state = np.random.RandomState(seed)
    images = (random_state.uniform(size=images.shape) < images / 255.0).astype(np.uint8)  # 0/1
  return [x for x in data.eval_dataset(images, batch_size, splits.binary)]


def _format_eta(seconds):
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


_GUARD_STATE = ("consecutive_bad_steps", "rollbacks")
_SHOWN_RATIOS = ("ratio/kl_exact", "ratio/f1_mean", "ratio/f2_mean")
EARLY_STOPPING_METRICS = ("recon", "elbo")


def _check_same_early_stopping_metric(model_dir, metric):
  """The checkpointed best validation value is in the units of the run's early-stopping
  metric (recon ~0.05, -ELBO ~100 nats): resuming with the other metric would compare the
  two. ConfigError if model_dir/operative_config.gin names another one."""
  path = os.path.join(model_dir, "operative_config.gin")
  if not os.path.isfile(path):
    return
  previous = "recon"
  with open(path) as f:
    for line in f:
      if line.startswith("train.early_stopping_metric"):
        previous = line.split("=", 1)[1].strip().strip("'\"")
  if previous != metric:
    raise config.ConfigError(
      f"{model_dir} was trained with train.early_stopping_metric={previous!r}; resuming with "
      f"{metric!r} would compare its best value in other units: keep {previous!r} or train "
      f"into a new --model_dir"
    )


def _set_learning_rates(trainer, configured, factor):
  """Learning rates = the gin-configured ones x factor^rollbacks (after a restore).

  Checkpoints hold the optimizers' learning rates; the gin values win, so a rerun with
  a new learning rate uses it, and rollbacks keep lowering it by `factor` each.
  """
  scale = factor ** int(trainer.rollbacks.numpy())
  for opt, rate in zip((trainer.g_opt, trainer.d_opt), configured):
    old = float(opt.learning_rate.numpy())
    new = rate * scale
    if not math.isclose(old, new, rel_tol=1e-6):
      logging.info("%s learning rate %g (checkpoint had %g)", opt.name, new, old)
    opt.learning_rate.assign(new)


def _restore(ckpt, path, trainer=None):
  """Restores path into ckpt; a checkpoint of another model -> CheckpointMismatchError.

  Checkpoints written before the non-finite guard existed (no guard state) restore
  everything else, strictly, with the guard state left at zero.
  """
  try:
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    if trainer is not None and not names.issuperset(_GUARD_STATE):
      ckpt = tf.train.Checkpoint(
        **{k: v for k, v in trainer.checkpointed().items() if k not in _GUARD_STATE}
      )
    ckpt.restore(path).assert_consumed()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    detail = " ".join(str(e).split())
    if len(detail) > 300:
      detail = detail[:300] + "..."
    raise CheckpointMismatchError(
      f"cannot resume from {path}: it does not match the configured model (another "
      f"architecture, objective or image shape?); train into a new --model_dir or use the "
      f"gin config it was trained with ({detail})"
    ) from None


@gin.configurable("train", denylist=["model_dir"])
def train(
  model_dir,
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
  early_stopping_metric="recon",
  adversarial_warmup_steps=0,
  keep_checkpoints=3,
  max_bad_steps=10,
  max_rollbacks=3,
  rollback_lr_factor=0.5,
  inject_nan_at_steps=(),
  inject_nan_passes=0,
):
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
      the early-stopping metric; 0 = off (the best checkpoint is still kept).
    early_stopping_metric: "recon" (the average validation reconstruction loss of x
      and z, section 5) or "elbo" (the validation -ELBO, nats). Decides best/.
    adversarial_warmup_steps: the learned ratio terms of eq. (11) (a joint f, or an
      explicit f's residual) are weighted min(1, (step + 1) / W) in the generator
      update; 0 = no warm-up.
    keep_checkpoints: how many recent checkpoints to keep.
    max_bad_steps: consecutive non-finite (skipped) steps that trigger a rollback.
    max_rollbacks: rollbacks allowed in the whole run; one more bad streak stops
      training with TrainingDivergedError.
    rollback_lr_factor: each rollback multiplies both learning rates by this (1 = keep).
    inject_nan_at_steps: TEST-ONLY: the steps ending at these global step numbers get a
      NaN loss (hence NaN gradients).
    inject_nan_passes: TEST-ONLY: inject only while fewer than this many rollbacks
      happened (0 = on every pass).
  Returns:
    dict with the final step, the last training metrics, the last validation metrics,
    "guard" ({"skipped_steps", "rollbacks"}) and "weights_sha256" (digest of all model and
    optimizer variables and the step).
  Raises:
    config.ConfigError (incl. CheckpointMismatchError), data.DataError: bad settings.
    TrainingDivergedError: non-finite steps persisted through max_rollbacks rollbacks.
  """
  if num_steps <= 0:
    raise config.ConfigError(f"train.num_steps must be positive, got {num_steps}")
  if batch_size <= 0:
    raise config.ConfigError(f"train.batch_size must be positive, got {batch_size}")
  if not 0 <= seed < 2**31:
    raise config.ConfigError(f"train.seed must be in [0, 2**31), got {seed}")
  if isinstance(max_bad_steps, bool) or not isinstance(max_bad_steps, int) or max_bad_steps < 1:
    raise config.ConfigError(f"train.max_bad_steps must be an int >= 1, got {max_bad_steps!r}")
  if isinstance(max_rollbacks, bool) or not isinstance(max_rollbacks, int) or max_rollbacks < 0:
    raise config.ConfigError(f"train.max_rollbacks must be an int >= 0, got {max_rollbacks!r}")
  if not (isinstance(rollback_lr_factor, (int, float)) and 0 < rollback_lr_factor <= 1):
    raise config.ConfigError(
      f"train.rollback_lr_factor must be in (0, 1], got {rollback_lr_factor!r}"
    )
  if early_stopping_metric not in EARLY_STOPPING_METRICS:
    raise config.ConfigError(
      f"train.early_stopping_metric must be one of "
      f"{EARLY_STOPPING_METRICS}, got {early_stopping_metric!r}"
    )
  if (
    isinstance(adversarial_warmup_steps, bool)
    or not isinstance(adversarial_warmup_steps, int)
    or adversarial_warmup_steps < 0
  ):
    raise config.ConfigError(
      f"train.adversarial_warmup_steps must be an int >= 0, got {adversarial_warmup_steps!r}"
    )
  kill_points = _kill_points()
  strat = make_strategy(strategy)
  replicas = strat.num_replicas_in_sync
  if batch_size % replicas or (batch_size // replicas) % 2:
    raise config.ConfigError(
      f"train.batch_size={batch_size} must split into an even per-replica "
      f"batch over {replicas} replicas"
    )
  chief = is_chief(strat)

  splits = data.load_splits()
  logging.info("data: %s", splits.note)
  logging.info("strategy: %s with %d replica(s); global batch %d", strategy, replicas, batch_size)
  keras.utils.set_random_seed(seed)  # Deterministic weight initialisation.
  with strat.scope():
    mdl = model_lib.build_for_data(splits)
  trainer = Trainer(
    strat,
    mdl,
    batch_size,
    seed,
    discriminator_steps,
    jit_compile,
    max_bad_steps=max_bad_steps,
    inject_nan_at_steps=inject_nan_at_steps,
    inject_nan_passes=inject_nan_passes,
    adversarial_warmup_steps=adversarial_warmup_steps,
  )
  ckpt = tf.train.Checkpoint(**trainer.checkpointed())

  # Everything that can fail on bad input happens before anything is written.
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  configured_rates = [float(opt.learning_rate.numpy()) for opt in (trainer.g_opt, trainer.d_opt)]
  if latest:
    _check_same_early_stopping_metric(model_dir, early_stopping_metric)
    _restore(ckpt, latest, trainer)
    _set_learning_rates(trainer, configured_rates, rollback_lr_factor)
    logging.info("resumed from %s at step %d", latest, int(trainer.step.numpy()))
  start = int(trainer.step.numpy())
  result = {
    "step": start,
    "train": {},
    "validation": {},
    "guard": {"skipped_steps": 0, "rollbacks": int(trainer.rollbacks.numpy())},
  }
  if start >= num_steps or bool(trainer.stopped_early.numpy()):
    logging.info(
      "nothing to do: step %d of %d%s",
      start,
      num_steps,
      " (stopped early)" if trainer.stopped_early.numpy() else "",
    )
    result["weights_sha256"] = trainer.weights_digest()
    return result

  def make_iterator(step):
    return iter(
      strat.distribute_datasets_from_function(
        lambda ctx: data.train_dataset(
          splits.train, batch_size, seed, splits.binary, start_step=step, input_context=ctx
        )
      )
    )

  iterator = make_iterator(start)
  val_batches = _validation_batches(splits, batch_size, seed)
  if early_stopping_patience and not val_batches:
    raise config.ConfigError(
      "train.early_stopping_patience needs a validation split; "
      "set dataset.validation_size > 0 or the patience to 0"
    )

  write_dir = _write_dir(model_dir, strat)
  try:
    return _train_loop(**locals())
  finally:
    if write_dir != model_dir:  # a non-chief's temporary dir (TF's pattern)
      tf.io.gfile.rmtree(write_dir)
      logging.info("removed worker temporary dir %s", write_dir)


def _train_loop(
  *,
  model_dir,
  num_steps,
  batch_size,
  seed,
  checkpoint_every,
  summary_every,
  validate_every,
  image_every,
  early_stopping_patience,
  early_stopping_metric,
  keep_checkpoints,
  max_bad_steps,
  max_rollbacks,
  rollback_lr_factor,
  kill_points,
  chief,
  splits,
  mdl,
  trainer,
  ckpt,
  latest,
  start,
  result,
  make_iterator,
  iterator,
  val_batches,
  write_dir,
  configured_rates,
  **unused,
):
  """The training loop of `train` once all inputs are checked (writes to write_dir)."""
  del unused
  manager = tf.train.CheckpointManager(
    ckpt,
    os.path.join(write_dir, "checkpoints"),
    max_to_keep=keep_checkpoints,
    step_counter=trainer.step,
  )
  best_manager = tf.train.CheckpointManager(
    tf.train.Checkpoint(model=mdl, step=trainer.step),
    os.path.join(write_dir, "best"),
    max_to_keep=1,
    step_counter=trainer.step,
  )
  config.write_operative_config(write_dir)
  validation_fn = make_validation_fn(mdl)
  train_writer = tf.summary.create_file_writer(os.path.join(write_dir, "summaries", "train"))
  val_writer = tf.summary.create_file_writer(os.path.join(write_dir, "summaries", "validation"))

  def save(step):
    """Saves ckpt-<step> (with the test-only kill points of ASVAE_TEST_KILL_AT)."""
    if ("before_save", step) in kill_points:
      _die()
    options = None
    if ("after_write", step) in kill_points:
      options = tf.train.CheckpointOptions(experimental_write_callbacks=[_die])
    with (
      _kill_inside_tf_saver() if ("mid_write", step) in kill_points else contextlib.nullcontext()
    ):
      path = manager.save(checkpoint_number=step, options=options)
    if ("after_save", step) in kill_points:
      _die()
    return path

  if latest:
    last_good = latest
  else:  # a fresh run: the initial state is the first rollback target
    last_good = save(start)
    logging.info("saved checkpoint %s", last_good)

  def due(every, step):
    return every and step % every == 0

  def guard_summaries(step, skipped):
    if chief:
      with train_writer.as_default(step=step):
        tf.summary.scalar("guard/skipped_steps", skipped)
        tf.summary.scalar("guard/skipped_steps_total", result["guard"]["skipped_steps"])
        tf.summary.scalar("guard/rollbacks", int(trainer.rollbacks.numpy()))

  def rollback(step, reason):
    """Restores last_good (learning rates x rollback_lr_factor); returns its step."""
    done = int(trainer.rollbacks.numpy())
    if done >= max_rollbacks:
      guard_summaries(step, 0)
      train_writer.flush()
      raise TrainingDivergedError(
        f"{reason} at step {step} and the rollback budget train.max_rollbacks={max_rollbacks} "
        f"is used up; stopping (last good checkpoint: {last_good}); lower the learning "
        f"rates or change train.seed, then rerun to resume from it"
      )
    _restore(ckpt, last_good, trainer)
    trainer.rollbacks.assign(done + 1)
    trainer.consecutive_bad.assign(0)
    _set_learning_rates(trainer, configured_rates, rollback_lr_factor)
    back = int(trainer.step.numpy())
    result["guard"]["rollbacks"] = done + 1
    logging.warning(
      "%s at step %d: rollback %d/%d to %s (step %d); learning rates x %g",
      reason,
      step,
      done + 1,
      max_rollbacks,
      last_good,
      back,
      rollback_lr_factor,
    )
    guard_summaries(step, 0)
    return back

  step, last_time, last_step = start, time.time(), start
  run_start, run_start_step = last_time, start
  sums, count, window_skipped, window_done = {}, 0, 0, False
  while step < num_steps:
    boundaries = [num_steps] + [
      (step // e + 1) * e
      for e in (checkpoint_every, summary_every, validate_every, image_every)
      if e
    ]
    n = min(boundaries) - step
    chunk_sums, good, done = trainer.loop(iterator, tf.constant(n, tf.int32))
    good, done = int(good.numpy()), int(done.numpy())
    step = int(trainer.step.numpy())
    chunk_sums = {k: float(v.numpy()) for k, v in chunk_sums.items()}
    skipped = done - good
    result["guard"]["skipped_steps"] += skipped
    window_skipped += skipped
    if skipped:
      logging.warning(
        "skipped %d step(s) with a non-finite loss or gradient (up to step %d)", skipped, step
      )
    for k, v in chunk_sums.items():
      sums[k] = sums.get(k, 0.0) + v
    count += good
    if good:
      result["train"] = {k: v / good for k, v in chunk_sums.items()}
    result["step"] = step

    if int(trainer.consecutive_bad.numpy()) >= max_bad_steps:
      step = rollback(step, f"{max_bad_steps} consecutive non-finite steps")
      iterator = make_iterator(step)
      result["step"] = step
      last_time, last_step, window_done = time.time(), step, False
      continue

    if due(summary_every, step) or step == num_steps:
      now = time.time()
      img_s = (step - last_step) * batch_size / max(now - last_time, 1e-9)
      rate = (step - run_start_step) / max(now - run_start, 1e-9)
      means = {k: v / count for k, v in sums.items()} if count else {}
      if chief:
        with train_writer.as_default(step=step):
          for k, v in means.items():
            tf.summary.scalar(k, v)
          tf.summary.scalar("speed/images_per_second", img_s)
          tf.summary.scalar("learning_rate/generator", float(trainer.g_opt.learning_rate.numpy()))
          if mdl.has_discriminators:
            tf.summary.scalar(
              "learning_rate/discriminator", float(trainer.d_opt.learning_rate.numpy())
            )
      guard_summaries(step, window_skipped)
      shown = " | ".join(
        f"{k.split('/')[-1]} {means[k]:.4g}"
        for k in sorted(means)
        if k.startswith("loss/")
        or k.endswith("neg_elbo")
        or k.endswith("accuracy")
        or k in _SHOWN_RATIOS
      )
      logging.info(
        "step %d/%d | %s | skipped %d | %.0f img/s | ETA %s",
        step,
        num_steps,
        shown,
        window_skipped,
        img_s,
        _format_eta((num_steps - step) / rate if rate > 0 else float("inf")),
      )
      sums, count, window_skipped, last_step = {}, 0, 0, step
      window_done = True

    if chief and (due(image_every, step) or step == num_steps):
      with train_writer.as_default(step=step):
        samples, _ = mdl.sample(64, rng.fold_in(tf.constant([seed, 1], tf.int32), step))
        tf.summary.image("samples", _image_grid(samples, 8))
        if val_batches or len(splits.test):
          x = (
            val_batches[0][:32]
            if val_batches
            else tf.constant(data.to_float(splits.test[:32], splits.binary))
          )
          pairs = tf.reshape(tf.stack([x, mdl.reconstruct(x)], axis=1), [-1] + list(x.shape[1:]))
          tf.summary.image("reconstructions", _image_grid(pairs, 8))

    if val_batches and (due(validate_every, step) or step == num_steps):
      val = _validate(
        validation_fn, val_batches, tf.constant([seed, 2], tf.int32), early_stopping_metric
      )
      result["validation"] = val
      if chief:
        with val_writer.as_default(step=step):
          for k, v in val.items():
            tf.summary.scalar(k, v)
      logging.info(
        "validation at step %d | -ELBO %.3f nats | recon_x %.5f | recon_z %.5f",
        step,
        val["neg_elbo"],
        val["recon_x"],
        val["recon_z"],
      )
      if val["early_stopping_metric"] < trainer.best_metric.numpy():
        trainer.best_metric.assign(val["early_stopping_metric"])
        trainer.bad_validations.assign(0)
        best_manager.save(checkpoint_number=step)
      else:
        trainer.bad_validations.assign_add(1)
        if early_stopping_patience and trainer.bad_validations.numpy() >= early_stopping_patience:
          trainer.stopped_early.assign(True)
          logging.info(
            "early stopping at step %d: no improvement in %d validations",
            step,
            early_stopping_patience,
          )

    # Periodic checkpoints only after a good step (a rollback target inside a bad streak
    # would replay it); the final one always. Never with non-finite weights.
    final = step == num_steps or bool(trainer.stopped_early.numpy())
    if final or (due(checkpoint_every, step) and int(trainer.consecutive_bad.numpy()) == 0):
      if not bool(trainer.weights_finite().numpy()):
        step = rollback(step, "non-finite weights")
        iterator = make_iterator(step)
        result["step"] = step
        last_time, last_step, window_done = time.time(), step, False
        continue
      last_good = save(step)
      logging.info("saved checkpoint %s", last_good)
    if trainer.stopped_early.numpy():
      break
    if window_done:  # img/s measures training steps only, not the work above.
      last_time, window_done = time.time(), False

  train_writer.flush()
  val_writer.flush()
  result["weights_sha256"] = trainer.weights_digest()
  logging.info(
    "final weights sha256 %s (step %d, %d skipped step(s), %d rollback(s))",
    result["weights_sha256"],
    step,
    result["guard"]["skipped_steps"],
    result["guard"]["rollbacks"],
  )
  gin_path = config.write_operative_config(write_dir)
  if chief:
    with open(gin_path) as f:
      export_lib.export(
        mdl,
        os.path.join(model_dir, "saved_model"),
        f.read(),
        step=int(trainer.step.numpy()),
        dataset=splits.name,
      )
  return result
