"""The shape-aware matmul limit of a training step or a `sample` call (issue 15 item 1).

A 1024^3 matmul is the wrong yardstick at batch 100: on this CPU a 100x784x500 float32
matmul runs near 108 GFLOP/s against 183 for 1000x500x500. So each throughput row is also
compared with the time of EXACTLY its own matmuls: the Dense passes of `step_passes`
(bench/throughput.py), each layer (in, out) at the per-replica batch b giving
  forward            [b, in]  x [in, out]
  input gradient     [b, out] x [out, in]     (where the pass needs it)
  weight gradient    [in, b]  x [b, out]      (where the pass needs it)
with the multiplicities of the step (discriminator passes x discriminator_steps), all in
one tf.function per dtype, timed in the same run as the row. limit img/s = images of the
step / that time; a row's "% of limit" = its img/s / limit img/s.

`matmul_shapes(passes, batch, disc_steps)` lists the (m, k, n) products (exactly the
FLOPs of `throughput.passes_flops`: 2*m*k*n each); `time_matmuls(shapes, dtype, ...)`
times them.
"""

import collections
import statistics
import time

import tensorflow as tf


def chain_matmuls(layers, batch, backward):
  """(m, k, n) products of a Dense chain [(in, out), ...] at batch `batch`.

  backward as in throughput.dense_flops: "none", "input" (input gradients of every layer),
  "params" (weight gradients of every layer, input gradients of all but the first),
  "full" (both, every layer).
  """
  out = []
  for idx, (i, o) in enumerate(layers):
    out.append((batch, i, o))  # forward
    if backward in ("input", "full") or (backward == "params" and idx > 0):
      out.append((batch, o, i))  # input gradient
    if backward in ("params", "full"):
      out.append((i, batch, o))  # weight gradient
  return out


def matmul_shapes(passes, batch, disc_steps=1):
  """Counter {(m, k, n): count} of one step's matmuls from throughput.step_passes output."""
  counts = collections.Counter()
  for update, _, layers, backward in passes:
    repeat = disc_steps if update == "discriminator" else 1
    for shape in chain_matmuls(layers, batch, backward):
      counts[shape] += repeat
  return counts


def flops(counts):
  """FLOPs of a matmul Counter (2*m*k*n per product)."""
  return sum(2 * m * k * n * c for (m, k, n), c in counts.items())


def time_matmuls(counts, dtype=tf.float32, iters=20, windows=7):
  """Median seconds of one call running every matmul of `counts` in `dtype`.

  The operands are distinct random tensors made once (not timed); every product is a
  returned output, so none is pruned. Returns (median, min, max) seconds per call.
  """
  operands = []
  for (m, k, n), c in sorted(counts.items()):
    for _ in range(c):
      a = tf.cast(tf.random.normal([m, k]), dtype)
      b = tf.cast(tf.random.normal([k, n]), dtype)
      operands.append((a, b))

  @tf.function
  def run(ops):
    return [tf.matmul(a, b) for a, b in ops]

  def call():
    outs = run(operands)
    outs[-1].numpy()  # one tf.function call: fetching one output waits for all

  call()
  call()
  times = []
  for _ in range(windows):
    t0 = time.perf_counter()
    for _ in range(iters):
      call()
    times.append((time.perf_counter() - t0) / iters)
  return statistics.median(times), min(times), max(times)
