"""The training run's checkpoints: save (with the hooks' save points), restore, best weights.

Kill safety: `tf.train.CheckpointManager` writes a checkpoint's files (shards in
`ckpt-N_temp/`, then merged into `ckpt-N.index` / `.data-*`) BEFORE it rewrites the
`checkpoint` state file (atomically, by rename), and resumption only follows that state
file, so a process killed at any point resumes from the last complete checkpoint.

model_dir/checkpoints/ckpt-<step>.*  model, both optimizers, step, early-stopping and guard
                                     state, loss scales (`Trainer.checkpointed`)
model_dir/best/ckpt-<step>.*         weights with the best validation early-stopping metric
"""

import os

from absl import logging
import tensorflow as tf

from asvae_tf import checkpoints
from asvae_tf import gin_config
from asvae_tf.errors import CheckpointMismatchError, ConfigError, DiskFullError, one_line
from asvae_tf.train.hooks import NO_HOOKS

GUARD_STATE = ("consecutive_bad_steps", "rollbacks")
LOSS_SCALE_STATE = ("generator_loss_scale", "discriminator_loss_scale")  # precision.py


class CheckpointKeeper:
  """Saves and restores the full training state of a Trainer under write_dir.

  checkpoint: the run's tf.train.Checkpoint of trainer.checkpointed() (the one a resume
    restored into: its save_counter continues).
  """

  def __init__(self, trainer, checkpoint, write_dir, keep, hooks=NO_HOOKS):
    self.trainer = trainer
    self.hooks = hooks
    self.checkpoint = checkpoint
    self.manager = tf.train.CheckpointManager(
      self.checkpoint,
      os.path.join(write_dir, "checkpoints"),
      max_to_keep=keep,
      step_counter=trainer.step,
    )
    self.best = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=trainer.model, step=trainer.step),
      os.path.join(write_dir, "best"),
      max_to_keep=1,
      step_counter=trainer.step,
    )

  def save(self, step):
    """Writes ckpt-<step> and returns its prefix (hooks run at each save point)."""
    self.hooks.before_save(step)
    try:
      with self.hooks.saving(step):
        options = self.hooks.checkpoint_options(step)
        path = self.manager.save(checkpoint_number=step, options=options)
    except (OSError, tf.errors.OpError) as e:
      if not checkpoints.is_disk_full(e):
        raise
      # The `checkpoint` state file is rewritten only after a complete write, so a restart
      # never picks up the partial files (they are left for inspection).
      raise DiskFullError(
        f"no space left on device while writing checkpoint {step} to "
        f"{self.manager.directory}; the previous one ({self.manager.latest_checkpoint}) is "
        f"intact: free space and rerun the same command to resume from it"
      ) from None
    self.hooks.after_save(step)
    return path

  def save_best(self, step):
    return self.best.save(checkpoint_number=step)

  def restore(self, path):
    """Restores path into the trainer; restore_training_state's errors."""
    restore_training_state(self.checkpoint, path, self.trainer)


def restore_latest_intact(ckpt, model_dir, trainer, set_aside=True):
  """Restores the newest training checkpoint of model_dir that is not damaged.

  Damaged newer ones are reported (one line each) and, with set_aside (the chief), moved
  to model_dir/checkpoints/damaged/ and dropped from the `checkpoint` state file, so that
  later saves neither pick them up nor overwrite them; nothing is deleted.
  Returns the restored prefix, or None when model_dir has no checkpoint.
  Raises:
    errors.CheckpointCorruptError: none restores; errors.CheckpointMismatchError.
  """
  directory = os.path.join(model_dir, "checkpoints")
  paths = checkpoints.recorded(directory)
  if not paths:
    return None
  path, _ = checkpoints.first_intact(
    paths, lambda p: restore_training_state(ckpt, p, trainer), "checkpoint"
  )
  damaged = paths[: paths.index(path)]
  if damaged and set_aside:
    _set_aside(directory, damaged, paths[paths.index(path) :])
  return path


def _set_aside(directory, damaged, kept):
  """Moves the damaged checkpoints' files to directory/damaged/; records `kept` only."""
  target = os.path.join(directory, "damaged")
  os.makedirs(target, exist_ok=True)
  for prefix in damaged:
    for name in os.listdir(directory):
      if name.startswith(os.path.basename(prefix) + "."):
        os.replace(os.path.join(directory, name), os.path.join(target, name))
    logging.warning("moved the damaged checkpoint %s to %s", prefix, target)
  tf.compat.v1.train.update_checkpoint_state(  # (no TF2 equivalent)
    directory, model_checkpoint_path=kept[0], all_model_checkpoint_paths=list(reversed(kept))
  )


def restore_training_state(ckpt, path, trainer=None):
  """Restores path into ckpt; a checkpoint of another model -> CheckpointMismatchError.

  Checkpoints written before the non-finite guard existed (no guard state) restore
  everything else, strictly, with the guard state left at zero; likewise checkpoints
  written before the loss scales existed (their scales keep their initial value).
  """
  try:
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    absent = [group for group in (GUARD_STATE, LOSS_SCALE_STATE) if not names.issuperset(group)]
    if trainer is not None and absent:
      absent = sum(absent, ())
      ckpt = tf.train.Checkpoint(
        **{k: v for k, v in trainer.checkpointed().items() if k not in absent}
      )
    ckpt.restore(path).assert_consumed()
  except (AssertionError, ValueError, tf.errors.OpError, *checkpoints.CORRUPTION_ERRORS) as e:
    if checkpoints.is_damaged(e):
      raise  # a damaged checkpoint: the caller falls back to the previous one
    raise CheckpointMismatchError(
      f"cannot resume from {path}: it does not match the configured model (another "
      f"architecture, objective or image shape?); train into a new --model_dir or use the "
      f"gin config it was trained with ({one_line(e, 300)})"
    ) from None


def check_same_early_stopping_metric(model_dir, metric):
  """The checkpointed best validation value is in the units of the run's early-stopping
  metric (recon ~0.05, -ELBO ~100 nats): resuming with the other metric would compare the
  two. ConfigError if model_dir/operative_config.gin names another one."""
  previous = gin_config.operative_value(model_dir, "train.early_stopping_metric", "recon")
  if previous != metric:
    raise ConfigError(
      f"{model_dir} was trained with train.early_stopping_metric={previous!r}; resuming with "
      f"{metric!r} would compare its best value in other units: keep {previous!r} or train "
      f"into a new --model_dir"
    )


def check_same_f1_network(model_dir, f1_residual_inputs):
  """model.f1_residual_inputs = 'none' holds no f1 network (and the discriminator optimizer
  no state for it), so its checkpoints and the other settings' do not map onto each other.
  ConfigError if model_dir/operative_config.gin switches between 'none' and the others."""
  previous = gin_config.operative_value(model_dir, "model.f1_residual_inputs", "x")
  if (previous == "none") != (f1_residual_inputs == "none"):
    raise ConfigError(
      f"{model_dir} was trained with model.f1_residual_inputs={previous!r}; resuming with "
      f"{f1_residual_inputs!r} would add or drop the f1 network its checkpoints hold: keep "
      f"{previous!r} or train into a new --model_dir"
    )
