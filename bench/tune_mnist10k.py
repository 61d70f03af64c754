#!/usr/bin/env python
"""Choosing settings on the MNIST-10k validation slice (never the test images).

Each candidate is a gin file plus an optional value of one swept gin parameter. It is
trained by the protocol of bench/mnist10k_lib.py (20 passes over the 7,000 training
images, batch 100, Adam --learning_rate) with early stopping off, and its last checkpoint
is evaluated on the 1,000-image validation slice: -ELBO, IWAE NLL (--k, 100), classifier
FID / score of 10,000 samples against the validation images, exact KL. The classifier
saw the validation images in training, so these FIDs are lower than the test ones: they
rank candidates, they are not results. The table shows the mean ± standard error over
--seeds and each candidate's paired IWAE difference to the first gin file's run of the
same seed (the baseline, e.g. the VAE). A run that diverges is listed, not fatal.

  # the decoder weight of eq. (11), lambda in 1..4, beside the VAE (2 seeds):
  .venv/bin/python bench/tune_mnist10k.py --name=decoder_weight --seeds=0,1 \\
    --gin_files=mnist_vae.gin,mnist.gin --sweep=model.f2_decoder_weight=1.0,2.0,3.0,4.0
  .venv/bin/python bench/tune_mnist10k.py --quick ...   # smoke run (minutes)

Writes <results_dir>/tune_<name>.{json,md}; finished runs in --work_dir are reused, so
two processes given disjoint --seeds (and their own --results_dir) can share a work dir,
and a last invocation with every seed only collects the table.
"""

import datetime
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import tensorflow as tf

from bench import mnist10k_lib as lib
from bench import tune_lib

lib.define_flags("tune_mnist10k", "Model dirs and the classifier go here (runs are reused).")
flags.adopt_module_key_flags(lib)
flags.DEFINE_string("name", None, "Result name: writes tune_<name>.{json,md}.")
flags.DEFINE_list(
  "gin_files",
  ["mnist_vae.gin", "mnist.gin"],
  "Gin files in gin/; the first is the baseline of the paired column and is never swept.",
)
flags.DEFINE_string(
  "sweep", None, "Optional 'scope.param=v1,v2,...': one candidate per value for every gin "
  "file after the first (gin literals, e.g. 2.0 or 'elu')."
)  # fmt: skip
flags.DEFINE_multi_string(
  "binding", [], "Extra gin bindings for every candidate, the baseline too (so not one that "
  "only some gin files accept). Budget, data, seed and early stopping are fixed."
)  # fmt: skip
flags.DEFINE_list("seeds", ["0"], "Training seeds (one run per candidate and seed).")
flags.DEFINE_integer("k", 100, "IWAE importance samples on the validation slice.")
flags.mark_flag_as_required("name")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  epochs, _, num_generated, max_examples = lib.eval_settings(FLAGS.quick)
  k = min(FLAGS.k, 50) if FLAGS.quick else FLAGS.k
  try:
    seeds = [int(s) for s in FLAGS.seeds]
    if len(set(seeds)) != len(seeds) or not seeds:
      raise ValueError(f"--seeds must be distinct integers, got {FLAGS.seeds}")
    cands = tune_lib.candidates(FLAGS.gin_files, FLAGS.sweep, FLAGS.binding)
  except ValueError as e:
    raise app.UsageError(str(e))
  splits = lib.load_splits(FLAGS.mnist_dir)
  work = FLAGS.work_dir + ("_quick" if FLAGS.quick else "")
  settings = dict(lr=FLAGS.learning_rate, k=k, num_generated=num_generated,
                  max_examples=max_examples, epochs=epochs, split="validation")  # fmt: skip
  lib.stamp_work_dir(work, settings)
  clf_dir = os.path.join(work, "classifier")
  clf = lib.classifier(FLAGS.mnist_dir, clf_dir, epochs=1 if FLAGS.quick else 8)

  def protocol(seed):
    return lib.protocol_bindings(
      FLAGS.mnist_dir, len(splits.train), epochs, seed, FLAGS.learning_rate
    ) + ["train.early_stopping_patience = 0"]

  def run_fn(gin_file, model_dir, bindings):
    return lib.run(gin_file, model_dir, bindings, clf_dir, k, num_generated, max_examples,
                   checkpoint="latest", split="validation")  # fmt: skip

  start = time.time()
  rows = tune_lib.sweep(cands, seeds, protocol, run_fn, work)
  header = (
    f"MNIST-10k validation-slice tuning '{FLAGS.name}' ({datetime.date.today().isoformat()}, "
    f"{os.cpu_count()} x {lib.cpu_name()}, TF {tf.__version__}; "
    f"{'QUICK smoke run, not a result; ' if FLAGS.quick else ''}{epochs} passes x "
    f"{len(splits.train)} training images, Adam lr {FLAGS.learning_rate}, early stopping off, "
    f"last checkpoint; IWAE k = {k} and {num_generated} samples on "
    f"{max_examples or len(splits.validation)} validation images (classifier FIDs rank, "
    f"they are not results); extra bindings {FLAGS.binding or 'none'}; mean ± standard "
    f"error over seeds; {(time.time() - start) / 60:.1f} min this invocation, finished runs "
    "reused)"
  )
  out = tune_lib.table(rows, seeds, header)
  print("\n" + out)
  payload = dict(header=header, classifier=clf, seeds=seeds, bindings=FLAGS.binding,
                 runs={label: {str(s): m for s, m in r.items()} for label, r in rows})  # fmt: skip
  lib.write_results(FLAGS.results_dir, f"tune_{FLAGS.name}", FLAGS.quick, payload, out)


if __name__ == "__main__":
  app.run(main)
