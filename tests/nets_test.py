"""nets (MLP networks): shapes, Xavier initialisation, stateless dropout, weight tracking."""

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import nets


def test_mlp_encoder_decoder_shapes_and_xavier_init():
  enc = nets.mlp_encoder(hidden_units=(20, 10))
  dec = nets.mlp_decoder(output_shape=(4, 5, 2), hidden_units=(7,))
  h = enc(tf.zeros([3, 4, 5, 1]))
  assert h.shape == (3, 10)
  assert dec(tf.zeros([3, 6])).shape == (3, 4, 5, 2)
  for layer in (enc.body.dense_0, dec.out):
    kernel = layer.kernel.numpy()
    limit = np.sqrt(6.0 / sum(kernel.shape))  # Glorot/Xavier uniform bound
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.8 * limit  # genuinely uniform over the range
  assert len(enc.trainable_variables) == 4 and len(dec.trainable_variables) == 4


def test_joint_discriminator_logits_and_dropout():
  d = nets.joint_discriminator(x_units=(6,), z_units=(5,), joint_units=(4,), dropout_rate=0.5)
  x = tf.random.stateless_uniform([8, 3, 3, 1], [1, 2])
  z = tf.random.stateless_normal([8, 2], [3, 4])
  eval_logits = d(x, z)
  assert eval_logits.shape == (8,)
  np.testing.assert_array_equal(eval_logits.numpy(), d(x, z).numpy())
  s1, s2 = tf.constant([1, 1]), tf.constant([1, 2])
  a = d(x, z, seed=s1, training=True).numpy()
  np.testing.assert_array_equal(a, d(x, z, seed=s1, training=True).numpy())
  assert not np.allclose(a, d(x, z, seed=s2, training=True).numpy())
  assert not np.allclose(a, eval_logits.numpy())
  with pytest.raises(ValueError, match="seed"):
    d(x, z, training=True)
  # x path, z path, joint layer and logit: 4 kernels + 4 biases.
  assert len(d.trainable_variables) == 8


def test_every_weight_is_in_a_tf_checkpoint(tmp_path):
  # Keras 3 list attributes are invisible to tf.train.Checkpoint: guard against them.
  layers = [
    nets.mlp_encoder(hidden_units=(5, 4)),
    nets.mlp_decoder(output_shape=(2, 2, 1), hidden_units=(3, 3)),
    nets.joint_discriminator(x_units=(3, 2), z_units=(2,), joint_units=(2, 2)),
  ]
  layers[0](tf.zeros([2, 2, 2, 1]))
  layers[1](tf.zeros([2, 3]))
  layers[2](tf.zeros([2, 2, 2, 1]), tf.zeros([2, 3]))
  for i, layer in enumerate(layers):
    path = tf.train.Checkpoint(net=layer).save(str(tmp_path / f"c{i}"))
    saved = [
      k for k in tf.train.load_checkpoint(path).get_variable_to_shape_map() if k.startswith("net/")
    ]
    assert len(saved) == len(layer.weights) > 0
