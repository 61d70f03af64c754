"""TensorBoard extras read back from the event files: the hparams session, the gin config
text, the shared -ELBO tag, the embedding projector; validation labels of local MNIST."""

import glob
import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.projector import projector_config_pb2
from google.protobuf import text_format
from PIL import Image

from asvae_tf import data
from asvae_tf.train import actions, board
from conftest import ROOT, TINY_MODEL, tiny_asvae
from harness import train_gin

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
RUN = TINY_MODEL + [
  "model.objective = 'vae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.strategy = 'default'",
  "train.summary_every = 1",
  "train.validate_every = 2",
  "train.image_every = 0",
  "train.checkpoint_every = 0",
  "dataset.validation_size = 16",
]


def _events(directory):
  """[(step, summary value)] of the events files directly in directory."""
  out = []
  for path in sorted(glob.glob(os.path.join(directory, "events.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      out.extend((event.step, v) for v in event.summary.value)
  return out


def _scalars(directory, tag):
  return [(s, float(tf.make_ndarray(v.tensor))) for s, v in _events(directory) if v.tag == tag]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 2-step run, then the same model_dir extended to 3 steps (a resume)."""
  model_dir = tmp_path_factory.mktemp("board") / "run"
  train_gin(MNIST_GIN, model_dir, RUN)
  result = train_gin(MNIST_GIN, model_dir, RUN + ["train.num_steps = 3"])
  return model_dir, result


def test_hparams_session_is_written_once_with_the_final_config(run):
  model_dir, _ = run
  root = model_dir / "summaries"
  assert len(glob.glob(str(root / "events.*"))) == 1  # the 2-step run's session is replaced
  values = {v.tag: v for _, v in _events(root)}
  starts = [v for _, v in _events(root) if v.tag == hp_metadata.SESSION_START_INFO_TAG]
  assert len(starts) == 1
  info = hp_metadata.parse_session_start_info_plugin_data(starts[0].metadata.plugin_data.content)
  hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
  assert hparams["train.num_steps"] == 3 and hparams["model.objective"] == "vae"
  assert hparams["train.batch_size"] == 8 and hparams["model.latent_dim"] == 4
  assert hparams["mlp_encoder.hidden_units"] == "(16,)"  # tuples as text
  assert hparams["generator/optimizer.learning_rate"] > 0  # scoped bindings
  experiment = hp_metadata.parse_experiment_plugin_data(
    values[hp_metadata.EXPERIMENT_TAG].metadata.plugin_data.content
  )
  assert {h.name for h in experiment.hparam_infos} == set(hparams)
  metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
  assert {("validation", actions.NEG_ELBO_TAG), ("train", actions.NEG_ELBO_TAG)} <= metrics
  # Each metric is a scalar of its run, whose last value is the final one.
  for group, tag in metrics:
    steps = _scalars(root / group, tag)
    assert steps and steps[-1][0] == 3 and np.isfinite(steps[-1][1]), (group, tag)


def test_operative_config_text_at_every_start(run):
  model_dir, _ = run
  texts = [(s, v) for s, v in _events(model_dir / "summaries" / "train")
           if v.tag == board.CONFIG_TEXT_TAG]  # fmt: skip
  assert [s for s, _ in texts] == [0, 2]  # the fresh start and the resume
  text = tf.make_ndarray(texts[-1][1].tensor).item().decode()
  assert "    train.num_steps = 3" in text  # bindings as an indented code block
  assert "#### Parameters for train:" in text and "=====" not in text


def test_train_and_validation_neg_elbo_share_one_tag(run):
  model_dir, result = run
  train = _scalars(model_dir / "summaries" / "train", actions.NEG_ELBO_TAG)
  val = _scalars(model_dir / "summaries" / "validation", actions.NEG_ELBO_TAG)
  assert [s for s, _ in train] == [1, 2, 3] and [s for s, _ in val] == [2, 3]
  assert all(0 < v < 2000 for _, v in train + val)
  assert val[-1][1] == pytest.approx(result["validation"]["neg_elbo"], rel=1e-5)
  # The old tags stay for one release, with the same values.
  assert _scalars(model_dir / "summaries" / "validation", "neg_elbo") == val
  assert _scalars(model_dir / "summaries" / "train", "generator/neg_elbo") == train


def test_projector_files_of_the_validation_posterior_means(run):
  model_dir, _ = run
  run_dir = model_dir / "summaries" / "validation"
  config = text_format.Parse(
    (run_dir / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig()
  )
  (embedding,) = config.embeddings
  assert embedding.tensor_name == board.EMBEDDING_TENSOR
  ckpt = tf.train.latest_checkpoint(str(run_dir))
  assert os.path.basename(ckpt) == "embedding-3"  # one checkpoint: the 2-step one is gone
  assert len(glob.glob(str(run_dir / "embedding-*.index"))) == 1
  means = tf.train.load_checkpoint(ckpt).get_tensor(board.EMBEDDING_TENSOR)
  assert means.shape == (16, 4) and np.all(np.isfinite(means)) and means.std() > 0
  # Synthetic data has no labels: metadata is the validation index, one column, no header.
  assert (run_dir / embedding.metadata_path).read_text().split() == [str(i) for i in range(16)]
  sprite = Image.open(run_dir / embedding.sprite.image_path)
  assert sprite.size == (4 * 28, 4 * 28) and list(embedding.sprite.single_image_dim) == [28, 28]


def test_projector_with_labels_and_sprite(tmp_path):
  mdl = tiny_asvae("vae", "gaussian")  # 4x4x1 images, D = 3
  x = np.random.RandomState(0).uniform(size=(5, 4, 4, 1)).astype(np.float32)
  board.write_projector(str(tmp_path), mdl, x, labels=np.array([3, 1, 4, 1, 5]), step=7)
  lines = (tmp_path / board.METADATA_FILE).read_text().splitlines()
  assert lines == ["index\tlabel", "0\t3", "1\t1", "2\t4", "3\t1", "4\t5"]
  means = tf.train.load_checkpoint(str(tmp_path / "embedding-7")).get_tensor(board.EMBEDDING_TENSOR)
  np.testing.assert_allclose(means, mdl.posterior_mean(tf.constant(x)).numpy(), rtol=1e-6)
  sprite = np.asarray(Image.open(tmp_path / board.SPRITE_FILE))
  assert sprite.shape == (2 * 4, 3 * 4)  # ceil(sqrt(5)) = 3 columns, unscaled, no separators
  np.testing.assert_array_equal(sprite[:4, 4:8], (x[1, ..., 0] * 255 + 0.5).astype(np.uint8))


def _idx(path, array, magic):
  header = struct.pack(">II", magic, len(array)) + (
    struct.pack(">II", *array.shape[1:]) if array.ndim == 3 else b""
  )
  path.write_bytes(gzip.compress(header + array.tobytes()))


def test_local_mnist_keeps_the_validation_labels(tmp_path):
  rng = np.random.RandomState(0)
  for prefix, n in (("train", 12), ("t10k", 4)):
    _idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.randint(0, 256, (n, 28, 28), np.uint8),
         0x803)  # fmt: skip
    _idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10, 0x801)
  splits = data.load_splits(name="mnist", local_dir=str(tmp_path), validation_size=3)
  np.testing.assert_array_equal(splits.validation_labels, [9, 0, 1])  # labels 9..11 % 10
  (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
  splits = data.load_splits(name="mnist", local_dir=str(tmp_path), validation_size=3)
  assert splits.validation_labels is None
