"""Evaluates a trained model: -ELBO, IWAE NLL, bits/dim, RMSE, IS/FID (section 5.1).

  python tools/evaluate.py --model_dir=runs/mnist \
      [--checkpoint=best] [--classifier_dir=runs/mnist_classifier] \
      [--inception_graph=/path/classify_image_graph_def.pb \
       [--fid_reference_stats=/path/fid_stats_cifar10_train.npz]] \
      [--inception_weights=/path/inception_v3_weights_tf_dim_ordering_tf_kernels.h5] \
      [--gin_param="evaluate.num_importance_samples=5000"]

The model and dataset come from model_dir/operative_config.gin, then --gin_file and
--gin_param in order (e.g. --gin_param="dataset.local_dir='../shared/data/mnist'").
Prints a table and writes model_dir/eval/metrics.json and TensorBoard scalars in
model_dir/summaries/eval. Bad input ends with exit code 2 and one line.
"""

import os

from absl import flags

from asvae_tf import cli
from asvae_tf import errors
from asvae_tf import evaluation
from asvae_tf import registry

flags.DEFINE_string("model_dir", None, "Training model_dir (holds operative_config.gin).")
flags.DEFINE_string(
  "checkpoint", None, "'best', 'latest' or a checkpoint prefix; default: best if any, else latest."
)
flags.DEFINE_multi_string("gin_file", [], "Extra gin file(s), after operative_config.gin.")
flags.DEFINE_multi_string("gin_param", [], "Gin binding(s), applied last.")
flags.DEFINE_string(
  "inception_weights",
  None,
  "Local Keras InceptionV3 weights file (sets evaluate.inception_weights); IS/FID NOT "
  "comparable with published numbers.",
)
flags.DEFINE_string(
  "inception_graph",
  None,
  "The 2015 TF Inception GraphDef classify_image_graph_def.pb (sets "
  "evaluate.inception_graph); IS/FID comparable with published numbers.",
)
flags.DEFINE_string(
  "fid_reference_stats",
  None,
  "TTUR FID statistics .npz (mu, sigma) the FID is taken against (sets "
  "evaluate.fid_reference_stats; needs --inception_graph).",
)
flags.DEFINE_string(
  "classifier_dir", None, "Output of tools/train_classifier.py (sets evaluate.classifier_dir)."
)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.model_dir:
    return cli.fail("--model_dir is required")
  operative = os.path.join(FLAGS.model_dir, "operative_config.gin")
  if not os.path.isfile(operative):
    return cli.fail(
      f"no operative_config.gin in --model_dir={FLAGS.model_dir} (is it a training model_dir?)"
    )
  params = list(FLAGS.gin_param) + cli.sample_quality_bindings(FLAGS)
  registry.parse_model_dir(FLAGS.model_dir, FLAGS.gin_file, params)
  try:
    metrics = evaluation.evaluate(FLAGS.model_dir, checkpoint=FLAGS.checkpoint)
  except FloatingPointError as e:  # a non-finite bound (a diverged checkpoint)
    return cli.fail(errors.one_line(e))
  print(evaluation.format_table(metrics))
  print(f"wrote {metrics['metrics_file']}")
  return 0


def run():
  """Console script `asvae-evaluate` (setup.py entry point); tools/evaluate.py calls it too."""
  cli.main(main)


if __name__ == "__main__":
  run()
