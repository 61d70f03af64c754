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


@pytest.mark.parametrize(
  "policy,activation,atol",
  [("float32", "relu", 1e-5), ("float32", "leaky_relu", 1e-5), ("mixed_bfloat16", "elu", 2e-2)],
)
def test_folded_decoder_matches_the_float64_decoder(policy, activation, atol):
  with precision.policy_scope(policy):
    dec = nets.mlp_decoder(output_shape=(3, 4, 2), hidden_units=(37, 500), activation=activation)
    z = tf.random.stateless_normal([9, 5], [1, 2])
    dec(z)
  _random_biases(dec)
  fold = folded.fold(dec)
  assert fold.compute_dtype == (tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32)
  assert [k.shape[1] for k in fold.kernels] == [64, 512, 24]
  got = fold(z)
  assert got.dtype == tf.float32 and got.shape == (9, 3, 4, 2)
  act = {
    "relu": lambda a: np.maximum(a, 0.0),
    "leaky_relu": lambda a: np.where(a > 0, a, 0.2 * a),
    "elu": lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0.0))),
  }[activation]
  want = _float64_chain(z.numpy(), _decoder_weights(dec), act).reshape(9, 3, 4, 2)
  np.testing.assert_allclose(got.numpy(), want, atol=atol)
  keras_path = dec(z).numpy()
  np.testing.assert_allclose(got.numpy(), keras_path, atol=2 * atol)  # two roundings apart
  if policy == "mixed_bfloat16":  # it did compute in bfloat16: not float32's numbers
    assert np.abs(got.numpy() - want).max() > 1e-4


def test_fold_declines_what_it_cannot_fold_exactly():
  z = tf.zeros([2, 3])
  tanh = nets.mlp_decoder(output_shape=(2, 2, 1), hidden_units=(4,), activation="tanh")
  tanh(z)
  assert folded.fold(tanh) is None  # tanh(1) != 1: the column of ones would not carry
  linear = nets.mlp_decoder(output_shape=(2, 2, 1), hidden_units=(), activation="tanh")
  linear(z)
  assert folded.fold(linear) is not None  # no hidden layer: the activation never runs
  np.testing.assert_allclose(folded.fold(linear)(z + 1.0), linear(z + 1.0), rtol=1e-6)
  assert folded.fold(nets.joint_discriminator()) is None
