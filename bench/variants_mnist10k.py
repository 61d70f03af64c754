#!/usr/bin/env python
"""AS-VAE (gin/mnist.gin) under training variants on the MNIST-10k protocol, over seeds.

Issue 15 asks for the quality of a faster training variant beside the default before it
becomes a default: `train.update_scheme = 'shared'` against 'alternating', and
`train.dtype_policy = 'mixed_bfloat16'` against float32, `train.jit_compile = 'flow'`
against plain TF. Each --variants entry is a set
of bindings on top of bench/mnist10k_lib.py's protocol (20 passes over the 7,000 training
images, early stopping on the validation slice, IWAE k = 1000 and -ELBO on the 2,000 test
images at the best checkpoint, classifier FID / score of 10,000 samples); the table shows
mean ± standard error over --seeds and the paired difference to the first variant (same
seed: same data order and initial weights).

  .venv/bin/python bench/variants_mnist10k.py --variants=alternating,shared --seeds=0,1,2
  .venv/bin/python bench/variants_mnist10k.py --quick      # smoke run
Writes bench/results/variants_mnist10k.{json,md}; finished runs in --work_dir are reused.
"""

import datetime
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import tensorflow as tf

import mnist10k_lib as lib

VARIANTS = {
  "alternating": [],
  "shared": ["train.update_scheme = 'shared'"],
  "bf16": ["train.dtype_policy = 'mixed_bfloat16'"],
  "shared_bf16": ["train.update_scheme = 'shared'", "train.dtype_policy = 'mixed_bfloat16'"],
  "flow_xla": ["train.jit_compile = 'flow'"],
  "shared_bf16_flow_xla": [
    "train.update_scheme = 'shared'",
    "train.dtype_policy = 'mixed_bfloat16'",
    "train.jit_compile = 'flow'",
  ],
}
COLUMNS = lib.METRIC_COLUMNS + (("train_seconds", "train s"),)

lib.define_flags("variants_mnist10k", "Model dirs go here.")
flags.adopt_module_key_flags(lib)  # --helpshort lists the shared flags too
flags.DEFINE_string(
  "classifier_dir",
  os.path.join(lib.ROOT, "runs", "quality_mnist10k", "classifier"),
  "The protocol's MNIST classifier (trained there if missing).",
)
flags.DEFINE_list("variants", ["alternating", "shared"], f"Of {sorted(VARIANTS)}.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
FLAGS = flags.FLAGS


def table(runs, header):
  """runs: {variant: {seed: metrics}} -> markdown; paired differences to the first variant."""
  base_name = next(iter(runs))
  base = runs[base_name]
  head = [h for _, h in COLUMNS] + [f"IWAE - {base_name}", f"FID / {base_name}'s"]
  lines = [
    header,
    "",
    "| variant | bindings | seeds | " + " | ".join(head) + " |",
    "|---" * (len(head) + 3) + "|",
  ]
  for name, by_seed in runs.items():
    seeds = sorted(by_seed)
    cells = [lib.cell([by_seed[s][k] for s in seeds]) for k, _ in COLUMNS]
    if name == base_name:
      cells += ["-", "-"]
    else:
      common = [s for s in seeds if s in base]
      cells.append(lib.cell([by_seed[s]["iwae_nll"] - base[s]["iwae_nll"] for s in common]))
      cells.append(
        lib.cell([by_seed[s]["classifier_fid"] / base[s]["classifier_fid"] for s in common])
      )
    bindings = "; ".join(VARIANTS[name]) or "(gin/mnist.gin defaults)"
    lines.append(
      f"| {name} | `{bindings}` | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  unknown = set(FLAGS.variants) - set(VARIANTS)
  if unknown:
    raise app.UsageError(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
  epochs, k, num_generated, max_examples = lib.eval_settings(FLAGS.quick)
  splits = lib.load_splits(FLAGS.mnist_dir)
  work = FLAGS.work_dir + ("_quick" if FLAGS.quick else "")
  lib.stamp_work_dir(
    work, dict(lr=FLAGS.learning_rate, k=k, num_generated=num_generated, max_examples=max_examples,
               epochs=epochs),
  )  # fmt: skip
  clf = lib.classifier(FLAGS.mnist_dir, FLAGS.classifier_dir, epochs=1 if FLAGS.quick else 8)
  start = time.time()
  runs = {name: {} for name in FLAGS.variants}
  for seed in (int(s) for s in FLAGS.seeds):
    for name in FLAGS.variants:
      print(f"== {name} seed {seed}", flush=True)
      bindings = lib.protocol_bindings(
        FLAGS.mnist_dir, len(splits.train), epochs, seed, FLAGS.learning_rate
      )
      runs[name][seed] = lib.run(
        "mnist.gin", os.path.join(work, f"{name}_seed{seed}"), bindings + VARIANTS[name],
        FLAGS.classifier_dir, k, num_generated, max_examples,
      )  # fmt: skip
  header = (
    f"AS-VAE (gin/mnist.gin) training variants on MNIST-10k ({datetime.date.today()}, "
    f"{os.cpu_count()} cores, TF {tf.__version__}; "
    f"{'QUICK smoke run, not a result; ' if FLAGS.quick else ''}{epochs} passes, Adam lr "
    f"{FLAGS.learning_rate}, best checkpoint of early stopping, IWAE k = {k}, {num_generated} "
    f"samples, classifier test accuracy {clf['test_accuracy']:.4f}; mean ± standard error "
    f"over seeds; train s is wall time on a possibly busy machine, not a speed benchmark; "
    f"{(time.time() - start) / 60:.1f} min this invocation, finished runs reused)"
  )
  out = table(runs, header)
  print("\n" + out)
  payload = dict(
    header=header,
    variants={n: VARIANTS[n] for n in runs},
    runs={n: {str(s): v for s, v in r.items()} for n, r in runs.items()},
  )
  lib.write_results(FLAGS.results_dir, "variants_mnist10k", FLAGS.quick, payload, out)


if __name__ == "__main__":
  app.run(main)
