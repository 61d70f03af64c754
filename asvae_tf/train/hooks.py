"""Callbacks into the training loop for test harnesses and tools (fault injection, tracing).

`train.train(model_dir, hooks=...)` accepts a `Hooks` instance; the default one does
nothing and adds nothing to the traced step (its `scale_loss` returns None, so the
gradient functions multiply by nothing). A harness subclasses it, for example to kill
the process at a chosen point of a checkpoint save or to make chosen steps non-finite
(tests/harness.py). Hooks are not gin-configurable: they are code, not settings.

Save points, in order, for the checkpoint of global step `step`:
  before_save(step)       training reached step, nothing of ckpt-<step> written yet
  saving(step)            context around the write (shards -> ckpt-<step>_temp/, merge)
  checkpoint_options(step)  tf.train.CheckpointOptions for the write (its write callbacks
                          run once ckpt-<step>.index/.data-* are in place, before the
                          `checkpoint` state file records them)
  after_save(step)        ckpt-<step> fully saved and recorded
"""

import contextlib


class Hooks:
  """No-op hooks (the default)."""

  def scale_loss(self, step, rollbacks):
    """A float32 scalar tensor multiplying the loss of the step that ends at global step
    step + 1 (inside the tape, so it scales the gradients too), or None (no op).

    Args:
      step: int64 scalar tensor, the global step before this update.
      rollbacks: int64 scalar tensor, rollbacks done so far in this run.
    """
    del step, rollbacks
    return None

  def before_save(self, step):
    del step

  def saving(self, step):
    del step
    return contextlib.nullcontext()

  def checkpoint_options(self, step):
    del step
    return None

  def after_save(self, step):
    del step


NO_HOOKS = Hooks()
