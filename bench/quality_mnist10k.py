#!/usr/bin/env python
"""MNIST-10k quality benchmark: VAE vs AS-VAE-r / AS-VAE-g / AS-VAE over seeds.

The protocol is bench/mnist10k_lib.py's (../shared/data/mnist/README.md): 20 passes over
the 7,000 training images, early stopping on the 1,000-image validation slice, -ELBO and
IWAE NLL (k = 1000) on the 2,000 test images at the best checkpoint, classifier FID /
score of 10,000 samples. Each model is its gin file (gin/mnist{_vae,_asvae_r,_asvae_g,}.gin
with their defaults: which ratio estimator each uses is printed in the table) with the
protocol bindings. Every model runs for each --seeds; the table shows the mean and the
standard error over seeds, and the paired difference to the VAE (same seed: same data
order and initial encoder/decoder weights). --long_epochs adds one run per
--long_models beyond the 20-pass budget (seed 0), reported separately.

  .venv/bin/python bench/quality_mnist10k.py                   # 3 seeds x 4 models, ~1 h
  .venv/bin/python bench/quality_mnist10k.py --long_epochs=100 --long_models=vae,asvae
  .venv/bin/python bench/quality_mnist10k.py --quick           # smoke run (minutes)
  .venv/bin/python bench/quality_mnist10k.py --refit --work_dir=runs/quality_refit
Writes bench/results/quality_mnist10k.{json,md} (--refit: quality_mnist10k_refit.*, all
8,000 training images, no early stopping, the last checkpoint); finished runs in
--work_dir are reused.
"""

import datetime
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import gin
import tensorflow as tf

from asvae_tf import config
from asvae_tf import experiments
import mnist10k_lib as lib

TABLE1 = experiments.PAPER_TABLES[1].rows  # gin file, label and paper NLL of each model

lib.define_flags(
  "quality_mnist10k", "Model dirs and the classifier go here (finished runs are reused)."
)
flags.adopt_module_key_flags(lib)  # --helpshort lists the shared flags too
flags.DEFINE_list("models", ["vae", "asvae_r", "asvae_g", "asvae"], "Models to run.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (one run per model and seed).")
flags.DEFINE_integer(
  "long_epochs",
  0,
  "If > 0: one extra run per --long_models with this "
  "many passes (beyond the 20-pass budget; seed 0).",
)
flags.DEFINE_list("long_models", ["vae", "asvae"], "Models of the --long_epochs runs.")
flags.DEFINE_bool(
  "refit",
  False,
  "Train on all 8,000 training images (the validation slice too) and evaluate the last "
  "checkpoint: the protocol's budget without early stopping, with the settings chosen "
  "on the validation slice (the learning rate of --learning_rate).",
)
FLAGS = flags.FLAGS

COLUMNS = lib.METRIC_COLUMNS + (("ratio_gap", "ratio gap"),)
# Same-seed comparisons with the VAE: (header, (metric, f(model, vae))).
PAIRED = (
  ("IWAE - VAE", ("iwae_nll", lambda a, b: a - b)),
  ("FID / VAE's", ("classifier_fid", lambda a, b: a / b)),
  ("score - VAE", ("classifier_score", lambda a, b: a - b)),
  ("KL / VAE's", ("kl_exact", lambda a, b: a / b)),
)


def estimator_of(name):
  """Which ratio estimators model `name`'s gin file uses by default (shown in the table)."""
  if name == "vae":
    return "none"

  def bound(key, default):
    try:
      return gin.query_parameter(key)
    except ValueError:  # not bound in the file: the code's default
      return default

  gin.clear_config()
  try:
    config.parse([os.path.join(experiments.GIN_DIR, TABLE1[name].gin_file)], [])
    f1 = bound("model.ratio_estimator", "joint")
    f2 = bound("model.f2_estimator", None) or f1
    if f2 == "explicit":
      f2 += f" ({bound('model.f2_decoder_gradient', 'exact')})"
      noise = bound("model.f2_input_noise", 0.0)
      if noise:
        f2 += f" + instance noise {noise:g} on D"
    weight = bound("model.f2_decoder_weight", 1.0)
    if weight != 1 and name != "asvae_r":
      f2 += f", decoder weight {weight:g}"
    if bound("mlp_decoder.output_bias", "zeros") == "data_mean":
      f2 += ", decoder output bias at the data mean"
  finally:
    gin.clear_config()
  return {"asvae_r": f"f1 {f1}", "asvae_g": f"f2 {f2}"}.get(name, f"f1 {f1}, f2 {f2}")


def seed_table(runs, header):
  """runs: {model: {seed: metrics}} -> markdown (mean ± se over seeds; paired vs VAE)."""
  lines = [
    header,
    "",
    "| model | ratio estimators | paper NLL (full MNIST) | seeds | "
    + " | ".join(h for _, h in COLUMNS)
    + " | "
    + " | ".join(h for h, _ in PAIRED)
    + " |",
    "|---" * (len(COLUMNS) + len(PAIRED) + 4) + "|",
  ]
  vae = runs.get("vae", {})
  for name, by_seed in runs.items():
    seeds = sorted(by_seed)
    cells = [lib.cell([by_seed[s].get(k) for s in seeds]) for k, _ in COLUMNS]
    common = [s for s in seeds if s in vae]
    paired = [
      lib.cell([fn(by_seed[s][key], vae[s][key]) for s in common])
      if name != "vae" and common and key in by_seed[seeds[0]]
      else "-"
      for _, (key, fn) in PAIRED
    ]
    lines.append(
      f"| {TABLE1[name].label} | {estimator_of(name)} "
      f"| {TABLE1[name].paper['neg_elbo']} | {','.join(map(str, seeds))} | "
      + " | ".join(cells + paired)
      + " |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  epochs, k, num_generated, max_examples = lib.eval_settings(FLAGS.quick)
  unknown = set(FLAGS.models + FLAGS.long_models) - set(TABLE1)
  if unknown:
    raise app.UsageError(f"unknown models {sorted(unknown)}; choose from {sorted(TABLE1)}")
  seeds = [int(s) for s in FLAGS.seeds]
  splits = lib.load_splits(FLAGS.mnist_dir, validation_size=0 if FLAGS.refit else None)
  work = FLAGS.work_dir + ("_quick" if FLAGS.quick else "")
  settings = dict(
    lr=FLAGS.learning_rate, k=k, num_generated=num_generated, max_examples=max_examples,
    epochs=epochs,
  )  # fmt: skip
  if FLAGS.refit:  # only then, so work dirs stamped before the flag existed stay valid
    settings["refit"] = True
  lib.stamp_work_dir(work, settings)
  clf_dir = os.path.join(work, "classifier")
  clf = lib.classifier(FLAGS.mnist_dir, clf_dir, epochs=1 if FLAGS.quick else 8)
  print(f"classifier: test accuracy {clf['test_accuracy']:.4f} ({clf['data']})", flush=True)

  def run(name, seed, n_epochs, tag):
    bindings = lib.protocol_bindings(
      FLAGS.mnist_dir, len(splits.train), n_epochs, seed, FLAGS.learning_rate
    )
    if FLAGS.refit:
      bindings += ["dataset.validation_size = 0", "train.early_stopping_patience = 0"]
    print(f"== {name} seed {seed}, {n_epochs} passes", flush=True)
    return lib.run(
      TABLE1[name].gin_file,
      os.path.join(work, f"{name}_{tag}"),
      bindings,
      clf_dir,
      k,
      num_generated,
      max_examples,
      checkpoint="latest" if FLAGS.refit else "best",
    )

  start = time.time()
  runs = {name: {} for name in FLAGS.models}
  for seed in seeds:  # seed-major: a partial run already has complete seeds
    for name in FLAGS.models:
      runs[name][seed] = run(name, seed, epochs, f"seed{seed}")
  long_runs = {}
  if FLAGS.long_epochs:
    for name in FLAGS.long_models:
      long_runs[name] = {0: run(name, 0, FLAGS.long_epochs, f"{FLAGS.long_epochs}passes")}
  cpu = lib.cpu_name()
  header = (
    f"MNIST-10k quality ({datetime.date.today().isoformat()}, {os.cpu_count()} x {cpu}, "
    f"TF {tf.__version__}; {'QUICK smoke run, not a result; ' if FLAGS.quick else ''}"
    f"{epochs} passes x {len(splits.train)} training images, batch {lib.BATCH}, Adam lr "
    f"{FLAGS.learning_rate}, "
    + (
      "last checkpoint (no validation slice)"
      if FLAGS.refit
      else "best checkpoint of early stopping"
    )
    + f", IWAE k = {k} on "
    f"{max_examples or len(splits.test)} test images, {num_generated} samples, "
    f"classifier test accuracy {clf['test_accuracy']:.4f}; mean ± standard error over "
    f"seeds; {(time.time() - start) / 60:.1f} min this invocation, finished runs reused)"
  )
  out = seed_table(runs, header)
  if long_runs:
    out += "\n\n" + seed_table(
      long_runs,
      f"Beyond the budget: {FLAGS.long_epochs} passes, seed 0 (not the MNIST-10k protocol's 20)",
    )
  print("\n" + out)
  payload = dict(
    header=header,
    classifier=clf,
    seeds=seeds,
    runs={m: {str(s): v for s, v in r.items()} for m, r in runs.items()},
    long_runs={m: r[0] for m, r in long_runs.items()},
    long_epochs=FLAGS.long_epochs,
  )
  name = "quality_mnist10k" + ("_refit" if FLAGS.refit else "")
  lib.write_results(FLAGS.results_dir, name, FLAGS.quick, payload, out)


if __name__ == "__main__":
  app.run(main)
