"""Save/restore/resolve checkpoints; used by training, evaluation and export.

A training model_dir holds model_dir/checkpoints/ (the periodic checkpoints) and
model_dir/best/ (the early-stopping best). Each checkpoint is a `tf.train.Checkpoint`
with (at least) `model` (the `ASVAE`) and `step` (int64 training step).

  * `resolve_checkpoint(model_dir, checkpoint)`: "latest" / "best" / a prefix -> prefix.
  * `restore_model(mdl, checkpoint)`: the model weights (and step) of a checkpoint into a
    built model, for evaluation and export; optimizer state in it is ignored.

This module must not import asvae_tf.train_lib, asvae_tf.evaluation or asvae_tf.export
(they import it).
"""

import os

import tensorflow as tf

from asvae_tf import errors


def resolve_checkpoint(model_dir, checkpoint=None):
  """The checkpoint prefix meant by `checkpoint` for a training model_dir.

  None, "" or "latest": the latest of model_dir/checkpoints; "best": the latest of
  model_dir/best (the early-stopping best); anything else: a checkpoint prefix
  (e.g. D/checkpoints/ckpt-1000), which must exist.

  Returns:
    str, a checkpoint prefix (PREFIX.index exists).
  Raises:
    FileNotFoundError: no such checkpoint.
  """
  if checkpoint in (None, "", "latest", "best"):
    sub = "best" if checkpoint == "best" else "checkpoints"
    found = tf.train.latest_checkpoint(os.path.join(model_dir, sub))
    if found is None:
      raise FileNotFoundError(f"no checkpoint in {os.path.join(model_dir, sub)}")
    return found
  if not tf.io.gfile.exists(checkpoint + ".index"):
    raise FileNotFoundError(f"checkpoint {checkpoint} does not exist (no {checkpoint}.index)")
  return checkpoint


def restore_model(mdl, checkpoint):
  """Restores the weights of a built model from a training checkpoint; returns its step.

  Every model weight must come from the checkpoint (optimizer slots and counters
  in it are ignored).

  Args:
    mdl: a built `model.ASVAE` (`build_all()` done) of the checkpoint's architecture.
    checkpoint: a checkpoint prefix (see `resolve_checkpoint`).
  Returns:
    int, the training step stored in the checkpoint.
  Raises:
    errors.CheckpointMismatchError (a ConfigError): a checkpoint of a different
      architecture or data shape, as one readable line instead of a restore traceback.
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  try:
    status = tf.train.Checkpoint(model=mdl, step=step).restore(checkpoint)
    status.assert_existing_objects_matched()
    status.expect_partial()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise errors.CheckpointMismatchError(
      f"checkpoint {checkpoint} does not match the configured model "
      f"(different architecture or data shape?): {errors.one_line(e)[:300]}"
    ) from None
  return int(step.numpy())
