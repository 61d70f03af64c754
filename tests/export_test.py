"""SavedModel export: signatures in a TF-only process, determinism, bad inputs, CLIs."""

import json
import os
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import config
from asvae_tf import errors
from asvae_tf import export
from asvae_tf import model as model_lib
from asvae_tf import rng
from asvae_tf import train_lib
from conftest import ROOT, TINY_MODEL

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
BIN = os.path.dirname(sys.executable)
H, W, C, D = 28, 28, 1, 4

TINY = TINY_MODEL + [
  "train.export_saved_model = True",
  "train.summary_every = 0",
  "train.validate_every = 0",
  "train.image_every = 0",
  "train.checkpoint_every = 0",
  "train.strategy = 'default'",
]

# Runs in a fresh interpreter: TensorFlow only.
LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    export_dir, out = sys.argv[1], sys.argv[2]
    m = tf.saved_model.load(export_dir)
    x = np.load(out + ".in.npy")
    s0, s1 = tf.constant([1, 2]), tf.constant([3, 4])
    r = {}
    enc = m.signatures["encode"](images=tf.constant(x), seed=s0)
    r["enc_z"] = enc["z"].numpy(); r["enc_mean"] = enc["posterior_mean"].numpy()
    r["enc_z_again"] = m.signatures["encode"](images=tf.constant(x), seed=s0)["z"].numpy()
    r["enc_z_other"] = m.signatures["encode"](images=tf.constant(x), seed=s1)["z"].numpy()
    r["serving_z"] = m.signatures["serving_default"](images=tf.constant(x), seed=s0)["z"].numpy()
    r["dec"] = m.signatures["decode"](z=enc["posterior_mean"])["images"].numpy()
    smp = m.signatures["sample"](num_samples=tf.constant(5), seed=s0)
    r["smp_images"] = smp["images"].numpy(); r["smp_z"] = smp["z"].numpy()
    r["smp_again"] = m.signatures["sample"](num_samples=tf.constant(5), seed=s0)["images"].numpy()
    r["smp_other"] = m.signatures["sample"](num_samples=tf.constant(5), seed=s1)["images"].numpy()
    r["rec"] = m.signatures["reconstruct"](images=tf.constant(x), seed=s0)["images"].numpy()
    ll = m.signatures["log_likelihood"]
    r["ll"] = ll(images=tf.constant(x), num_importance_samples=tf.constant(70), seed=s0)["log_likelihood"].numpy()
    r["ll_again"] = ll(images=tf.constant(x), num_importance_samples=tf.constant(70), seed=s0)["log_likelihood"].numpy()
    r["ll_other"] = ll(images=tf.constant(x), num_importance_samples=tf.constant(70), seed=s1)["log_likelihood"].numpy()
    r["ll1"] = ll(images=tf.constant(x), num_importance_samples=tf.constant(1), seed=s0)["log_likelihood"].numpy()
    r["ll5000"] = ll(images=tf.constant(x[:2]), num_importance_samples=tf.constant(5000), seed=s0)["log_likelihood"].numpy()
    np.savez(out, **r)
    print(json.dumps({"tfp": "tensorflow_probability" in sys.modules,
                      "asvae_tf": any(k.split(".")[0] == "asvae_tf" for k in sys.modules),
                      "signatures": sorted(m.signatures)}))
""")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("export") / "model"
  gin.clear_config()
  config.parse([MNIST_GIN], TINY)
  try:
    train_lib.train(str(model_dir))
  finally:
    gin.clear_config()
  return model_dir


@pytest.fixture(scope="module")
def loaded(trained):
  return tf.saved_model.load(str(trained / "saved_model" / "2"))


def _images(n=6, seed=0):
  return np.random.RandomState(seed).uniform(size=(n, H, W, C)).astype(np.float32)


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def test_training_exports_with_assets(trained):
  export_dir = trained / "saved_model" / "2"
  assert (export_dir / "saved_model.pb").is_file()
  meta = export.read_metadata(str(export_dir))
  assert meta["training_step"] == 2 and meta["latent_dim"] == D
  assert meta["image_shape"] == [H, W, C] and meta["dataset"] == "synthetic"
  assert meta["posterior_kind"] == "planar" and meta["objective"] == "asvae"
  assert meta["asvae_tf_version"]
  assert meta["checkpoint"].endswith("best/ckpt-2") and "best" in meta["chosen_because"]
  gin_text = (export_dir / "assets" / "operative_config.gin").read_text()
  assert "model.latent_dim = 4" in gin_text


def test_fresh_tf_only_process_matches_in_process_model(trained, tmp_path):
  x = _images()
  out = str(tmp_path / "out")
  np.save(out + ".in.npy", x)
  r = subprocess.run(
    [sys.executable, "-c", LOADER, str(trained / "saved_model" / "2"), out],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  info = json.loads(r.stdout.strip().splitlines()[-1])
  assert not info["tfp"] and not info["asvae_tf"], info
  assert set(export.SIGNATURES) <= set(info["signatures"])
  res = np.load(out + ".npz")
  assert res["enc_z"].shape == (6, D) and res["enc_mean"].shape == (6, D)
  assert res["dec"].shape == (6, H, W, C) and res["rec"].shape == (6, H, W, C)
  assert res["smp_images"].shape == (5, H, W, C) and res["smp_z"].shape == (5, D)
  for k in ("dec", "rec", "smp_images"):
    assert res[k].min() >= 0 and res[k].max() <= 1, k
  assert res["ll"].shape == (6,) and np.all(np.isfinite(res["ll"])) and np.all(res["ll"] < 0)
  # Seeds: bit-identical for the same seed, different for another.
  np.testing.assert_array_equal(res["enc_z"], res["enc_z_again"])
  np.testing.assert_array_equal(res["enc_z"], res["serving_z"])
  np.testing.assert_array_equal(res["smp_images"], res["smp_again"])
  np.testing.assert_array_equal(res["ll"], res["ll_again"])
  assert not np.array_equal(res["enc_z"], res["enc_z_other"])
  assert not np.array_equal(res["smp_images"], res["smp_other"])
  assert not np.array_equal(res["ll"], res["ll_other"])
  assert res["ll1"].shape == (6,) and np.all(np.isfinite(res["ll1"]))
  assert res["ll5000"].shape == (2,) and np.all(np.isfinite(res["ll5000"]))
  # In-process model from the checkpoint: posterior mean through decode.
  gin.clear_config()
  config.parse([str(trained / "operative_config.gin")])
  try:
    mdl = model_lib.build_model(image_shape=(H, W, C))
  finally:
    gin.clear_config()
  mdl.build_all()
  tf.train.Checkpoint(model=mdl).restore(
    tf.train.latest_checkpoint(str(trained / "checkpoints"))
  ).expect_partial()
  mean = mdl.posterior_mean(tf.constant(x)).numpy()
  np.testing.assert_allclose(res["enc_mean"], mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    res["dec"], mdl.reconstruct(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-5
  )
  z, _ = mdl.encode(tf.constant(x), tf.constant([1, 2]))
  np.testing.assert_allclose(res["enc_z"], z.numpy(), rtol=1e-5, atol=1e-5)
  ll = mdl.iwae_log_likelihood(
    tf.constant(x), 70, tf.constant([1, 2]), chunk_size=export.IWAE_CHUNK_SIZE
  )
  np.testing.assert_allclose(res["ll"], ll.numpy(), rtol=1e-5)
  # The bound by hand: k = 1 is the first sample's log weight; k = 3 in chunks of 2
  # is the logsumexp over chunk 0 (rows 0, 1) and chunk 1 (row 0), minus log 3.
  xt, seed = tf.constant(x), tf.constant([1, 2])

  def log_w(chunk, i, size):
    z, log_q = mdl.posterior.sample_and_log_prob(
      mdl.encoder(xt), seed=rng.fold_in(seed, chunk), sample_shape=(size,)
    )
    return (
      mdl.likelihood.log_prob(mdl.decode(z[i]), xt) + model_lib.prior_log_prob(z[i]) - log_q[i]
    ).numpy()

  np.testing.assert_allclose(res["ll1"], log_w(0, 0, export.IWAE_CHUNK_SIZE), rtol=1e-5)
  by_hand = np.logaddexp.reduce([log_w(0, 0, 2), log_w(0, 1, 2), log_w(1, 0, 2)], axis=0)
  np.testing.assert_allclose(
    mdl.iwae_log_likelihood(xt, 3, seed, chunk_size=2).numpy(), by_hand - np.log(3.0), rtol=1e-5
  )


@pytest.mark.parametrize(
  "call,needle",
  [
    (
      lambda m: m.signatures["encode"](images=tf.constant(_images() * 2), seed=tf.constant([0, 0])),
      "[0, 1]",
    ),
    (
      lambda m: m.signatures["encode"](images=tf.constant(_images() - 1), seed=tf.constant([0, 0])),
      "[0, 1]",
    ),
    (
      lambda m: m.signatures["reconstruct"](
        images=tf.constant(_images() + 0.5), seed=tf.constant([0, 0])
      ),
      "[0, 1]",
    ),
    (
      lambda m: m.signatures["sample"](num_samples=tf.constant(0), seed=tf.constant([0, 0])),
      "num_samples must be an int32 scalar >= 1",
    ),
    (
      lambda m: m.signatures["log_likelihood"](
        images=tf.constant(_images()),
        num_importance_samples=tf.constant(-3),
        seed=tf.constant([0, 0]),
      ),
      "num_importance_samples must be an int32 scalar >= 1",
    ),
    (
      lambda m: m.signatures["log_likelihood"](
        images=tf.constant(_images() * 3),
        num_importance_samples=tf.constant(3),
        seed=tf.constant([0, 0]),
      ),
      "[0, 1]",
    ),
  ],
)
def test_bad_values_raise_readable_errors(loaded, call, needle):
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    call(loaded)
  assert needle in str(e.value)


IMAGES_MSG = "images must be float32 [N, 28, 28, 1] with values in [0, 1]; got shape"


@pytest.mark.parametrize(
  "name,kwargs,needle",
  [
    ("encode", dict(images=np.zeros((2, 14, 28, 1), np.float32)), IMAGES_MSG),  # wrong H
    ("encode", dict(images=np.zeros((2, 28, 28, 3), np.float32)), IMAGES_MSG),  # wrong C
    ("encode", dict(images=np.zeros((28, 28, 1), np.float32)), IMAGES_MSG),  # wrong rank
    ("reconstruct", dict(images=np.zeros((2, 28, 27, 1), np.float32)), IMAGES_MSG),
    (
      "encode",
      dict(images=np.zeros((2, 28, 28, 1), np.float32), seed=[1, 2, 3]),
      "seed must have shape [2]",
    ),
    (
      "encode",
      dict(images=np.zeros((2, 28, 28, 1), np.float64)),  # wrong dtype
      "expected to be a float tensor but is a double tensor",
    ),
    ("decode", dict(z=np.zeros((2, D + 1), np.float32)), f"z must be finite float32 [N, {D}]"),
    ("decode", dict(z=np.full((2, D), np.nan, np.float32)), f"z must be finite float32 [N, {D}]"),
    ("sample", dict(num_samples=np.int64(3)), "expected to be a int32 tensor but is a int64"),
  ],
)
def test_signatures_reject_wrong_shape_and_dtype(loaded, name, kwargs, needle):
  if name in ("encode", "reconstruct", "sample"):
    kwargs = {"seed": [0, 0], **kwargs}
  kwargs = {
    k: tf.constant(v, tf.int32) if k == "seed" else tf.constant(v) for k, v in kwargs.items()
  }
  with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)) as e:
    loaded.signatures[name](**kwargs)
  assert needle in str(e.value), str(e.value)
  assert len(str(e.value)) < 3000


def test_restored_functions_check_the_input_signature(loaded):
  with pytest.raises((TypeError, ValueError)) as e:
    loaded.encode(tf.zeros([2, 14, 28, 1]), tf.constant([0, 0]))
  assert "28, 28, 1" in str(e.value)
  with pytest.raises((TypeError, ValueError)) as e:
    loaded.sample(tf.constant([3]), tf.constant([0, 0]))
  assert "TensorSpec(shape=(), dtype=tf.int32, name='num_samples')" in str(e.value)


def test_saved_model_cli_runs_sample(trained, tmp_path):
  r = subprocess.run(
    [
      os.path.join(BIN, "saved_model_cli"),
      "run",
      "--dir",
      str(trained / "saved_model" / "2"),
      "--tag_set",
      "serve",
      "--signature_def",
      "sample",
      "--input_exprs",
      "num_samples=3;seed=[1,2]",
      "--outdir",
      str(tmp_path),
    ],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert np.load(tmp_path / "images.npy").shape == (3, H, W, C)
  assert np.load(tmp_path / "z.npy").shape == (3, D)
  r = subprocess.run(
    [
      os.path.join(BIN, "saved_model_cli"),
      "show",
      "--all",
      "--dir",
      str(trained / "saved_model" / "2"),
    ],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  for key in (
    "'posterior_mean'",
    "'log_likelihood'",
    "'num_importance_samples'",
    "signature_def['reconstruct']",
    "signature_def['serving_default']",
  ):
    assert key in r.stdout, key


def _png_size(path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as im:
    im.verify()
  with Image.open(path) as im:
    return im.size, im.mode


def test_export_and_sample_tools(trained, tmp_path):
  export_dir = tmp_path / "exported"
  r = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "tools", "export.py"),
      f"--model_dir={trained}",
      f"--export_dir={export_dir}",
      "--dtype_policy=mixed_bfloat16",  # serving.dtype_policy
    ],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  meta = export.read_metadata(str(export_dir))
  assert meta["training_step"] == 2 and meta["dtype_policy"] == "mixed_bfloat16"
  out = tmp_path / "png"
  r = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "tools", "sample.py"),
      f"--model_dir={trained}",
      f"--out_dir={out}",
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
  assert _png_size(out / "samples.png") == ((3 * W, 2 * H), "L")
  (w, h), _ = _png_size(out / "reconstructions.png")
  assert w % (2 * W) == 0 and h % H == 0
  (w, h), _ = _png_size(out / "interpolations.png")
  assert w == 10 * W and h % H == 0
  out2 = tmp_path / "png2"
  r = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "tools", "sample.py"),
      f"--saved_model={export_dir}",
      f"--out_dir={out2}",
      "--num=4",
      "--scale=1",  # unscaled tiles without separators: the sizes below
      "--separator=0",
    ],
    capture_output=True,
    text=True,
    env=_env(),
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert _png_size(out2 / "samples.png")[0] == (2 * W, 2 * H)
  assert not (out2 / "reconstructions.png").exists()
  assert (out2 / "interpolations.png").exists()


def test_export_checkpoint_replaces_only_saved_models_and_keeps_the_gin_config(trained, tmp_path):
  gin.clear_config()
  with pytest.raises(errors.ConfigError, match="none is parsed"):  # the caller parses
    export.export_checkpoint(str(trained), str(tmp_path / "sm"))
  config.parse([str(trained / "operative_config.gin")])
  before = gin.config_str()
  try:
    # A mistyped --export_dir (say, the model_dir itself) must not be deleted.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "checkpoint").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
      export.export_checkpoint(str(trained), str(precious))
    assert (precious / "checkpoint").read_text() == "keep me"
    # An existing SavedModel is replaced, atomically (no .partial left behind).
    target = tmp_path / "sm"
    for _ in range(2):
      export.export_checkpoint(str(trained), str(target))
    assert (target / "2" / "saved_model.pb").is_file()  # <export_dir>/<step>/
    assert os.listdir(target) == ["2"]  # no 2.partial left behind
    assert gin.config_str() == before  # nothing parsed, replaced or cleared
  finally:
    gin.clear_config()


def test_a_float32_export_keeps_the_decoders_own_call(loaded):
  """`nets.folded` serves bfloat16 exports only (tests/dtype_policy_test.py has that side)."""
  assert getattr(loaded, "folded_decoder", None) is None
  for name in ("decode", "sample", "reconstruct", "log_likelihood"):
    assert "decoder/kernel:0" in [v.name for v in loaded.signatures[name].variables], name
