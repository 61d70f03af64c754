#!/usr/bin/env python
"""Trains an AS-VAE model from gin files.

  python tools/train.py --gin_file=gin/mnist.gin \
      --gin_param="dataset.local_dir='../shared/data/mnist'" --model_dir=runs/mnist

Rerunning the same command resumes from the latest complete checkpoint in --model_dir
(also after the process was killed). Exit code 0 on success; 2 with one line
`asvae_tf: error: ...` on stderr for bad input (model_dir left untouched) or when training
diverged past its rollback budget (train.max_rollbacks). --strategy=multi_worker reads
TF_CONFIG (see README, "Fault tolerance and multi-worker training").
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin binding(s), applied after the files.")
flags.DEFINE_string(
  "model_dir", None, "Output directory; default runs/<stem of the first --gin_file>."
)
flags.DEFINE_enum(
  "strategy", None, ["mirrored", "default", "multi_worker"], "Overrides train.strategy."
)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from asvae_tf import cli  # pylint: disable=g-import-not-at-top

  params = list(FLAGS.gin_param)
  if FLAGS.strategy:
    params.append(f"train.strategy = '{FLAGS.strategy}'")
  model_dir = FLAGS.model_dir
  if not model_dir:
    stem = os.path.splitext(os.path.basename(FLAGS.gin_file[0]))[0] if FLAGS.gin_file else "run"
    model_dir = os.path.join("runs", stem)
  return cli.run_training(FLAGS.gin_file, params, model_dir)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
