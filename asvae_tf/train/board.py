"""TensorBoard extras of a training run: hparams, the gin config as text, the projector.

(The scalars and images are actions.py's.) Only the chief writes them, and none of them
draws a random number or touches the data pipeline, so training is the same with them.

  write_config_text  at every start of training (fresh or resumed): the operative gin
                     config, markdown, as text `CONFIG_TEXT_TAG` in summaries/train/
  write_hparams      when training ends: one hparams session in summaries/ (a run of its
                     own, above train/ and validation/): every operative gin binding as an
                     hparam, and as metrics the last values of HPARAMS_METRICS in the runs
                     summaries/validation and summaries/train, i.e. the final validation
                     (and training) -ELBO, recon_x, recon_z and early-stopping metric. The
                     events files of summaries/ hold only this session: each end of
                     training replaces them, so a resumed or extended run has one session
  write_projector    when training ends: the posterior means of up to PROJECTOR_POINTS
                     validation images as an embedding in summaries/validation/ (checkpoint
                     embedding-<step>, projector_config.pbtxt, metadata.tsv with the
                     validation index and, when the data has labels, the class label;
                     sprite.png, the images themselves)
"""

import math
import os

import gin
import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hp

from asvae_tf import gin_config
from asvae_tf import images as images_lib

CONFIG_TEXT_TAG = "gin/operative_config"
# (tag, run relative to summaries/, display name): the hparams metrics.
HPARAMS_METRICS = (
  ("loss/neg_elbo", "validation", "validation -ELBO (nats)"),
  ("recon_x", "validation", "validation recon_x"),
  ("recon_z", "validation", "validation recon_z"),
  ("early_stopping_metric", "validation", "validation early-stopping metric"),
  ("loss/neg_elbo", "train", "training -ELBO (nats)"),
)
PROJECTOR_POINTS = 1000
EMBEDDING_NAME = "embedding"
EMBEDDING_TENSOR = f"{EMBEDDING_NAME}/.ATTRIBUTES/VARIABLE_VALUE"  # its checkpoint key
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
_MAX_SPRITE_PX = 8192  # the projector's limit for a sprite's side
_ENCODE_BATCH = 250


def write_config_text(writer, step, config_text=None):
  """The gin config (default: the operative one so far) as markdown text at `step`."""
  text = gin.markdown(gin.operative_config_str() if config_text is None else config_text)
  with writer.as_default(step=step):
    tf.summary.text(CONFIG_TEXT_TAG, text)


def hparam_value(value):
  """A gin value as an hparam: bool, int, float and str as they are, the rest as its repr
  ('(500, 500)', 'None')."""
  return value if isinstance(value, (bool, int, float, str)) else repr(value)


def write_hparams(summaries_dir, bindings=None):
  """Replaces the hparams session of summaries_dir (see the module docstring).

  bindings: {name: gin value}; default: the operative gin config's.
  """
  if bindings is None:
    bindings = gin_config.operative_bindings()
  hparams = {name: hparam_value(value) for name, value in bindings.items()}
  tf.io.gfile.makedirs(summaries_dir)
  for path in tf.io.gfile.glob(os.path.join(summaries_dir, "events.out.tfevents.*")):
    tf.io.gfile.remove(path)  # the previous end of training's session
  writer = tf.summary.create_file_writer(summaries_dir)
  with writer.as_default():
    hp.hparams_config(
      hparams=[hp.HParam(name) for name in hparams],
      metrics=[hp.Metric(tag, group=run, display_name=shown)
               for tag, run, shown in HPARAMS_METRICS],
    )  # fmt: skip
    hp.hparams(hparams)
  writer.close()


def posterior_means(mdl, x):
  """float32 [n, D] posterior means of x [n, H, W, C] (no randomness)."""
  return np.concatenate(
    [mdl.posterior_mean(tf.constant(x[i : i + _ENCODE_BATCH])).numpy()
     for i in range(0, len(x), _ENCODE_BATCH)]
  )  # fmt: skip


def write_projector(run_dir, mdl, x, labels=None, step=0):
  """The posterior means of x [n, H, W, C] (up to PROJECTOR_POINTS) as the projector's
  embedding in run_dir, with metadata (index, label) and a sprite of x."""
  x = np.asarray(x[:PROJECTOR_POINTS], np.float32)
  if not len(x):
    return
  tf.io.gfile.makedirs(run_dir)
  ckpt = tf.train.Checkpoint(**{EMBEDDING_NAME: tf.Variable(posterior_means(mdl, x))})
  manager = tf.train.CheckpointManager(ckpt, run_dir, max_to_keep=1, checkpoint_name=EMBEDDING_NAME)
  manager.save(checkpoint_number=step)  # the projector finds it by run_dir's `checkpoint` file
  config = projector.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = EMBEDDING_TENSOR
  embedding.metadata_path = METADATA_FILE
  with tf.io.gfile.GFile(os.path.join(run_dir, METADATA_FILE), "w") as f:
    if labels is None:  # one column: no header line (the projector's format)
      f.write("".join(f"{i}\n" for i in range(len(x))))
    else:
      f.write("index\tlabel\n")
      f.write("".join(f"{i}\t{int(y)}\n" for i, y in enumerate(labels[: len(x)])))
  cols = int(math.ceil(math.sqrt(len(x))))
  if cols * max(x.shape[1:3]) <= _MAX_SPRITE_PX:
    images_lib.write_png(images_lib.grid(x, cols), os.path.join(run_dir, SPRITE_FILE))
    embedding.sprite.image_path = SPRITE_FILE
    embedding.sprite.single_image_dim.extend([int(x.shape[2]), int(x.shape[1])])  # [W, H]
  projector.visualize_embeddings(run_dir, config)


def write_end_of_training(summaries_dir, mdl, val_batches, labels, step):
  """write_hparams (summaries_dir) and, with validation images, write_projector
  (summaries_dir/validation)."""
  write_hparams(summaries_dir)
  x, n = [], 0
  for batch in val_batches:  # file order, as the labels
    if n >= PROJECTOR_POINTS:
      break
    x.append(np.asarray(batch))
    n += len(x[-1])
  if x:
    write_projector(os.path.join(summaries_dir, "validation"), mdl, np.concatenate(x), labels,
                    step)  # fmt: skip
