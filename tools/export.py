#!/usr/bin/env python
"""Exports a training checkpoint as a SavedModel (see README "Exported SavedModel").

  python tools/export.py --model_dir=runs/mnist --export_dir=exported/mnist \
      [--checkpoint=runs/mnist/best/ckpt-5000]

The model is rebuilt from model_dir/operative_config.gin; --checkpoint defaults to
the latest checkpoint of model_dir/checkpoints.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

flags.DEFINE_string("model_dir", None, "Training model_dir (holds operative_config.gin).")
flags.DEFINE_string(
  "checkpoint", None, "Checkpoint prefix; default: latest in model_dir/checkpoints."
)
flags.DEFINE_string("export_dir", None, "SavedModel output directory (replaced).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from asvae_tf import cli  # pylint: disable=g-import-not-at-top
  from asvae_tf import export_lib

  if not FLAGS.model_dir or not FLAGS.export_dir:
    return cli.fail("--model_dir and --export_dir are required")
  try:
    export_dir, ckpt = export_lib.export_checkpoint(
      FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint
    )
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    return cli.fail(" ".join(str(e).split()))
  logging.info("exported %s to %s", ckpt, export_dir)
  print(f"exported {ckpt} -> {export_dir}")
  return 0


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
