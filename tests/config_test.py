"""config.py: strict gin parsing and the fused Adam optimizer."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import config


def _run_adam(opt_name, strategy, steps=3, dtype=np.float64):
  with strategy.scope():
    var = tf.Variable(np.linspace(-1, 1, 6).reshape(2, 3).astype(dtype))
    opt = config.make_optimizer(name=opt_name, learning_rate=0.1)
    opt.build([var])

  @tf.function
  def step(i):
    def fn():
      grad = tf.sin(var * 3.0 + tf.cast(i, var.dtype))  # changes every step
      opt.apply_gradients([(grad / strategy.num_replicas_in_sync, var)])

    strategy.run(fn)

  for i in range(steps):
    step(tf.constant(i))
  return var.numpy()


def _numpy_adam(steps=3, lr=0.1, b1=0.9, b2=0.999, eps=1e-7):
  """Kingma & Ba's Adam in float64 numpy (eps added to the uncorrected sqrt(v), as TF/Keras)."""
  var = np.linspace(-1, 1, 6).reshape(2, 3)
  m, v = np.zeros_like(var), np.zeros_like(var)
  for i in range(steps):
    g = np.sin(var * 3.0 + i)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    t = i + 1
    var = var - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
  return var


def test_fused_adam_matches_reference_adam():
  fused = _run_adam("adam", tf.distribute.get_strategy())  # float64: exact comparison
  start = np.linspace(-1, 1, 6).reshape(2, 3)
  assert np.all(np.abs(fused - start) > 1e-2)  # every weight moved (steps are ~lr = 0.1)
  # The learning rate is a float32 variable in Keras: 0.1 carries a 1.5e-9 relative error.
  np.testing.assert_allclose(fused, _numpy_adam(), rtol=1e-7, atol=1e-9)
  # Keras' own Adam casts beta_1/beta_2 through float32 (a ~1e-5 relative error of
  # sqrt(1 - beta_2^t) in float64): it agrees with the reference only to that level.
  np.testing.assert_allclose(
    _run_adam("keras_adam", tf.distribute.get_strategy()), _numpy_adam(), rtol=1e-4
  )


def test_fused_adam_builds_one_set_of_scalars_per_dtype():
  # One update of three variables (two float64, one float32): every variable still gets
  # the reference update, while the beta powers (and lr, betas, epsilon) are built once
  # per dtype, not once per variable.
  start = np.linspace(-1, 1, 6).reshape(2, 3)
  variables = [tf.Variable(start), tf.Variable(start), tf.Variable(start.astype(np.float32))]
  opt = config.make_optimizer(name="adam", learning_rate=0.1)
  opt.build(variables)

  @tf.function
  def step(i):
    opt.apply_gradients([(tf.sin(v * 3.0 + tf.cast(i, v.dtype)), v) for v in variables])

  for i in range(3):
    step(tf.constant(i))
  want = _numpy_adam()
  for v in variables[:2]:
    np.testing.assert_allclose(v.numpy(), want, rtol=1e-7, atol=1e-9)
  np.testing.assert_allclose(variables[2].numpy(), want, rtol=1e-5, atol=1e-5)
  graph_def = step.get_concrete_function(tf.constant(0)).graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  assert sum(n.op == "ResourceApplyAdam" for n in nodes) == 3
  assert sum(n.op == "Pow" for n in nodes) == 4  # beta_1^t and beta_2^t, per dtype


def test_fused_adam_under_mirrored_strategy():
  # No collective ops here: TF reuses collective instance keys across strategy
  # objects of one process, which would clash with the training tests' collectives.
  def mirrored():
    return tf.distribute.MirroredStrategy(
      ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )

  fused = _run_adam("adam", mirrored(), dtype=np.float32)
  np.testing.assert_allclose(fused, _numpy_adam(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    fused, _run_adam("keras_adam", mirrored(), dtype=np.float32), rtol=1e-5, atol=1e-5
  )


def test_unknown_optimizer_and_binding_are_errors(tmp_path):
  with pytest.raises(config.ConfigError, match="adam"):
    config.make_optimizer(name="adagrad")
  with pytest.raises(ValueError, match="no_such"):
    config.parse([], ["train.no_such = 1"])
  with pytest.raises(FileNotFoundError):
    config.parse([str(tmp_path / "missing.gin")])
  gin.clear_config()


def test_operative_config_is_written(tmp_path):
  gin.clear_config()
  config.parse([], ["optimizer.learning_rate = 0.5"])
  try:
    config.make_optimizer()
    path = config.write_operative_config(str(tmp_path))
    assert "optimizer.learning_rate = 0.5" in open(path).read()
  finally:
    gin.clear_config()
