"""Speed of the flow posterior (asvae_tf.flows.Posterior) on CPU.

Measures, for one posterior configuration (default: the paper's MNIST setting,
kind=planar, K=80 layers, D=32, batch 100, encoder features F=500, float32):
  (a) sample_and_log_prob(features, seed)                        -- encoder branch
  (b) log_prob(features, z) at an arbitrary z + its gradient
      w.r.t. every Posterior weight                              -- decoder branch
each inside tf.function, without and with XLA (jit_compile=True).

Reported per variant: trace time (get_concrete_function), first-call time
(includes the XLA compile), then the per-call time over --repeats timed windows
of --iters calls each after --warmup calls: median [min, max] in ms.

  python bench/flows_speed.py                       # defaults
  python bench/flows_speed.py --layers_per_iteration 4,8 --repeats 9

Run it on an otherwise idle machine; the numbers are per call, wall clock.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from asvae_tf import flows  # noqa: E402


def _time_windows(fn, args, warmup, iters, repeats):
  for _ in range(warmup):
    out = fn(*args)
  tf.nest.map_structure(lambda t: t.numpy(), out)
  per_call = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(iters):
      out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)  # sync
    per_call.append((time.perf_counter() - t0) / iters * 1e3)
  return per_call


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--kind", default="planar", choices=flows.POSTERIOR_KINDS)
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--num_flows", type=int, default=80)
  parser.add_argument("--latent_dim", type=int, default=32)
  parser.add_argument("--features", type=int, default=500)
  parser.add_argument(
    "--hidden_units",
    type=int,
    default=64,
    help="Posterior.hidden_units; 0 = direct (full-rank) planar head",
  )
  parser.add_argument(
    "--newton_iterations", type=int, default=0, help="0 = the dtype default (8 float32, 10 float64)"
  )
  parser.add_argument(
    "--layers_per_iteration",
    default="8",
    help="comma-separated values to compare (planar while-loop chunking)",
  )
  parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
  parser.add_argument("--repeats", type=int, default=7, help="timed windows")
  parser.add_argument("--iters", type=int, default=20, help="calls per window")
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args()

  unrolls = [int(v) for v in args.layers_per_iteration.split(",")]
  dtype = tf.as_dtype(args.dtype)
  features = tf.random.stateless_normal([args.batch, args.features], [1, 2], dtype=dtype)
  z_any = tf.random.stateless_normal([args.batch, args.latent_dim], [3, 4], dtype=dtype)
  seed = tf.constant([5, 6], tf.int32)

  print(
    f"kind={args.kind} K={args.num_flows} D={args.latent_dim} batch={args.batch} "
    f"F={args.features} hidden_units={args.hidden_units or None} "
    f"newton_iterations={args.newton_iterations or 'default'} dtype={args.dtype} "
    f"repeats={args.repeats} x {args.iters} calls; TF {tf.__version__}"
  )
  header = (
    f"{'op':<26}{'lpi':>5}{'xla':>7}{'trace s':>9}{'1st call s':>11}"
    f"{'median ms':>11}{'min ms':>9}{'max ms':>9}"
  )
  print(header)
  print("-" * len(header))
  for unroll in unrolls:
    post = flows.Posterior(
      args.latent_dim,
      kind=args.kind,
      num_flows=args.num_flows,
      hidden_units=args.hidden_units or None,
      newton_iterations=args.newton_iterations or None,
      layers_per_iteration=unroll,
      dtype=args.dtype,
    )
    post(features)
    variables = post.trainable_variables

    def sample(h, s):
      return post.sample_and_log_prob(h, s)

    def log_prob_and_grad(h, z):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(post.log_prob(h, z))
      return loss, tape.gradient(loss, variables)

    for name, fn, fargs in [
      ("sample_and_log_prob", sample, (features, seed)),
      ("log_prob + grad", log_prob_and_grad, (features, z_any)),
    ]:
      for xla in (False, True):
        tfn = tf.function(fn, jit_compile=xla)
        t0 = time.perf_counter()
        tfn.get_concrete_function(*fargs)
        trace = time.perf_counter() - t0
        t0 = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), tfn(*fargs))
        first = time.perf_counter() - t0
        ts = _time_windows(tfn, fargs, args.warmup, args.iters, args.repeats)
        print(
          f"{name:<26}{unroll:>5}{str(xla):>7}{trace:>9.2f}{first:>11.2f}"
          f"{np.median(ts):>11.2f}{min(ts):>9.2f}{max(ts):>9.2f}",
          flush=True,
        )


if __name__ == "__main__":
  main()
