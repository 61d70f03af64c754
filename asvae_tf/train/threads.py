"""train.intra_op_threads / train.inter_op_threads: the sizes of TensorFlow's CPU thread pools.

intra-op: threads ONE kernel (a matmul, an elementwise op) splits its work over;
inter-op: kernels of the step's graph that run at the same time. None keeps TensorFlow's
choice (both = the number of cores).

At batch 100 the MLP steps are hundreds of small kernels; splitting each over the intra-op
pool costs more hand-offs than it saves, while the step's graph has enough independent
kernels (two discriminators, real and generated pairs, forward and backward branches) to
keep the cores busy on its own. Measured on 2 cores (docs/results.md, "Speed"):
intra_op_threads = 1 (inter-op left at 2) trains gin/mnist_fast.gin about 1.4x faster.

The numbers did not change where measured: weights sha256 equal after 30 steps of
gin/mnist.gin and gin/mnist_fast.gin at 1 vs 2 intra-op threads on a 2-core machine, and
tests/train_test.py resumes a (tiny) run in a process with other pool sizes bit-identically.
That is not guaranteed in general: on other machines a kernel may split a reduction or a
matmul's inner dimension by the pool size, which changes the order of additions (last-bit
differences, as between two CPUs). Quality is unaffected either way.

TensorFlow fixes the pools when its runtime starts (the first op of the process): `apply`
must run before that, as `train` does first thing. Where the runtime already runs with
other sizes (a notebook that ran ops before, a test process), the setting cannot be
applied: a warning says so and training goes on with the pools as they are (slower, same
numbers). The environment variables TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS set
them for any process.
"""

from absl import logging
import tensorflow as tf

from asvae_tf.errors import ConfigError

__all__ = ["apply"]

_POOLS = (
  ("intra_op_threads", "TF_NUM_INTRAOP_THREADS", tf.config.threading.set_intra_op_parallelism_threads),
  ("inter_op_threads", "TF_NUM_INTEROP_THREADS", tf.config.threading.set_inter_op_parallelism_threads),
)  # fmt: skip


def _check(name, value):
  if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
    raise ConfigError(
      f"train.{name} must be None (TensorFlow's choice) or an int >= 1, got {value!r}"
    )


def apply(intra_op_threads=None, inter_op_threads=None):
  """Sizes TensorFlow's thread pools (None: leaves that pool as it is).

  Returns:
    The names of the settings that could not be applied because TensorFlow's runtime
    already started with another size (each logged as a warning); [] when all applied.
  Raises:
    ConfigError: a value that is not None or an int >= 1.
  """
  values = (intra_op_threads, inter_op_threads)
  for (name, _, _), value in zip(_POOLS, values):
    _check(name, value)
  skipped = []
  for (name, env, setter), value in zip(_POOLS, values):
    if value is None:
      continue
    try:
      setter(value)  # a no-op when this process already asked for this size
    except RuntimeError:
      skipped.append(f"train.{name}")
      logging.warning(
        "train.%s = %d not applied: TensorFlow's runtime already started in this process "
        "with another size (a speed setting: training goes on, slower); set %s=%d in the "
        "environment, or the binding before the first TensorFlow op",
        name, value, env, value,
      )  # fmt: skip
  if any(v is not None for v in values) and not skipped:
    logging.info("threads: intra-op %s, inter-op %s (None: TensorFlow's choice)", *values)
  return skipped
