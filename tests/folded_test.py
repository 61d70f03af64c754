"""nets.folded (the decoder's serving path, biases inside the matmuls) against float64
references of the same weights."""

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import nets
from asvae_tf import precision
from asvae_tf.nets import folded


def _float64_chain(z, weights, act):
  """The Dense chain in float64: act(h W + b) for hidden layers, h W + b for the last."""
  h = np.asarray(z, np.float64)
  for i, (w, b) in enumerate(weights):
    h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    if i < len(weights) - 1:
      h = act(h)
  return h


def _decoder_weights(dec):
  layers = [getattr(dec.body, f"dense_{i}") for i in range(dec.body.num_layers)] + [dec.out]
  return [(layer.kernel.numpy(), layer.bias.numpy()) for layer in layers]


def _random_biases(dec, seed=0):
  """Section 5 starts biases at 0, where folding them would check nothing."""
  rs = np.random.RandomState(seed)
  for w in dec.weights:
    if "bias" in w.path:
      w.assign(rs.normal(scale=0.5, size=w.shape).astype(np.float32))


def test_fold_kernels_carry_the_bias_and_a_column_of_ones_through_padded_widths():
  rs = np.random.RandomState(0)
  sizes = [3, 40, 31, 6]  # 40 + 1 -> 64 and 31 + 1 -> 32 columns
  weights = [(rs.normal(size=(k, n)), rs.normal(size=n)) for k, n in zip(sizes, sizes[1:])]
  kernels = folded.fold_kernels(weights)
  assert [k.shape for k in kernels] == [(4, 64), (64, 32), (32, 6)]
  z = rs.normal(size=(5, 3))
  h = np.concatenate([z, np.ones([5, 1])], 1)
  for i, k in enumerate(kernels):
    h = h @ k.astype(np.float64)
    if i < len(kernels) - 1:
      h = np.maximum(h, 0.0)
      np.testing.assert_array_equal(h[:, sizes[i + 1]], 1.0)  # the carried column
      np.testing.assert_array_equal(h[:, sizes[i + 1] + 1 :], 0.0)  # the padding
  relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
  np.testing.assert_allclose(h, _float64_chain(z, weights, relu), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_folded_mlp_in_float32_matches_the_float64_chain(activation):
  """The folding itself, without bfloat16's rounding (`fold` builds bfloat16 copies only)."""
  dec = nets.mlp_decoder(output_shape=(3, 4, 2), hidden_units=(37, 500), activation=activation)
  z = tf.random.stateless_normal([9, 5], [1, 2])
  dec(z)
  _random_biases(dec)
  kernels = folded.fold_kernels(_decoder_weights(dec))
  got = folded.FoldedMLP(kernels, dec.body.act, (3, 4, 2), tf.float32)(z)
  assert got.dtype == tf.float32 and got.shape == (9, 3, 4, 2)  # a Gaussian head's 2C
  act = {"relu": lambda a: np.maximum(a, 0.0), "leaky_relu": lambda a: np.where(a > 0, a, 0.2 * a)}
  want = _float64_chain(z.numpy(), _decoder_weights(dec), act[activation]).reshape(9, 3, 4, 2)
  np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_fold_builds_a_bfloat16_copy_closer_to_float64_than_the_keras_path():
  with precision.policy_scope("mixed_bfloat16"):
    dec = nets.mlp_decoder(output_shape=(3, 4, 2), hidden_units=(37, 500), activation="elu")
    z = tf.random.stateless_normal([64, 5], [1, 2])
    dec(z)
  _random_biases(dec)
  fold = folded.fold(dec)
  assert fold.compute_dtype == tf.bfloat16
  assert [k.shape[1] for k in fold.kernels] == [64, 512, 24]
  elu = lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0.0)))  # noqa: E731
  want = _float64_chain(z.numpy(), _decoder_weights(dec), elu).reshape(64, 3, 4, 2)
  err_folded = np.abs(fold(z).numpy() - want)
  err_keras = np.abs(dec(z).numpy() - want)
  assert err_folded.max() < 2e-2  # bfloat16: 8-bit mantissa, outputs of scale ~2
  assert err_folded.max() > 1e-4  # it did compute in bfloat16
  if not _bf16_matmul_rounds_once():
    pytest.skip(
      "this CPU's bfloat16 MatMul does not accumulate in float32 and round once (no AMX / "
      "AVX512_BF16 oneDNN path), so folding the bias into it gains no accuracy here"
    )
  # One rounding of (product + bias) against Keras' rounded product + rounded bias.
  assert err_folded.mean() < err_keras.mean()


def _bf16_matmul_rounds_once():
  """Whether tf.matmul in bfloat16 equals the exact product rounded once to bfloat16 (a
  float32 accumulator, as oneDNN's AMX / AVX512_BF16 kernels have) on random inputs."""
  a = tf.cast(tf.random.stateless_normal([64, 37], [1, 2]), tf.bfloat16)
  b = tf.cast(tf.random.stateless_normal([37, 500], [3, 4]), tf.bfloat16)
  exact = a.numpy().astype(np.float64) @ b.numpy().astype(np.float64)
  once = tf.cast(tf.constant(exact, tf.float32), tf.bfloat16).numpy().astype(np.float64)
  return np.mean(tf.matmul(a, b).numpy().astype(np.float64) == once) > 0.99


class _Doubled(nets.MLPDecoder):
  def call(self, z, seed=None, training=False):
    return 2.0 * super().call(z, seed=seed, training=training)


def test_fold_declines_what_it_cannot_fold_exactly_or_profitably():
  z = tf.zeros([2, 3])

  def built(make, policy="mixed_bfloat16"):
    with precision.policy_scope(policy):
      net = make()
      net(z)
    return net

  def mlp(activation="relu", hidden=(4,), policy="mixed_bfloat16"):
    return built(
      lambda: nets.mlp_decoder(output_shape=(2, 2, 1), hidden_units=hidden, activation=activation),
      policy,
    )

  assert folded.fold(mlp()) is not None
  assert folded.fold(mlp(policy="float32")) is None  # no AMX gain in float32
  assert folded.fold(mlp("tanh")) is None  # tanh(1) != 1: the column of ones would not carry
  assert folded.fold(mlp("softmax")) is None  # not elementwise
  assert folded.fold(built(lambda: _Doubled(output_shape=(2, 2, 1), hidden_units=(4,)))) is None
  conv = built(lambda: nets.conv_decoder(output_shape=(8, 8, 2)))
  assert folded.fold(conv) is None
  linear = mlp("tanh", hidden=())  # no hidden layer: the activation never runs
  np.testing.assert_allclose(folded.fold(linear)(z + 1.0), linear(z + 1.0), atol=2e-2)
