"""asvae_tf.load / load_saved_model, the README snippet, the numbered export versions, the
default checkpoint, and the TF Serving REST requests of docs/serving.md.

One 2-step tiny run (validation at steps 1 and 2, early stopping on) serves every test."""

import json
import os
import re
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

import asvae_tf
from asvae_tf import api
from asvae_tf import checkpoints
from asvae_tf import errors
from asvae_tf import export
from asvae_tf import registry
from asvae_tf import versions
from conftest import ROOT, TINY_MODEL
from harness import train_gin

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
H, W, C, D = 28, 28, 1, 4
RUN = TINY_MODEL + [
  "train.export_saved_model = True",
  "train.summary_every = 0",
  "train.image_every = 0",
  "train.validate_every = 1",
  "train.checkpoint_every = 1",
  "train.early_stopping_patience = 5",
  "train.strategy = 'default'",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("api") / "model"
  train_gin(MNIST_GIN, path, RUN)
  return path


@pytest.fixture(scope="module")
def loaded(model_dir):
  return asvae_tf.load(model_dir)


@pytest.fixture(scope="module")
def served(model_dir):
  return asvae_tf.load_saved_model(model_dir / "saved_model")


def _images(n=5, seed=0):
  return np.random.RandomState(seed).uniform(size=(n, H, W, C)).astype(np.float32)


def _step(prefix):
  return int(prefix.rsplit("-", 1)[1])


def test_import_is_light_and_names_are_lazy():
  code = "import sys, asvae_tf; print(sorted(m for m in ('tensorflow', 'gin') if m in sys.modules))"
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
  assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr[-2000:]
  assert {"load", "load_saved_model"} <= set(dir(asvae_tf))
  assert asvae_tf.load is api.load and asvae_tf.load_saved_model is api.load_saved_model
  with pytest.raises(AttributeError):
    asvae_tf.no_such_name  # noqa: B018


def test_training_exports_the_best_checkpoint_as_a_numbered_version(model_dir):
  best = checkpoints.recorded(str(model_dir / "best"))[0]
  base = str(model_dir / "saved_model")
  assert versions.versions(base) == [_step(best)]
  assert versions.resolve(base) == os.path.join(base, str(_step(best)))
  meta = export.read_metadata(base)
  assert meta["training_step"] == _step(best)
  assert os.path.abspath(meta["checkpoint"]) == os.path.abspath(best)
  assert meta["chosen_because"] == "default: early stopping best validation recon"


def test_readme_snippet_runs(model_dir, tmp_path, monkeypatch):
  readme = open(os.path.join(ROOT, "README.md")).read()
  section = readme.split("## Use a trained model in Python", 1)[1]
  snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  (tmp_path / "runs").mkdir()
  (tmp_path / "runs" / "mnist").symlink_to(model_dir)
  monkeypatch.chdir(tmp_path)
  ns = {}
  exec(compile(snippet, "README.md", "exec"), ns)  # pylint: disable=exec-used
  assert ns["x"].shape == (16, H, W, C) and ns["z"].shape == (16, D)
  assert ns["x_hat"].shape == (16, H, W, C) and ns["strip"].shape == (8, H, W, C)
  assert ns["log_px"].shape == (16,) and np.all(np.isfinite(ns["log_px"]))
  assert all(np.all(np.isfinite(ns[k])) for k in ("x", "z", "x_hat", "strip"))
  np.testing.assert_allclose(ns["served"].encode(ns["x"]), ns["z"], rtol=1e-5, atol=1e-6)


def test_load_and_load_saved_model_agree_and_are_deterministic(loaded, served):
  x = _images()
  assert loaded.image_shape == served.image_shape == (H, W, C)
  assert loaded.latent_dim == served.latent_dim == D and loaded.step == served.step
  for name, call in [
    ("sample", lambda m, s: m.sample(3, seed=s)),
    ("encode", lambda m, s: m.encode(x, seed=s)),
    ("reconstruct", lambda m, s: m.reconstruct(x, seed=s)),
    ("log_likelihood", lambda m, s: m.log_likelihood(x, k=7, seed=s)),
  ]:
    a = call(loaded, 1)
    np.testing.assert_allclose(call(served, 1), a, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(call(loaded, 1), a, err_msg=name)  # the same seed
    assert not np.array_equal(call(loaded, [1, 2]), a), name  # another seed
  assert loaded.sample(3).shape == (3, H, W, C) and loaded.encode(x).shape == (5, D)
  np.testing.assert_array_equal(loaded.encode(tf.constant(x)), loaded.encode(x))  # tensors too
  np.testing.assert_allclose(loaded.encode(x[0]), loaded.encode(x)[0], atol=1e-6)  # one image
  assert loaded.reconstruct(x[0]).shape == (H, W, C) and loaded.log_likelihood(x[0], 2).shape == ()
  assert loaded.decode(np.zeros(D)).shape == (H, W, C)
  strip = loaded.interpolate(x[0], x[1], n=4)
  assert strip.shape == (4, H, W, C)
  np.testing.assert_allclose(strip[0], loaded.reconstruct(x[0]), atol=1e-6)
  np.testing.assert_allclose(strip[-1], loaded.reconstruct(x[1]), atol=1e-6)
  assert loaded.interpolate(x[:2], x[2:4], n=3).shape == (2, 3, H, W, C)
  assert loaded.encode(np.zeros((0, H, W, C))).shape == (0, D)


def test_batches_above_the_serving_limits_run_in_chunks(loaded):
  x = _images(5)
  expected = loaded.encode(x), loaded.reconstruct(x)
  small = asvae_tf.TrainedModel(
    loaded._functions,  # pylint: disable=protected-access
    loaded.image_shape,
    D,
    dict(loaded.metadata, serving_limits={"max_batch_size": 2, "max_num_samples": 4}),
    loaded.path,
  )
  np.testing.assert_allclose(small.encode(x), expected[0], atol=1e-6)
  np.testing.assert_allclose(small.reconstruct(x), expected[1], atol=1e-6)
  with pytest.raises(errors.ConfigError, match=r"n must be an int >= 1 and <= 4 \(gin"):
    small.sample(5)


@pytest.mark.parametrize(
  "call, error, needle",
  [
    (lambda m: m.encode(np.zeros((2, 14, W, C))), errors.DataError, "got shape [2, 14, 28, 1]"),
    (lambda m: m.encode(np.zeros((H, W))), errors.DataError, "[N, 28, 28, 1] (or one [28, 28"),
    (lambda m: m.encode(np.full((1, H, W, C), 255.0)), errors.DataError, "divide by 255"),
    (lambda m: m.reconstruct(np.full((1, H, W, C), np.nan)), errors.DataError, "NaN or Inf"),
    (lambda m: m.log_likelihood(["a"]), errors.DataError, "non-real values"),
    (lambda m: m.decode(np.zeros((2, D + 1))), errors.DataError, f"z must be float [N, {D}]"),
    (lambda m: m.sample(0), errors.ConfigError, "n must be an int >= 1"),
    (lambda m: m.sample(2.0), errors.ConfigError, "n must be an int >= 1"),
    (lambda m: m.log_likelihood(_images(1), k=0), errors.ConfigError, "k must be an int >= 1"),
    (lambda m: m.sample(2, seed=[1, 2, 3]), errors.ConfigError, "seed must be an int or a pair"),
    (lambda m: m.interpolate(_images(2), _images(3)), errors.DataError, "the same shape"),
  ],
)
def test_bad_inputs_raise_one_line_errors(served, call, error, needle):
  with pytest.raises(error) as e:
    call(served)
  assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_load_keeps_the_callers_gin_config_and_the_checkpoint_choice(model_dir, tmp_path):
  gin.clear_config()
  registry.parse([], ["model.latent_dim = 7", "train.num_steps = 3"])  # a caller's config
  before = gin.config_str()
  try:
    latest = asvae_tf.load(model_dir, checkpoint="latest")
    assert gin.config_str() == before and latest.latent_dim == D
    assert (
      latest.step == 2
      and latest.metadata["chosen_because"] == "requested 'latest': the latest checkpoint"
    )
  finally:
    gin.clear_config()
  # best/ holding an older step than the latest: the default rule picks it everywhere.
  run = tmp_path / "run"
  shutil.copytree(model_dir, run, ignore=shutil.ignore_patterns("saved_model", "summaries"))
  shutil.rmtree(run / "best")
  (run / "best").mkdir()
  for f in (run / "checkpoints").glob("ckpt-1.*"):
    shutil.copy(f, run / "best" / f.name)
  tf.compat.v1.train.update_checkpoint_state(str(run / "best"), "ckpt-1")
  assert checkpoints.resolve_checkpoint(str(run)).endswith(os.path.join("best", "ckpt-1"))
  assert asvae_tf.load(run).step == 1 and asvae_tf.load(run, "latest").step == 2
  shutil.rmtree(run / "best")
  m = asvae_tf.load(str(run))
  assert m.step == 2 and "no best checkpoint" in m.metadata["chosen_because"]
  with pytest.raises(errors.GinFileNotFoundError, match="operative_config.gin"):
    asvae_tf.load(tmp_path / "nowhere")


def test_flat_exports_still_load_and_move_into_a_version(model_dir, served, tmp_path):
  flat = tmp_path / "flat"
  shutil.copytree(
    versions.resolve(str(model_dir / "saved_model")), flat
  )  # a flat export, as earlier releases wrote
  x = _images(2)
  assert versions.resolve(str(flat)) == str(flat)
  np.testing.assert_array_equal(asvae_tf.load_saved_model(flat).encode(x), served.encode(x))
  meta_path = flat / "assets" / "asvae_metadata.json"
  meta = json.loads(meta_path.read_text())
  meta_path.write_text(json.dumps(dict(meta, training_step=1)))
  # An export into it (export_checkpoint, training's end) first moves it to its own version.
  assert versions.prepare(str(flat), 2) == str(flat / "2")
  assert os.listdir(flat) == ["1"] and versions.versions(str(flat)) == [1]
  assert asvae_tf.load_saved_model(flat).step == 1  # the base -> its highest version
  with pytest.raises(errors.SavedModelNotFoundError, match="holds no SavedModel"):
    asvae_tf.load_saved_model(tmp_path)
  with pytest.raises(errors.SavedModelNotFoundError, match="does not exist"):
    versions.resolve(str(tmp_path / "nowhere"))


def _rest_requests():
  """The JSON request bodies of docs/serving.md that name a signature."""
  text = open(os.path.join(ROOT, "docs", "serving.md")).read()
  blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
  return [b for b in blocks if "signature_name" in b]


def test_docs_rest_requests_run_on_the_exported_signatures(served):
  requests = _rest_requests()
  assert sorted(r["signature_name"] for r in requests) == ["encode", "sample"]
  outputs = {"encode": {"z", "posterior_mean"}, "sample": {"images", "z"}}
  for body in requests:
    signature = served.saved_model.signatures[body["signature_name"]]  # what TF Serving runs
    specs = signature.structured_input_signature[1]
    assert set(body["inputs"]) == set(specs), body["signature_name"]
    tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in body["inputs"].items()}
    for name, t in tensors.items():
      assert specs[name].shape.is_compatible_with(t.shape), (name, t.shape)
    out = signature(**tensors)
    assert set(out) == outputs[body["signature_name"]]
    assert all(np.all(np.isfinite(v.numpy())) for v in out.values())
  sample = [r for r in requests if r["signature_name"] == "sample"][0]["inputs"]
  assert served.sample(sample["num_samples"], seed=sample["seed"]).shape == (16, H, W, C)


def test_an_export_below_a_higher_version_warns_that_it_is_not_served(tmp_path, monkeypatch):
  warned = []
  monkeypatch.setattr(versions.logging, "warning", lambda fmt, *a: warned.append(fmt % a))
  base = tmp_path / "saved_model"
  (base / "9").mkdir(parents=True)  # e.g. an earlier export of a later checkpoint
  (base / "9" / "saved_model.pb").write_bytes(b"")
  assert versions.prepare(str(base), 5) == str(base / "5")
  assert len(warned) == 1 and "version 9, above this export's step 5" in warned[0]
  versions.prepare(str(base), 12)  # the newest: served, no warning
  assert len(warned) == 1
