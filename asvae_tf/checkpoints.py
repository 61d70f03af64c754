"""Save/restore/resolve checkpoints; used by training, evaluation and export.

A training model_dir holds model_dir/checkpoints/ (the periodic checkpoints) and
model_dir/best/ (the early-stopping best). Each checkpoint is a `tf.train.Checkpoint`
with (at least) `model` (the `ASVAE`) and `step` (int64 training step).

  * DEFAULT (None) and `default_choice(model_dir)`: THE default checkpoint of every reader
    of a model_dir (evaluate, export, the end-of-training export that sample reads,
    reproduce, asvae_tf.load): the early-stopping best (model_dir/best) when there is one,
    else the latest of model_dir/checkpoints.
  * `resolve_checkpoint(model_dir, checkpoint)`: None / "latest" / "best" / a prefix -> prefix.
  * `chosen_because(model_dir, checkpoint, prefix)`: why, in one phrase (export metadata).
  * `restore_model(mdl, checkpoint)`: the model weights (and step) of a checkpoint into a
    built model, for evaluation and export; optimizer state in it is ignored.

This module must not import asvae_tf.train_lib, asvae_tf.evaluation or asvae_tf.export
(they import it).
"""

import errno
import os

from absl import logging
import tensorflow as tf

from asvae_tf import errors
from asvae_tf import gin_config

# The default checkpoint: `checkpoint=None` (or "") means default_choice(model_dir).
DEFAULT = None
_NAMED = (None, "", "latest", "best")

# How a damaged checkpoint fails to restore (measured: a truncated data file -> IndexError
# "Read less bytes than requested", a flipped byte -> DataLossError (CRC), a missing index
# -> NotFoundError). A checkpoint of ANOTHER model fails with AssertionError / ValueError
# instead: that is a configuration error, and no older checkpoint would fit either.
CORRUPTION_ERRORS = (tf.errors.DataLossError, tf.errors.NotFoundError,
                     tf.errors.OutOfRangeError, IndexError, EOFError)  # fmt: skip
# ... and some arrive as other TF errors (e.g. a CRC mismatch inside a restore function):
_DAMAGE_MARKERS = ("Checksum does not match", "Read less bytes", "Failed to find any matching",
                   "Unsuccessful TensorSliceReader", "Data loss", "truncated", "corrupt")  # fmt: skip


def is_damaged(e):
  """True if `e`, raised by a restore, means the checkpoint's files are damaged."""
  if isinstance(e, CORRUPTION_ERRORS):
    return True
  return isinstance(e, tf.errors.OpError) and any(m in str(e) for m in _DAMAGE_MARKERS)


def recorded(directory):
  """The checkpoints the `checkpoint` state file of `directory` records, newest first."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
  # TensorFlow already prefixes relative entries with `directory` (joining again broke a
  # relative model_dir such as runs/mnist); older versions did not.
  paths = [
    p if os.path.isabs(p) or os.path.normpath(os.path.dirname(p)) == os.path.normpath(directory) else
    os.path.join(directory, p)
    for p in paths
  ]  # fmt: skip
  return [p for p in reversed(paths) if p]


def first_intact(paths, restore, what="checkpoint"):
  """restore(path) for the newest path that is not damaged; returns (path, its result).

  A damaged checkpoint (CORRUPTION_ERRORS) is reported in one warning line and skipped;
  nothing is deleted. Other errors (a checkpoint of another model) propagate.
  Raises:
    errors.CheckpointCorruptError: every path is damaged (or there is none).
  """
  damaged = []
  for path in paths:
    try:
      return path, restore(path)
    except Exception as e:  # pylint: disable=broad-except
      if not is_damaged(e):
        raise
      damaged.append(path)
      logging.warning("%s %s is damaged (%s); trying the previous one", what, path,
                      errors.one_line(e, 160))  # fmt: skip
  raise errors.CheckpointCorruptError(
    f"no {what} restores: {', '.join(damaged) or 'none recorded'} "
    f"{'are' if len(damaged) > 1 else 'is'} damaged; the files are left in place"
  )


def is_disk_full(e):
  """True for an error of a write that ran out of disk space (OSError or TF's error)."""
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    return True
  return isinstance(e, tf.errors.OpError) and "No space left on device" in str(e)


def default_choice(model_dir):
  """The rule of DEFAULT: "best" if model_dir/best records a checkpoint (validation ran,
  so early stopping chose one), else "latest"."""
  return "best" if recorded(os.path.join(model_dir, "best")) else "latest"


def resolve_checkpoint(model_dir, checkpoint=DEFAULT):
  """The checkpoint prefix meant by `checkpoint` for a training model_dir.

  None or "" (DEFAULT): `default_choice(model_dir)`. "latest": the newest checkpoint the
  `checkpoint` state file of model_dir/checkpoints records (even if damaged:
  `restore_latest_intact` falls back); "best": the same in model_dir/best (the
  early-stopping best); anything else: a checkpoint prefix (e.g.
  D/checkpoints/ckpt-1000), which must exist.

  Returns:
    str, a checkpoint prefix.
  Raises:
    FileNotFoundError: no such checkpoint.
  """
  if checkpoint in _NAMED:
    if checkpoint in (None, ""):
      checkpoint = default_choice(model_dir)
    sub = "best" if checkpoint == "best" else "checkpoints"
    found = recorded(os.path.join(model_dir, sub))  # the newest, even if damaged
    if not found:
      raise FileNotFoundError(f"no checkpoint in {os.path.join(model_dir, sub)}")
    return found[0]
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
    a damaged checkpoint's error unchanged (`is_damaged`; see `restore_latest_intact`).
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  try:
    status = tf.train.Checkpoint(model=mdl, step=step).restore(checkpoint)
    status.assert_existing_objects_matched()
    status.expect_partial()
  except (AssertionError, ValueError, tf.errors.OpError, *CORRUPTION_ERRORS) as e:
    if is_damaged(e):
      raise  # the caller falls back to an older checkpoint
    raise errors.CheckpointMismatchError(
      f"checkpoint {checkpoint} does not match the configured model "
      f"(different architecture or data shape?): {errors.one_line(e)[:300]}"
    ) from None
  return int(step.numpy())


def restore_latest_intact(mdl, model_dir, checkpoint=DEFAULT):
  """resolve_checkpoint + restore_model, falling back past damaged checkpoints.

  For "latest" / "best" (or None) the newest recorded checkpoint that restores is used
  (a damaged one is reported in one line and skipped, never deleted; for the default, a
  damaged best falls back to the latest); an explicit prefix is used as given.
  Returns (prefix, step).
  Raises:
    FileNotFoundError: no checkpoint; errors.CheckpointMismatchError: another model's;
    errors.CheckpointCorruptError: none restores.
  """
  newest = resolve_checkpoint(model_dir, checkpoint)
  paths = [newest]
  if checkpoint in _NAMED:
    paths = recorded(os.path.dirname(newest)) or paths
  if checkpoint in (None, "") and default_choice(model_dir) == "best":
    paths += recorded(os.path.join(model_dir, "checkpoints"))
  return first_intact(paths, lambda path: restore_model(mdl, path))


def chosen_because(model_dir, checkpoint, prefix):
  """Why `prefix` (restored by restore_latest_intact for `checkpoint`) was chosen: one
  phrase, e.g. "default: early stopping best validation recon" (export metadata)."""
  if checkpoint not in _NAMED:
    return "requested: a checkpoint prefix"
  how = "default" if checkpoint in (None, "") else f"requested {checkpoint!r}"
  directory = os.path.abspath(os.path.dirname(prefix))
  newest = [os.path.abspath(p) for p in recorded(directory)[:1]] == [os.path.abspath(prefix)]
  older = "" if newest else " (newer ones are damaged)"
  if directory == os.path.abspath(os.path.join(model_dir, "best")):
    metric = gin_config.operative_value(model_dir, "train.early_stopping_metric", "recon")
    return f"{how}: early stopping best validation {metric}{older}"
  if checkpoint in (None, "") and default_choice(model_dir) == "best":
    return f"{how}: the latest checkpoint (the best one does not restore){older}"
  none = " (no best checkpoint: no validation)" if checkpoint in (None, "") else ""
  return f"{how}: the latest checkpoint{none}{older}"
