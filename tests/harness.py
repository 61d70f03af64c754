"""Test harness for the training loop: fault-injecting `Hooks` and a training CLI with them.

  NanAt(steps, passes)  the updates of the steps ending at these global step numbers get a
                        NaN loss (hence NaN gradients); passes > 0: only while fewer than
                        `passes` rollbacks happened
  KillAt(points)        SIGKILLs the process at a save point of the checkpoint of a step:
    before_save  training reached <step>, nothing of ckpt-<step> written yet
    mid_write    ckpt-<step>'s shards written to ckpt-<step>_temp/, not yet merged
                 (TF's private merge op is replaced inside the hook's `saving` context:
                 test machinery, never in the package)
    after_write  ckpt-<step>.index/.data-* in place, `checkpoint` state file not updated
    after_save   ckpt-<step> fully saved and recorded

Run as a script it is tools/train.py with two more flags:
  python tests/harness.py --kill_at=mid_write:3[,after_save:9] --gin_file=... --model_dir=...
  --logical_cpus=N  split the CPU into N logical devices first (N MirroredStrategy replicas;
                    must happen before TensorFlow initialises its devices, hence a process)
"""

import contextlib
import os
import signal
import sys

import numpy as np
import tensorflow as tf

from asvae_tf.train import hooks as hooks_lib

KILL_POINTS = ("before_save", "mid_write", "after_write", "after_save")


def train_gin(gin_file, model_dir, bindings, hooks=None):
  """train.train(model_dir) on gin_file + bindings (hooks: a Hooks, or None); clears gin."""
  import gin  # pylint: disable=g-import-not-at-top

  from asvae_tf import registry, train  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  registry.parse([gin_file], list(bindings))
  try:
    return train.train(str(model_dir), **({"hooks": hooks} if hooks else {}))
  finally:
    gin.clear_config()


def checkpoint_state(path, skip=()):
  """{key: value} of every variable of the checkpoint at path (a prefix or a checkpoints
  dir), without the object graph and keys starting with one of `skip`."""
  if os.path.isdir(path):
    path = tf.train.latest_checkpoint(path)
  reader = tf.train.load_checkpoint(path)
  return {
    k: reader.get_tensor(k)
    for k in reader.get_variable_to_shape_map()
    if k != "_CHECKPOINTABLE_OBJECT_GRAPH" and not k.startswith(tuple(skip))
  }


class NanAt(hooks_lib.Hooks):
  def __init__(self, steps, passes=0):
    self.steps, self.passes = tuple(int(s) for s in steps), int(passes)

  def scale_loss(self, step, rollbacks):
    hit = tf.reduce_any(tf.equal(step + 1, tf.constant(self.steps, tf.int64)))
    if self.passes > 0:
      hit = tf.logical_and(hit, rollbacks < self.passes)
    return tf.where(hit, tf.constant(np.nan, tf.float32), tf.constant(1.0))


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _merge_then_die(*args, **kwargs):
  del args, kwargs
  _die()


class KillAt(hooks_lib.Hooks):
  def __init__(self, spec):
    """spec: '<point>:<step>[,<point>:<step>...]'."""
    self.points = set()
    for item in filter(None, (s.strip() for s in spec.split(","))):
      point, _, step = item.partition(":")
      if point not in KILL_POINTS or not step.isdigit():
        raise ValueError(f"kill points are <point>:<step>, point in {KILL_POINTS}: {item!r}")
      self.points.add((point, int(step)))

  def before_save(self, step):
    if ("before_save", step) in self.points:
      _die()

  @contextlib.contextmanager
  def saving(self, step):
    if ("mid_write", step) not in self.points:
      yield
      return
    from tensorflow.python.checkpoint import functional_saver  # pylint: disable=g-import-not-at-top

    original = functional_saver.gen_io_ops.merge_v2_checkpoints
    functional_saver.gen_io_ops.merge_v2_checkpoints = _merge_then_die  # shards written, unmerged
    try:
      yield
    finally:
      functional_saver.gen_io_ops.merge_v2_checkpoints = original

  def checkpoint_options(self, step):
    if ("after_write", step) in self.points:
      return tf.train.CheckpointOptions(experimental_write_callbacks=[_die])
    return None

  def after_save(self, step):
    if ("after_save", step) in self.points:
      _die()


class EnospcAt(hooks_lib.Hooks):
  """The checkpoint write of `step` fails like a full disk: its shards are written, then
  TF's merge raises ResourceExhaustedError "No space left on device"."""

  def __init__(self, step):
    self.step = step

  @contextlib.contextmanager
  def saving(self, step):
    if step != self.step:
      yield
      return
    from tensorflow.python.checkpoint import functional_saver  # pylint: disable=g-import-not-at-top

    def full(*args, **kwargs):
      del args, kwargs
      raise tf.errors.ResourceExhaustedError(None, None, "write failed: No space left on device")

    original = functional_saver.gen_io_ops.merge_v2_checkpoints
    functional_saver.gen_io_ops.merge_v2_checkpoints = full
    try:
      yield
    finally:
      functional_saver.gen_io_ops.merge_v2_checkpoints = original


def main():
  from absl import flags  # pylint: disable=g-import-not-at-top

  from asvae_tf import cli

  flags.DEFINE_string("kill_at", "", "Kill points, see the module docstring.")
  flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many logical devices.")
  cli.define_train_flags()

  def run(argv):
    del argv
    if flags.FLAGS.logical_cpus:
      cpu = tf.config.list_physical_devices("CPU")[0]
      devices = [tf.config.LogicalDeviceConfiguration()] * flags.FLAGS.logical_cpus
      tf.config.set_logical_device_configuration(cpu, devices)
    return cli.train_main(hooks=KillAt(flags.FLAGS.kill_at))

  cli.main(run)


if __name__ == "__main__":
  sys.exit(main())


def run_tool(tool, args, timeout=300):
  """`python tools/<tool>.py *args` in a subprocess (quiet TF logs); the CompletedProcess."""
  import subprocess  # pylint: disable=g-import-not-at-top

  from conftest import ROOT  # pylint: disable=g-import-not-at-top

  return subprocess.run(
    [sys.executable, os.path.join(ROOT, "tools", f"{tool}.py"), *args],
    capture_output=True,
    text=True,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    timeout=timeout,
    check=False,
  )
