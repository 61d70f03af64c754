"""Helpers shared by the bench/ scripts: timing windows, the matmul rate, training-loop timing."""

import statistics
import time

from absl import flags
import numpy as np
import tensorflow as tf

from asvae_tf.train import threads


def define_thread_flags():
  """--intra_op_threads / --inter_op_threads: train.intra_op_threads / inter_op_threads of
  the timed process (asvae_tf/train/threads.py)."""
  flags.DEFINE_integer("intra_op_threads", None, "TensorFlow intra-op threads (None: its choice).")
  flags.DEFINE_integer("inter_op_threads", None, "TensorFlow inter-op threads (None: its choice).")


def apply_thread_flags():
  """Applies the thread flags (call first in main, before any TensorFlow op); their label."""
  intra, inter = flags.FLAGS.intra_op_threads, flags.FLAGS.inter_op_threads
  if threads.apply(intra, inter):  # a timing must run with the sizes its table names
    raise RuntimeError("the thread flags must be applied before any TensorFlow op")
  return f"TF threads: intra-op {intra or 'default'}, inter-op {inter or 'default'}"


def windows(fn, iters, repeats):
  """Seconds per call of fn() in each of `repeats` windows of `iters` calls (after 2 warm-ups).

  Returns a numpy array of `repeats` values (take the median).
  """
  fn()
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(iters):
      fn()
    times.append((time.perf_counter() - start) / iters)
  return np.array(times)


def matmul_gflops(n=1024, reps=50):
  """Median float32 matmul rate of this machine in GFLOP/s (n x n x n)."""
  a = tf.random.normal([n, n])

  @tf.function
  def mm(a):
    return tf.matmul(a, a)

  mm(a).numpy()
  rates = []
  for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(reps):
      r = mm(a)
    r.numpy()
    rates.append(2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
  return statistics.median(rates)


def warm_train_loop(trainer, iterator, steps):
  """(run, trace + warm-up seconds): `run()` runs `steps` steps of `train.Trainer.loop`.

  The first, untimed call traces and warms up. Works whatever structure `loop` returns
  (its outputs come from one tf.function call, so fetching one of them waits for all).
  """
  n = tf.constant(steps, tf.int32)

  def run():
    tf.nest.flatten(trainer.loop(iterator, n))[0].numpy()

  t0 = time.perf_counter()
  run()
  return run, time.perf_counter() - t0


def interleaved_rates(runs, steps, num_windows, batch_size):
  """[(median, min, max) img/s] of each warmed `run` of `runs`, timed round-robin.

  Window w times runs[0], runs[1], ... in turn, so a drift of the machine's speed over
  minutes reaches every run alike instead of favouring the ones timed first.
  """
  rates = [[] for _ in runs]
  for _ in range(num_windows):
    for r, run in zip(rates, runs):
      t0 = time.perf_counter()
      run()
      r.append(steps * batch_size / (time.perf_counter() - t0))
  return [(statistics.median(r), min(r), max(r)) for r in rates]


def time_train_loop(trainer, iterator, steps, num_windows, batch_size):
  """Images/s of `train.Trainer.loop`: (median, min, max, trace + warm-up seconds).

  One untimed window of `steps` steps traces and warms up; then `num_windows` timed
  windows of `steps` steps each.
  """
  run, warm = warm_train_loop(trainer, iterator, steps)
  return interleaved_rates([run], steps, num_windows, batch_size)[0] + (warm,)
