"""Evaluation (issue 4): model likelihood bounds against a linear-Gaussian model with an
analytic log p(x), the discretised evaluation likelihood, and tools/evaluate.py /
tools/train_classifier.py end to end."""

import glob
import json
import math
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import config
from asvae_tf import data
from asvae_tf import evaluation
from asvae_tf import model as model_lib
from asvae_tf import train_lib
from asvae_tf.dists import likelihoods
from asvae_tf.evaluation import feature_nets
from conftest import MNIST_DIR, ROOT, TINY_MODEL
from harness import run_tool
import tiny_inception

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
TINY = TINY_MODEL + ["train.strategy = 'default'", "train.validate_every = 2"]

# ---------------------------------------------------------------------------
# Linear-Gaussian model: z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_3). W has orthogonal
# columns, so the exact posterior N(A (x - b), S) has a diagonal covariance
# S = diag(1 / (1 + d_j / s^2)), d = diag(W^T W), A = S W^T / s^2.
# ---------------------------------------------------------------------------
W = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
B = np.array([0.5, -1.0, 0.25])
S_NOISE = 0.7
P, D = 3, 2


class _Flatten(keras.layers.Layer):
  """Encoder: h = x flattened (so the posterior heads are affine in x)."""

  def call(self, x, seed=None, training=False):
    return tf.reshape(x, [tf.shape(x)[0], P])


class _LinearDecoder(keras.layers.Layer):
  """Decoder: params [b, 1, 3, 2] = (loc = W z + b, log_scale = log s)."""

  def __init__(self, output_shape=None, name=None):
    super().__init__(name=name)

  def call(self, z, seed=None, training=False):
    loc = tf.matmul(z, tf.constant(W.T, z.dtype)) + tf.constant(B, z.dtype)
    log_scale = tf.fill(tf.shape(loc), tf.cast(math.log(S_NOISE), z.dtype))
    return tf.reshape(tf.stack([loc, log_scale], -1), [-1, 1, P, 2])


def _log_px(x):
  cov = W @ W.T + S_NOISE**2 * np.eye(P)
  diff = x - B
  _, logdet = np.linalg.slogdet(cov)
  return -0.5 * (
    np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff) + logdet + P * math.log(2 * math.pi)
  )


def _linear_gaussian_model(exact):
  """ASVAE (objective vae) whose encoder is the exact posterior, or a wrong one."""
  mdl = model_lib.ASVAE(
    (1, P, 1),
    latent_dim=D,
    objective="vae",
    encoder=lambda name: _Flatten(name=name),
    decoder=_LinearDecoder,
    likelihood=likelihoods.GaussianLikelihood,
  )
  mdl.build_all()
  s_diag = 1.0 / (1.0 + np.diag(W.T @ W) / S_NOISE**2)
  a = (s_diag[:, None] * W.T) / S_NOISE**2  # [D, P]
  if not exact:  # shrunken mean, too wide: ELBO < log p(x), IWAE must climb
    a, s_diag = 0.6 * a, 2.0 * s_diag
  mdl.posterior.loc_head.set_weights([a.T.astype(np.float32), (-a @ B).astype(np.float32)])
  mdl.posterior.log_scale_head.set_weights(
    [np.zeros((P, D), np.float32), _inverse_soft_clip(0.5 * np.log(s_diag), mdl.posterior)]
  )
  return mdl


def _inverse_soft_clip(target, posterior):
  """Raw head output whose `flows.soft_clip` is `target` (Newton in float64)."""
  low, high = posterior.min_log_scale, posterior.max_log_scale
  x = np.array(target, np.float64)
  for _ in range(50):  # softplus(v) = logaddexp(0, v); its derivative sigmoid(v)
    f = low + np.logaddexp(0.0, x - low) - np.logaddexp(0.0, x - high) - target
    x = x - f / (1.0 / (1.0 + np.exp(low - x)) - 1.0 / (1.0 + np.exp(high - x)))
  return x.astype(np.float32)


def _lg_data(n):
  rng = np.random.RandomState(0)
  x = rng.normal(size=(n, D)) @ W.T + B + S_NOISE * rng.normal(size=(n, P))
  return x, tf.constant(x.reshape(n, 1, P, 1), tf.float32)


def test_exact_posterior_gives_log_px_for_iwae_and_elbo():
  mdl = _linear_gaussian_model(exact=True)
  x, xt = _lg_data(50)
  for k, chunk in ((1, 64), (7, 3), (300, 64)):
    iwae, elbo = mdl.importance_bounds(xt, k, tf.constant([3, 4]), chunk_size=chunk)
    np.testing.assert_allclose(iwae.numpy(), _log_px(x), atol=2e-4)
    np.testing.assert_allclose(elbo.numpy(), _log_px(x), atol=2e-4)


def test_wrong_posterior_elbo_below_and_iwae_rises_to_log_px():
  mdl = _linear_gaussian_model(exact=False)
  n = 200
  x, xt = _lg_data(n)
  log_px = _log_px(x).mean()
  means, diffs = {}, {}
  for k in (1, 10, 100, 2000):
    iwae, elbo = mdl.importance_bounds(xt, k, tf.constant([5, k]), chunk_size=250)
    iwae, elbo = iwae.numpy().astype(np.float64), elbo.numpy().astype(np.float64)
    assert np.all(iwae >= elbo - 1e-4)  # Jensen, per image and per draw
    if k == 1:
      np.testing.assert_allclose(iwae, elbo, atol=1e-5)
    means[k], diffs[k] = iwae.mean(), iwae - _log_px(x)
    if k == 2000:  # the k-sample ELBO estimate is well below log p(x)
      assert elbo.mean() < log_px - 0.3, (elbo.mean(), log_px)
  assert means[1] < means[10] < means[100] < means[2000], means
  assert means[1] < log_px - 0.3
  # k = 2000 reaches log p(x) within Monte-Carlo error, image by image (the spread of
  # log p(x) over the data does not enter the tolerance).
  d = diffs[2000]
  assert abs(d.mean()) < 4 * d.std(ddof=1) / math.sqrt(n) + 2e-3, (d.mean(), d.std(ddof=1))


def test_refined_proposal_reaches_the_exact_posterior_with_the_decoder_frozen():
  """bounds.refine_proposal from the wrong posterior: the exact posterior is in the
  family (affine Gaussian heads), so the ELBO must climb to log p(x) (analytic)."""
  mdl = _linear_gaussian_model(exact=False)
  x, xt = _lg_data(200)
  images = xt.numpy()
  log_px = _log_px(x).mean()
  seed = tf.constant([7, 8])
  _, before = mdl.importance_bounds(xt, 1000, seed, chunk_size=250)
  assert before.numpy().mean() < log_px - 0.3  # the wrong posterior's gap
  per_pass = evaluation.refine_proposal(mdl, images, 200, 0.01, tf.constant([1, 2]), 50)
  assert per_pass.shape == (200,) and per_pass[-1] < per_pass[0] - 0.3
  iwae, elbo = mdl.importance_bounds(xt, 1000, seed, chunk_size=250)
  iwae, elbo = iwae.numpy(), elbo.numpy()
  assert abs(elbo.mean() - log_px) < 0.03, (elbo.mean(), log_px)  # from 1.1
  assert np.all(iwae >= elbo - 1e-4) and abs(iwae.mean() - log_px) < 0.02
  assert iwae.mean() <= log_px + 5e-3  # a bound: not above log p(x) beyond Monte Carlo
  # An MLP model: theta (decoder) and the discriminators stay bit-identical, phi (encoder
  # and flow) moves, and the same seed gives the same fit.
  gin.clear_config()
  try:
    config.parse([MNIST_GIN], TINY)
    mlp_model = model_lib.build_for_data(data.load_splits())
  finally:
    gin.clear_config()
  phi = mlp_model.encoder.trainable_variables + mlp_model.posterior.trainable_variables
  fixed = mlp_model.decoder.trainable_variables + mlp_model.discriminator_variables
  start = {id(v): v.numpy() for v in phi + fixed}
  binary = (np.random.RandomState(0).uniform(size=(16, 28, 28, 1)) < 0.3).astype(np.float32)
  fits = []
  for _ in range(2):
    for v in phi:
      v.assign(start[id(v)])
    losses = evaluation.refine_proposal(mlp_model, binary, 2, 1e-2, tf.constant([1, 2]), 6)
    fits.append((losses, [v.numpy() for v in phi]))
    for v in fixed:
      np.testing.assert_array_equal(start[id(v)], v.numpy(), err_msg=v.path)
  assert all(not np.array_equal(start[id(v)], v.numpy()) for v in phi)
  np.testing.assert_array_equal(fits[0][0], fits[1][0])  # 16 images, batch 6: a short last
  for a, b in zip(fits[0][1], fits[1][1]):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="passes >= 0"):
    evaluation.refine_proposal(mlp_model, binary, -1, 1e-2, tf.constant([1, 2]))


def test_discretized_eval_likelihood_reads_8bit_pixels_from_bin_centres():
  mdl = model_lib.ASVAE(
    (2, 3, 1), latent_dim=2, objective="vae", likelihood=likelihoods.GaussianLikelihood
  )
  pixels = np.array([[0, 1, 127], [128, 254, 255]], np.uint8).reshape(1, 2, 3, 1)
  x = tf.constant(data.to_float(pixels, binary=False))
  params = tf.constant(
    np.random.RandomState(1).normal(size=(1, 2, 3, 2)) * [0.3, 1.0] + [0.5, -3.0], tf.float32
  )
  got = mdl.eval_log_px(params, x, discretized=True).numpy()
  want = mdl.likelihood.discretized_log_prob(params, tf.constant(pixels, tf.float32)).numpy()
  np.testing.assert_array_equal(got, want)
  assert np.all(np.isfinite(got)) and np.all(got < 0)
  bern = model_lib.ASVAE((2, 3, 1), latent_dim=2, objective="vae")
  with pytest.raises(ValueError, match="no discretised likelihood"):
    bern.eval_log_px(tf.zeros([1, 2, 3, 1]), x, discretized=True)


# ---------------------------------------------------------------------------
# evaluate() / tools/evaluate.py on 2-step models.
# ---------------------------------------------------------------------------


def _train(model_dir, extra=()):
  gin.clear_config()
  config.parse([MNIST_GIN], TINY + list(extra))
  try:
    train_lib.train(str(model_dir))
  finally:
    gin.clear_config()


def _evaluate(model_dir, params=(), checkpoint=None):
  gin.clear_config()
  config.parse([os.path.join(str(model_dir), "operative_config.gin")], list(params))
  try:
    return evaluation.evaluate(str(model_dir), checkpoint=checkpoint)
  finally:
    gin.clear_config()


def _tags(directory):
  tags = set()
  for path in glob.glob(os.path.join(directory, "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("eval") / "binary"
  _train(model_dir)
  return model_dir


def test_evaluate_cli_writes_metrics_and_summaries(binary_run, tmp_path):
  out = run_tool(
    "evaluate",
    [
      f"--model_dir={binary_run}",
      "--gin_param=evaluate.num_importance_samples=30",
      "--gin_param=evaluate.iwae_chunk_size=16",
      "--gin_param=evaluate.num_generated=0",
    ],
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "IWAE NLL (k=30)" in out.stdout and "RMSE (pixels in [0, 1])" in out.stdout
  with open(binary_run / "eval" / "metrics.json") as f:
    m = json.load(f)
  assert m["step"] == 2 and m["num_importance_samples"] == 30 and m["split"] == "test"
  assert m["num_examples"] == 8  # synthetic 64 images: test split of 8 (N // 8)
  for key in ("neg_elbo", "neg_elbo_se", "iwae_nll", "iwae_nll_se", "rmse"):
    assert math.isfinite(m[key]), key
  assert m["iwae_nll"] <= m["neg_elbo"]  # same samples: Jensen holds per image
  assert m["neg_elbo"] > 0 and 0 <= m["rmse"] <= 1
  assert "inception" in m["skipped"] and "classifier" in m["skipped"]
  assert {"eval/neg_elbo", "eval/iwae_nll", "eval/rmse"} <= _tags(
    str(binary_run / "summaries" / "eval")
  )


def test_evaluate_is_deterministic_and_reads_best_checkpoint(binary_run, tmp_path):
  params = [
    "evaluate.num_importance_samples = 10",
    "evaluate.num_generated = 0",
    f"evaluate.output_dir = '{tmp_path}'",
  ]
  a = _evaluate(binary_run, params, checkpoint="latest")
  b = _evaluate(binary_run, params)  # the default: the best checkpoint (there is one)
  assert a["checkpoint"].endswith("checkpoints/ckpt-2") and "best" in b["checkpoint"]
  assert a["iwae_nll"] == b["iwae_nll"] and a["neg_elbo"] == b["neg_elbo"]  # same weights
  c = _evaluate(binary_run, params + ["evaluate.seed = 1"])
  assert c["iwae_nll"] != a["iwae_nll"]
  assert os.path.isfile(tmp_path / "metrics.json")


@pytest.mark.parametrize(
  "args, needle",
  [
    (["--checkpoint=/nonexistent/ckpt-5"], "does not exist"),
    (["--inception_weights=/nonexistent/inception.h5"], "InceptionV3 weights file not found"),
  ],
)
def test_evaluate_cli_bad_input_exits_2_with_one_line(binary_run, args, needle):
  before = sorted(os.listdir(binary_run))
  out = run_tool(
    "evaluate",
    [
      f"--model_dir={binary_run}",
      "--gin_param=evaluate.output_dir='/tmp/asvae_eval_should_not_exist'",
    ]
    + args,
    timeout=300,
  )
  assert out.returncode == 2, out.stderr[-2000:]
  lines = [line for line in out.stderr.splitlines() if line.startswith("asvae_tf: error:")]
  assert len(lines) == 1 and needle in lines[0], out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert sorted(os.listdir(binary_run)) == before
  assert not os.path.exists("/tmp/asvae_eval_should_not_exist/metrics.json")


@pytest.mark.parametrize(
  "params, error, needle",
  [
    (["evaluate.num_importance_samples = 0"], config.ConfigError, "num_importance_samples"),
    (["evaluate.split = 'train'"], config.ConfigError, "evaluate.split"),
    (["evaluate.num_generated = 5"], config.ConfigError, "num_generated"),
    (["evaluate.num_splits = 0"], config.ConfigError, "num_splits"),
    (["evaluate.max_examples = -1"], config.ConfigError, "max_examples"),
    (
      [
        "evaluate.num_generated = 20",
        "evaluate.num_splits = 10",
        "evaluate.max_examples = 5",
        "evaluate.classifier_dir = '{clf}'",
      ],
      config.ConfigError,
      "real images",
    ),
    (["evaluate.classifier_dir = '/nonexistent'"], FileNotFoundError, "no classifier.keras"),
  ],
)
def test_evaluate_bad_settings_raise_errors_the_cli_reports(
  binary_run, tmp_path, params, error, needle
):
  clf = tmp_path / "clf"  # an untrained classifier is enough to reach the size check
  if any("{clf}" in p for p in params):
    os.makedirs(clf)
    feature_nets.build_classifier().save(str(clf / feature_nets.CLASSIFIER_FILE))
    (clf / feature_nets.CLASSIFIER_METADATA).write_text("{}")
  with pytest.raises(error, match=needle):
    _evaluate(
      binary_run, [p.format(clf=clf) for p in params] + [f"evaluate.output_dir = '{tmp_path}'"]
    )
  assert not os.path.exists(tmp_path / "metrics.json")


def test_checkpoint_of_a_different_model_is_a_clear_error(binary_run, tmp_path):
  with pytest.raises(config.ConfigError, match="does not match the configured model"):
    _evaluate(
      binary_run, ["mlp_encoder.hidden_units = (24,)", f"evaluate.output_dir = '{tmp_path}'"]
    )


def test_inception_score_and_fid_with_local_weights_file(binary_run, tmp_path):
  weights = str(tmp_path / "inception_random.weights.h5")
  keras.applications.InceptionV3(weights=None).save_weights(weights)
  m = _evaluate(
    binary_run,
    [
      "evaluate.num_importance_samples = 2",
      "evaluate.num_generated = 10",
      "evaluate.num_splits = 2",
      f"evaluate.inception_weights = '{weights}'",
      f"evaluate.output_dir = '{tmp_path}'",
    ],
  )
  assert 1.0 - 1e-9 <= m["inception_score"] <= 1000 and m["inception_score_std"] >= 0
  assert 1.0 - 1e-9 <= m["inception_score_real"] <= 1000
  assert math.isfinite(m["fid"]) and m["fid"] > -1e-6
  assert m["inception_weights"] == weights and "inception" not in m["skipped"]
  assert m["inception_comparable"] is False and "NOT comparable" in m["inception_network"]
  assert "Inception Score (Keras InceptionV3: NOT comparable" in evaluation.format_table(m)


def test_comparable_inception_graph_and_reference_stats_through_the_cli(binary_run, tmp_path):
  graph = str(tmp_path / "classify_image_graph_def.pb")
  tiny_inception.write_graph(graph)
  stats = str(tmp_path / "stats.npz")
  tiny_inception.write_stats(stats, np.random.RandomState(0).normal(size=(30, 5)))
  out = run_tool(
    "evaluate",
    [
      f"--model_dir={binary_run}",
      f"--inception_graph={graph}",
      f"--fid_reference_stats={stats}",
      "--gin_param=evaluate.num_importance_samples=2",
      "--gin_param=evaluate.num_generated=4",
      "--gin_param=evaluate.num_splits=2",
      f"--gin_param=evaluate.output_dir='{tmp_path}'",
    ],
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "Inception Score (2015 TF Inception graph: comparable)" in out.stdout, out.stdout
  assert f"FID (2015 TF Inception graph: comparable; vs {stats})" in out.stdout
  m = json.load(open(tmp_path / "metrics.json"))
  assert m["inception_comparable"] is True and m["inception_graph"] == graph
  assert m["fid_reference"] == stats and "inception" not in m["skipped"]
  assert "ExpandDims:0" in m["inception_network"] and math.isfinite(m["fid"])
  assert 1.0 - 1e-9 <= m["inception_score"] <= tiny_inception.CLASSES


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="needs ../shared/data/mnist")
def test_train_classifier_and_classifier_metrics(binary_run, tmp_path):
  clf = tmp_path / "clf"
  out = run_tool(
    "train_classifier",
    [
      f"--data_dir={MNIST_DIR}",
      f"--output_dir={clf}",
      "--epochs=2",
      "--max_train_examples=3000",
    ],
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  meta = json.load(open(clf / "classifier.json"))
  assert meta["num_train"] == 3000 and meta["num_test"] == 2000 and "MNIST-10k" in meta["data"]
  assert meta["test_accuracy"] > 0.8  # 3,000 digits, two epochs; chance is 0.1
  net = feature_nets.Classifier(str(clf))
  splits = feature_nets.load_labeled_mnist(MNIST_DIR)
  test = splits["test_x"][:500].astype(np.float32) / 255.0
  probs, feats = net.predict(test)
  assert probs.shape == (500, 10) and feats.shape == (500, 128)
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
  accuracy = np.mean(probs.argmax(1) == splits["test_y"][:500])
  assert accuracy > 0.8
  # Other batch sizes (a last partial batch, another set's size) reuse the one trace, and
  # give each image the probabilities it gets in any batch.
  again, _ = net.predict(test[:7], batch_size=3)
  np.testing.assert_allclose(again, probs[:7], rtol=1e-5, atol=1e-7)
  assert net._forward.experimental_get_tracing_count() == 1
  m = _evaluate(
    binary_run,
    [
      "evaluate.num_importance_samples = 2",
      "evaluate.num_generated = 20",
      "evaluate.num_splits = 2",
      f"evaluate.classifier_dir = '{clf}'",
      f"evaluate.output_dir = '{tmp_path}'",
    ],
  )
  assert m["classifier_test_accuracy"] == meta["test_accuracy"]
  assert 1.0 - 1e-9 <= m["classifier_score"] <= 10 and math.isfinite(m["classifier_fid"])


def test_train_classifier_bad_dir_exits_2(tmp_path):
  out = run_tool(
    "train_classifier",
    [
      f"--data_dir={tmp_path}",
      f"--output_dir={tmp_path / 'c'}",
    ],
    timeout=120,
  )
  assert out.returncode == 2 and "t10k images" in out.stderr and "Traceback" not in out.stderr
  assert not os.path.exists(tmp_path / "c")
