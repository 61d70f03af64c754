"""Reproduces the paper's Table 1 (MNIST), 2 (CIFAR-10) or 3 (ImageNet 64x64) at full scale.

  python tools/reproduce.py --table=1 --gin_param="dataset.local_dir='/data/mnist'" \
      --classifier_dir=runs/mnist_classifier
  python tools/reproduce.py --table=2 --inception_graph=/path/classify_image_graph_def.pb \
      [--fid_reference_stats=/path/fid_stats_cifar10_train.npz]
  python tools/reproduce.py --table=3 --quick        # smoke run on synthetic data

Each row trains its gin file (gin/mnist*.gin, gin/cifar10*.gin, gin/imagenet64.gin: the
paper's settings, full data from TFDS or dataset.local_dir, early stopping) into
WORK_DIR/<row> (rerunning resumes), evaluates the early-stopping best checkpoint with
tools/evaluate.py's metrics, and writes WORK_DIR/table<N>.md / .json with the paper's
numbers beside ours. Meant for users with the data and a GPU: full scale takes days.
"""

import os

from absl import flags

from asvae_tf import cli
from asvae_tf import experiments

flags.DEFINE_enum("table", None, ["1", "2", "3"], "Paper table to reproduce.")
flags.DEFINE_string("work_dir", None, "Default runs/reproduce_table<N>[_quick].")
flags.DEFINE_multi_string("gin_param", [], "Extra training bindings (e.g. dataset.local_dir).")
flags.DEFINE_multi_string("eval_param", [], "Extra evaluation bindings (evaluate.*).")
flags.DEFINE_list("models", None, "Subset of the table's rows (default all).")
flags.DEFINE_string(
  "inception_graph",
  None,
  "2015 TF Inception GraphDef classify_image_graph_def.pb (tables 2, 3): IS/FID comparable "
  "with the paper's.",
)
flags.DEFINE_string(
  "fid_reference_stats", None, "TTUR FID statistics .npz (mu, sigma); needs --inception_graph."
)
flags.DEFINE_string(
  "inception_weights", None, "Local Keras InceptionV3 weights: IS/FID NOT comparable."
)
flags.DEFINE_string("classifier_dir", None, "MNIST classifier (table 1).")
flags.DEFINE_bool("quick", False, "Tiny networks, synthetic data, 2 steps: a smoke run.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.table:
    return cli.fail("--table=1|2|3 is required")
  table = int(FLAGS.table)
  work_dir = FLAGS.work_dir or os.path.join(
    "runs", f"reproduce_table{table}{'_quick' if FLAGS.quick else ''}"
  )
  evals = list(FLAGS.eval_param) + cli.sample_quality_bindings(FLAGS)
  _, text = experiments.reproduce(
    table, work_dir, FLAGS.gin_param, evals, models=FLAGS.models, quick=FLAGS.quick
  )
  print(text)
  print(f"wrote {os.path.join(work_dir, f'table{table}')}.md/.json")
  return 0


def run():
  """Console script `asvae-reproduce` (setup.py entry point); tools/reproduce.py calls it too."""
  cli.main(main)


if __name__ == "__main__":
  run()
