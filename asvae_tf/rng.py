"""Stateless, replica-invariant random noise.

Every random draw in asvae_tf is a pure function of an int32 seed of shape [2]
(`tf.random.stateless_*`), so a training run is reproducible from (train.seed,
step) alone and resuming needs no RNG state beyond the step counter.

Under a `tf.distribute` strategy each replica sees only its slice of the global
batch. To make a run independent of the number of replicas, the helpers here
draw the noise of the WHOLE global batch (per-replica batch x
num_replicas_in_sync rows) from the shared seed and keep this replica's rows.
Row i of the global batch therefore gets the same noise whether it is processed
on one device or on replica i // b of R devices. Outside a strategy (eval,
export) this is an ordinary stateless draw.
"""

import tensorflow as tf


def split(seed, n):
  """Splits a stateless seed [2] into n independent seeds, shape [n, 2]."""
  return tf.random.experimental.stateless_split(seed, num=n)


def fold_in(seed, data):
  """Derives a seed [2] from `seed` [2] and an integer `data` (int or int tensor)."""
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int32))


def step_seed(base_seed, step):
  """Seed [2] for global training step `step` of a run seeded with `base_seed` (int)."""
  return fold_in(tf.constant([int(base_seed), 0x5EED], tf.int32), tf.cast(step, tf.int32))


# ---- named seed streams -----------------------------------------------------------
# Every draw of a run derives from (train.seed, stream): a stream name maps to a FIXED
# integer forever (changing one would change every run's numbers and break resumption of
# old runs). Per-step streams fold into step_seed(seed, step); run streams are
# [seed, <int>] seeds of their own.
STEP_STREAMS = {"generator_update": 0, "discriminator_update": 1}  # + k for update k
RUN_STREAMS = {"summary_images": 1, "validation": 2, "evaluation": 7}


def update_seed(step_seed_, mode, k=0):
  """Seed [2] of update k (0-based) of `mode` ('generator'/'discriminator') in a step.

  The generator update folds in 0, discriminator update k folds in k + 1."""
  return fold_in(step_seed_, STEP_STREAMS[f"{mode}_update"] + k)


def run_seed(seed, stream):
  """Seed [2] of run-level stream `stream` (a RUN_STREAMS name) of a run seeded `seed`."""
  return tf.constant([int(seed), RUN_STREAMS[stream]], tf.int32)


# ---- Philox draws ------------------------------------------------------------------
# tf.random.stateless_uniform / stateless_normal(..., alg="philox") turn the seed into
# Philox's key and counter with ~45 graph ops (random_ops_util._philox_scramble_seed
# splits and re-joins 32-bit words with casts, slices, shifts and ors); a training step
# draws dozens of times (every dropout mask), so those ops were a third of the tiny test
# models' traced graphs. The same scramble in 8 ops: a uint64 full-int draw already joins
# its 32-bit words as _uint32s_to_uint64 does (low word first). Bit-identical to
# tf.random's Philox draws in eager, graph and XLA mode (tests/rng_test.py).
_PHILOX = 1  # tf.random.Algorithm.PHILOX
_SCRAMBLE_KEY = 0x02461E293EC8F720  # TF's seed-scrambling key (stateless_random_ops.cc)


def philox_key_counter(seed):
  """(key [1], counter [2]) uint64: the Philox state of an integer seed [2], as
  tf.random.stateless_*(..., alg="philox") derives it."""
  mix = tf.raw_ops.StatelessRandomUniformFullIntV2(
    shape=[2],
    key=tf.constant([_SCRAMBLE_KEY], tf.uint64),
    counter=tf.cast(seed, tf.uint64),
    alg=_PHILOX,
    dtype=tf.uint64,
  )
  key, high = tf.split(mix, 2)
  return key, tf.concat([tf.zeros([1], tf.uint64), high], 0)


def _philox(op, shape, seed, dtype):
  dtype = tf.as_dtype(dtype)
  if not dtype.is_floating:
    raise ValueError(f"rng draws floating-point noise; got dtype {dtype.name}")
  key, counter = philox_key_counter(seed)
  return op(shape=shape, key=key, counter=counter, alg=_PHILOX, dtype=dtype)


def stateless_uniform(shape, seed, dtype=tf.float32):
  """U[0, 1) noise of `shape` (ints or int tensor [rank]) from seed [2]: exactly
  tf.random.stateless_uniform(shape, seed, dtype=dtype, alg="philox")."""
  return _philox(tf.raw_ops.StatelessRandomUniformV2, shape, seed, dtype)


def stateless_normal(shape, seed, dtype=tf.float32):
  """N(0, 1) noise of `shape` from seed [2]: exactly
  tf.random.stateless_normal(shape, seed, dtype=dtype, alg="philox").

  Its `* stddev + mean` with 1 and 0 is kept: run eagerly it turns a float16 draw's -0.0
  (about 1 value in 6e7) into +0.0, which a tf.function's graph optimizer leaves out."""
  draw = _philox(tf.raw_ops.StatelessRandomNormalV2, shape, seed, dtype)
  return draw * tf.constant(1, draw.dtype) + tf.constant(0, draw.dtype)


def _replica_position():
  ctx = tf.distribute.get_replica_context()
  if ctx is None:  # Cross-replica context: behave like one replica.
    return 0, 1
  return ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync


def _draw(sampler, shape, seed, dtype):
  """shape: a list of ints or an int tensor [rank]. Philox: fast under XLA too."""
  replica_id, num_replicas = _replica_position()
  if num_replicas == 1:
    return sampler(shape, seed, dtype)
  if isinstance(shape, (list, tuple, tf.TensorShape)):
    full_shape = [num_replicas] + list(shape)
  else:
    full_shape = tf.concat([[num_replicas], tf.cast(shape, tf.int32)], 0)
  return tf.gather(sampler(full_shape, seed, dtype), replica_id)


def normal(shape, seed, dtype=tf.float32):
  """Standard normal noise of `shape` (rows = per-replica batch), replica-invariant."""
  return _draw(stateless_normal, shape, seed, dtype)


def uniform(shape, seed, dtype=tf.float32):
  """U[0, 1) noise of `shape` (rows = per-replica batch), replica-invariant."""
  return _draw(stateless_uniform, shape, seed, dtype)


def dropout(x, rate, seed):
  """Inverted dropout of x [b, ...] with a replica-invariant stateless mask.

  Args:
    x: float tensor [b, ...].
    rate: Python float in [0, 1), fraction of units dropped.
    seed: int32 [2].
  Returns:
    Tensor like x: x * mask / (1 - rate), mask ~ Bernoulli(1 - rate); the mask is the
    same whatever x's dtype.

  The uniforms are float32 for every dtype of x, and a 16-bit x is scaled in float32 and
  rounded once, so it gets exactly float32's result rounded. Drawn in bfloat16 the mask
  was biased: a bfloat16 uniform takes 128 values (k / 128), so `u >= 0.2` kept
  102 / 128 = 0.797 of the units while the scale assumed 0.8 (E[dropout(x)] = 0.996 x in
  training). (x / (1 - 0.2) in bfloat16 divided by bfloat16(0.8) = 0.80078 when run
  eagerly; in a tf.function TF's graph optimizer turned it into x * 1.25, float32's
  result. float16 kept 819 / 1024 = float16(0.8), at rate 0.2002: biased by 0.02% at most.)
  In float32 the keep probability is 1 - rate to within 2^-23.
  """
  if not rate:
    return x
  shape = x.shape.as_list() if x.shape.is_fully_defined() else tf.shape(x)
  keep = uniform(shape, seed, tf.float32) >= rate
  if x.dtype not in (tf.bfloat16, tf.float16):  # float32 (and float64): in x's dtype
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))
  scaled = tf.cast(tf.cast(x, tf.float32) / (1.0 - rate), x.dtype)
  return tf.where(keep, scaled, tf.zeros_like(x))
