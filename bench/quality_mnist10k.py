#!/usr/bin/env python
"""MNIST-10k quality benchmark (../shared/data/mnist/README.md): VAE vs AS-VAE-r/-g/AS-VAE.

The protocol, exactly: t10k images 0..7999 train (the last 1,000 of them are the
early-stopping validation slice), 8000..9999 test, binarised once with
RandomState(0) and its sha256 checked (asvae_tf.data does both and refuses other
files); dynamic binarisation of training batches; D = 32; MLP encoder 784-500-500,
decoder 32-500-500-784, Bernoulli likelihood; batch 100; at most --epochs (<= 20)
passes over the 7,000 training images (the step budget); early stopping on the
validation slice with the gin files' patience, evaluated at the best checkpoint.

Each model is gin/mnist{_vae,_asvae_r,_asvae_g,}.gin (K = 80 planar posterior in all
four) with the data, budget and --learning_rate bindings printed below. Evaluation
on the 2,000 test images: -ELBO and IWAE NLL (k = 1000, same samples), and the
classifier FID / score of 10,000 samples with the CNN of tools/train_classifier.py
(trained here on images 0..7999 only). Writes bench/results/quality_mnist10k.json
and .md (markdown table beside the paper's Table 1, which is on full MNIST).

  .venv/bin/python bench/quality_mnist10k.py            # about 30-60 min on 2 cores
  .venv/bin/python bench/quality_mnist10k.py --quick    # minutes; a smoke run
"""

import datetime
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import tensorflow as tf

from asvae_tf import data
from asvae_tf import evaluation
from asvae_tf import experiments
from asvae_tf import feature_nets

flags.DEFINE_string("mnist_dir", os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist"),
                    "Directory with the MNIST t10k IDX files.")
flags.DEFINE_string("work_dir", os.path.join(ROOT, "runs", "quality_mnist10k"),
                    "Model dirs and the classifier go here (resumable).")
flags.DEFINE_string("results_dir", os.path.join(ROOT, "bench", "results"),
                    "Where quality_mnist10k.json / .md are written.")
flags.DEFINE_list("models", ["vae", "asvae_r", "asvae_g", "asvae"], "Models to run.")
flags.DEFINE_integer("epochs", 20, "Passes over the training images (protocol: <= 20).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of all networks.")
flags.DEFINE_integer("num_importance_samples", 1000, "k of the IWAE bound.")
flags.DEFINE_integer("num_generated", 10000, "Samples for the classifier FID / score.")
flags.DEFINE_integer("seed", 0, "Training seed.")
flags.DEFINE_bool("quick", False, "1 epoch, k = 50, 1,000 samples, 500 test images.")
FLAGS = flags.FLAGS

TABLE1 = experiments.PAPER_TABLES[1].rows  # gin file, label and paper NLL of each model
PAPER_NLL = {k: row.paper["neg_elbo"] for k, row in TABLE1.items()}
BATCH = 100


def _bindings(train_size):
  steps_per_epoch = train_size // BATCH
  steps = FLAGS.epochs * steps_per_epoch
  return [
      f"dataset.local_dir = '{FLAGS.mnist_dir}'",
      "dataset.name = 'mnist'",
      f"train.batch_size = {BATCH}",
      f"train.num_steps = {steps}",
      f"train.seed = {FLAGS.seed}",
      "train.strategy = 'default'",
      f"train.validate_every = {steps_per_epoch}",
      f"train.summary_every = {steps_per_epoch}",
      f"train.checkpoint_every = {steps_per_epoch * 5}",
      f"train.image_every = {steps_per_epoch * 5}",
      f"generator/optimizer.learning_rate = {FLAGS.learning_rate}",
      f"discriminator/optimizer.learning_rate = {FLAGS.learning_rate}",
  ]


def _classifier(directory):
  path = os.path.join(directory, feature_nets.CLASSIFIER_METADATA)
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  logging.info("training the MNIST classifier on t10k images 0..7999")
  return feature_nets.train_classifier(FLAGS.mnist_dir, directory,
                                       epochs=1 if FLAGS.quick else 8, verbose=0)


def _run(name, bindings, classifier_dir):
  params = [f"evaluate.num_importance_samples = {FLAGS.num_importance_samples}",
            f"evaluate.num_generated = {FLAGS.num_generated}",
            f"evaluate.classifier_dir = '{classifier_dir}'"]
  if FLAGS.quick:
    params.append("evaluate.max_examples = 500")
  return experiments.train_and_evaluate(
      os.path.join(experiments.GIN_DIR, experiments.PAPER_TABLES[1].rows[name].gin_file),
      os.path.join(FLAGS.work_dir, name), bindings, params, checkpoint="best")


def _table(results, header):
  lines = [header, "",
           f"| model | paper NLL, full MNIST (Table 1) | -ELBO (nats) | IWAE NLL k={FLAGS.num_importance_samples} (nats) "
           "| classifier FID | classifier score | best step / steps run | train + eval min |",
           "|---|---|---|---|---|---|---|---|"]
  for name, m in results.items():
    lines.append(
        f"| {TABLE1[name].label} | {PAPER_NLL[name]} | {m['neg_elbo']:.2f} ± {m['neg_elbo_se']:.2f} "
        f"| {m['iwae_nll']:.2f} ± {m['iwae_nll_se']:.2f} | {m.get('classifier_fid', float('nan')):.2f} "
        f"| {m.get('classifier_score', float('nan')):.2f} | {m['step']} / {m['final_step']} "
        f"| {m['train_seconds'] / 60:.1f} + {m['eval_seconds'] / 60:.1f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  if FLAGS.quick:
    FLAGS.epochs, FLAGS.num_importance_samples, FLAGS.num_generated = 1, 50, 1000
  if not 1 <= FLAGS.epochs <= 20:
    raise app.UsageError("--epochs must be in [1, 20] (MNIST-10k budget)")
  unknown = set(FLAGS.models) - set(TABLE1)
  if unknown:
    raise app.UsageError(f"unknown --models {sorted(unknown)}; choose from {sorted(TABLE1)}")
  splits = data.load_splits(name="mnist", local_dir=FLAGS.mnist_dir)  # checks the sha256
  if len(splits.train) + len(splits.validation) != data.MNIST10K_NUM_TRAIN:
    raise app.UsageError(f"{FLAGS.mnist_dir} is not the MNIST-10k setting: {splits.note}")
  bindings = _bindings(len(splits.train))
  work = FLAGS.work_dir + ("_quick" if FLAGS.quick else "")
  FLAGS.work_dir = work
  os.makedirs(work, exist_ok=True)
  stamp = os.path.join(work, "bindings.json")  # Resuming with other settings would mix runs.
  if os.path.isfile(stamp):
    with open(stamp) as f:
      if json.load(f) != bindings:
        raise app.UsageError(f"{work} holds runs made with other settings; delete it or pass "
                             f"another --work_dir")
  else:
    with open(stamp, "w") as f:
      json.dump(bindings, f)
  clf_dir = os.path.join(work, "classifier")
  clf = _classifier(clf_dir)
  print(f"classifier: test accuracy {clf['test_accuracy']:.4f} ({clf['data']})", flush=True)
  start = time.time()
  results = {}
  for name in FLAGS.models:
    results[name] = _run(name, bindings, clf_dir)
    print(evaluation.format_table(results[name]), flush=True)
  total = time.time() - start
  cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), platform.processor())
  header = (f"MNIST-10k quality ({datetime.date.today().isoformat()}, {os.cpu_count()} x {cpu}, "
            f"TF {tf.__version__}; {'QUICK smoke run, not a result; ' if FLAGS.quick else ''}"
            f"{FLAGS.epochs} epochs x {len(splits.train)} training images, batch {BATCH}, "
            f"Adam lr {FLAGS.learning_rate}, evaluated at the early-stopping best checkpoint on "
            f"{results[FLAGS.models[0]]['num_examples']} test images; classifier test accuracy "
            f"{clf['test_accuracy']:.4f}; {FLAGS.num_generated} samples; total "
            f"{total / 60:.1f} min)")
  table = _table(results, header)
  print("\n" + table)
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  stem = "quality_mnist10k" + ("_quick" if FLAGS.quick else "")
  with open(os.path.join(FLAGS.results_dir, stem + ".json"), "w") as f:
    json.dump(dict(header=header, bindings=bindings, classifier=clf, results=results,
                   total_seconds=total, paper_nll_full_mnist=PAPER_NLL), f, indent=2)
  with open(os.path.join(FLAGS.results_dir, stem + ".md"), "w") as f:
    f.write(table + "\n")
  print(f"\nwrote {os.path.join(FLAGS.results_dir, stem)}.json/.md")


if __name__ == "__main__":
  app.run(main)
