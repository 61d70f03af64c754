#!/usr/bin/env python
"""Adversarial stability of AS-VAE (issue: fault tolerance): gin/mnist.gin on real MNIST.

Trains gin/mnist.gin (AS-VAE, planar K = 80) for --num_steps steps on --data_dir
(default ../shared/data/mnist, the MNIST-10k split) once per seed and prints a table:
final-window generator / discriminator losses, discriminator accuracies of eqs. (5)
and (6) (0.5 = chance; near 1.0 = the discriminators win, i.e. collapse risk), the final
validation -ELBO, whether every reported value is finite, the number of skipped
(non-finite) steps and rollbacks of the non-finite guard, and the wall time.
Each run writes a normal model_dir under --out_dir/seed<k> (TensorBoard shows the
discriminator accuracies and guard/skipped_steps over time). Existing runs resume.

  .venv/bin/python bench/stability.py [--num_steps=3000] [--seeds=0,1,2] \
      [--out_dir=runs/stability] [--strategy=default] [--gin_param=B ...]

A quick check of the script itself: --num_steps=20.
"""

import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
import gin

from asvae_tf import config
from asvae_tf import train

FLAGS = flags.FLAGS
MNIST_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")

flags.DEFINE_integer("num_steps", 3000, "Generator steps per seed.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "train.seed values.")
flags.DEFINE_string("data_dir", MNIST_DIR, "dataset.local_dir (MNIST IDX files).")
flags.DEFINE_string(
  "out_dir", os.path.join(ROOT, "runs", "stability"), "Parent of the per-seed model_dirs."
)
flags.DEFINE_enum("strategy", "default", ["default", "mirrored"], "train.strategy.")
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings (after the defaults).")


def _run(seed):
  model_dir = os.path.join(FLAGS.out_dir, f"seed{seed}")
  every = max(1, min(100, FLAGS.num_steps // 10))
  bindings = [
    f"dataset.local_dir = '{FLAGS.data_dir}'",
    f"train.num_steps = {FLAGS.num_steps}",
    f"train.seed = {seed}",
    f"train.strategy = '{FLAGS.strategy}'",
    f"train.summary_every = {every}",
    f"train.validate_every = {min(1000, FLAGS.num_steps)}",
    f"train.checkpoint_every = {min(1000, FLAGS.num_steps)}",
    "train.early_stopping_patience = 0",
  ] + list(FLAGS.gin_param)
  gin.clear_config()
  config.parse([os.path.join(ROOT, "gin", "mnist.gin")], bindings)
  start = time.time()
  try:
    result = train.train(model_dir)
    status = "ok"
  except train.TrainingDivergedError as e:
    result, status = {"train": {}, "validation": {}, "guard": {}}, f"diverged: {e}"
  finally:
    gin.clear_config()
  return result, status, time.time() - start


def _fmt(v):
  return "-" if v is None else f"{v:.4g}"


def main(argv):
  del argv
  rows = []
  for seed in (int(s) for s in FLAGS.seeds):
    result, status, seconds = _run(seed)
    tr, val, guard = result["train"], result["validation"], result.get("guard", {})
    values = list(tr.values()) + list(val.values())
    finite = bool(values) and all(math.isfinite(v) for v in values)
    rows.append(
      [
        str(seed),
        str(result.get("step", "-")),
        _fmt(tr.get("loss/generator")),
        _fmt(tr.get("loss/discriminator")),
        _fmt(tr.get("discriminator/eq5_accuracy")),
        _fmt(tr.get("discriminator/eq6_accuracy")),
        _fmt(val.get("neg_elbo")),
        "yes" if finite and status == "ok" else "NO",
        str(guard.get("skipped_steps", "-")),
        str(guard.get("rollbacks", "-")),
        f"{seconds:.0f}",
        status,
      ]
    )
  header = [
    "seed",
    "step",
    "loss/gen",
    "loss/disc",
    "acc eq5",
    "acc eq6",
    "val -ELBO",
    "finite",
    "skipped",
    "rollbacks",
    "seconds",
    "status",
  ]
  print(
    f"\nAS-VAE stability: gin/mnist.gin, {FLAGS.num_steps} steps, data {FLAGS.data_dir}, "
    f"strategy {FLAGS.strategy} (losses/accuracies: mean over the last steps before the end)\n"
  )
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for row in rows:
    print("| " + " | ".join(row) + " |")
  return 0 if all(r[7] == "yes" for r in rows) else 1


if __name__ == "__main__":
  logging.set_verbosity(logging.WARNING)
  app.run(main)
