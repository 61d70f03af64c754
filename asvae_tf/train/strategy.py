"""The distribution strategy of a training run, and which worker writes.

`make_strategy` returns TensorFlow's MirroredStrategy (all local devices), the default
strategy, or MultiWorkerMirroredStrategy (cluster from TF_CONFIG). Only the chief
writes to model_dir; other workers write to a per-task temporary directory (TF's
multi-worker pattern), see `write_dir`. `global_batch_size` turns `train.batch_size` /
`train.per_replica_batch_size` into the run's global batch, which must split into even
per-replica batches.
"""

import os

from absl import logging
import tensorflow as tf

from asvae_tf.errors import ConfigError

STRATEGIES = ("mirrored", "default", "multi_worker")
_MIRRORED = []  # this process's MirroredStrategy, created once


def make_strategy(name):
  """'mirrored' (all local devices), 'default' (no distribution) or 'multi_worker' (TF_CONFIG).

  One MirroredStrategy serves every run of a process (a notebook, a benchmark, a test
  session): on CPUs it all-reduces with collective ops keyed by a counter of the
  strategy, and a second instance would reuse the first one's keys ("Shape mismatch in
  the collective instance").
  """
  if name == "mirrored":
    if not _MIRRORED:
      _MIRRORED.append(tf.distribute.MirroredStrategy())
    return _MIRRORED[0]
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ConfigError(f"train.strategy must be one of {STRATEGIES}, got {name!r}")


def task(strategy):
  """(task_type, task_id) of this process; (None, None) outside a cluster."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return None, None
  return resolver.task_type, resolver.task_id


def is_chief(strategy):
  """True on the worker that writes checkpoints, summaries and exports."""
  task_type, task_id = task(strategy)
  if task_type is None:
    return True
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def write_dir(model_dir, strategy):
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
  _, task_id = task(strategy)
  path = os.path.join(model_dir, f"workertemp_{task_id}")
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  tf.io.gfile.makedirs(path)
  return path


def per_replica_batch(global_batch_size, strategy):
  """The per-replica batch; ConfigError unless it splits into even per-replica halves."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas or (global_batch_size // replicas) % 2:
    step = 2 * replicas
    lower = global_batch_size // step * step
    valid = ", ".join(str(b) for b in (lower, lower + step) if b > 0)
    raise ConfigError(
      f"train.batch_size={global_batch_size} does not split into even per-replica batches "
      f"over {replicas} replicas (the discriminators pair rows 2i, 2i+1 of each replica's "
      f"batch); nearest valid global batch sizes: {valid} (multiples of {step}), or set "
      f"train.per_replica_batch_size (global = per-replica x {replicas})"
    )
  return global_batch_size // replicas


def _check_batch(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f"train.{name} must be a positive int, got {value!r}")


def global_batch_size(batch_size, per_replica_batch_size, strategy):
  """The run's GLOBAL batch, from `train.batch_size` or `train.per_replica_batch_size`.

  Args:
    batch_size: the global batch (`train.batch_size`), or None.
    per_replica_batch_size: rows per replica (`train.per_replica_batch_size`, even), or
      None; when set the global batch is per_replica_batch_size x replicas in sync, and
      a different batch_size is ignored (one warning line says so).
    strategy: the run's tf.distribute strategy.
  Returns:
    the global batch size (int), which splits into even per-replica batches.
  Raises:
    ConfigError (one line): neither value, a non-positive or odd
      per-replica batch, a global batch that does not split (naming the nearest valid
      global batch sizes).
  """
  replicas = strategy.num_replicas_in_sync
  if per_replica_batch_size is None:
    if batch_size is None:
      raise ConfigError("set train.batch_size (global) or train.per_replica_batch_size")
    _check_batch("batch_size", batch_size)
    per_replica_batch(batch_size, strategy)
    return batch_size
  _check_batch("per_replica_batch_size", per_replica_batch_size)
  if per_replica_batch_size % 2:
    raise ConfigError(
      f"train.per_replica_batch_size={per_replica_batch_size} must be even (the "
      f"discriminators pair rows 2i, 2i+1 of each replica's batch)"
    )
  total = per_replica_batch_size * replicas
  if batch_size is not None and batch_size != total:
    # The shipped gin files set train.batch_size; the per-replica batch the user states wins.
    logging.warning(
      "train.per_replica_batch_size=%d x %d replicas = global batch %d; train.batch_size=%r "
      "is ignored", per_replica_batch_size, replicas, total, batch_size,
    )  # fmt: skip
  return total
