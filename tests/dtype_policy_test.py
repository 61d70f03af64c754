"""train.dtype_policy (asvae_tf/precision.py): tiny 2-step runs per policy, checkpoints
resumed under another policy, mixed_float16's loss scale inside the finite guard, the planar
inverse behind a bfloat16 encoder, and the Keras global policy left as it was."""

import os
import shutil

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import errors
from asvae_tf import export
from asvae_tf import gin_config
from asvae_tf import model as model_lib
from asvae_tf import nets
from asvae_tf.train import hooks as hooks_lib
from asvae_tf import precision
from asvae_tf import registry
from asvae_tf import versions
from conftest import ROOT, TINY_MODEL
from harness import checkpoint_state, train_gin

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
QUIET = ["train.summary_every = 0", "train.image_every = 0", "train.checkpoint_every = 0",
         "train.validate_every = 0"]  # fmt: skip
VAE = ["model.objective = 'vae'", "train.strategy = 'default'"]
# mixed_float16 with a discriminator (AS-VAE-r; a Gaussian posterior keeps it cheap) over
# 2 replicas: both loss scales, verdicts all-reduced, scales updated in replica context.
FRESH = {
  "float32": VAE,
  "mixed_bfloat16": VAE + ["train.export_saved_model = True"],  # the export is tested
  "mixed_float16": [
    "model.objective = 'asvae_r'",
    "posterior.kind = 'gaussian'",
    "train.strategy = 'mirrored'",
  ],
}


def _train(model_dir, policy, extra=(), hooks=None):
  bindings = TINY_MODEL + QUIET + [f"train.dtype_policy = '{policy}'"] + list(extra)
  result = train_gin(MNIST_GIN, model_dir, bindings, hooks)
  assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
  return result


RESUME = ["dataset.validation_size = 0"]  # no validation pass to trace
ITERATIONS = "generator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


def _state(model_dir):
  return checkpoint_state(os.path.join(model_dir, "checkpoints"))


@pytest.fixture(scope="module")
def fresh_runs(tmp_path_factory):
  """{policy: (model_dir, result)} of one 2-step run per policy."""
  out = {}
  for policy, extra in FRESH.items():
    model_dir = tmp_path_factory.mktemp(policy)
    out[policy] = model_dir, _train(model_dir, policy, extra)
  return out


@pytest.mark.parametrize("policy", list(FRESH))
def test_two_step_run_per_policy(fresh_runs, policy):
  model_dir, result = fresh_runs[policy]
  assert result["step"] == 2 and result["guard"]["skipped_steps"] == 0
  assert all(np.isfinite(v) for v in result["train"].values()), result["train"]
  assert np.isfinite(result["validation"]["neg_elbo"])  # evaluated with the trained model
  state = _state(model_dir)
  floats = {k: v.dtype for k, v in state.items() if np.issubdtype(v.dtype, np.floating)}
  # (The checkpoint stores each model weight once, under the optimizer that trains it.)
  assert any(k.startswith("generator_optimizer/_trainable_variables/") for k in floats)
  assert any(k.startswith("generator_optimizer/_variables/") for k in floats)  # Adam moments
  # Master weights, optimizer state, loss scales: float32 (the early-stopping best: float64).
  assert {k for k, d in floats.items() if d != np.float32} == {
    "best_metric/.ATTRIBUTES/VARIABLE_VALUE"
  }
  scale = "generator_loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE"
  assert state[scale] == precision.INITIAL_SCALE  # no overflow in 2 steps
  assert ("loss_scale/generator" in result["train"]) == (policy == "mixed_float16")
  if policy == "mixed_float16":
    assert result["train"]["loss_scale/discriminator"] == precision.INITIAL_SCALE
    steps = "discriminator_loss_scale/good_steps/.ATTRIBUTES/VARIABLE_VALUE"
    assert state[steps] == 2


def _bfloat16_nodes(fn):
  graph = fn.graph.as_graph_def()
  nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
  return [n.name for n in nodes if "DT_BFLOAT16" in str(n.attr)]


def test_exports_compute_in_serving_dtype_policy_whatever_the_training_policy(fresh_runs, tmp_path):
  """The end-of-training export of a bfloat16-trained run serves float32 (the default
  serving.dtype_policy); exported with serving.dtype_policy = 'mixed_bfloat16' its networks
  run in bfloat16, its outputs stay float32 and match the float32 export to bfloat16's
  precision."""
  model_dir, _ = fresh_runs["mixed_bfloat16"]
  f32 = tf.saved_model.load(versions.resolve(os.path.join(model_dir, "saved_model")))
  z = tf.random.stateless_normal([8, 4], [3, 4])
  want = f32.signatures["decode"](z=z)["images"]
  assert want.dtype == tf.float32 and np.isfinite(want.numpy()).all()
  assert not _bfloat16_nodes(f32.signatures["decode"])
  with gin_config.fresh():
    registry.parse_model_dir(str(model_dir), (), ["serving.dtype_policy = 'mixed_bfloat16'"])
    path, _ = export.export_checkpoint(str(model_dir), str(tmp_path / "bf16"))
  assert export.read_metadata(path)["dtype_policy"] == "mixed_bfloat16"
  bf16 = tf.saved_model.load(path)
  assert _bfloat16_nodes(bf16.signatures["decode"])
  got = bf16.signatures["decode"](z=z)["images"]
  assert got.dtype == tf.float32
  np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-2)  # bfloat16: 8-bit mantissa
  assert not np.array_equal(got.numpy(), want.numpy())  # it did compute in bfloat16
  # decode, sample and reconstruct run the folded bfloat16 decoder (`nets.folded`);
  # log_likelihood the decoder's own call.
  assert all(k.dtype == tf.bfloat16 for k in bf16.folded_decoder.kernels)
  for name in ("decode", "sample", "reconstruct", "log_likelihood"):
    captured = [v.name for v in bf16.signatures[name].variables]
    folded = any(n.startswith("folded_decoder/") for n in captured)
    assert folded == (name != "log_likelihood") and folded != ("decoder/kernel:0" in captured)


class _NanThenOverflow(hooks_lib.Hooks):
  """Step 3: a NaN loss (a bad step). Step 4: the loss x 1e30 (finite in float32), whose
  float16 backward pass overflows: a loss-scale overflow."""

  def scale_loss(self, step, rollbacks):
    del rollbacks
    factor = tf.where(tf.equal(step + 1, 4), tf.constant(1e30), tf.constant(1.0))
    return tf.where(tf.equal(step + 1, 3), tf.constant(np.nan, tf.float32), factor)


def test_checkpoints_resume_under_another_policy_and_overflows_lower_the_scale(
  fresh_runs, tmp_path
):
  # float32 -> mixed_float16, with a NaN step then an overflow step.
  f32_dir, _ = fresh_runs["float32"]
  resumed = tmp_path / "f32_to_f16"
  shutil.copytree(f32_dir, resumed)
  extra = VAE + RESUME + ["train.num_steps = 4"]
  result = _train(resumed, "mixed_float16", extra, _NanThenOverflow())
  state = _state(resumed)
  assert result["step"] == 4
  # The NaN step is a bad step (skipped, counted); the overflow is skipped, not counted,
  # and halves the scale (the NaN step left it alone: its forward pass was non-finite).
  assert result["guard"] == {"skipped_steps": 1, "rollbacks": 0}
  assert state["consecutive_bad_steps/.ATTRIBUTES/VARIABLE_VALUE"] == 0
  assert state["generator_loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE"] == 2.0**14
  assert state[ITERATIONS] == 2  # steps 1, 2
  assert state["save_counter/.ATTRIBUTES/VARIABLE_VALUE"] == 3  # ckpt-0, -2 restored; ckpt-4
  # mixed_bfloat16 -> float32.
  bf16_dir, _ = fresh_runs["mixed_bfloat16"]
  resumed = tmp_path / "bf16_to_f32"
  shutil.copytree(bf16_dir, resumed)
  result = _train(resumed, "float32", VAE + RESUME + ["train.num_steps = 3"])
  assert result["step"] == 3 and result["guard"]["skipped_steps"] == 0
  assert all(np.isfinite(v) for v in result["train"].values())
  assert _state(resumed)[ITERATIONS] == 3


def test_loss_scale_verdicts():
  scaler = precision.DynamicLossScale(True, "scaler")
  s = precision.INITIAL_SCALE

  def verdict(loss_bad, grads_bad):
    ok, not_bad = scaler.verdict(tf.constant([loss_bad, grads_bad], tf.float32))
    return bool(ok), bool(not_bad), float(scaler.scale.numpy()), int(scaler.good_steps.numpy())

  assert verdict(0.0, 0.0) == (True, True, s, 1)  # applied
  assert verdict(0.0, 1.0) == (False, True, s / 2, 0)  # overflow: not a bad step
  assert verdict(1.0, 1.0) == (False, False, s / 2, 0)  # non-finite loss: bad, scale kept
  scaler.good_steps.assign(precision.GROWTH_INTERVAL - 1)
  assert verdict(0.0, 0.0) == (True, True, s, 0)  # grows
  scaler.scale.assign(precision.MIN_SCALE)
  assert verdict(0.0, 2.0) == (False, False, precision.MIN_SCALE, 0)  # nothing left to lower
  fresh = precision.DynamicLossScale(True, "fresh")
  unscaled = fresh.unscale([tf.constant([3.0 * s]), None])
  assert unscaled[1] is None and unscaled[0].numpy().tolist() == [3.0]
  loss, grads = tf.constant(3.0), [tf.constant([2.0]), None]
  assert float(fresh.scale_loss(loss)) == 3.0 * s and fresh.finite(loss, loss).shape == [2]
  # Inactive (float32, mixed_bfloat16): the guard's plain checks, nothing added.
  inert = precision.DynamicLossScale(False, "inert")
  assert inert.scale_loss(loss) is loss and inert.unscale(grads) is grads
  assert inert.finite(loss, loss).shape == [] and inert.metrics("generator") == {}
  ok, not_bad = inert.verdict(tf.constant(1.0))
  assert not bool(ok) and not bool(not_bad)


def test_policy_names_and_scope(tmp_path):
  with pytest.raises(errors.ConfigError, match="train.dtype_policy must be one of"):
    _train(tmp_path, "float16")
  assert not os.listdir(tmp_path)
  with pytest.raises(RuntimeError):
    with precision.policy_scope("mixed_float16"):
      assert keras.config.dtype_policy().name == "mixed_float16"
      raise RuntimeError("build failed")
  assert keras.config.dtype_policy().name == "float32"


def _planar_model(policy, num_flows=80):
  gin.clear_config()
  gin.bind_parameter("posterior.kind", "planar")
  gin.bind_parameter("posterior.num_flows", num_flows)
  gin.bind_parameter("posterior.hidden_units", 16)
  try:
    with precision.policy_scope(policy):
      mdl = model_lib.ASVAE(
        (4, 4, 1),
        latent_dim=8,
        objective="vae",
        encoder=lambda name: nets.MLPEncoder(hidden_units=(32,), name=name),
        decoder=lambda output_shape, name: nets.MLPDecoder(
          output_shape, hidden_units=(32,), name=name
        ),
      )
      mdl.build_all()
  finally:
    gin.clear_config()
  return mdl


def test_planar_inverse_within_float32_tolerance_behind_a_bfloat16_encoder():
  mdl = _planar_model("mixed_bfloat16")
  assert mdl.encoder.body.dense_0.compute_dtype == "bfloat16"
  assert mdl.encoder.body.dense_0.kernel.dtype == "float32"
  assert mdl.posterior.planar_head.compute_dtype == "float32"
  x = tf.random.stateless_uniform([16, 4, 4, 1], [1, 2])
  h = mdl.encoder(x)
  assert h.dtype == tf.float32  # cast at the boundary, before the flow
  params = mdl.posterior(h)
  flow = mdl.posterior.bijector(params)
  z0 = tf.random.stateless_normal([16, 8], [3, 4])
  y = flow.forward(z0)
  # The float32 tolerance of tests/flows_test.py (planar round trip, K = 80).
  np.testing.assert_allclose(flow.inverse(tf.identity(y)).numpy(), z0.numpy(), atol=1e-4)
  z, log_q = mdl.encode(x, tf.constant([5, 6]))
  assert z.dtype == log_q.dtype == tf.float32
  np.testing.assert_allclose(mdl.posterior_log_prob(x, z).numpy(), log_q.numpy(), atol=1e-3)
  # Evaluation helpers of a mixed-policy model: float32 and finite.
  seed = tf.constant([7, 8])
  for out in (mdl.negative_elbo(x, seed), mdl.iwae_log_likelihood(x, 4, seed, chunk_size=2),
              mdl.reconstruct(x), mdl.sample(4, seed)[0]):  # fmt: skip
    assert out.dtype == tf.float32 and np.isfinite(out.numpy()).all()
