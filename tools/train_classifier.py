#!/usr/bin/env python
"""Trains the small MNIST CNN used for the classifier score and classifier FID.

  python tools/train_classifier.py --data_dir=../shared/data/mnist \
      --output_dir=runs/mnist_classifier

With only the t10k files (MNIST-10k) it trains on images 0..7999 and reports its
accuracy on 8000..9999 (the AS-VAE test split); with full MNIST, train 60k / test
t10k. Writes output_dir/classifier.keras and output_dir/classifier.json; pass
--classifier_dir=output_dir to tools/evaluate.py.
"""

from absl import flags

from asvae_tf import cli
from asvae_tf import errors
from asvae_tf.evaluation import feature_nets

flags.DEFINE_string("data_dir", None, "Directory with MNIST IDX image and label files.")
flags.DEFINE_string("output_dir", "runs/mnist_classifier", "Where the classifier is saved.")
flags.DEFINE_integer("epochs", 8, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_integer("max_train_examples", None, "Cap on training images (smoke tests).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
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
  except (ValueError, OSError) as e:  # bad data (DataError) or an unwritable output_dir
    return cli.fail(errors.one_line(e))
  print(
    f"classifier ({meta['data']}, {meta['num_train']} training images): test accuracy "
    f"{meta['test_accuracy']:.4f} on {meta['num_test']} images -> {FLAGS.output_dir}"
  )
  return 0


if __name__ == "__main__":
  cli.main(main)
