"""Convolutional AS-VAE for natural images (CIFAR-10 32x32x3, ImageNet 64x64x3).

Conv networks (shapes, stages, errors, dropout, checkpoint tracking), the discretised
Gaussian likelihood of a decoder in bits/dim, the TFDS builder names, and 2-step smoke
runs of every gin/cifar10*.gin and gin/imagenet64*.gin file on synthetic data of the
right shape through training, export, the loaded SavedModel and tools/sample.py.
"""

import math
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import config
from asvae_tf import data
from asvae_tf import evaluation
from asvae_tf import export
from asvae_tf.dists import likelihoods
from asvae_tf import model as model_lib
from asvae_tf import nets
from asvae_tf import train
from conftest import ROOT

# Both bases and the discriminator objectives (on the CIFAR-10 base): a variant is its base
# plus one binding (gin_config_test checks that), so the other variants run nothing the
# bases and these do not already run.
CONV_GIN_FILES = [
  os.path.join(ROOT, "gin", name) for name in ("cifar10.gin", "imagenet64.gin")
]  # AS-VAE with both conv discriminators at 32 and 64 px. The variants (asvae_r, asvae_g,
# vae) change only the objective, whose 2-step runs are tests/train_test.py's (MLPs), and
# every gin file builds in tests/train_test.py::test_every_gin_file_parses_and_builds.
D = 4

# Tiny widths, D = 4, batch 8, 2 steps, one validation batch of 8: seconds per run.
TINY_CONV = [
  "dataset.name = 'synthetic'",
  "dataset.synthetic_num_examples = 64",
  "dataset.validation_size = 8",
  f"model.latent_dim = {D}",
  "conv_encoder.base_width = 4",
  "conv_encoder.max_width = 8",
  "conv_decoder.base_width = 4",
  "conv_decoder.max_width = 8",
  "conv_joint_discriminator.base_width = 4",
  "conv_joint_discriminator.max_width = 8",
  "conv_joint_discriminator.z_units = (8,)",
  "conv_joint_discriminator.joint_units = (8,)",
  "train.batch_size = 8",
  "train.num_steps = 2",
  "train.early_stopping_patience = 0",
  "train.strategy = 'default'",
  "train.summary_every = 0",
  "train.validate_every = 0",
  "train.image_every = 0",
  "train.checkpoint_every = 0",
]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


# ---- networks -----------------------------------------------------------------


@pytest.mark.parametrize("size,stages", [(32, 3), (64, 4)])
def test_conv_network_shapes_and_stages(size, stages):
  enc = nets.conv_encoder(base_width=4, max_width=16)
  dec = nets.conv_decoder(output_shape=(size, size, 6), base_width=4, max_width=16)
  disc = nets.conv_joint_discriminator(base_width=4, max_width=16, z_units=(5,), joint_units=(7,))
  x = tf.random.stateless_uniform([3, size, size, 3], [0, 1])
  z = tf.random.stateless_normal([3, 10], [0, 2])
  widths = [min(4 * 2**i, 16) for i in range(stages)]
  h = enc(x)
  # Down to 4x4 maps of the last width, flattened.
  assert h.shape == (3, 4 * 4 * widths[-1])
  assert enc.body.convs.num_layers == stages
  assert [getattr(enc.body.convs, f"conv_{i}").filters for i in range(stages)] == widths
  out = dec(z)
  assert out.shape == (3, size, size, 6)
  assert dec.start_shape == (4, 4, widths[-1])
  assert [getattr(dec, f"deconv_{i}").filters for i in range(stages)] == widths[-2::-1] + [6]
  logits = disc(x, z)
  assert logits.shape == (3,)
  assert disc.x_path.convs.num_layers == stages
  assert np.all(np.isfinite(h.numpy())) and np.all(np.isfinite(out.numpy()))
  # Xavier/Glorot-uniform kernels: |w| <= sqrt(6 / (fan_in + fan_out)), filling the range.
  kernel = enc.body.convs.conv_1.kernel.numpy()  # [k, k, c_in, c_out]
  receptive = kernel.shape[0] * kernel.shape[1]
  limit = math.sqrt(6.0 / (receptive * (kernel.shape[2] + kernel.shape[3])))
  assert limit * 0.8 < np.abs(kernel).max() <= limit
  # Each stage: kernel + bias; decoder: project + stages; discriminator: x, z, joint, logit.
  assert len(enc.trainable_variables) == 2 * stages
  assert len(dec.trainable_variables) == 2 * (stages + 1)
  assert len(disc.trainable_variables) == 2 * (stages + 3)


def test_default_widths_are_dcgan_like():
  assert nets.conv_widths(nets.conv_stages(32, 32), 64, 512) == [64, 128, 256]
  assert nets.conv_widths(nets.conv_stages(64, 64), 64, 512) == [64, 128, 256, 512]
  dec = nets.conv_decoder(output_shape=(64, 64, 6))
  assert dec.start_shape == (4, 4, 512)


def test_explicit_num_stages_allows_other_sizes():
  enc = nets.conv_encoder(base_width=2, num_stages=2)
  assert enc(tf.zeros([2, 28, 28, 1])).shape == (2, 7 * 7 * 4)
  dec = nets.conv_decoder(output_shape=(28, 28, 2), base_width=2, num_stages=2)
  assert dec(tf.zeros([2, 3])).shape == (2, 28, 28, 2)


@pytest.mark.parametrize(
  "make,needle",
  [
    (
      lambda: nets.conv_encoder(base_width=2)(tf.zeros([2, 28, 28, 1])),
      "encoder: unsupported image size 28x28",
    ),
    (
      lambda: nets.conv_encoder(base_width=2)(tf.zeros([2, 32, 64, 3])),
      "unsupported image size 32x64",
    ),
    (
      lambda: nets.conv_encoder(base_width=2)(tf.zeros([2, 48, 48, 3])),
      "unsupported image size 48x48",
    ),
    (
      lambda: nets.conv_decoder(output_shape=(30, 30, 6)),
      "decoder: unsupported image size 30x30",
    ),
    (
      lambda: nets.conv_decoder(output_shape=(28, 28, 2), num_stages=3),
      "unsupported image size 28x28 for num_stages=3",
    ),
    (
      lambda: nets.conv_encoder(num_stages=0)(tf.zeros([2, 32, 32, 3])),
      "num_stages must be >= 1",
    ),
    (
      lambda: nets.conv_joint_discriminator(base_width=2)(
        tf.zeros([2, 36, 36, 3]), tf.zeros([2, 3])
      ),
      "(x path): unsupported image size 36x36",
    ),
    (lambda: nets.conv_encoder(base_width=0), "base_width and max_width must be >= 1"),
  ],
)
def test_unsupported_sizes_fail_clearly(make, needle):
  with pytest.raises(ValueError) as e:
    make()
  assert needle in str(e.value), str(e.value)


def test_cifar_gin_model_on_mnist_shaped_data_fails_clearly():
  gin.clear_config()
  config.parse([os.path.join(ROOT, "gin", "cifar10.gin")], TINY_CONV)
  try:
    with pytest.raises(ValueError, match="decoder: unsupported image size 28x28"):
      model_lib.build_model(image_shape=(28, 28, 1))
  finally:
    gin.clear_config()


def test_conv_dropout_is_stateless_and_seeded():
  d = nets.conv_joint_discriminator(
    base_width=4, max_width=8, z_units=(6,), joint_units=(5,), dropout_rate=0.5
  )
  dec = nets.conv_decoder(output_shape=(32, 32, 6), base_width=4, max_width=8, dropout_rate=0.5)
  x = tf.random.stateless_uniform([4, 32, 32, 3], [1, 2])
  z = tf.random.stateless_normal([4, 3], [3, 4])
  s1, s2 = tf.constant([1, 1]), tf.constant([1, 2])
  for f in (lambda **kw: d(x, z, **kw), lambda **kw: dec(z, **kw)):
    plain = f().numpy()
    np.testing.assert_array_equal(plain, f().numpy())
    a = f(seed=s1, training=True).numpy()
    np.testing.assert_array_equal(a, f(seed=s1, training=True).numpy())
    assert not np.allclose(a, f(seed=s2, training=True).numpy())
    assert not np.allclose(a, plain)
    with pytest.raises(ValueError, match="seed"):
      f(training=True)


@pytest.mark.parametrize("size", [32, 64])
def test_every_conv_weight_is_in_a_tf_checkpoint(tmp_path, size):
  layers = [
    nets.conv_encoder(base_width=2, hidden_units=(3,)),
    nets.conv_decoder(output_shape=(size, size, 6), base_width=2, hidden_units=(3,)),
    nets.conv_joint_discriminator(base_width=2, x_units=(3,), z_units=(2,), joint_units=(2, 2)),
  ]
  x = tf.zeros([2, size, size, 3])
  layers[0](x)
  layers[1](tf.zeros([2, 3]))
  layers[2](x, tf.zeros([2, 3]))
  for i, layer in enumerate(layers):
    path = tf.train.Checkpoint(net=layer).save(str(tmp_path / f"c{i}"))
    saved = [
      k
      for k in tf.train.load_checkpoint(path).get_variable_to_shape_map()
      if k.startswith("net/") and k.endswith("VARIABLE_VALUE")
    ]
    assert len(saved) == len(layer.weights) > 0


# ---- discretised likelihood in bits/dim -----------------------------------------


def _tiny_cifar_model():
  gin.clear_config()
  config.parse([os.path.join(ROOT, "gin", "cifar10.gin")], TINY_CONV)
  try:
    mdl = model_lib.build_model(image_shape=(32, 32, 3))
  finally:
    gin.clear_config()
  mdl.build_all()
  return mdl


def test_decoder_discretised_bits_per_dim_finite_on_8bit_inputs():
  mdl = _tiny_cifar_model()
  assert isinstance(mdl.likelihood, likelihoods.GaussianLikelihood)
  rng = np.random.RandomState(0)
  pixels = rng.randint(0, 256, size=(4, 32, 32, 3)).astype(np.uint8)
  pixels[0] = 0  # an all-black image
  pixels[1] = 255  # an all-white image
  pixels[2, ::2] = 0
  pixels[2, 1::2] = 255
  x = tf.constant(data.to_float(pixels, binary=False))
  params = mdl.decode(mdl.posterior_mean(x))
  assert params.shape == (4, 32, 32, 6)
  nll = -mdl.likelihood.discretized_log_prob(params, pixels)
  bpd = likelihoods.bits_per_dim(nll, 32 * 32 * 3).numpy()
  assert bpd.shape == (4,) and np.all(np.isfinite(bpd)) and np.all(bpd > 0), bpd
  # A probability of one bin is at most 1: bits/dim >= 0 also for extreme parameters
  # (loc far outside [0, 1], the smallest and largest scales) on 0 and 255.
  loc = np.where(pixels < 128, 40.0, -40.0).astype(np.float32)
  for log_scale in (-7.0, 2.0):
    extreme = tf.concat([loc, np.full_like(loc, log_scale)], axis=-1)
    nll = -mdl.likelihood.discretized_log_prob(extreme, pixels)
    bpd = likelihoods.bits_per_dim(nll, 32 * 32 * 3).numpy()
    assert np.all(np.isfinite(bpd)) and np.all(bpd >= 0), (log_scale, bpd)
  # The sharpest decoder (scale e^-7) centred on the data's bin centres: each pixel's
  # bin holds all but the two tails beyond +-t = (1/512) / e^-7 (one tail for the edge
  # bins 0 and 255, which extend to -inf / +inf).
  sharp = tf.concat([x, tf.fill(x.shape, -7.0)], axis=-1)
  bpd = likelihoods.bits_per_dim(
    -mdl.likelihood.discretized_log_prob(sharp, pixels), 32 * 32 * 3
  ).numpy()
  tail = 0.5 * math.erfc((1.0 / 512.0) / math.exp(-7.0) / math.sqrt(2.0))
  edge = (pixels == 0) | (pixels == 255)
  expected = -np.where(edge, np.log2(1.0 - tail), np.log2(1.0 - 2.0 * tail)).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(bpd, expected, rtol=1e-4)
  assert np.all(bpd < 0.05), bpd


def test_discretisation_bins_match_the_data_pixel_scaling():
  # data.to_float maps pixel i to its bin centre (i + 0.5) / 256, and training data lie in
  # [i/256, (i+1)/256): the bins of likelihoods.discretized_gaussian_log_prob. For a scale wide
  # against the bin width, log P(bin i) = log N(to_float(i)) + log(1/256) + the midpoint
  # rule's correction log1p(h^2 (m^2 - 1) / 24) (h: bin width, m: centre, in scales)
  # up to O(h^4); scaling pixels by 1/255 instead would be off by up to ~0.06 nats.
  pixels = np.arange(1, 255, dtype=np.uint8).reshape(1, 1, 254, 1)
  x = data.to_float(pixels, binary=False)
  loc = np.full_like(x, 0.5)
  log_scale = np.full_like(x, math.log(0.1))
  params = tf.constant(np.concatenate([loc, log_scale], axis=-1))
  lik = likelihoods.GaussianLikelihood()
  discrete = likelihoods.discretized_gaussian_log_prob(pixels, loc, log_scale=log_scale).numpy()
  m, h = (x - 0.5) / 0.1, (1.0 / 256.0) / 0.1
  continuous = (
    -0.5 * m**2
    - math.log(0.1)
    - 0.5 * math.log(2 * math.pi)
    - math.log(256.0)
    + np.log1p(h**2 * (m**2 - 1.0) / 24.0)
  )
  np.testing.assert_allclose(discrete, continuous, atol=2e-5)
  np.testing.assert_allclose(
    lik.discretized_log_prob(params, pixels).numpy(), discrete.sum(), rtol=1e-5
  )
  # The dequantised training data of data.train_dataset fall in bin `pixel`.
  images = np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1), 2, axis=0)
  batch = next(iter(data.train_dataset(images, 2, seed=0, binary=False))).numpy()
  np.testing.assert_array_equal(
    np.floor(batch * 256).astype(np.int64), np.broadcast_to(images, batch.shape)
  )


@pytest.mark.parametrize(
  "name,builder,shape",
  [
    ("cifar10", "cifar10", (32, 32, 3)),
    ("imagenet64", "downsampled_imagenet/64x64", (None, None, 3)),
  ],
)
def test_tfds_builder_names_exist_in_installed_tfds(tmp_path, name, builder, shape):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  assert data.TFDS_BUILDERS[name][0] == builder
  b = tfds.builder(builder, data_dir=str(tmp_path))  # no download: just the builder
  assert b.info.features["image"].shape == shape
  assert b.info.features["image"].dtype == tf.uint8
  assert export._DEFAULT_SHAPES[name][-1] == 3  # pylint: disable=protected-access


# ---- 2-step smoke runs of every natural-image gin file ---------------------------


def _train(gin_file, model_dir):
  gin.clear_config()
  config.parse([gin_file], TINY_CONV)
  try:
    return train.train(str(model_dir))
  finally:
    gin.clear_config()


def _png(path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as im:
    return im.size, im.mode, np.asarray(im)


@pytest.mark.slow(30)
@pytest.mark.parametrize("gin_file", CONV_GIN_FILES, ids=os.path.basename)
def test_two_step_smoke_run_export_and_sample(tmp_path, gin_file):
  stem = os.path.basename(gin_file)[:-4]
  size = 64 if stem.startswith("imagenet64") else 32
  objective = {"vae": "vae", "r": "asvae_r", "g": "asvae_g"}.get(stem.split("_")[-1], "asvae")
  model_dir = tmp_path / "model"
  result = _train(gin_file, model_dir)
  assert result["step"] == 2
  assert all(np.isfinite(v) for v in result["train"].values()), result["train"]
  assert ("loss/discriminator" in result["train"]) == (objective != "vae")
  assert np.isfinite(result["validation"]["neg_elbo"])
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-2")

  # Evaluation (tools/evaluate.py's library call): discretised bits/dim, RMSE on [0, 255].
  gin.clear_config()
  config.parse(
    [str(model_dir / "operative_config.gin")],
    [
      "evaluate.num_importance_samples = 3",
      "evaluate.num_generated = 0",
      "evaluate.batch_size = 4",
    ],
  )
  try:
    m = evaluation.evaluate(str(model_dir))
  finally:
    gin.clear_config()
  assert m["likelihood"] == "discretized_gaussian" and m["rmse_pixel_scale"] == "[0, 255]"
  assert m["num_examples"] == 8 and m["step"] == 2
  assert 0 < m["iwae_bits_per_dim"] <= m["neg_elbo_bits_per_dim"] < 64
  dims = size * size * 3
  for nats, bpd in (("neg_elbo", "neg_elbo_bits_per_dim"), ("iwae_nll", "iwae_bits_per_dim")):
    np.testing.assert_allclose(m[bpd], m[nats] / (dims * math.log(2)), rtol=1e-12)
    np.testing.assert_allclose(m[bpd + "_se"], m[nats + "_se"] / (dims * math.log(2)), rtol=1e-12)
  assert 0 < m["rmse"] <= 255
  assert os.path.isfile(model_dir / "eval" / "metrics.json")

  export_dir = model_dir / "saved_model"
  meta = export.read_metadata(str(export_dir))
  assert meta["image_shape"] == [size, size, 3] and meta["latent_dim"] == D
  assert meta["objective"] == objective and meta["posterior_kind"] == "gaussian"
  assert meta["likelihood"] == "GaussianLikelihood" and meta["training_step"] == 2
  m = tf.saved_model.load(str(export_dir / "2"))  # <export base>/<step>/
  out = m.signatures["sample"](num_samples=tf.constant(3), seed=tf.constant([1, 2]))
  images, z = out["images"].numpy(), out["z"].numpy()
  assert images.shape == (3, size, size, 3) and z.shape == (3, D)
  assert np.all(np.isfinite(images)) and np.all(np.isfinite(z))
  assert images.std() > 0
  x = data.to_float(data.synthetic_images(2, (size, size, 3), seed=5), binary=False)
  rec = m.signatures["reconstruct"](images=tf.constant(x), seed=tf.constant([0, 1]))["images"]
  assert rec.shape == (2, size, size, 3) and np.all(np.isfinite(rec.numpy()))
  ll = m.signatures["log_likelihood"](
    images=tf.constant(x), num_importance_samples=tf.constant(2), seed=tf.constant([0, 1])
  )["log_likelihood"].numpy()
  assert ll.shape == (2,) and np.all(np.isfinite(ll))

  if stem != "cifar10":
    return  # tools/sample.py once (a subprocess costs seconds; 64x64 is checked above)
  png = tmp_path / "png"
  r = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "tools", "sample.py"),
      f"--model_dir={model_dir}",
      f"--out_dir={png}",
      "--num=6",
      "--seed=1",
      "--scale=1",  # unscaled tiles without separators: the sizes below
      "--separator=0",
    ],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  (w, h), mode, pixels = _png(png / "samples.png")
  assert (w, h) == (3 * size, 2 * size) and mode == "RGB" and pixels.shape == (h, w, 3)
  assert pixels.std() > 0
  (w, h), mode, _ = _png(png / "reconstructions.png")
  assert mode == "RGB" and w % (2 * size) == 0 and h % size == 0
  (w, h), mode, _ = _png(png / "interpolations.png")
  assert mode == "RGB" and w == 10 * size and h % size == 0


def test_explicit_estimators_on_a_gaussian_conv_model():
  """The explicit f1 / f2 (E2 by the path gradient of the Gaussian head's log density)
  on the CIFAR network: finite terms, and every generator weight gets a gradient."""
  gin.clear_config()
  config.parse(
    [os.path.join(ROOT, "gin", "cifar10.gin")],
    TINY_CONV
    + [
      "model.ratio_estimator = 'explicit'",
      "model.r1_gamma = 1.0",
      "model.f2_decoder_gradient = 'exact'",
    ],
  )
  try:
    mdl = model_lib.build_model(image_shape=(32, 32, 3))
    mdl.build_all()
  finally:
    gin.clear_config()
  x = tf.random.stateless_uniform([2, 32, 32, 3], [4, 4])
  seed = tf.constant([1, 2], tf.int32)
  with tf.GradientTape() as tape:
    t = mdl.terms(x, seed, "generator", training=False)
    loss = tf.reduce_sum(mdl.generator_loss(t))
  grads = tape.gradient(loss, mdl.generator_variables)
  assert np.isfinite(loss.numpy()) and np.all(np.isfinite(t.f2_explicit.numpy()))
  assert all(g is not None for g in grads)
  d = mdl.terms(x, seed, "discriminator", training=False)
  assert np.all(np.isfinite(mdl.discriminator_loss(d).numpy()))
