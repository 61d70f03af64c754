"""End-to-end training: smoke runs, real digits, replica invariance, exact resume, CLI."""

import glob
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

import asvae_tf
from asvae_tf import cli
from asvae_tf import config
from asvae_tf import nets
from asvae_tf import train
from asvae_tf.flows import planar_grad
from conftest import MNIST_DIR, ROOT, TINY_MODEL, idle_checkpoint_keys

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "gin", "*.gin")))

TINY = TINY_MODEL + [
  "train.summary_every = 1",
  "train.validate_every = 2",
  "train.image_every = 2",
  "train.checkpoint_every = 2",
]


def _train(model_dir, extra=(), gin_file=MNIST_GIN):
  gin.clear_config()
  config.parse([gin_file], TINY + list(extra))
  try:
    return train.train(str(model_dir))
  finally:
    gin.clear_config()


def _weights(model_dir):
  """Variables of the latest checkpoint of model_dir (or of a checkpoint prefix)."""
  path = str(model_dir)
  reader = tf.train.load_checkpoint(
    path if os.path.basename(path).startswith("ckpt-") else os.path.join(path, "checkpoints")
  )
  return {
    k: reader.get_tensor(k)
    for k in reader.get_variable_to_shape_map()
    if "/.ATTRIBUTES/VARIABLE_VALUE" in k
  }


@pytest.mark.parametrize("objective", ["vae", "asvae_r", "asvae_g", "asvae"])
def test_two_step_smoke_run_per_objective(tmp_path, objective):
  result = _train(tmp_path, [f"model.objective = '{objective}'", "train.strategy = 'default'"])
  assert result["step"] == 2
  assert all(np.isfinite(v) for v in result["train"].values())
  assert np.isfinite(result["validation"]["neg_elbo"])
  assert ("loss/discriminator" in result["train"]) == (objective != "vae")
  assert os.path.isfile(tmp_path / "operative_config.gin")
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
  assert glob.glob(str(tmp_path / "summaries" / "train" / "events.*"))
  tags = set()
  for path in glob.glob(str(tmp_path / "summaries" / "train" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {
    "samples",
    "reconstructions",
    "loss/generator",
    "speed/images_per_second",
    "learning_rate/generator",
  } <= tags, tags
  assert ("discriminator/eq5_accuracy" in tags) == (objective in ("asvae_r", "asvae"))
  # gin/mnist.gin's explicit f2 trains D (x) and h (z) on the marginals of eq. (6).
  assert ("discriminator/eq6_x_accuracy" in tags) == (objective in ("asvae_g", "asvae"))
  # Discriminator weights are trained and saved exactly when the objective has them.
  weights = _weights(tmp_path)
  assert any(k.startswith("discriminator_optimizer/_trainable_variables/") for k in weights) == (
    objective != "vae"
  )
  best = tf.train.load_checkpoint(str(tmp_path / "best"))
  assert any(k.startswith("model/encoder/") for k in best.get_variable_to_shape_map())


def test_early_stopping_stops_and_stays_stopped(tmp_path):
  # With zero learning rates the validation metric can never improve after the first
  # validation: patience 1 stops at the second one and checkpoints there.
  frozen = [
    "model.objective = 'vae'",
    "train.strategy = 'default'",
    "train.num_steps = 10",
    "train.validate_every = 1",
    "train.checkpoint_every = 0",
    "train.early_stopping_patience = 1",
    "generator/optimizer.learning_rate = 0.0",
  ]
  result = _train(tmp_path, frozen)
  assert result["step"] == 2
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
  assert tf.train.latest_checkpoint(str(tmp_path / "best")).endswith("ckpt-1")
  assert _train(tmp_path, frozen)["step"] == 2  # a rerun does not train past the stop


@pytest.mark.slow(40)
def test_xla_steps_under_mirrored_strategy(tmp_path):
  # XLA compiles the per-replica loss/gradient function (not strategy.run itself), with the
  # planar loops inside (a real tf.while_loop: 1 layer per iteration). 'flow' (the loops
  # only) is the subset test_flow_xla_resumes_bit_identically and
  # test_fast_gin_file_trains_with_its_speed_settings run.
  result = _train(
    tmp_path,
    [
      "model.objective = 'asvae'",
      "train.strategy = 'mirrored'",
      "train.jit_compile = True",
      "posterior.layers_per_iteration = 1",
    ],
  )
  assert result["step"] == 2
  assert all(np.isfinite(v) for v in result["train"].values())


@pytest.mark.slow(40)
def test_flow_xla_resumes_bit_identically(tmp_path):
  # train.jit_compile = 'flow': XLA for the planar loops only, deterministic: a resumed run
  # equals a straight one. 1 layer per tf.while_loop iteration: the loop itself runs under
  # XLA (K = 2). The XLA loops' maths (values and gradients against an independent float64
  # flow) is tests/flows_test.py::test_planar_custom_vjp_matches_autodiff.
  flow_xla = [
    "model.objective = 'asvae'",
    "train.strategy = 'default'",
    "posterior.layers_per_iteration = 1",
    "train.jit_compile = 'flow'",
    "model.latent_dim = 3",  # shapes no other training test gives the XLA loops: a new trace
  ]
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  traces = sum(f.experimental_get_tracing_count() for f in planar_grad._XLA_LOOPS)
  _train(straight, flow_xla + ["train.num_steps = 4"])
  assert sum(f.experimental_get_tracing_count() for f in planar_grad._XLA_LOOPS) > traces
  _train(resumed, flow_xla + ["train.num_steps = 2"])
  _train(resumed, flow_xla + ["train.num_steps = 4"])
  a, b = _weights(straight), _weights(resumed)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_fast_gin_file_trains_with_its_speed_settings(tmp_path):
  # gin/mnist_fast.gin: gin/mnist.gin + 'shared' updates, bfloat16 networks, XLA flow loops,
  # f1 without residual.
  fast_gin = os.path.join(ROOT, "gin", "mnist_fast.gin")
  result = _train(
    tmp_path, ["train.strategy = 'default'", "train.export_saved_model = True"], fast_gin
  )
  assert result["step"] == 2
  assert all(np.isfinite(v) for v in result["train"].values())
  operative = (tmp_path / "operative_config.gin").read_text()
  for binding in (
    "train.update_scheme = 'shared'",
    "train.dtype_policy = 'mixed_bfloat16'",
    "train.jit_compile = 'flow'",
    "model.f1_residual_inputs = 'none'",
    "train.intra_op_threads = 1",  # (not applied in this test process: a warning)
  ):
    assert binding in operative, binding
  assert "discriminator/eq5_accuracy" not in result["train"]  # no f1 network to train
  # The export (which builds its model from the checkpoint: flow loops in plain TF) serves.
  served = asvae_tf.load_saved_model(tmp_path / "saved_model")
  x = served.sample(3, seed=0)
  assert x.shape == (3, 28, 28, 1) and np.all(np.isfinite(served.log_likelihood(x, k=4, seed=0)))


def test_loss_goes_down_on_real_digits(tmp_path):
  if not os.path.isdir(MNIST_DIR):
    pytest.skip(f"no real MNIST at {MNIST_DIR}")
  _train(
    tmp_path,
    [
      f"dataset.local_dir = '{MNIST_DIR}'",
      "dataset.name = 'mnist'",
      "model.objective = 'vae'",
      "posterior.kind = 'gaussian'",
      "posterior.num_flows = 0",
      "mlp_encoder.hidden_units = (64,)",
      "mlp_decoder.hidden_units = (64,)",
      "train.batch_size = 50",
      "train.num_steps = 150",
      "train.validate_every = 50",
      "train.summary_every = 50",
      "train.checkpoint_every = 0",
      "train.image_every = 0",
      "generator/optimizer.learning_rate = 1e-3",
      "train.strategy = 'default'",
    ],
  )
  values = []
  for path in sorted(glob.glob(str(tmp_path / "summaries" / "validation" / "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == "neg_elbo":
          values.append((event.step, float(tf.make_ndarray(v.tensor))))
  values.sort()
  assert [s for s, _ in values] == [50, 100, 150]
  # -ELBO on the 1,000 real validation digits falls from ~543 nats (784 * ln 2) markedly.
  assert values[-1][1] < values[0][1] - 20, values
  assert values[-1][1] < 250, values


@pytest.mark.slow(32)
def test_two_replicas_give_the_same_update_as_one_device(tmp_path):
  # Plain SGD: its update is proportional to the gradient, so a loss-scaling error
  # (per-replica instead of global batch) would show; Adam would normalise it away.
  common = [
    "model.objective = 'asvae'",
    "posterior.kind = 'planar'",
    "train.checkpoint_every = 0",
    "generator/optimizer.name = 'sgd'",
    "discriminator/optimizer.name = 'sgd'",
    "generator/optimizer.learning_rate = 0.05",
    "discriminator/optimizer.learning_rate = 0.05",
  ]
  _train(tmp_path / "one", common + ["train.strategy = 'default'"])
  _train(tmp_path / "two", common + ["train.strategy = 'mirrored'"])
  one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
  assert one.keys() == two.keys()
  for k in one:
    if one[k].dtype.kind == "f":
      np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
    else:
      np.testing.assert_array_equal(two[k], one[k], err_msg=k)
  # The comparison is meaningful only if training moved the weights away from init
  # (a fresh run saves ckpt-0 before its first step), by far more than the tolerance: a
  # wrong loss scale (2 replicas averaging per-replica losses by their own batch) would
  # double every SGD step, moving the weights by about as much again as the updates.
  start = _weights(tmp_path / "one" / "checkpoints" / "ckpt-0")
  assert any(
    np.any(np.abs(one[k] - start[k]) > 100 * (1e-6 + 1e-5 * np.abs(one[k])))
    for k in one
    if "_trainable_variables/" in k
  )
  # (Each variable is saved once, under its first path: the optimizer's reference.)
  params = [k for k in one if "_trainable_variables/" in k]
  idle = idle_checkpoint_keys([MNIST_GIN], TINY + common)
  assert len(params) > 20 and len(idle) == 3  # gin/mnist.gin: explicit f1 ('x') and f2
  assert all(not np.array_equal(start[k], one[k]) for k in params if k not in idle)
  assert all(np.array_equal(start[k], one[k]) for k in idle)  # inputs held at 0


def _cli(args, cwd=ROOT):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
    [sys.executable, os.path.join(ROOT, "tools", "train.py")] + args,
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _cli_args(model_dir, num_steps):
  return [f"--gin_file={MNIST_GIN}", f"--model_dir={model_dir}", "--strategy=default"] + [
    f"--gin_param={b}"
    for b in TINY + [f"train.num_steps = {num_steps}", "train.checkpoint_every = 2"]
  ]


@pytest.mark.slow(40)
def test_resume_in_new_process_is_bit_identical(tmp_path):
  # AS-VAE with the planar posterior and both discriminators, trained with
  # train.update_scheme = 'shared' (the other tests train 'alternating');
  # tests/fault_test.py kills and resumes a VAE at many points. Straight and first-half
  # runs in-process (the same bindings as the CLI gets), the resume in a new process.
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  shared = "train.update_scheme = 'shared'"
  resume_cfg = ["train.strategy = 'default'", "train.checkpoint_every = 2", shared]
  result = _train(straight, resume_cfg + ["train.num_steps = 4"])
  assert {"loss/discriminator", "loss/generator", "discriminator/eq5_accuracy"} <= set(
    result["train"]
  )
  _train(resumed, resume_cfg + ["train.num_steps = 2"])
  # The new process also sizes TensorFlow's thread pools otherwise (train.intra_op_threads,
  # train.inter_op_threads): a speed setting, bit-identical here (asvae_tf/train/threads.py).
  threads = ["train.intra_op_threads = 1", "train.inter_op_threads = 3"]
  r = _cli(_cli_args(resumed, 4) + [f"--gin_param={b}" for b in [shared] + threads])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resumed from" in r.stderr and "threads: intra-op 1, inter-op 3" in r.stderr
  a, b = _weights(straight), _weights(resumed)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(
  "gin_files,params,needle",
  [
    (["does/not/exist.gin"], [], "gin file not found"),
    ([MNIST_GIN], ["dataset.name = 'synthetic'", "train.seed = -1"], "train.seed"),
  ],
)  # the same through tools/train.py's flags, in a new process: tests/fault_test.py
def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys, gin_files, params, needle):
  # cli.run_training is what tools/train.py returns as its exit code.
  gin.clear_config()
  try:
    code = cli.run_training(gin_files, params, str(tmp_path / "m"))
  finally:
    gin.clear_config()
  err = capsys.readouterr().err
  assert code == 2, err[-2000:]
  errors = [line for line in err.splitlines() if line.startswith("asvae_tf: error:")]
  assert len(errors) == 1 and needle in errors[0], err[-2000:]
  assert "Traceback" not in err and not (tmp_path / "m").exists()


@pytest.mark.parametrize("gin_file", GIN_FILES, ids=os.path.basename)
def test_every_gin_file_parses_and_builds(gin_file):
  from asvae_tf import data, model as model_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  config.parse([gin_file], ["dataset.name = 'synthetic'", "dataset.synthetic_num_examples = 8"])
  try:
    splits = data.load_splits()
    mdl = model_lib.build_model(image_shape=splits.image_shape)
    mdl.build_all()
    assert mdl.generator_variables
    assert bool(mdl.discriminator_variables) == (mdl.objective.name != "vae")
  finally:
    gin.clear_config()


@pytest.mark.parametrize(
  "binding",
  [
    "dataset.name = 'synthetic'",
    "dataset.local_dir = '/tmp'",
    "train.num_steps = 3",
    "train.batch_size = 10",
    "train.seed = 1",
    "train.checkpoint_every = 5",
    "train.summary_every = 5",
    "train.max_bad_steps = 5",
    "train.max_rollbacks = 1",
    "train.rollback_lr_factor = 0.25",
    "model.ratio_estimator = 'explicit'",
    "model.f2_estimator = 'joint'",
    "model.f1_residual_inputs = 'xz'",
    "model.f2_marginal_samples = 4",
    "model.generator_pass_dropout = False",
    "model.r1_gamma = 1.0",
    "train.adversarial_warmup_steps = 100",
    "train.early_stopping_metric = 'elbo'",
    "model.f2_decoder_gradient = 'marginal'",
    "model.f2_decoder_weight = 2.0",
    "mlp_decoder.output_bias = 'data_mean'",
    "model.f1_residual_inputs = 'none'",
    "train.intra_op_threads = 1",
    "train.inter_op_threads = 2",
  ],
)
def test_public_gin_names_are_bindable(binding):
  gin.clear_config()
  try:
    config.parse([], [binding])
    name, value = [s.strip() for s in binding.split("=")]
    scope, param = name.split(".")
    assert gin.query_parameter(f"{scope}.{param}") == eval(value)  # pylint: disable=eval-used
  finally:
    gin.clear_config()


# Issue 12: the ratio-estimator settings, the warm-up and early stopping on the ELBO.
EXPLICIT_RUN = [
  "model.ratio_estimator = 'explicit'",
  "model.f2_decoder_gradient = 'exact'",
  "model.f1_residual_inputs = 'xz'",
  "model.f2_marginal_samples = 2",
  "model.generator_pass_dropout = False",
  "model.r1_gamma = 0.5",
  "model.f2_input_noise = 0.3",
  "discriminator/optimizer.beta_1 = 0.5",
  "train.adversarial_warmup_steps = 3",
  "train.early_stopping_metric = 'elbo'",
  "bernoulli_likelihood.reparameterization = 'straight_through_linear'",
  "train.strategy = 'default'",
  "train.image_every = 0",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "mlp_decoder.output_bias = 'data_mean'",
]  # the planar flow: elsewhere


def _train_images(extra):
  """The training split's images (uint8 [N, H, W, C]) of gin/mnist.gin + TINY + extra."""
  gin.clear_config()
  config.parse([MNIST_GIN], TINY + list(extra))
  try:
    return asvae_tf.data.load_splits().train
  finally:
    gin.clear_config()


@pytest.mark.slow(37)
def test_explicit_estimator_resumes_bit_identically_and_logs_the_ratio_gap(tmp_path):
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  result = _train(straight, EXPLICIT_RUN + ["train.num_steps = 4"])
  _train(resumed, EXPLICIT_RUN + ["train.num_steps = 2"])
  assert _train(resumed, EXPLICIT_RUN + ["train.num_steps = 4"])["step"] == 4
  a, b = _weights(straight), _weights(resumed)  # every variable of model and optimizers
  assert a.keys() == b.keys() and len([k for k in a if "discriminator_optimizer/_train" in k]) == 24
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # mlp_decoder.output_bias = 'data_mean': the fresh run's ckpt-0 holds the logit of the
  # training images' per-pixel mean as the decoder's output bias (the resumed run restored
  # its checkpoint over the initialisation: equal above).
  first = _weights(straight / "checkpoints" / "ckpt-0")
  (bias,) = [  # saved under the optimizer's path; the only [784] generator variable
    k for k in first if k.startswith("generator_optimizer/_train") and first[k].shape == (784,)
  ]
  np.testing.assert_array_equal(first[bias], nets.mlp.data_mean_logits(_train_images(EXPLICIT_RUN)))
  assert np.ptp(first[bias]) > 1.0 and not np.array_equal(a[bias], first[bias])
  train_metrics = result["train"]
  np.testing.assert_allclose(
    train_metrics["ratio/gap"],
    train_metrics["ratio/f1_mean"] - train_metrics["ratio/kl_exact"],
    rtol=1e-5,
    atol=1e-5,
  )
  assert {
    "ratio/f2_mean",
    "ratio/f2_explicit",
    "discriminator/eq6_x_accuracy",
    "discriminator/eq6_z_accuracy",
  } <= set(train_metrics)
  tags = set()
  for path in glob.glob(str(straight / "summaries" / "train" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {"ratio/kl_exact", "ratio/f1_mean", "ratio/gap", "ratio/f2_mean"} <= tags, tags
  # Early stopping on the validation -ELBO: best/ holds the step with the lowest one.
  assert result["validation"]["early_stopping_metric"] == result["validation"]["neg_elbo"]
  # Its best value is in nats: resuming with the recon metric (other units) is refused.
  with pytest.raises(config.ConfigError, match="early_stopping_metric"):
    _train(resumed, EXPLICIT_RUN + ["train.num_steps = 6", "train.early_stopping_metric = 'recon'"])


def test_adversarial_warmup_weight_ramps_to_one():
  # The model side (weight 0 leaves only the exact parts) is tests/ratios_test.py's.
  w = [float(train.adversarial_weight(tf.constant(s, tf.int64), 4)) for s in range(6)]
  np.testing.assert_allclose(w, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
  assert float(train.adversarial_weight(tf.constant(0, tf.int64), 0)) == 1.0


@pytest.mark.parametrize(
  "binding,needle",
  [
    ("model.ratio_estimator = 'exact'", "model.ratio_estimator"),
    ("model.r1_gamma = -1.0", "model.r1_gamma"),
    ("train.early_stopping_metric = 'fid'", "train.early_stopping_metric"),
    ("train.adversarial_warmup_steps = -5", "train.adversarial_warmup_steps"),
    ("bernoulli_likelihood.reparameterization = 'linear'", "reparameterization"),
    ("train.update_scheme = 'joint'", "train.update_scheme"),
    ("train.jit_compile = 'xla'", "train.jit_compile"),
    ("train.jit_compile = 'flow'\nposterior.kind = 'gaussian'", "jit_compile='flow'"),
    ("train.update_scheme = 'shared'\ntrain.discriminator_steps = 2", "discriminator_steps"),
  ],
)
def test_bad_estimator_config_is_a_config_error(tmp_path, binding, needle):
  with pytest.raises(config.ConfigError, match=needle):
    _train(tmp_path, ["train.strategy = 'default'", binding])


FAST = ["train.dtype_policy = 'mixed_bfloat16'", "train.jit_compile = 'flow'"]


@pytest.mark.slow(25)
@pytest.mark.parametrize(
  "scheme,extra",
  # 'shared' runs with gin/mnist_fast.gin's settings only (bfloat16 networks, XLA flow
  # loops): the residual's isolation is where the gradients are stopped, not a dtype
  # matter, and bit-equality in bfloat16 is the stricter check (float32 'shared' training
  # is covered by test_resume_in_new_process_is_bit_identical).
  [("alternating", []), ("shared", FAST)],
  ids=["alt", "fast"],
)
def test_f1_without_residual_trains_theta_phi_exactly_as_an_x_only_residual(
  tmp_path, scheme, extra
):
  """model.f1_residual_inputs = 'none' (f1 = its explicit part; eq. (5) trains nothing):
  an x-only residual moves no gradient of theta or phi and draws from its own random
  streams, so the encoder, flow, decoder and f2 (D, h) weights after 3 steps equal the
  'x' run's bit for bit, while the model holds no f1 network and logs no eq5 values."""
  common = [
    "train.strategy = 'default'",
    "train.num_steps = 3",
    f"train.update_scheme = '{scheme}'",
  ] + extra  # "fast": gin/mnist_fast.gin's settings
  with_r1 = _train(tmp_path / "x", common + ["model.f1_residual_inputs = 'x'"])
  without = _train(tmp_path / "none", common + ["model.f1_residual_inputs = 'none'"])
  a, b = _weights(tmp_path / "x"), _weights(tmp_path / "none")

  def listed(weights, opt):  # the optimizer's variable list, in order
    pre = f"{opt}_optimizer/_trainable_variables/"
    n = len([k for k in weights if k.startswith(pre)])
    return [weights[f"{pre}{i}/.ATTRIBUTES/VARIABLE_VALUE"] for i in range(n)]

  gen_a, gen_b = listed(a, "generator"), listed(b, "generator")
  assert len(gen_a) == len(gen_b) > 0
  for i, (u, v) in enumerate(zip(gen_a, gen_b)):
    np.testing.assert_array_equal(u, v, err_msg=f"generator variable {i}")
  # psi: f1's variables come first; 'none' holds only f2's D and h, equal to the 'x' run's.
  disc_a, disc_b = listed(a, "discriminator"), listed(b, "discriminator")
  assert 0 < len(disc_b) < len(disc_a)
  for i, (u, v) in enumerate(zip(disc_a[len(disc_a) - len(disc_b) :], disc_b)):
    np.testing.assert_array_equal(u, v, err_msg=f"f2 variable {i}")
  assert "discriminator/eq5_accuracy" in with_r1["train"]
  assert "discriminator/eq5_accuracy" not in without["train"]
  # Its checkpoints hold no f1 network: switching a model_dir either way is refused (a
  # check on the checkpoint, whatever the update scheme: made once).
  more = [b for b in common if "num_steps" not in b] + ["train.num_steps = 4"]
  for run, other in (("x", "none"), ("none", "x")) if scheme == "alternating" else ():
    with pytest.raises(config.ConfigError, match="f1_residual_inputs"):
      _train(tmp_path / run, more + [f"model.f1_residual_inputs = '{other}'"])
  assert without["train"]["ratio/gap"] == 0.0  # f1 = the exact KL term


@pytest.mark.parametrize("scheme", ["alternating", "shared"])
def test_asvae_r_without_residual_has_no_discriminator_and_trains(tmp_path, scheme):
  """AS-VAE-r with f1 = its explicit part trains no discriminator at all."""
  result = _train(
    tmp_path,
    [
      "model.objective = 'asvae_r'",
      "model.f1_residual_inputs = 'none'",
      "train.strategy = 'default'",
      f"train.update_scheme = '{scheme}'",
    ],
  )
  assert result["step"] == 2 and "loss/discriminator" not in result["train"]
  assert result["train"]["ratio/gap"] == 0.0
  assert not any("discriminator_optimizer/_trainable" in k for k in _weights(tmp_path))
