#!/usr/bin/env python
"""Load test of ONE loaded SavedModel: N client threads calling `sample` and `encode`.

Exports the gin/mnist.gin model (untrained weights, as bench/export_speed.py), loads it
once with tf.saved_model.load, then --threads client threads (default 8) call, for
--seconds (default 60), alternately `sample` (num_samples = --batch, default 100) and
`encode` (a batch of --batch real MNIST test images from --mnist_dir, pixels / 255),
each call with its own seed. Every answer is checked (shapes, finite values, images in
[0, 1]); an exception or a wrong answer counts as an error (there must be none). Prints
p50 / p99 latency per signature and the total throughput, and writes the table to --out
(default bench/results/serving_load.md; --quick writes nothing unless --out is given).

  .venv/bin/python bench/serving_load.py [--threads 8] [--seconds 60] [--batch 100]
  .venv/bin/python bench/serving_load.py --quick      # 2 threads, 2 s: a smoke run
"""

import argparse
import datetime
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from asvae_tf import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
OUT = os.path.join(ROOT, "bench", "results", "serving_load.md")
SIGNATURES = ("sample", "encode")


def mnist_test_images(mnist_dir):
  """The real MNIST test split (MNIST-10k protocol: t10k images 8000..9999) as float32
  [2000, 28, 28, 1] in [0, 1] (pixels / 255)."""
  splits = data.load_splits(name="mnist", local_dir=mnist_dir)
  return splits.test.astype(np.float32) / 255.0


def _answer_error(name, out, batch, image_shape):
  """'' if `out` (numpy dict) is a valid answer of `name` for `batch` inputs, else why not."""
  if name == "sample":
    want = {"images": (batch, *image_shape), "z": (batch, out["z"].shape[-1])}
  else:
    d = out["z"].shape[-1]
    want = {"z": (batch, d), "posterior_mean": (batch, d)}
  got = {k: v.shape for k, v in out.items()}
  if got != want:
    return f"shapes {got} != {want}"
  if not all(np.all(np.isfinite(v)) for v in out.values()):
    return "non-finite values"
  if "images" in out and not (out["images"].min() >= 0 and out["images"].max() <= 1):
    return "images outside [0, 1]"
  return ""


def run_load(m, images, threads, seconds, batch):
  """Calls m.signatures['sample'/'encode'] from `threads` threads for `seconds`.

  images: float32 [M, H, W, C] (M >= batch), cut into batches of `batch` (encode inputs).
  Two untimed calls of each signature first. Returns {"latencies": {name: [seconds per
  successful call]}, "errors": [(name, text)], "wall": seconds of the timed run}.
  """
  batches = [tf.constant(images[i : i + batch]) for i in range(0, len(images) - batch + 1, batch)]
  image_shape = tuple(images.shape[1:])
  num = tf.constant(batch, tf.int32)
  sigs = {name: m.signatures[name] for name in SIGNATURES}
  latencies = {name: [] for name in SIGNATURES}
  errors, lock = [], threading.Lock()
  start_line = threading.Barrier(threads + 1)

  def client(t):
    mine, bad, i = {name: [] for name in SIGNATURES}, [], 0
    start_line.wait()
    while time.perf_counter() < deadline:
      name = SIGNATURES[(i + t) % 2]
      seed = tf.constant([t, i], tf.int32)
      t0 = time.perf_counter()
      try:
        if name == "sample":
          out = sigs[name](num_samples=num, seed=seed)
        else:
          out = sigs[name](images=batches[(i // 2 + t) % len(batches)], seed=seed)
        out = {k: v.numpy() for k, v in out.items()}  # fetched: the call is complete
        mine[name].append(time.perf_counter() - t0)
        problem = _answer_error(name, out, batch, image_shape)
      except Exception as e:  # pylint: disable=broad-except  (counted, never fatal)
        problem = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
      if problem:
        bad.append((name, problem))
      i += 1
    with lock:
      for name in SIGNATURES:
        latencies[name].extend(mine[name])
      errors.extend(bad)

  for _ in range(2):  # warm-up, untimed: the first calls of a loaded function are slower
    try:  # (a failing call fails again in the timed run, where it is counted)
      sigs["sample"](num_samples=num, seed=tf.constant([0, 0]))["images"].numpy()
      sigs["encode"](images=batches[0], seed=tf.constant([0, 0]))["z"].numpy()
    except tf.errors.OpError:
      pass
  workers = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
  for w in workers:
    w.start()
  deadline = time.perf_counter() + seconds  # set before the barrier releases the clients
  t0 = time.perf_counter()
  start_line.wait()
  for w in workers:
    w.join()
  return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - t0}


def summarize(result, batch):
  """Table rows (signature, calls, errors, p50 ms, p99 ms, img/s) plus a 'total' row."""
  wall = result["wall"]
  rows, calls_total = [], 0
  for name in SIGNATURES:
    lat = np.array(result["latencies"][name])
    errs = sum(1 for n, _ in result["errors"] if n == name)
    p50, p99 = (np.percentile(lat, [50, 99]) * 1e3) if len(lat) else (np.nan, np.nan)
    rows.append((name, len(lat), errs, p50, p99, len(lat) * batch / wall))
    calls_total += len(lat)
  total_errors = len(result["errors"])
  rows.append(("total", calls_total, total_errors, np.nan, np.nan, calls_total * batch / wall))
  return rows


def table(rows, batch):
  """Markdown table of `summarize` rows."""
  lines = [
    f"| signature (batch {batch}) | calls | errors | p50 latency (ms) | p99 latency (ms) | img/s |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for name, calls, errs, p50, p99, rate in rows:
    ms = ("-", "-") if np.isnan(p50) else (f"{p50:.1f}", f"{p99:.1f}")
    lines.append(f"| {name} | {calls:,} | {errs} | {ms[0]} | {ms[1]} | {rate:,.0f} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=60.0)
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--quick", action="store_true", help="2 threads, 2 s, no results file")
  parser.add_argument("--mnist_dir", default=MNIST_DIR)
  parser.add_argument("--export_dir", default=None, help="default: a temporary dir")
  parser.add_argument("--out", default=None, help=f"results file (default {OUT}; none w/ --quick)")
  args = parser.parse_args()
  if args.quick:
    args.threads, args.seconds = 2, 2.0
  out = args.out or (None if args.quick else OUT)

  from bench import export_speed  # pylint: disable=g-import-not-at-top  (after sys.path)

  images = mnist_test_images(args.mnist_dir)
  _, export_dir, export_s = export_speed.export_mnist_model(args.export_dir)
  m = tf.saved_model.load(export_dir)
  load_before, cpu_before = os.getloadavg(), time.process_time()
  result = run_load(m, images, args.threads, args.seconds, args.batch)
  load_after, cpu = os.getloadavg(), time.process_time() - cpu_before
  rows = summarize(result, args.batch)
  cmd = ".venv/bin/python bench/serving_load.py " + " ".join(sys.argv[1:])
  header = (
    f"`{cmd.strip()}` ({datetime.date.today().isoformat()}): gin/mnist.gin model (untrained "
    f"weights, planar K = 80, D = 32), ONE SavedModel loaded with tf.saved_model.load "
    f"(export {export_s:.1f} s), {args.threads} client threads for {result['wall']:.1f} s, "
    f"each alternating `sample` (num_samples = {args.batch}) and `encode` ({args.batch} real "
    f"MNIST test images); latency = call + .numpy() of every output. tf {tf.__version__}, "
    f"{os.cpu_count()} CPUs; this process used {cpu / result['wall']:.2f} CPUs during the "
    f"run (the rest: other processes on a shared machine); 1-min load average "
    f"{load_before[0]:.2f} before / {load_after[0]:.2f} after (this run included)."
  )
  text = header + "\n\n" + table(rows, args.batch) + "\n"
  print(text)
  for name, problem in result["errors"][:5]:
    print(f"error: {name}: {problem}")
  if out:
    with open(out, "w") as f:
      f.write("# Serving load (bench/serving_load.py)\n\n" + text)
    print(f"wrote {out}")
  return 1 if result["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())
