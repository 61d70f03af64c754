"""`train` (gin `train`): checks the settings, builds everything, resumes, runs the Controller."""

import contextlib
import os

from absl import logging
import gin
import keras
import tensorflow as tf

from asvae_tf import checkpoints
from asvae_tf import data
from asvae_tf import gin_config
from asvae_tf import model as model_lib
from asvae_tf.errors import ConfigError
from asvae_tf.train import actions
from asvae_tf.train import board
from asvae_tf.train import controller as controller_lib
from asvae_tf.train import keeper as keeper_lib
from asvae_tf.train import lock as lock_lib
from asvae_tf import precision
from asvae_tf.train import preemption
from asvae_tf.train import strategy as strategy_lib
from asvae_tf.train.hooks import NO_HOOKS
from asvae_tf.train import step_options
from asvae_tf.train import threads
from asvae_tf.train.trainer import Trainer


def _check_int(name, value, minimum):
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(f"train.{name} must be an int >= {minimum}, got {value!r}")


def check_settings(num_steps, batch_size, seed, max_bad_steps, max_rollbacks,
                   rollback_lr_factor, early_stopping_metric, adversarial_warmup_steps,
                   keep_checkpoints=3):  # fmt: skip
  """ConfigError (one line) for the first bad `train.*` value."""
  if num_steps <= 0:
    raise ConfigError(f"train.num_steps must be positive, got {num_steps}")
  if batch_size is not None and batch_size <= 0:  # None: train.per_replica_batch_size
    raise ConfigError(f"train.batch_size must be positive, got {batch_size}")
  if not 0 <= seed < 2**31:
    raise ConfigError(f"train.seed must be in [0, 2**31), got {seed}")
  _check_int("max_bad_steps", max_bad_steps, 1)
  _check_int("max_rollbacks", max_rollbacks, 0)
  if not (isinstance(rollback_lr_factor, (int, float)) and 0 < rollback_lr_factor <= 1):
    raise ConfigError(f"train.rollback_lr_factor must be in (0, 1], got {rollback_lr_factor!r}")
  if early_stopping_metric not in actions.EARLY_STOPPING_METRICS:
    raise ConfigError(
      f"train.early_stopping_metric must be one of {actions.EARLY_STOPPING_METRICS}, got "
      f"{early_stopping_metric!r}"
    )
  _check_int("adversarial_warmup_steps", adversarial_warmup_steps, 0)
  _check_int("keep_checkpoints", keep_checkpoints, 2)  # a damaged latest one needs a fallback


@gin.configurable("train", denylist=["model_dir", "hooks"])
def train(model_dir, num_steps=gin.REQUIRED, batch_size=100, seed=0, checkpoint_every=1000,
          summary_every=100, validate_every=1000, image_every=5000, discriminator_steps=1,
          strategy="mirrored", jit_compile=False, early_stopping_patience=0,
          early_stopping_metric="recon", adversarial_warmup_steps=0, keep_checkpoints=3,
          max_bad_steps=10, max_rollbacks=3, rollback_lr_factor=0.5,
          per_replica_batch_size=None, deterministic=False, update_scheme="alternating",
          export_saved_model=True, dtype_policy="float32", intra_op_threads=None,
          inter_op_threads=None, hooks=NO_HOOKS):  # fmt: skip
  """Trains the gin-configured model on the gin-configured dataset.

  Args:
    model_dir: output directory (layout: see controller.py).
    num_steps: total generator steps (each consumes one global batch).
    batch_size: GLOBAL batch size (split over replicas; per-replica size must be even);
      None when per_replica_batch_size gives it.
    seed: run seed; noise and data order are pure functions of (seed, step).
    checkpoint_every, summary_every, validate_every, image_every: in steps (0 = never;
      a checkpoint is always written at the end).
    discriminator_steps: discriminator updates per generator update.
    strategy: "mirrored", "default" or "multi_worker" (TF_CONFIG).
    jit_compile: True: XLA-compile the per-replica loss/gradient computation; 'flow':
      XLA-compile only the planar flow's layer loops (docs/training.md); False: no XLA.
    early_stopping_patience: stop after this many validations without improvement of
      the early-stopping metric; 0 = off (the best checkpoint is still kept).
    early_stopping_metric: "recon" (the average validation reconstruction loss of x
      and z, section 5) or "elbo" (the validation -ELBO, nats). Decides best/.
    adversarial_warmup_steps: the learned ratio terms of eq. (11) (a joint f, or an
      explicit f's residual) are weighted min(1, (step + 1) / W) in the generator
      update; 0 = no warm-up.
    keep_checkpoints: how many recent checkpoints to keep (>= 2: when the latest one is
      damaged, training resumes from the previous one).
    max_bad_steps: consecutive non-finite (skipped) steps that trigger a rollback.
    max_rollbacks: rollbacks allowed in the whole run; one more bad streak stops
      training with TrainingDivergedError.
    rollback_lr_factor: each rollback multiplies both learning rates by this (1 = keep).
    per_replica_batch_size: rows per replica (even); the global batch is then this x
      replicas in sync (a different batch_size is ignored, with a warning).
    deterministic: call tf.config.experimental.enable_op_determinism() (process-wide;
      slower GPU kernels, some ops raise UnimplementedError; see docs/training.md).
    export_saved_model: at the end, export the default checkpoint (the early-stopping
      best, else the latest) to model_dir/saved_model/<step>/ (False: no export; run
      asvae-export later).
    update_scheme: 'alternating' (the paper's: a discriminator pass, then a generator
      pass) or 'shared' (one forward pass feeds both updates; needs
      discriminator_steps = 1; see trainer.py and docs/training.md).
    dtype_policy: 'float32', 'mixed_bfloat16' or 'mixed_float16' (dynamic loss scaling):
      what the encoder, decoder and discriminators compute in; variables, the posterior
      and flows, likelihoods and losses stay float32 (precision.py). Set while
      the model is built, then the previous Keras global policy is restored.
    intra_op_threads, inter_op_threads: sizes of TensorFlow's CPU thread pools (None:
      TensorFlow's choice), set before anything else; a speed setting (bit-identical weights where
      measured: threads.py; gin/mnist_fast.gin sets intra_op_threads = 1).
    hooks: a `hooks.Hooks` (test harnesses; not gin-configurable). Default: none.
  On SIGTERM / SIGINT (main thread) the step in flight completes, a checkpoint is saved,
  summaries are flushed and errors.Preempted is raised (CLI exit code 75); rerun to resume.
  Returns:
    dict with the final step, the last training metrics, the last validation metrics,
    "guard" ({"skipped_steps", "rollbacks"}) and "weights_sha256" (digest of all model and
    optimizer variables and the step).
  Raises:
    errors.ConfigError (incl. CheckpointMismatchError), errors.DataError: bad settings.
    errors.TrainingDivergedError: non-finite steps persisted through max_rollbacks rollbacks.
    errors.ModelDirLockedError: another live process trains into model_dir.
    errors.CheckpointCorruptError: no checkpoint of model_dir restores.
    errors.DiskFullError: a checkpoint or the export ran out of disk space.
    errors.Preempted: SIGTERM / SIGINT (after saving a checkpoint).
  """
  check_settings(num_steps, batch_size, seed, max_bad_steps, max_rollbacks, rollback_lr_factor,
                 early_stopping_metric, adversarial_warmup_steps, keep_checkpoints)  # fmt: skip
  threads.apply(intra_op_threads, inter_op_threads)  # before TensorFlow's runtime starts
  # (where it already runs with other sizes: a warning, training goes on; threads.py)
  _set_determinism(deterministic)
  if not isinstance(export_saved_model, bool):
    raise ConfigError(f"train.export_saved_model must be True or False, got {export_saved_model!r}")
  precision.check_policy(dtype_policy)
  step_options.check_jit_compile_value(jit_compile)  # before any data is loaded
  if update_scheme not in step_options.UPDATE_SCHEMES:
    raise ConfigError(
      f"train.update_scheme must be one of {step_options.UPDATE_SCHEMES}, got {update_scheme!r}"
    )
  strat = strategy_lib.make_strategy(strategy)
  batch_size = strategy_lib.global_batch_size(batch_size, per_replica_batch_size, strat)
  splits = data.load_splits()
  logging.info("data: %s", splits.note)
  logging.info("strategy: %s with %d replica(s); global batch %d", strategy,
               strat.num_replicas_in_sync, batch_size)  # fmt: skip
  keras.utils.set_random_seed(seed)  # Deterministic weight initialisation.
  mdl = _build_model(splits, strat, dtype_policy)
  trainer = Trainer(strat, mdl, batch_size, seed, discriminator_steps, jit_compile,
                    max_bad_steps=max_bad_steps,
                    adversarial_warmup_steps=adversarial_warmup_steps, hooks=hooks,
                    update_scheme=update_scheme)  # fmt: skip
  val_batches = actions.validation_batches(splits, batch_size, seed)
  if early_stopping_patience and not val_batches:
    raise ConfigError(
      "train.early_stopping_patience needs a validation split; "
      "set dataset.validation_size > 0 or the patience to 0"
    )

  def make_iterator(step):
    return iter(strat.distribute_datasets_from_function(
      lambda ctx: data.train_dataset(splits.train, batch_size, seed, splits.binary,
                                     start_step=step, input_context=ctx)))  # fmt: skip

  settings = dict(seed=seed, num_steps=num_steps, keep_checkpoints=keep_checkpoints,
                  early_stopping_metric=early_stopping_metric,
                  early_stopping_patience=early_stopping_patience,
                  rollback_lr_factor=rollback_lr_factor, export=bool(export_saved_model),
                  periods={"checkpoint": checkpoint_every, "summary": summary_every,
                           "validation": validate_every, "images": image_every},
                  guard={"max_bad_steps": max_bad_steps, "max_rollbacks": max_rollbacks,
                         "rollback_lr_factor": rollback_lr_factor})  # fmt: skip
  # One writer per model_dir (the chief; other workers write to their own temporary dir).
  lock = lock_lib.ModelDirLock(model_dir) if strategy_lib.is_chief(strat) else None
  with lock or contextlib.nullcontext():
    return _resume_and_run(trainer, splits, val_batches, make_iterator, model_dir, settings,
                           hooks, lock)  # fmt: skip


def _build_model(splits, strat, dtype_policy):
  """The gin-configured model for `splits`, built under `strat` and the dtype policy, with
  an MLP decoder's output bias set from the training images (`mlp_decoder.output_bias`;
  a resumed run then restores its checkpoint over it)."""
  with strat.scope(), precision.policy_scope(dtype_policy):
    mdl = model_lib.build_for_data(splits)
    if hasattr(mdl.decoder, "initialise_output_bias"):  # conv decoders have no such setting
      mdl.decoder.initialise_output_bias(splits.train)
  return mdl


def _set_determinism(deterministic):
  """train.deterministic: enables TF op determinism (process-wide, cannot be undone)."""
  if not isinstance(deterministic, bool):
    raise ConfigError(f"train.deterministic must be True or False, got {deterministic!r}")
  if deterministic:
    tf.config.experimental.enable_op_determinism()
    logging.info("op determinism enabled (train.deterministic = True)")


def _resume_and_run(trainer, splits, val_batches, make_iterator, model_dir, settings, hooks,
                    lock):  # fmt: skip
  """Resumes from model_dir (if it has checkpoints) and runs the rest of training."""
  # Everything that can fail on bad input happens before anything is written.
  ckpt = tf.train.Checkpoint(**trainer.checkpointed())
  latest, settings["guard"]["configured_rates"] = _resume(
    model_dir, trainer, ckpt, settings["early_stopping_metric"], settings["rollback_lr_factor"],
    set_aside=lock is not None,
  )  # fmt: skip
  start = int(trainer.step.numpy())
  result = {"step": start, "train": {}, "validation": {},
            "guard": {"skipped_steps": 0, "rollbacks": int(trainer.rollbacks.numpy())}}  # fmt: skip
  if start >= settings["num_steps"] or bool(trainer.stopped_early.numpy()):
    logging.info("nothing to do: step %d of %d%s", start, settings["num_steps"],
                 " (stopped early)" if trainer.stopped_early.numpy() else "")  # fmt: skip
    result["weights_sha256"] = trainer.weights_digest()
    return result
  if lock is not None:
    lock.write_holder()
  write_dir = strategy_lib.write_dir(model_dir, trainer.strategy)
  try:
    return _run(trainer, ckpt, splits, val_batches, make_iterator, model_dir, write_dir,
                latest, result, settings, hooks)  # fmt: skip
  finally:
    if write_dir != model_dir:  # a non-chief's temporary dir (TF's pattern)
      tf.io.gfile.rmtree(write_dir)
      logging.info("removed worker temporary dir %s", write_dir)


def _resume(model_dir, trainer, ckpt, early_stopping_metric, rollback_lr_factor, set_aside):
  """Restores model_dir's newest intact checkpoint, if any (damaged newer ones are
  reported and, with set_aside, moved aside); returns (its prefix or None, the
  gin-configured learning rates)."""
  configured_rates = [float(opt.learning_rate.numpy()) for opt in (trainer.g_opt, trainer.d_opt)]
  latest = None
  if checkpoints.recorded(os.path.join(model_dir, "checkpoints")):  # even if damaged
    keeper_lib.check_same_early_stopping_metric(model_dir, early_stopping_metric)
    keeper_lib.check_same_f1_network(model_dir, trainer.model.f1_residual_inputs)
    latest = keeper_lib.restore_latest_intact(ckpt, model_dir, trainer, set_aside)
    controller_lib.set_learning_rates(trainer, configured_rates, rollback_lr_factor)
    logging.info("resumed from %s at step %d", latest, int(trainer.step.numpy()))
  return latest, configured_rates


def _run(trainer, ckpt, splits, val_batches, make_iterator, model_dir, write_dir, latest,
         result, settings, hooks):  # fmt: skip
  """Sets up checkpoints, summaries and actions in write_dir; runs the Controller."""
  chief = strategy_lib.is_chief(trainer.strategy)
  keeper = keeper_lib.CheckpointKeeper(trainer, ckpt, write_dir, settings["keep_checkpoints"],
                                       hooks)  # fmt: skip
  gin_config.write_operative_config(write_dir)
  writers = [tf.summary.create_file_writer(os.path.join(write_dir, "summaries", kind))
             for kind in ("train", "validation")]  # fmt: skip
  if chief:
    board.write_config_text(writers[0], int(trainer.step.numpy()))
  seed, num_steps = settings["seed"], settings["num_steps"]
  acts = {
    "summary": actions.TrainSummaries(writers[0], settings["periods"]["summary"], trainer,
                                      num_steps, chief),
    "images": actions.ImageSummaries(writers[0], trainer.model, seed,
                                     _image_inputs(splits, val_batches)) if chief else None,
    "validation": actions.Validation(writers[1], trainer, keeper, val_batches, seed,
                                     settings["early_stopping_metric"],
                                     settings["early_stopping_patience"], chief)
    if val_batches else None,
  }  # fmt: skip
  with preemption.PreemptionWatcher(trainer.stop_requested) as watcher:
    ctl = controller_lib.Controller(trainer, keeper, make_iterator, num_steps,
                                    settings["periods"], acts, settings["guard"], writers,
                                    watcher)  # fmt: skip
    result = ctl.run(int(trainer.step.numpy()), latest, result)
  if chief:  # hparams session, embedding projector
    board.write_end_of_training(os.path.join(write_dir, "summaries"), trainer.model, val_batches,
                                splits.validation_labels, result["step"])  # fmt: skip
  return controller_lib.finish(trainer, result, write_dir, model_dir, chief and settings["export"],
                               writers)  # fmt: skip


def _image_inputs(splits, val_batches):
  """float32 [32, H, W, C] inputs of the reconstruction summaries, or None."""
  if val_batches:
    return val_batches[0][:32]
  if len(splits.test):
    return tf.constant(data.to_float(splits.test[:32], splits.binary))
  return None
