"""The training entry point (gin `train`) and its outer loop (orbit's Controller).

`train(model_dir)` checks the settings, loads the data, builds model and `Trainer`,
resumes from model_dir's latest checkpoint if there is one, then hands over to
`Controller.run`: run the compiled step loop up to the next action boundary, then the
actions (`actions.py`: summaries, images, validation + early stopping) and a checkpoint,
until num_steps; finally the operative config and the SavedModel export (of the
early-stopping best checkpoint when there is one).

Resumption: the noise of global step s is keyed on (train.seed, s) and the data batch of
step s is a pure function of (dataset, train.seed, s) (`data.train_dataset`), so the
checkpointed step counter IS the RNG state and the data position. Rerunning the same
command restores the latest checkpoint of model_dir/checkpoints and continues; a fresh
run saves `ckpt-0` before its first step.

Non-finite guard (see trainer.py): after `train.max_bad_steps` consecutive bad steps the
controller rolls back to the last good checkpoint, multiplying the learning rates by
`train.rollback_lr_factor`; after `train.max_rollbacks` rollbacks it stops with
`TrainingDivergedError`. Checkpoints are only written after a good step and only with
finite weights.

model_dir layout:
  operative_config.gin        gin bindings actually used
  checkpoints/ckpt-<step>.*   model, both optimizers, step, early-stopping and guard state
  best/ckpt-<step>.*          weights with the best validation early-stopping metric
  saved_model/<step>/         the export (export.py) of the default checkpoint
                              (checkpoints.DEFAULT: the best, else the final weights)
  summaries/                  TensorBoard: the hparams session (board.py, at the end)
  summaries/train/            TensorBoard: losses, discriminator accuracy/logits, lr, img/s,
                              images, guard/skipped_steps, guard/rollbacks, gin config text
  summaries/validation/       TensorBoard: -ELBO, recon_x, recon_z, early-stopping metric;
                              the embedding projector (board.py, at the end)
  LOCK_HOLDER                 pid / host of the process holding the model_dir lock (lock.py)
  checkpoints/damaged/        damaged checkpoints set aside on resume (keeper.py)
Non-chief workers of a multi-worker run write the same layout to
model_dir/workertemp_<task_id>, deleted when training ends (TensorFlow's pattern).
"""

import math
import os

from absl import logging
import tensorflow as tf

from asvae_tf import gin_config
from asvae_tf import export
from asvae_tf import precision
from asvae_tf import checkpoints
from asvae_tf import errors
from asvae_tf.errors import TrainingDivergedError
from asvae_tf.train import actions


def set_learning_rates(trainer, configured, factor):
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


class Controller:
  """Runs the trainer in chunks between action boundaries; guards, checkpoints, actions.

  periods: dict with the periods (steps, 0 = never) of "checkpoint", "summary",
    "validation" and "images".
  actions_: dict "summary" -> TrainSummaries, "images" -> ImageSummaries or None,
    "validation" -> Validation or None.
  guard: dict max_bad_steps, max_rollbacks, rollback_lr_factor, configured_rates.
  """

  def __init__(self, trainer, keeper, make_iterator, num_steps, periods, actions_, guard,
               writers=(), watcher=None):  # fmt: skip
    self.trainer, self.keeper, self.make_iterator = trainer, keeper, make_iterator
    self.num_steps, self.periods, self.actions, self.guard = num_steps, periods, actions_, guard
    self.writers, self.watcher = writers, watcher
    self.result = None
    self.last_good = None
    self.saved_step = None

  def run(self, start, latest, result):
    """Trains from step `start` to num_steps (or early stopping); returns `result`."""
    self.result = result
    self.last_good = latest or self._save(start)  # a fresh run: ckpt-0, the first rollback target
    step, iterator = start, self.make_iterator(start)
    logging.info("training from step %d to %d", start, self.num_steps)
    summaries = self.actions["summary"]
    while step < self.num_steps:
      if self.trainer.stop_now():
        self._preempt(step)
      step, bad_streak = self._run_chunk(iterator, step)
      if self.trainer.stop_now() and step < self.num_steps:
        self._preempt(step)
      if bad_streak:
        step = self._rollback(step, f"{self.guard['max_bad_steps']} consecutive non-finite steps")
        iterator = self.make_iterator(step)
        continue
      self._run_actions(step)
      final = step == self.num_steps or bool(self.trainer.stopped_early.numpy())
      due = actions.due(self.periods["checkpoint"], step)
      if final or (due and int(self.trainer.consecutive_bad.numpy()) == 0):
        if not bool(self.trainer.weights_finite().numpy()):
          step = self._rollback(step, "non-finite weights")
          iterator = self.make_iterator(step)
          continue
        self.last_good = self._save(step)
      if self.trainer.stopped_early.numpy():
        break
      summaries.restart_clock()
    return self.result

  def _next_boundary(self, step):
    periods = [e for e in self.periods.values() if e]
    return min([self.num_steps] + [(step // e + 1) * e for e in periods])

  def _run_chunk(self, iterator, step):
    """Runs the steps up to the next boundary; returns (step, bad streak reached)."""
    n = self._next_boundary(step) - step
    chunk_sums, good, done = self.trainer.loop(iterator, tf.constant(n, tf.int32))
    good, done = int(good.numpy()), int(done.numpy())
    step = int(self.trainer.step.numpy())
    skipped = done - good
    self.actions["summary"].record({k: float(v.numpy()) for k, v in chunk_sums.items()}, good,
                                   skipped)  # fmt: skip
    self.result["guard"]["skipped_steps"] += skipped
    if skipped:
      logging.warning(
        "skipped %d step(s) with a non-finite loss or gradient (up to step %d)", skipped, step
      )
    if good:
      self.result["train"] = {k: float(v.numpy()) / good for k, v in chunk_sums.items()}
    self.result["step"] = step
    return step, int(self.trainer.consecutive_bad.numpy()) >= self.guard["max_bad_steps"]

  def _run_actions(self, step):
    final = step == self.num_steps
    if actions.due(self.periods["summary"], step) or final:
      self.actions["summary"](step)
    if self.actions["images"] and (actions.due(self.periods["images"], step) or final):
      self.actions["images"](step)
    if self.actions["validation"] and (actions.due(self.periods["validation"], step) or final):
      self.result["validation"] = self.actions["validation"](step)

  def _preempt(self, step):
    """Saves a checkpoint at `step` (unless inside a non-finite streak or with non-finite
    weights: then the last good one stays the resume point), flushes, raises Preempted."""
    trainer = self.trainer
    saved = self.last_good
    if step != self.saved_step and int(trainer.consecutive_bad.numpy()) == 0:
      if bool(trainer.weights_finite().numpy()):
        saved = self._save(step)
    for writer in self.writers:
      writer.flush()
    if self.watcher and self.watcher.received:
      signame = self.watcher.received
    elif trainer.multi_worker:
      signame = "a signal to another worker"
    else:
      signame = "a signal"
    raise errors.Preempted(
      f"preempted by {signame} at step {step}: checkpoint {saved} saved; rerun the same "
      f"command to resume",
      step,
    )

  def _save(self, step):
    path = self.keeper.save(step)
    self.saved_step = step
    logging.info("saved checkpoint %s", path)
    return path

  def _rollback(self, step, reason):
    """Restores last_good (learning rates x rollback_lr_factor); returns its step."""
    trainer, guard, summaries = self.trainer, self.guard, self.actions["summary"]
    done = int(trainer.rollbacks.numpy())
    if done >= guard["max_rollbacks"]:
      summaries.guard(step, 0)
      summaries.writer.flush()
      raise TrainingDivergedError(
        f"{reason} at step {step} and the rollback budget train.max_rollbacks="
        f"{guard['max_rollbacks']} is used up; stopping (last good checkpoint: "
        f"{self.last_good}); lower the learning rates or change train.seed, then rerun to "
        f"resume from it"
      )
    self.keeper.restore(self.last_good)
    trainer.rollbacks.assign(done + 1)
    trainer.consecutive_bad.assign(0)
    set_learning_rates(trainer, guard["configured_rates"], guard["rollback_lr_factor"])
    back = int(trainer.step.numpy())
    self.result["guard"]["rollbacks"] = done + 1
    logging.warning(
      "%s at step %d: rollback %d/%d to %s (step %d); learning rates x %g",
      reason, step, done + 1, guard["max_rollbacks"], self.last_good, back,
      guard["rollback_lr_factor"],
    )  # fmt: skip
    summaries.guard(step, 0)
    self.result["step"] = back
    summaries.restart(back)
    return back


def finish(trainer, result, write_dir, model_dir, export_model, writers):
  """Flushes summaries, logs the weights digest, writes the operative config, and (if
  export_model: the chief, with train.export_saved_model) exports."""
  for writer in writers:
    writer.flush()
  result["weights_sha256"] = trainer.weights_digest()
  logging.info(
    "final weights sha256 %s (step %d, %d skipped step(s), %d rollback(s))",
    result["weights_sha256"], result["step"], result["guard"]["skipped_steps"],
    result["guard"]["rollbacks"],
  )  # fmt: skip
  export.serving_limits()  # called first, so operative_config.gin records its bindings
  precision.serving_dtype_policy()
  gin_config.write_operative_config(write_dir)
  if export_model:
    export_dir = os.path.join(model_dir, "saved_model")
    try:
      # The default checkpoint (the early-stopping best, else the final one), rebuilt
      # outside the strategy, to saved_model/<its step>/ with the reason in its metadata.
      export.export_checkpoint(model_dir, export_dir, image_shape=trainer.model.image_shape)
    except (OSError, tf.errors.OpError) as e:
      if not checkpoints.is_disk_full(e):
        raise
      raise errors.DiskFullError(
        f"no space left on device while exporting to {export_dir}; training finished and its "
        f"last checkpoint is saved: free space and run tools/export.py --model_dir={model_dir}"
      ) from None
  return result
