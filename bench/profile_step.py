#!/usr/bin/env python
"""Top TF ops by self time of a training step (TF profiler), for bench/results/profile.md.

For each config of bench/train_speed.py (gin/mnist.gin + overrides, real MNIST-10k,
global batch --batch_size, strategy `default`): trace and warm up one window, then
record --steps steps with `tf.profiler.experimental` and aggregate the host-side op
events of the trace (XSpace, "TensorFlow Ops" lines): self time = an event's duration
minus the events nested in it on the same thread, summed per op type. Prints a markdown
table per config and writes --out (bench/results/profile.md by default; --quick: a tiny
run into a temporary dir).

  .venv/bin/python bench/profile_step.py [--configs=vae,asvae_planar80] [--steps=20]
"""

import collections
import glob
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from asvae_tf import data
from bench import bench_lib
from bench import train_speed

flags.DEFINE_string("mnist_dir", train_speed.MNIST_DIR, "Directory with the MNIST IDX files.")
flags.DEFINE_list("configs", ["vae", "asvae_planar80"], "Configs of bench/train_speed.py.")
flags.DEFINE_integer("steps", 20, "Profiled training steps.")
flags.DEFINE_integer("batch_size", 100, "Global batch size.")
flags.DEFINE_integer("top", 25, "Ops listed per config.")
flags.DEFINE_enum("jit", "0", ["0", "1", "flow"], "train.jit_compile: 0, 1 or flow.")
flags.DEFINE_enum(
  "dtype_policy", "float32", ["float32", "mixed_bfloat16", "mixed_float16"], "train.dtype_policy."
)
flags.DEFINE_string("out", os.path.join(ROOT, "bench", "results", "profile.md"), "Output file.")
flags.DEFINE_bool("quick", False, "2 profiled steps, output to a temporary dir.")
bench_lib.define_thread_flags()
FLAGS = flags.FLAGS


def self_times(xspace):
  """{op type: (self microseconds, count)} over the host plane's TensorFlow op lines."""
  out = collections.defaultdict(lambda: [0.0, 0])
  for plane in xspace.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if "TensorFlow Ops" not in line.name and "tf_Compute" not in line.name:
        continue
      events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
      stack = []  # [end_ps, index into totals, child ps]
      for e in events:
        while stack and stack[-1][0] <= e.offset_ps:
          _close(stack.pop(), out)
        if stack:
          stack[-1][2] += e.duration_ps
        stack.append([e.offset_ps + e.duration_ps, names.get(e.metadata_id, "?"), 0, e.duration_ps])
      while stack:
        _close(stack.pop(), out)
  return {k: tuple(v) for k, v in out.items()}


def _close(entry, out):
  _, name, child_ps, dur_ps = entry
  op_type = name.split(":")[-1] if ":" in name else name
  out[op_type][0] += max(dur_ps - child_ps, 0) / 1e6
  out[op_type][1] += 1


def profile_config(name, splits, steps, batch_size, jit, dtype_policy="float32"):
  """(rows sorted by self time, total self us, wall seconds) of `steps` steps of `name`."""
  trainer, strategy = train_speed.make_trainer(
    name, "default", train_speed.JIT_SETTINGS[jit], splits, batch_size, dtype_policy
  )
  dist = strategy.distribute_datasets_from_function(
    lambda ctx: data.train_dataset(splits.train, batch_size, 0, True, input_context=ctx)
  )
  iterator = iter(dist)
  n = tf.constant(steps, tf.int32)
  tf.nest.flatten(trainer.loop(iterator, n))[0].numpy()  # trace + warm-up
  logdir = tempfile.mkdtemp(prefix="asvae_profile_")
  tf.profiler.experimental.start(logdir)
  tf.nest.flatten(trainer.loop(iterator, n))[0].numpy()
  tf.profiler.experimental.stop()
  xspace = xplane_pb2.XSpace()
  path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
  with open(path, "rb") as f:
    xspace.ParseFromString(f.read())
  times = self_times(xspace)
  total = sum(t for t, _ in times.values())
  rows = sorted(times.items(), key=lambda kv: -kv[1][0])
  return rows, total


def render(name, rows, total, steps, top):
  lines = [
    f"### {name}: {steps} steps, {total / 1e3 / steps:.2f} ms of op self time per step",
    "",
    "| op | self ms / step | share | calls / step |",
    "| --- | --- | --- | --- |",
  ]
  for op, (us, count) in rows[:top]:
    lines.append(f"| `{op}` | {us / 1e3 / steps:.3f} | {us / total:.1%} | {count / steps:.0f} |")
  return "\n".join(lines) + "\n"


def main(_):
  if FLAGS.jit == "flow":
    flowless = [
      c for c in FLAGS.configs if "posterior.kind = 'planar'" not in train_speed.CONFIGS[c]
    ]
    if flowless:
      raise app.UsageError(f"--jit=flow needs a planar posterior; not in {flowless}")
  thread_label = bench_lib.apply_thread_flags()
  steps = 2 if FLAGS.quick else FLAGS.steps
  out = os.path.join(tempfile.mkdtemp(), "profile.md") if FLAGS.quick else FLAGS.out
  splits = data.load_splits(name="mnist", local_dir=FLAGS.mnist_dir)
  parts = [
    "# Top ops by self time (TF profiler)\n",
    f"`{' '.join(sys.argv)}`; batch {FLAGS.batch_size}, strategy default, XLA "
    f"{train_speed.JIT_LABELS[FLAGS.jit]}, {FLAGS.dtype_policy}, {thread_label}, "
    f"{os.cpu_count()} CPU cores.\n",
  ]
  for name in FLAGS.configs:
    rows, total = profile_config(
      name, splits, steps, FLAGS.batch_size, FLAGS.jit, FLAGS.dtype_policy
    )
    text = render(name, rows, total, steps, FLAGS.top)
    print(text, flush=True)
    parts.append(text)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    f.write("\n".join(parts))
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
