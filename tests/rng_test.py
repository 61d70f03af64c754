"""rng.py: stateless determinism and replica invariance under MirroredStrategy."""

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import rng


def test_same_seed_same_draw_other_seed_differs():
  seed = tf.constant([3, 4], tf.int32)
  a = rng.normal([4, 5], seed).numpy()
  np.testing.assert_array_equal(a, rng.normal([4, 5], seed).numpy())
  assert not np.allclose(a, rng.normal([4, 5], tf.constant([3, 5], tf.int32)).numpy())
  assert rng.step_seed(0, 7).numpy().tolist() != rng.step_seed(0, 8).numpy().tolist()
  assert rng.step_seed(1, 7).numpy().tolist() != rng.step_seed(0, 7).numpy().tolist()


def test_replicas_get_their_rows_of_the_global_draw():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  seed = tf.constant([11, 12], tf.int32)

  @tf.function
  def run():
    def fn():
      return (
        rng.normal([3, 2], seed),
        rng.uniform([3, 2], seed),
        rng.dropout(tf.ones([3, 4]), 0.5, seed),
      )

    return strategy.run(fn)

  normal, uniform, dropped = run()

  def got(v):
    return np.concatenate([t.numpy() for t in strategy.experimental_local_results(v)])

  np.testing.assert_array_equal(got(normal), rng.normal([6, 2], seed).numpy())
  np.testing.assert_array_equal(got(uniform), rng.uniform([6, 2], seed).numpy())
  np.testing.assert_array_equal(got(dropped), rng.dropout(tf.ones([6, 4]), 0.5, seed).numpy())


def test_dropout_scales_kept_units():
  x = tf.ones([200, 50])
  y = rng.dropout(x, 0.25, tf.constant([1, 2], tf.int32)).numpy()
  kept = y != 0
  np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
  assert abs(kept.mean() - 0.75) < 0.02  # 10,000 Bernoulli(0.75) draws: sd 0.0043
  np.testing.assert_array_equal(rng.dropout(x, 0.0, None).numpy(), x.numpy())


@pytest.mark.parametrize("rate", [0.2, 0.3])
@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_low_precision_dropout_is_float32_dropout_rounded_once(dtype, rate):
  # Masks drawn as bfloat16 uniforms kept 0.797 (rate 0.2) / 0.695 (rate 0.3) of the
  # units, and eagerly 1 / bfloat16(1 - rate) scaled them by 1.2488 / 1.4302. 10^6 draws:
  # the kept fraction's sd is at most 0.00046.
  seed = tf.constant([5, 6], tf.int32)
  x = tf.random.stateless_uniform([1000, 1000], [7, 8], minval=0.5, maxval=2.0)
  x16 = tf.cast(x, dtype)
  y = rng.dropout(x16, rate, seed).numpy().astype(np.float64)
  kept = y != 0
  assert abs(kept.mean() - (1 - rate)) < 0.002, kept.mean()
  # The same units as in float32: the mask does not depend on x's dtype.
  np.testing.assert_array_equal(kept, rng.dropout(x, rate, seed).numpy() != 0)
  # Kept units: x / (1 - rate) computed in float32 (numpy), rounded once to the dtype.
  x32 = x16.numpy().astype(np.float32)
  want = tf.cast(x32 / np.float32(1 - rate), dtype).numpy().astype(np.float64)
  np.testing.assert_array_equal(y[kept], want[kept])
  # ... so the scale is unbiased: the mean ratio is 1 / (1 - rate) (rounding averages out).
  ratio = (y[kept] / x32[kept]).mean()
  assert abs(ratio * (1 - rate) - 1) < 1e-4, ratio
  # The same inside a tf.function (the training steps' graph mode).
  graph = tf.function(lambda v, s: rng.dropout(v, rate, s))(x16, seed)
  np.testing.assert_array_equal(graph.numpy().astype(np.float64), y)


def test_float64_dropout_stays_float64():
  x = tf.constant(np.full([50, 40], 1.0 + 1e-12), tf.float64)
  y = rng.dropout(x, 0.2, tf.constant([1, 2], tf.int32)).numpy()
  kept = y != 0
  np.testing.assert_array_equal(y[kept], np.full(kept.sum(), (1.0 + 1e-12) / 0.8))


SEEDS = [[1, 2], [0, 0x5EED], [12345, -7], [-3, -9], [-(2**31), 2**31 - 1]]


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_philox_draws_equal_tf_random_bit_for_bit(mode):
  # rng.stateless_* derive Philox's key and counter in 8 ops instead of tf.random's ~45:
  # the numbers must stay tf.random.stateless_*(alg="philox")'s exactly (old runs resume
  # bit-identically, recorded results reproduce), in every mode and dtype. XLA's draws
  # differ from plain TF's (the reference is taken in the same mode).
  def draws(seed, shape, dtype):
    return (
      rng.stateless_uniform(shape, seed, dtype),
      tf.random.stateless_uniform(shape, seed, dtype=dtype, alg="philox"),
      rng.stateless_normal(shape, seed, dtype),
      tf.random.stateless_normal(shape, seed, dtype=dtype, alg="philox"),
    )

  # Each dtype with another way of giving the shape (list, int tensor with a zero, TensorShape);
  # the seeds alternate between int32 and int64 (int32 only under XLA: a compile per dtype).
  shapes = ([7, 5], tf.constant([3, 0, 2]), tf.TensorShape([1001]), [7, 5])
  for dtype, shape in zip((tf.float32, tf.bfloat16, tf.float16, tf.float64), shapes):
    fn = lambda s, dtype=dtype, shape=shape: draws(s, shape, dtype)  # noqa: E731
    if mode != "eager":
      fn = tf.function(fn, jit_compile=mode == "xla", autograph=False)
    seed_dtypes = [tf.int32] if mode == "xla" else [tf.int32, tf.int64]
    for seed, seed_dtype in zip(SEEDS, seed_dtypes * len(SEEDS)):
      outs = [t.numpy() for t in fn(tf.constant(seed, seed_dtype))]
      for ours, ref in (outs[:2], outs[2:]):
        assert ours.dtype == ref.dtype and ours.shape == tuple(np.asarray(shape).tolist())
        np.testing.assert_array_equal(ours.view(np.uint8), ref.view(np.uint8), err_msg=seed)
  with pytest.raises(ValueError, match="floating-point"):
    rng.stateless_uniform([2], tf.constant([1, 2]), tf.int32)


def test_a_philox_draw_is_a_few_graph_ops():
  def ops(fn):
    graph = tf.function(fn, autograph=False).get_concrete_function(tf.TensorSpec([2], tf.int32))
    return len(graph.graph.get_operations())

  ours = ops(lambda s: rng.stateless_uniform([4, 3], s))
  ref = ops(lambda s: tf.random.stateless_uniform([4, 3], s, alg="philox"))
  assert ours <= 16, (ours, ref)  # tf.random's own: 53 ops in TF 2.21
