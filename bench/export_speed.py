#!/usr/bin/env python
"""Speed of the exported SavedModel (loaded with tf.saved_model.load) on the MNIST model.

Builds the gin/mnist.gin model (AS-VAE, planar K = 80, D = 32, 784-500-500 /
32-500-500-784 MLPs) with untrained weights (speed does not depend on them),
exports it with asvae_tf.export, loads the SavedModel and times its
signatures:

  sample at batch --batch (default 1000): images/s, median of --repeats windows of
    --iters calls each;
  sample at batch 1: per-image latency (median of --repeats windows);
  encode at batch --batch and 1 (planar flow), for reference.

  .venv/bin/python bench/export_speed.py [--repeats 7] [--iters 20] [--batch 1000]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from asvae_tf import config
from asvae_tf import export
from asvae_tf import model as model_lib
from asvae_tf import precision
from bench.bench_lib import windows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_mnist_model(export_dir=None, dtype_policy="float32"):
  """Builds the gin/mnist.gin model (untrained; its networks under `dtype_policy`, as
  serving.dtype_policy does) and exports it.

  Returns (model, export_dir, export seconds); export_dir defaults to a temporary dir.
  """
  gin.clear_config()
  config.parse([os.path.join(ROOT, "gin", "mnist.gin")])
  with precision.policy_scope(dtype_policy):
    mdl = model_lib.build_model(image_shape=(28, 28, 1))
    mdl.build_all()
  gin_text = gin.config_str()
  gin.clear_config()
  export_dir = export_dir or os.path.join(tempfile.mkdtemp(prefix="asvae_bench_"), "sm")
  t0 = time.perf_counter()
  export.export(mdl, export_dir, gin_text, step=0, dataset="mnist")
  return mdl, export_dir, time.perf_counter() - t0


def time_sample(sample, batch, iters, repeats, seed=(1, 2)):
  """Seconds per call of the loaded `sample` signature at `batch`, one per window."""
  seed, n = tf.constant(seed, tf.int32), tf.constant(batch)
  return windows(lambda: sample(num_samples=n, seed=seed)["images"].numpy(), iters, repeats)


def rate_row(name, t, batch):
  """(name, median img/s, min img/s, max img/s, median s/image) from per-call seconds t."""
  return (name, batch / np.median(t), batch / t.max(), batch / t.min(), np.median(t) / batch)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--iters", type=int, default=20)
  parser.add_argument("--batch", type=int, default=1000)
  parser.add_argument("--export_dir", default=None, help="default: a temporary dir")
  args = parser.parse_args()

  _, export_dir, export_s = export_mnist_model(args.export_dir)
  t0 = time.perf_counter()
  m = tf.saved_model.load(export_dir)
  load_s = time.perf_counter() - t0
  sample, encode = m.signatures["sample"], m.signatures["encode"]
  seed = tf.constant([1, 2], tf.int32)
  x_big = tf.constant(
    np.random.RandomState(0).uniform(size=(args.batch, 28, 28, 1)).astype(np.float32)
  )
  x_one = x_big[:1]

  rows = [
    rate_row(
      f"sample, batch {args.batch}",
      time_sample(sample, args.batch, args.iters, args.repeats),
      args.batch,
    ),
    rate_row("sample, batch 1", time_sample(sample, 1, args.iters * 5, args.repeats), 1),
    rate_row(
      f"encode (planar K=80), batch {args.batch}",
      windows(lambda: encode(images=x_big, seed=seed)["z"].numpy(), args.iters, args.repeats),
      args.batch,
    ),
    rate_row(
      "encode (planar K=80), batch 1",
      windows(lambda: encode(images=x_one, seed=seed)["z"].numpy(), args.iters * 5, args.repeats),
      1,
    ),
  ]

  print(
    f"SavedModel {export_dir}: export {export_s:.1f} s, load {load_s:.1f} s; "
    f"tf {tf.__version__}, {os.cpu_count()} CPUs; medians of {args.repeats} windows"
  )
  print("| signature | img/s (median) | min-max | s/image (median) |")
  print("| --- | --- | --- | --- |")
  for name, med, lo, hi, per in rows:
    print(f"| {name} | {med:,.0f} | {lo:,.0f}-{hi:,.0f} | {per:.2e} |")


if __name__ == "__main__":
  main()
