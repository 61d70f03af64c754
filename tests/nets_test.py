"""nets (MLP networks): shapes, Xavier initialisation, stateless dropout, weight tracking."""

import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import nets
from asvae_tf.errors import ConfigError


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


def _logits_and_grads(net, x, z):
  @tf.function
  def f():
    with tf.GradientTape() as tape:
      y = net(x, z, seed=tf.constant([3, 4]), training=True)
      loss = tf.reduce_sum(tf.nn.softplus(y))
    grads = tape.gradient(loss, net.trainable_variables)  # None: a kernel the net never read
    return y, grads

  return f()


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_a_one_row_constant_input_is_bit_identical_to_the_stacked_batch(kind):
  # layers.constant_row: the explicit estimators' residuals get ONE zero row in place of an
  # unused input; the network broadcasts it after its first layer (MLP: no [b, n] matmul).
  # Logits and every gradient must equal feeding b zero rows, bit for bit (with dropout),
  # so that training is unchanged by the shortcut.
  if kind == "mlp":
    net = nets.joint_discriminator(x_units=(16,), z_units=(8,), joint_units=(8,))
  else:
    net = nets.conv_joint_discriminator(base_width=4, max_width=8, z_units=(8,), joint_units=(8,))
  b = 12
  x = tf.random.stateless_uniform([b, 8, 8, 1], [1, 2])
  z = tf.random.stateless_normal([b, 3], [3, 4])
  net(nets.layers.constant_row(x), z)  # built from a one-row input, as ASVAE.build_all does
  assert net(x, z).shape == (b,)
  # A Dense first layer skips 0 @ kernel (exactly 0): its kernel then has no gradient at all,
  # where the stacked zeros give it an exactly-0 one (model.idle_variables; the trainer
  # does not update them). Conv layers get the stacked batch.
  for (full, row), skipped in zip(
    (
      ((tf.zeros_like(x), z), (nets.layers.constant_row(x), z)),
      ((x, tf.zeros_like(z)), (x, nets.layers.constant_row(z))),
    ),
    (["x_path/dense_0/kernel"] if kind == "mlp" else [], ["z_path/dense_0/kernel"]),
  ):
    assert row[0].shape[0] == 1 or row[1].shape[0] == 1
    y_full, g_full = _logits_and_grads(net, *full)
    y_row, g_row = _logits_and_grads(net, *row)
    assert y_row.shape == (b,)
    np.testing.assert_array_equal(y_row.numpy(), y_full.numpy())
    no_grad = [v.path for v, c in zip(net.trainable_variables, g_row) if c is None]
    assert [p.split("/", 1)[1] for p in no_grad] == skipped, no_grad
    for v, a, c in zip(net.trainable_variables, g_full, g_row):
      if c is None:
        assert not np.any(a.numpy()), v.path
      else:
        np.testing.assert_array_equal(c.numpy(), a.numpy(), err_msg=v.path)
    assert any(np.any(g.numpy() != 0) for g in g_row if g is not None)


def test_an_empty_stack_broadcasts_a_one_row_input_to_the_batch():
  stack = nets.layers._DenseStack((), "relu", 0.0)
  row = tf.constant([[1.0, -2.0]])
  out = stack(row, batch_size=tf.constant(5))
  np.testing.assert_array_equal(out.numpy(), np.tile(row.numpy(), (5, 1)))


def test_data_mean_logits_maximise_the_constant_bernoulli_likelihood():
  # Reference: the expected Bernoulli log-likelihood of the training pixels (probabilities
  # images / 255, dynamic binarisation) under constant logits, in float64; its autodiff
  # gradient vanishes at data_mean_logits wherever the clip is not active.
  rs = np.random.RandomState(0)
  images = rs.randint(0, 256, size=(50, 3, 4, 1)).astype(np.uint8)
  images[:, 0, 0, 0] = 0  # a pixel never on: clipped to logit(1e-3), not -inf
  logits = nets.mlp.data_mean_logits(images)
  assert logits.shape == (12,) and logits.dtype == np.float32
  assert logits[0] == pytest.approx(np.log(1e-3 / (1 - 1e-3)), rel=1e-6)
  p = tf.constant(images.reshape(50, -1) / 255.0, tf.float64)
  theta = tf.Variable(logits.astype(np.float64))
  with tf.GradientTape() as tape:
    ll = tf.reduce_mean(
      tf.reduce_sum(p * tf.math.log_sigmoid(theta) + (1 - p) * tf.math.log_sigmoid(-theta), -1)
    )
  grad = tape.gradient(ll, theta).numpy()
  np.testing.assert_allclose(grad[1:], 0.0, atol=1e-6)
  assert grad[0] < -1e-4  # the clipped pixel: the likelihood would rise further down


def test_mlp_decoder_output_bias_settings():
  images = np.full((4, 2, 3, 1), 51, np.uint8)  # every pixel on with p = 0.2
  dec = nets.mlp_decoder(output_shape=(2, 3, 1), hidden_units=(5,), output_bias="data_mean")
  dec(tf.zeros([1, 3]))
  dec.initialise_output_bias(images)
  np.testing.assert_allclose(dec.out.bias.numpy(), np.log(0.2 / 0.8), rtol=1e-6)
  # Zero codes and zero kernels: the decoder's mean is the data's mean image.
  dec.out.kernel.assign(tf.zeros_like(dec.out.kernel))
  np.testing.assert_allclose(tf.sigmoid(dec(tf.zeros([1, 3]))).numpy(), 0.2, rtol=1e-6)
  zeros = nets.mlp_decoder(output_shape=(2, 3, 1), hidden_units=(5,))
  zeros(tf.zeros([1, 3]))
  zeros.initialise_output_bias(images)  # 'zeros' (the default) leaves the bias as built
  np.testing.assert_array_equal(zeros.out.bias.numpy(), 0.0)
  two_params = nets.mlp_decoder(output_shape=(2, 3, 2), hidden_units=(5,), output_bias="data_mean")
  two_params(tf.zeros([1, 3]))
  with pytest.raises(ConfigError, match="one logit per pixel"):
    two_params.initialise_output_bias(images)
  with pytest.raises(ConfigError, match="mlp_decoder.output_bias"):
    nets.mlp_decoder(output_shape=(2, 3, 1), output_bias="mean")


def test_data_mean_output_bias_reaches_every_mirrored_replica():
  # The training run sets the bias in cross-replica context inside strategy.scope(); every
  # replica's copy must get it (a checkpoint would show only the first one's).
  images = np.arange(12, dtype=np.uint8).reshape(2, 2, 3, 1) * 20
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    dec = nets.mlp_decoder(output_shape=(2, 3, 1), hidden_units=(5,), output_bias="data_mean")
    dec(tf.zeros([1, 3]))
    dec.initialise_output_bias(images)
  copies = strategy.experimental_local_results(dec.out.bias.value)
  assert len(copies) == 2
  for copy in copies:
    np.testing.assert_array_equal(copy.numpy(), nets.mlp.data_mean_logits(images))
