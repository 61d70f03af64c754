"""Exports a training checkpoint as a SavedModel (see README "Exported SavedModel").

  python tools/export.py --model_dir=runs/mnist --export_dir=exported/mnist \
      [--checkpoint=runs/mnist/best/ckpt-5000]

The model is rebuilt from model_dir/operative_config.gin; --checkpoint defaults to
the latest checkpoint of model_dir/checkpoints.
"""

import os

from absl import flags
from absl import logging

from asvae_tf import cli
from asvae_tf import errors
from asvae_tf import export
from asvae_tf import registry

flags.DEFINE_string("model_dir", None, "Training model_dir (holds operative_config.gin).")
flags.DEFINE_string(
  "checkpoint", None, "Checkpoint prefix; default: latest in model_dir/checkpoints."
)
flags.DEFINE_string("export_dir", None, "SavedModel output directory (replaced).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.model_dir or not FLAGS.export_dir:
    return cli.fail("--model_dir and --export_dir are required")
  operative = os.path.join(FLAGS.model_dir, export.CONFIG_FILE)
  if not os.path.isfile(operative):
    return cli.fail(f"no {export.CONFIG_FILE} in model_dir {FLAGS.model_dir}")
  registry.parse_model_dir(FLAGS.model_dir)  # the model is built from its gin config
  try:
    export_dir, ckpt = export.export_checkpoint(FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint)
  except ValueError as e:  # e.g. a checkpoint prefix that is not a checkpoint
    return cli.fail(errors.one_line(e))
  logging.info("exported %s to %s", ckpt, export_dir)
  print(f"exported {ckpt} -> {export_dir}")
  return 0


def run():
  """Console script `asvae-export` (setup.py entry point); tools/export.py calls it too."""
  cli.main(main)


if __name__ == "__main__":
  run()
