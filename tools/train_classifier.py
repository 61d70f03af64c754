#!/usr/bin/env python
"""Trains the small MNIST CNN used for the classifier score and classifier FID.

  python tools/train_classifier.py --data_dir=../shared/data/mnist \
      --output_dir=runs/mnist_classifier

With only the t10k files (MNIST-10k) it trains on images 0..7999 and reports its
accuracy on 8000..9999 (the AS-VAE test split); with full MNIST, train 60k / test
t10k. Writes output_dir/classifier.keras and output_dir/classifier.json; pass
--classifier_dir=output_dir to tools/evaluate.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

flags.DEFINE_string("data_dir", None, "Directory with MNIST IDX image and label files.")
flags.DEFINE_string("output_dir", "runs/mnist_classifier", "Where the classifier is saved.")
flags.DEFINE_integer("epochs", 8, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_integer("max_train_examples", None, "Cap on training images (smoke tests).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from asvae_tf import cli  # pylint: disable=g-import-not-at-top
  from asvae_tf import data
  from asvae_tf import feature_nets

  if not FLAGS.data_dir:
    return cli.fail("--data_dir is required (e.g. --data_dir=../shared/data/mnist)")
  try:
    meta = feature_nets.train_classifier(
      FLAGS.data_dir,
      FLAGS.output_dir,
      FLAGS.epochs,
      FLAGS.batch_size,
      FLAGS.seed,
      FLAGS.max_train_examples,
    )
  except (data.DataError, ValueError, OSError) as e:
    return cli.fail(" ".join(str(e).split()))
  print(
    f"classifier ({meta['data']}, {meta['num_train']} training images): test accuracy "
    f"{meta['test_accuracy']:.4f} on {meta['num_test']} images -> {FLAGS.output_dir}"
  )
  return 0


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
