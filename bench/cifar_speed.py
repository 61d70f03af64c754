#!/usr/bin/env python
"""Speed of the CIFAR-10 AS-VAE (gin/cifar10.gin): training step and SavedModel `sample`.

Prints one table of images/second on this machine:
  * the training step of gin/cifar10.gin (AS-VAE, conv encoder / decoder / joint
    discriminators, Gaussian posterior and decoder, D = 128) at batch --batch_size
    (default 64) through `train.Trainer.loop`, for each --strategies x --jit;
    median of --repeats windows of --steps steps after a warm-up window;
  * `sample` of the exported SavedModel (untrained weights: speed does not depend on
    them; loaded with tf.saved_model.load, outputs fetched with .numpy()) at batch
    --sample_batch and batch 1; median of --repeats windows of --iters calls.

Data: synthetic 32x32x3 images by default (speed does not depend on their content), or
--cifar_dir (CIFAR-10 python batches / .npz, as dataset.local_dir).

  .venv/bin/python bench/cifar_speed.py [--repeats 5] [--steps 20] [--iters 20]
      [--strategies default,mirrored] [--jit 0,1] [--batch_size 64] [--sample_batch 1000]
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import gin  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from asvae_tf import config
from asvae_tf import data
from asvae_tf import export
from asvae_tf import model as model_lib
from asvae_tf import train
from bench import bench_lib

GIN_FILE = os.path.join(ROOT, "gin", "cifar10.gin")


def _parse(args, extra=()):
  gin.clear_config()
  bindings = [f"train.batch_size = {args.batch_size}"] + list(args.gin_param) + list(extra)
  if args.cifar_dir:
    bindings.append(f"dataset.local_dir = {args.cifar_dir!r}")
  else:
    bindings += [
      "dataset.name = 'synthetic'",
      f"dataset.synthetic_num_examples = {max(8 * args.batch_size, 64)}",
    ]
  config.parse([GIN_FILE], bindings)


def time_training(args, splits, strategy_name, jit):
  """(median, min, max img/s, trace + warm-up s) of the training step."""
  _parse(args)
  try:
    strategy = train.make_strategy(strategy_name)
    with strategy.scope():
      mdl = model_lib.build_model(image_shape=splits.image_shape)
      mdl.build_all()
    trainer = train.Trainer(strategy, mdl, args.batch_size, 0, 1, jit)
  finally:
    gin.clear_config()
  dist = strategy.distribute_datasets_from_function(
    lambda ctx: data.train_dataset(
      splits.train, args.batch_size, 0, splits.binary, input_context=ctx
    )
  )
  return bench_lib.time_train_loop(trainer, iter(dist), args.steps, args.repeats, args.batch_size)


def time_sample(args, image_shape):
  """Rows (name, median, min, max img/s, s/image) of the SavedModel `sample` signature."""
  _parse(args)
  try:
    mdl = model_lib.build_model(image_shape=image_shape)
    gin_text = gin.config_str()
  finally:
    gin.clear_config()
  mdl.build_all()
  export_dir = os.path.join(tempfile.mkdtemp(prefix="asvae_cifar_bench_"), "sm")
  export.export(mdl, export_dir, gin_text, step=0, dataset="cifar10")
  sample = tf.saved_model.load(export_dir).signatures["sample"]
  seed = tf.constant([1, 2], tf.int32)
  rows = []
  for batch, iters in ((args.sample_batch, args.iters), (1, args.iters * 5)):
    n = tf.constant(batch)
    t = bench_lib.windows(
      lambda: sample(num_samples=n, seed=seed)["images"].numpy(), iters, args.repeats
    )
    rows.append(
      (
        f"sample (SavedModel), batch {batch}",
        batch / np.median(t),
        batch / t.max(),
        batch / t.min(),
        np.median(t) / batch,
      )
    )
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5, help="timed windows (median)")
  parser.add_argument("--steps", type=int, default=20, help="training steps per window")
  parser.add_argument("--iters", type=int, default=20, help="sample calls per window")
  parser.add_argument("--batch_size", type=int, default=64, help="global training batch")
  parser.add_argument("--sample_batch", type=int, default=1000)
  parser.add_argument("--strategies", default="default", help="comma-separated")
  parser.add_argument("--jit", default="0", help="comma-separated XLA settings, 0/1")
  parser.add_argument(
    "--cifar_dir", default=None, help="CIFAR-10 python batches or .npz (default: synthetic images)"
  )
  parser.add_argument(
    "--gin_param", action="append", default=[], help="extra gin bindings (repeatable)"
  )
  args = parser.parse_args()

  _parse(args)
  try:
    splits = data.load_splits()
  finally:
    gin.clear_config()
  print(f"gin/cifar10.gin; data: {splits.note}")
  print(
    f"machine: {os.cpu_count()} CPU cores; tf {tf.__version__}; float32 matmul 1024^3: "
    f"{bench_lib.matmul_gflops():.0f} GFLOP/s; medians of {args.repeats} windows "
    f"({args.steps} training steps / {args.iters} sample calls each)\n"
  )
  header = (
    "| what | strategy | XLA | img/s (median) | min-max | s/image (median) | trace+warm-up s |"
  )
  print(header)
  print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
  for strategy_name in args.strategies.split(","):
    for jit in args.jit.split(","):
      med, lo, hi, warm = time_training(args, splits, strategy_name, jit == "1")
      print(
        f"| AS-VAE training step, batch {args.batch_size} | {strategy_name} | "
        f"{'on' if jit == '1' else 'off'} | {med:,.0f} | {lo:,.0f}-{hi:,.0f} | "
        f"{1 / med:.2e} | {warm:.1f} |",
        flush=True,
      )
  t0 = time.perf_counter()
  rows = time_sample(args, splits.image_shape)
  warm = time.perf_counter() - t0
  for i, (name, med, lo, hi, per) in enumerate(rows):
    note = f"{warm:.1f} (build, export, load and all sample windows)" if i == 0 else "-"
    print(
      f"| {name} | - | off | {med:,.0f} | {lo:,.0f}-{hi:,.0f} | {per:.2e} | {note} |", flush=True
    )


if __name__ == "__main__":
  main()
