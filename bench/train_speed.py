#!/usr/bin/env python
"""Training-step throughput of the MNIST models on real MNIST (issue: training system).

Prints a table of images/second (median of --windows timed windows of --steps steps each,
after a warm-up window) for the VAE baseline, AS-VAE with a Gaussian posterior and AS-VAE
with the K = 80 planar posterior, at batch 100 with the MNIST MLPs of gin/mnist.gin, for
the chosen strategies and XLA settings. Also prints this machine's float32 matmul rate.

  .venv/bin/python bench/train_speed.py [--strategies=default,mirrored] [--jit=0,1,flow]
      [--interleave]   # build all rows first, then time their windows round-robin
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import gin

from asvae_tf import config
from asvae_tf import data
from asvae_tf import model as model_lib
from asvae_tf import precision
from asvae_tf import train
from bench import bench_lib

FLAGS = flags.FLAGS
MNIST_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")

# The AS-VAE rows time the paper's joint estimators (the step bench/throughput.py's analytic
# FLOP count models); "asvae_planar80_explicit" is gin/mnist.gin as shipped (explicit f1
# and f2, README "Ratio estimators"), timed only.
JOINT = [
  "model.ratio_estimator = 'joint'",
  "model.f2_decoder_gradient = 'exact'",
  "model.generator_pass_dropout = True",
  "model.f2_decoder_weight = 1.0",
]
CONFIGS = {
  "vae": ["model.objective = 'vae'", "posterior.kind = 'gaussian'", "posterior.num_flows = 0"],
  "asvae_gaussian": ["posterior.kind = 'gaussian'", "posterior.num_flows = 0"] + JOINT,
  "asvae_planar80": ["posterior.kind = 'planar'", "posterior.num_flows = 80"] + JOINT,
  "asvae_planar80_explicit": ["posterior.kind = 'planar'", "posterior.num_flows = 80"],
  # gin/mnist.gin as shipped with train.update_scheme = 'shared' (one forward pass).
  "asvae_planar80_explicit_shared": ["posterior.kind = 'planar'", "posterior.num_flows = 80",
                                     "train.update_scheme = 'shared'"],
  # The same two without f1's residual (model.f1_residual_inputs = 'none': theta and phi
  # train bit-identically, eq. (5) trains nothing).
  "asvae_planar80_explicit_nor1": ["posterior.kind = 'planar'", "posterior.num_flows = 80",
                                   "model.f1_residual_inputs = 'none'"],
  "asvae_planar80_explicit_shared_nor1": ["posterior.kind = 'planar'", "posterior.num_flows = 80",
                                          "train.update_scheme = 'shared'",
                                          "model.f1_residual_inputs = 'none'"],
}  # fmt: skip
TARGETS = {
  "vae": 25000,
  "asvae_gaussian": 7000,
  "asvae_planar80": 3000,
  "asvae_planar80_explicit": 3000,
  "asvae_planar80_explicit_shared": 3000,
  "asvae_planar80_explicit_nor1": 3000,
  "asvae_planar80_explicit_shared_nor1": 3000,
}


JIT_SETTINGS = {"0": False, "1": True, "flow": "flow"}  # --jit -> train.jit_compile
JIT_LABELS = {"0": "off", "1": "on", "flow": "flow"}


def define_flags():
  """This script's flags (defined when run as a script, so other scripts can import it)."""
  flags.DEFINE_string("mnist_dir", MNIST_DIR, "Directory with the MNIST IDX files.")
  flags.DEFINE_list("strategies", ["default", "mirrored"], "Strategies to time.")
  flags.DEFINE_list("jit", ["0", "1"], "XLA settings to time: 0, 1 or flow (train.jit_compile).")
  flags.DEFINE_list("configs", ["vae", "asvae_gaussian", "asvae_planar80"], "Models to time.")
  flags.DEFINE_integer("steps", 50, "Steps per timed window.")
  flags.DEFINE_integer("windows", 5, "Timed windows (median reported).")
  flags.DEFINE_integer("batch_size", 100, "Global batch size.")
  flags.DEFINE_list("dtype_policies", ["float32"], "train.dtype_policy values to time.")
  bench_lib.define_thread_flags()
  flags.DEFINE_bool(
    "interleave", False, "Build and warm up every row first, then time windows round-robin."
  )


def make_trainer(name, strategy_name, jit, splits, batch_size=100, dtype_policy="float32"):
  """(Trainer, strategy) of model `name` of CONFIGS (gin/mnist.gin + its overrides), its
  networks built under `dtype_policy` (as train.dtype_policy does).

  The gin config of `name` stays parsed (the trainer's optimizers were made from it).
  """
  gin.clear_config()
  config.parse(
    [os.path.join(ROOT, "gin", "mnist.gin")], CONFIGS[name] + [f"train.batch_size = {batch_size}"]
  )
  try:
    scheme = gin.query_parameter("train.update_scheme")
  except ValueError:  # not bound: train's default
    scheme = "alternating"
  strategy = train.make_strategy(strategy_name)
  with strategy.scope(), precision.policy_scope(dtype_policy):
    mdl = model_lib.build_model(image_shape=splits.image_shape)
    mdl.build_all()
  trainer = train.Trainer(strategy, mdl, batch_size, 0, 1, jit, update_scheme=scheme)
  return trainer, strategy


def _train_iterator(strategy, splits, batch_size):
  dist = strategy.distribute_datasets_from_function(
    lambda ctx: data.train_dataset(splits.train, batch_size, 0, True, input_context=ctx)
  )
  return iter(dist)


def time_trainer(trainer, strategy, splits, batch_size=100, steps=50, windows=5):
  """Training img/s on splits.train: (median, min, max, trace + warm-up seconds)."""
  iterator = _train_iterator(strategy, splits, batch_size)
  return bench_lib.time_train_loop(trainer, iterator, steps, windows, batch_size)


def time_rows_interleaved(rows, splits, batch_size, steps, windows):
  """Like time_config for each (name, strategy, jit, policy) row, but every trainer is
  built and warmed up first and the timed windows then go round-robin over the rows."""
  runs, warms = [], []
  for name, strategy_name, jit, policy in rows:
    trainer, strategy = make_trainer(name, strategy_name, jit, splits, batch_size, policy)
    run, warm = bench_lib.warm_train_loop(
      trainer, _train_iterator(strategy, splits, batch_size), steps
    )  # traced now, while this row's gin config is the parsed one
    runs.append(run)
    warms.append(warm)
  rates = bench_lib.interleaved_rates(runs, steps, windows, batch_size)
  return [r + (w,) for r, w in zip(rates, warms)]


def time_config(name, strategy_name, jit, splits, batch_size=100, steps=50, windows=5,
                dtype_policy="float32"):  # fmt: skip
  """(median, min, max img/s, trace + warm-up s) of one model / strategy / XLA / policy."""
  trainer, strategy = make_trainer(name, strategy_name, jit, splits, batch_size, dtype_policy)
  return time_trainer(trainer, strategy, splits, batch_size, steps, windows)


def main(_):
  thread_label = bench_lib.apply_thread_flags()
  splits = data.load_splits(name="mnist", local_dir=FLAGS.mnist_dir)
  print(f"data: {splits.note}")
  print(
    f"machine: {os.cpu_count()} CPU cores; float32 matmul 1024^3: "
    f"{bench_lib.matmul_gflops():.0f} GFLOP/s (median of 5)"
  )
  print(
    f"{thread_label}; batch {FLAGS.batch_size}; img/s = median over {FLAGS.windows} windows of "
    f"{FLAGS.steps} steps (min-max shows the noise)\n"
  )
  header = (
    f"| {'model':<30} | {'dtype policy':<14} | {'strategy':<9} | {'XLA':<4} | {'img/s (median)':>14} | "
    f"{'min-max':>15} | {'target':>7} | {'trace+warm-up s':>15} |"
  )
  print(header)
  print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
  rows = [(n, s, j, p) for n in FLAGS.configs for s in FLAGS.strategies for j in FLAGS.jit
          for p in FLAGS.dtype_policies]  # fmt: skip
  timed = [r for r in rows if r[2] != "flow" or "posterior.kind = 'planar'" in CONFIGS[r[0]]]
  if FLAGS.interleave:  # every row built and warmed up first, then timed round-robin
    results = time_rows_interleaved(
      [(n, s, JIT_SETTINGS[j], p) for n, s, j, p in timed],
      splits, FLAGS.batch_size, FLAGS.steps, FLAGS.windows,
    )  # fmt: skip
    results = dict(zip(timed, results))
  else:  # timed one after the other, each printed when done
    results = {}
  for row in rows:
    name, strategy_name, jit, policy = row
    if row not in timed:
      print(f"| {name:<30} | {policy:<14} | {strategy_name:<9} | flow | n/a (no planar flow) |")
      continue
    if row not in results:
      results[row] = time_config(
        name, strategy_name, JIT_SETTINGS[jit], splits, FLAGS.batch_size, FLAGS.steps,
        FLAGS.windows, policy,
      )  # fmt: skip
    med, lo, hi, warm = results[row]
    print(
      f"| {name:<30} | {policy:<14} | {strategy_name:<9} | {JIT_LABELS[jit]:<4} | "
      f"{med:>14,.0f} | {f'{lo:,.0f}-{hi:,.0f}':>15} | {TARGETS[name]:>7,} | "
      f"{warm:>15.1f} |",
      flush=True,
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
