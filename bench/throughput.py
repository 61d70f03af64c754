#!/usr/bin/env python
"""Training and `sample` throughput on real MNIST; achieved FLOP/s vs this machine's matmul rate.

One run measures, on the gin/mnist.gin MLPs (784-500-500 encoder, 32-500-500-784 decoder,
500-unit joint discriminators), real MNIST (MNIST-10k split), global batch --batch_size:

  * training img/s of the VAE, AS-VAE (Gaussian posterior) and AS-VAE (K = 80 planar)
    steps (one discriminator + one generator update per step): median of --windows timed
    windows of --steps steps after an untimed trace + warm-up window
    (bench/train_speed.py's make_trainer / time_trainer);
  * `sample` img/s of the exported SavedModel, loaded with tf.saved_model.load, at batch
    --sample_batch (bench/export_speed.py's export_mnist_model / time_sample);
  * the float32 1024^3 matmul rate (bench_lib.matmul_gflops), before and after the other
    timings; the reference rate is the mean of the two medians.

FLOPs per image (see `step_passes`): analytic, from the Dense kernels' shapes and how
often each network runs per step (forward 2*in*out, weight gradient 2*in*out, input
gradient 2*in*out per example and layer); cross-checked with the TF profiler
(tf.compat.v1.profiler float_operation) on the traced graph of the per-replica gradient
functions (Trainer._make_grad_fn), restricted to the ops the outputs depend on (the
whole traced graph also holds e.g. the unused discriminator weight gradients of the
generator update, pruned at run time). Counted: Dense matmuls (the profiler also counts
the few elementwise ops it has FLOP rules for, < 1% here). Not counted: bias adds,
activations, losses, dropout, the Adam updates, and the planar flow's O(K*D) vector ops
(inside tf.while_loop, whose bodies the profiler does not see either).

  .venv/bin/python bench/throughput.py [--windows=5] [--steps=50] [--configs=vae,...]
  .venv/bin/python bench/throughput.py --quick     # tiny windows: checks it runs

Writes bench/results/throughput.md and .json (--quick: a temporary dir unless --out).
"""

import collections
import datetime
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import tensorflow as tf

from asvae_tf import data
from asvae_tf.nets import folded
from bench import bench_lib
from bench import export_speed
from bench import matmul_limit
from bench import train_speed

flags.DEFINE_string("mnist_dir", train_speed.MNIST_DIR, "Directory with the MNIST IDX files.")
flags.DEFINE_list(
  "configs",
  ["vae", "asvae_gaussian", "asvae_planar80"],
  "Training steps to time (the analytic FLOP count models the joint estimators).",
)
flags.DEFINE_integer("windows", 5, "Timed windows per row (median reported).")
flags.DEFINE_integer("steps", 50, "Training steps per timed window.")
flags.DEFINE_integer("batch_size", 100, "Global training batch size.")
flags.DEFINE_string("strategy", "default", "Distribution strategy of the training steps.")
flags.DEFINE_bool("jit", False, "XLA-compile the gradient functions (Trainer jit_compile).")
flags.DEFINE_integer("sample_batch", 1000, "Batch of the `sample` signature.")
flags.DEFINE_integer("sample_iters", 20, "`sample` calls per timed window.")
flags.DEFINE_integer("matmul_reps", 50, "1024^3 matmuls per matmul-rate window.")
flags.DEFINE_list(
  "limit_dtypes", ["float32", "bfloat16"], "Dtypes of the shape-aware matmul limit."
)
flags.DEFINE_list(
  "dtype_policies", ["float32", "mixed_bfloat16"], "train.dtype_policy / serving.dtype_policy rows."
)
flags.DEFINE_bool(
  "quick",
  False,
  "Tiny windows (2 windows of 2 steps): checks that it runs; timings are meaningless.",
)
flags.DEFINE_string(
  "out",
  None,
  "Output path prefix (.md and .json are appended); default "
  "bench/results/throughput, or a temporary dir with --quick.",
)
bench_lib.define_thread_flags()
FLAGS = flags.FLAGS

SAMPLE_TARGET = 200000  # img/s, `sample` at batch 1000 (issue 15; the export issue asked 150,000)
VAE_FLOP_FRACTION_TARGET = 0.60  # VAE step: achieved FLOP/s >= 60% of the matmul rate
LABELS = {
  "vae": "VAE step (Gaussian posterior)",
  "asvae_gaussian": "AS-VAE step, Gaussian",
  "asvae_planar80": "AS-VAE step, planar K=80",
}

# ---- FLOP counting ------------------------------------------------------------

# Backward modes of a chain of Dense layers, per example, for a layer with in*out MACs:
#   "none": forward only (2*in*out);  "input": + input gradient (2*in*out), no weight grad;
#   "params": + weight gradient of every layer and input gradient of all but the first
#             (the chain's input needs no gradient);  "full": + both, every layer.
BACKWARD_MODES = ("none", "input", "params", "full")


def dense_flops(shapes, backward="none"):
  """FLOPs per example of a chain of Dense layers, shapes [(in, out), ...] in order."""
  if backward not in BACKWARD_MODES:
    raise ValueError(f"backward must be one of {BACKWARD_MODES}, got {backward!r}")
  macs = [int(i) * int(o) for i, o in shapes]
  if not macs:
    return 0
  extra = {
    "none": 0,
    "input": 2 * sum(macs),
    "full": 4 * sum(macs),
    "params": 4 * sum(macs) - 2 * macs[0],
  }[backward]
  return 2 * sum(macs) + extra


def passes_flops(passes, disc_steps=1):
  """FLOPs per image of one training step from `step_passes` output.

  Returns {"generator": g, "discriminator": d, "step": g + disc_steps * d}.
  """
  out = {"generator": 0, "discriminator": 0}
  for update, _, shapes, backward in passes:
    out[update] += dense_flops(shapes, backward)
  out["step"] = out["generator"] + disc_steps * out["discriminator"]
  return out


def _kernels(*layers):
  return [tuple(int(s) for s in layer.kernel.shape) for layer in layers]


def _stack(stack):
  """Kernel shapes of a networks._DenseStack."""
  return _kernels(*(getattr(stack, f"dense_{i}") for i in range(stack.num_layers)))


def network_shapes(mdl):
  """Dense kernel shapes of an MLP model: {"encoder", "heads", "decoder", "x_path", ...}."""
  post = mdl.posterior
  heads = _kernels(post.loc_head, post.log_scale_head)
  if post.has_flow:
    if post.kind != "planar":
      raise NotImplementedError(f"analytic FLOPs: posterior kind {post.kind!r}")
    heads += _kernels(post.planar_bottleneck) if post.hidden_units else []
    heads += _kernels(post.planar_head)
  out = {
    "encoder": _stack(mdl.encoder.body),
    "heads": heads,
    "decoder": _stack(mdl.decoder.body) + _kernels(mdl.decoder.out),
  }
  if mdl.has_discriminators:
    f = mdl.f1
    out.update(
      x_path=_stack(f.x_path), z_path=_stack(f.z_path), joint=_stack(f.joint) + _kernels(f.logit)
    )
  return out


def step_passes(objective, has_discriminators, shapes):
  """The Dense passes of one training step, mirroring model.ASVAE.terms.

  Args:
    objective: a losses.Objective (mdl.objective).
    has_discriminators: mdl.has_discriminators.
    shapes: `network_shapes` output.
  Returns:
    [(update, what, kernel shapes, backward mode)], update "generator"/"discriminator".
    The posterior heads (loc, log-scale and the planar parameter head) are separate
    layers fed by the encoder features; as each needs the same backward mode, they are
    listed as one chain whose first layer also gets its input gradient ("full").
  """
  enc, heads, dec = shapes["encoder"], shapes["heads"], shapes["decoder"]
  g, d = "generator", "discriminator"
  out = []
  # Generator update: only theta/phi get gradients; discriminator kernels are constants.
  if objective.needs_encoder_branch:
    out += [
      (g, "encoder(x)", enc, "params"),
      (g, "posterior heads(x)", heads, "full"),
      (g, "decoder(z_q)", dec, "full"),
    ]
  gen_prior_branch = has_discriminators and objective.needs_prior_log_q
  if gen_prior_branch:  # x' = decoder(z_p), z_p ~ p(z); log q(z_p | x')
    out += [
      (g, "decoder(z_p)", dec, "params"),
      (g, "encoder(x')", enc, "full"),
      (g, "posterior heads(x')", heads, "full"),
    ]
  if "eq5" in objective.discriminators and objective.needs_encoder_branch:  # f1(x, z_q)
    out += [
      (g, "f1(x, z_q) x path", shapes["x_path"], "none"),
      (g, "f1(x, z_q) z path", shapes["z_path"], "input"),
      (g, "f1(x, z_q) joint+logit", shapes["joint"], "input"),
    ]
  if "eq6" in objective.discriminators and gen_prior_branch:  # f2(x', z_p)
    out += [
      (g, "f2(x', z_p) x path", shapes["x_path"], "input"),
      (g, "f2(x', z_p) z path", shapes["z_path"], "none"),
      (g, "f2(x', z_p) joint+logit", shapes["joint"], "input"),
    ]
  if not has_discriminators:
    return out
  # Discriminator update: generator outputs are stop-gradient'ed.
  out += [
    (d, "encoder(x)", enc, "none"),
    (d, "posterior heads(x)", heads, "none"),
    (d, "decoder(z_p)", dec, "none"),
  ]
  for eq, f in (("eq5", "f1"), ("eq6", "f2")):
    if eq in objective.discriminators:
      for pair in ("real", "fake"):
        out += [
          (d, f"{f} {pair} x path", shapes["x_path"], "params"),
          (d, f"{f} {pair} z path", shapes["z_path"], "params"),
          (d, f"{f} {pair} joint+logit", shapes["joint"], "full"),
        ]
  return out


def graph_flops(concrete_fn):
  """TF-profiler FLOPs of a traced function.

  Returns (FLOPs of the ops its outputs depend on -- what the runtime executes after
  pruning --, FLOPs of the whole traced graph, While ops among the former). Ops in
  While bodies (separate functions) are not counted.
  """
  graph_def = concrete_fn.graph.as_graph_def(add_shapes=True)
  outputs = [t.op.name for t in concrete_fn.outputs]
  outputs += [op.name for op in concrete_fn.graph.control_outputs]
  pruned_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, outputs)
  pruned = tf.Graph()
  with pruned.as_default():
    tf.graph_util.import_graph_def(pruned_def, name="")
  builder = tf.compat.v1.profiler.ProfileOptionBuilder
  options = builder(builder.float_operation()).with_empty_output().build()
  counts = [
    tf.compat.v1.profiler.profile(graph=g, cmd="op", options=options).total_float_ops
    for g in (pruned, concrete_fn.graph)
  ]
  loops = sum(op.type in ("While", "StatelessWhile") for op in pruned.get_operations())
  return counts[0], counts[1], loops


def profiled_step_flops(trainer, per_replica_batch, image_shape):
  """Profiler FLOPs per image of one step: {"generator", "discriminator", "step", ...}."""
  out = {"generator": 0, "discriminator": 0, "unpruned": 0, "while_loops": 0}
  repeats = {"generator": 1, "discriminator": trainer.disc_steps}
  for mode, times in repeats.items():
    if not times:
      continue
    grad_fn = trainer._make_grad_fn(mode)  # pylint: disable=protected-access
    # (x, seed, then float32 scalars such as the adversarial weight).
    scalars = len(inspect.signature(grad_fn).parameters) - 2
    specs = (
      tf.TensorSpec([per_replica_batch, *image_shape], tf.float32),
      tf.TensorSpec([2], tf.int32),
    ) + (tf.TensorSpec([], tf.float32),) * scalars
    fn = tf.function(grad_fn)
    pruned, whole, loops = graph_flops(fn.get_concrete_function(*specs))
    out[mode] = pruned / per_replica_batch
    out["unpruned"] += times * whole / per_replica_batch
    out["while_loops"] += times * loops
  out["step"] = out["generator"] + trainer.disc_steps * out["discriminator"]
  return out


# ---- reporting ------------------------------------------------------------------


def spread(median, lo, hi):
  """Relative spread (max - min) / median of the timed windows, in percent."""
  return 100.0 * (hi - lo) / median


def machine_facts():
  cpu = platform.processor() or "?"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
    "cpu_model": cpu,
    "cpu_cores": os.cpu_count(),
    "tensorflow": tf.__version__,
    "python": platform.python_version(),
    "platform": platform.platform(),
  }


def render_table(rows, matmul_ref):
  header = [
    "row",
    "img/s (median)",
    "min-max",
    "spread %",
    "MFLOP/image",
    "achieved GFLOP/s",
    "% of 1024^3 f32 matmul",
    *[f"{d} shape-aware limit img/s" for d in FLAGS.limit_dtypes],
    "% of its dtype's limit",
    "img/s target",
    "met?",
    "FLOP/s target",
    "met?",
  ]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
  for r in rows:
    frac_target = r.get("flop_fraction_target")
    cells = [
      r["label"],
      f"{r['median']:,.0f}",
      f"{r['min']:,.0f}-{r['max']:,.0f}",
      f"{r['spread_pct']:.1f}",
      f"{r['mflop_per_image']:.2f}",
      f"{r['achieved_gflops']:.1f}",
      f"{100 * r['matmul_fraction']:.0f}%",
      *[f"{r['limits'][d]['img_s']:,.0f}" for d in FLAGS.limit_dtypes],
      f"{100 * r['median'] / r['limits'][limit_dtype(r['dtype_policy'])]['img_s']:.0f}%",
      f"{r['target']:,}",
      "yes" if r["median"] >= r["target"] else "NO",
      f">= {100 * frac_target:.0f}%" if frac_target else "-",
      ("yes" if r["matmul_fraction"] >= frac_target else "NO") if frac_target else "-",
    ]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def render_flop_table(rows):
  lines = [
    "| row | analytic MFLOP/image (gen + disc) | profiler, executed graph | "
    "profiler / analytic | profiler, whole traced graph | while loops not counted |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for r in rows:
    a, p = r["flops_analytic"], r["flops_profiler"]
    lines.append(
      f"| {r['label']} | {a['step'] / 1e6:.3f} ({a['generator'] / 1e6:.3f} + "
      f"{a['discriminator'] / 1e6:.3f}) | {p['step'] / 1e6:.3f} | "
      f"{p['step'] / a['step']:.3f} | {p['unpruned'] / 1e6:.3f} | {p['while_loops']} |"
    )
  return "\n".join(lines)


def time_sample_row(policy, iters, windows):
  """(policy, (median, min, max) img/s, model) of the `sample` signature of the gin/mnist.gin
  model exported under serving.dtype_policy = policy."""
  mdl, export_dir, _ = export_speed.export_mnist_model(dtype_policy=policy)
  sig = tf.saved_model.load(export_dir).signatures["sample"]
  t = export_speed.time_sample(sig, FLAGS.sample_batch, iters, windows)
  _, med, lo, hi, _ = export_speed.rate_row("sample", t, FLAGS.sample_batch)
  print(f"  sample ({policy}): {med:,.0f} img/s ({lo:,.0f}-{hi:,.0f})", flush=True)
  return policy, (med, lo, hi), mdl


def sample_work(mdl, iters, windows):
  """(profiler FLOPs, shape-aware limits) of the `sample` the export serves for mdl: through
  the folded decoder (`nets.folded`, bfloat16 exports) or the decoder's own call."""
  fold = folded.fold(mdl.decoder)
  decode = mdl.decode if fold is None else fold
  if fold is None:
    shapes = network_shapes(mdl)["decoder"]
  else:
    shapes = [tuple(k.shape.as_list()) for k in fold.kernels]
  fn = tf.function(
    lambda seed: mdl.likelihood.mean(decode(mdl.sample_prior(FLAGS.sample_batch, seed)))
  )
  prof = graph_flops(fn.get_concrete_function(tf.TensorSpec([2], tf.int32)))
  counts = collections.Counter(matmul_limit.chain_matmuls(shapes, FLAGS.sample_batch, "none"))
  limits = shape_limits(counts, FLAGS.sample_batch, iters, windows)
  print(
    f"  sample matmuls {shapes}: shape-aware limit "
    + ", ".join(f"{d} {v['img_s']:,.0f} img/s" for d, v in limits.items()),
    flush=True,
  )
  return prof, limits


def limit_dtype(policy):
  """The matmul dtype of a dtype policy's networks."""
  return {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}[policy]


def shape_limits(counts, images, iters, windows):
  """{dtype: {"seconds", "img_s", "gflops"}}: the time of exactly these matmuls (one
  replica's; the rows run the default strategy, one replica) per dtype of --limit_dtypes and
  of --dtype_policies."""
  out = {}
  dtypes = list(FLAGS.limit_dtypes)
  dtypes += [limit_dtype(p) for p in FLAGS.dtype_policies if limit_dtype(p) not in dtypes]
  for name in dtypes:
    med, _, _ = matmul_limit.time_matmuls(counts, tf.as_dtype(name), iters, windows)
    out[name] = dict(seconds=med, img_s=images / med, gflops=matmul_limit.flops(counts) / med / 1e9)
  return out


def make_row(key, label, rates, mflop, target, matmul_ref, **extra):
  med, lo, hi = rates
  gflops = med * mflop / 1e3
  return dict(
    key=key,
    label=label,
    median=med,
    min=lo,
    max=hi,
    spread_pct=spread(med, lo, hi),
    mflop_per_image=mflop,
    achieved_gflops=gflops,
    matmul_fraction=gflops / matmul_ref,
    target=target,
    **extra,
  )


def main(_):
  thread_label = bench_lib.apply_thread_flags()
  if FLAGS.quick:
    windows, steps, sample_iters, matmul_reps = 2, 2, 2, 2
  else:
    windows, steps = FLAGS.windows, FLAGS.steps
    sample_iters, matmul_reps = FLAGS.sample_iters, FLAGS.matmul_reps
  out = FLAGS.out or (
    os.path.join(tempfile.mkdtemp(prefix="throughput_quick_"), "throughput")
    if FLAGS.quick
    else os.path.join(ROOT, "bench", "results", "throughput")
  )
  started = datetime.datetime.now(datetime.timezone.utc)
  facts = machine_facts()
  print(
    f"{facts['cpu_model']}, {facts['cpu_cores']} cores, TF {facts['tensorflow']}"
    + ("   [--quick: timings are meaningless]" if FLAGS.quick else ""),
    flush=True,
  )
  matmul = [bench_lib.matmul_gflops(reps=matmul_reps)]
  print(f"float32 matmul 1024^3 (before): {matmul[0]:.1f} GFLOP/s", flush=True)

  splits = data.load_splits(name="mnist", local_dir=FLAGS.mnist_dir)
  print(f"data: {splits.note}", flush=True)
  measured, sampled = [], []
  for key, policy in [(k, p) for p in FLAGS.dtype_policies for k in FLAGS.configs]:
    trainer, strategy = train_speed.make_trainer(
      key, FLAGS.strategy, FLAGS.jit, splits, FLAGS.batch_size, policy
    )
    mdl = trainer.model
    passes = step_passes(mdl.objective, mdl.has_discriminators, network_shapes(mdl))
    analytic = passes_flops(passes, trainer.disc_steps)
    if strategy.num_replicas_in_sync != 1:  # the limit times one replica's matmuls
      raise app.UsageError("bench/throughput.py times one replica: use --strategy=default")
    per_replica = FLAGS.batch_size
    profiled = profiled_step_flops(
      trainer, FLAGS.batch_size // strategy.num_replicas_in_sync, splits.image_shape
    )
    med, lo, hi, warm = train_speed.time_trainer(
      trainer, strategy, splits, FLAGS.batch_size, steps, windows
    )
    counts = matmul_limit.matmul_shapes(passes, per_replica, trainer.disc_steps)
    limits = shape_limits(counts, FLAGS.batch_size, steps, windows)
    measured.append((key, policy, (med, lo, hi), analytic, profiled, warm, limits))
    print(
      f"  {key} ({policy}): {med:,.0f} img/s ({lo:,.0f}-{hi:,.0f}), trace + warm-up {warm:.1f} s; "
      f"{analytic['step'] / 1e6:.2f} MFLOP/image analytic, "
      f"{profiled['step'] / 1e6:.2f} profiler; shape-aware limit "
      + ", ".join(f"{d} {v['img_s']:,.0f} img/s" for d, v in limits.items()),
      flush=True,
    )

  for policy in FLAGS.dtype_policies:
    row = time_sample_row(policy, sample_iters, windows)
    sampled.append(row + sample_work(row[-1], sample_iters, windows))

  matmul.append(bench_lib.matmul_gflops(reps=matmul_reps))
  matmul_ref = statistics.mean(matmul)
  print(
    f"float32 matmul 1024^3 (after): {matmul[1]:.1f} GFLOP/s; reference {matmul_ref:.1f}",
    flush=True,
  )

  drift = 100.0 * abs(matmul[1] - matmul[0]) / min(matmul)
  if drift > 10:
    print(
      f"WARNING: the matmul rate moved {drift:.0f}% during the run: the machine was not "
      f"quiet; treat the fractions (and img/s) with care.",
      flush=True,
    )
  rows = []
  for key, policy, rates, analytic, profiled, warm, limits in measured:
    rows.append(
      make_row(
        f"{key}@{policy}",
        f"{LABELS.get(key, key)}, {policy}",
        rates,
        analytic["step"] / 1e6,
        train_speed.TARGETS[key],
        matmul_ref,
        flop_fraction_target=VAE_FLOP_FRACTION_TARGET if key == "vae" else None,
        flops_analytic=analytic,
        flops_profiler=profiled,
        warmup_s=warm,
        limits=limits,
        dtype_policy=policy,
      )
    )
  for policy, (s_med, s_lo, s_hi), mdl, sample_prof, sample_limits in sampled:
    decoder_flops = dense_flops(network_shapes(mdl)["decoder"], "none")
    rows.append(
      make_row(
        f"sample@{policy}",
        f"`sample` SavedModel, batch {FLAGS.sample_batch}, {policy}",
        (s_med, s_lo, s_hi),
        decoder_flops / 1e6,
        SAMPLE_TARGET,
        matmul_ref,
        flops_analytic={"step": decoder_flops, "generator": decoder_flops, "discriminator": 0},
        flops_profiler={
          "step": sample_prof[0] / FLAGS.sample_batch,
          "unpruned": sample_prof[1] / FLAGS.sample_batch,
          "while_loops": sample_prof[2],
        },
        limits=sample_limits,
        dtype_policy=policy,
      )
    )

  command = "bench/throughput.py " + " ".join(sys.argv[1:])
  notes = [
    f"Date {started:%Y-%m-%d %H:%M} UTC; {facts['cpu_model']}, {facts['cpu_cores']} cores, "
    f"TF {facts['tensorflow']}; `.venv/bin/python {command.strip()}`"
    + ("; **--quick: timings are meaningless**" if FLAGS.quick else "")
    + ".",
    f"Training: real MNIST ({len(splits.train):,} training images), batch {FLAGS.batch_size}, "
    f"strategy {FLAGS.strategy}, XLA {'on' if FLAGS.jit else 'off'}, {thread_label}, "
    f"gin/mnist.gin MLPs; "
    f"one step = 1 discriminator + 1 generator update (the VAE: generator only). "
    f"`sample`: the gin/mnist.gin model exported and loaded with tf.saved_model.load.",
    f"img/s: median of {windows} timed windows ({steps} steps / {sample_iters} `sample` "
    f"calls each) after an untimed warm-up window; min-max and spread = (max - min) / "
    f"median show the noise of this run.",
    f"Matmul reference: float32 1024^3 matmul, {matmul[0]:.1f} GFLOP/s before and "
    f"{matmul[1]:.1f} after the timings (medians of 5 windows of {matmul_reps}); "
    f"reference = {matmul_ref:.1f} GFLOP/s (before/after differ by {drift:.0f}%"
    + ("; the machine was NOT quiet" if drift > 10 else "")
    + "). "
    "Achieved GFLOP/s = img/s x MFLOP/image. "
    "Shape-aware limit (bench/matmul_limit.py): the time of exactly the row's own matmuls "
    "(forward, input and weight gradients, at the shapes the step runs, one tf.function "
    f"per dtype: {', '.join(FLAGS.limit_dtypes)}), measured right after the row; "
    "limit img/s = images / that time, and % of limit = img/s / limit img/s. "
    "`sample` under mixed_bfloat16 runs the folded decoder (asvae_tf/nets/folded.py): its "
    "limit times the folded kernels' shapes (one more input row, hidden widths padded to a "
    "multiple of 32) and the profiler counts their FLOPs (a few % above the analytic count "
    "of the decoder's own layers, which the MFLOP/image column keeps).",
    "MFLOP/image: analytic Dense-matmul FLOPs of one step (forward 2*in*out, weight and "
    "input gradients 2*in*out each, only where the step needs them). Not counted: bias "
    "adds, activations, losses, dropout, Adam updates, the planar flow's O(K*D) vector "
    "ops. Cross-check: the TF profiler on the traced per-replica gradient functions, "
    "restricted to the ops their outputs depend on (MatMuls plus the few elementwise "
    "ops it has FLOP rules for; ops inside while loops are not seen).",
  ]
  table, flop_table = render_table(rows, matmul_ref), render_flop_table(rows)
  text = (
    "# Throughput (bench/throughput.py)\n\n"
    + "\n\n".join(notes)
    + "\n\n"
    + table
    + "\n\nFLOP counts per image, analytic vs TF profiler:\n\n"
    + flop_table
    + "\n"
  )
  print("\n" + table + "\n\n" + flop_table, flush=True)

  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".md", "w") as f:
    f.write(text)
  with open(out + ".json", "w") as f:
    json.dump(
      {
        "date": started.isoformat(timespec="seconds"),
        "command": command.strip(),
        "quick": FLAGS.quick,
        "machine": facts,
        "settings": {
          "windows": windows,
          "steps": steps,
          "batch_size": FLAGS.batch_size,
          "strategy": FLAGS.strategy,
          "jit": FLAGS.jit,
          "intra_op_threads": FLAGS.intra_op_threads,
          "inter_op_threads": FLAGS.inter_op_threads,
          "sample_batch": FLAGS.sample_batch,
          "sample_iters": sample_iters,
          "matmul_reps": matmul_reps,
          "data": splits.note,
        },
        "matmul_gflops": {
          "before": matmul[0],
          "after": matmul[1],
          "reference": matmul_ref,
          "drift_pct": drift,
        },
        "rows": rows,
        "notes": notes,
      },
      f,
      indent=1,
      default=float,
    )
  print(f"\nwrote {out}.md and {out}.json")


if __name__ == "__main__":
  app.run(main)
