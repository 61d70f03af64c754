#!/usr/bin/env python
"""Ablation of the ratio estimators on MNIST-10k (issue 12): which piece makes AS-VAE work.

Every row is one gin file of gin/, then PAPER_LITERAL (the paper's joint estimators and
the code's defaults), then the bindings printed in the table, trained and
evaluated on the MNIST-10k protocol of bench/mnist10k_lib.py (20 passes, IWAE k = 1000
on the 2,000 test images, classifier FID / score of 10,000 samples). Beside the
likelihood and sample metrics, each row shows the exact KL term of its posterior on the
test images (E log q(z|x) - log p(z)) and the ratio gap (E f1 - that KL): the gap is
how much of the KL the discriminator f1 fails to charge.

  .venv/bin/python bench/ablation_mnist10k.py                 # all rows, ~1.5 h on 2 cores
  .venv/bin/python bench/ablation_mnist10k.py --rows=vae,asvae_explicit
  .venv/bin/python bench/ablation_mnist10k.py --quick         # smoke run (minutes)
Writes bench/results/ablation_mnist10k.{json,md}. Finished rows are kept in --work_dir
and not rerun (delete a row's directory to rerun it).
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

# The paper taken literally (the code's defaults): every row starts from these, so a row
# means the same whatever defaults gin/mnist*.gin choose; the table shows the rest.
PAPER_LITERAL = [
  "model.ratio_estimator = 'joint'",
  "model.f2_estimator = None",
  "model.f1_residual_inputs = 'x'",
  "model.f2_decoder_gradient = 'exact'",
  "model.f2_marginal_samples = 1",
  "model.generator_pass_dropout = True",
  "model.r1_gamma = 0.0",
  "discriminator/optimizer.beta_1 = 0.9",
  "generator/optimizer.beta_1 = 0.9",
  "train.adversarial_warmup_steps = 0",
  "train.early_stopping_metric = 'recon'",
  "bernoulli_likelihood.reparameterization = 'straight_through'",
  "model.f2_input_noise = 0.0",
  "train.discriminator_steps = 1",
  "model.f2_decoder_weight = 1.0",
]
EXPLICIT_F1 = ["model.ratio_estimator = 'explicit'", "model.f2_estimator = 'joint'"]
HYGIENE = ["model.generator_pass_dropout = False", "discriminator/optimizer.beta_1 = 0.5"]
EXPLICIT = ["model.ratio_estimator = 'explicit'", "model.f2_estimator = 'explicit'"]
WARMUP = ["train.adversarial_warmup_steps = 350"]
ST_LINEAR = ["bernoulli_likelihood.reparameterization = 'straight_through_linear'"]
ST = ["bernoulli_likelihood.reparameterization = 'straight_through'"]
GAN_ADAM = ["generator/optimizer.beta_1 = 0.5"]
NO_MI = ["model.f2_decoder_gradient = 'marginal_infomax'"]
MARGINAL = ["model.f2_decoder_gradient = 'marginal'"]
NOISE = ["model.f2_input_noise = 0.5"]
D_STEPS_2 = ["train.discriminator_steps = 2"]
# gin/mnist_asvae_g.gin starts the decoder's output bias at the data mean since 2026-12-01;
# the AS-VAE-g rows measured before keep section 5's zero bias, as they were run. Bound per
# row, not in PAPER_LITERAL (that would change every row's run stamp): a new row on
# gin/mnist_asvae_g.gin inherits 'data_mean' unless it binds ZERO_BIAS.
ZERO_BIAS = ["mlp_decoder.output_bias = 'zeros'"]
DATA_MEAN_BIAS = ["mlp_decoder.output_bias = 'data_mean'"]
MARGINAL_GAN_ADAM = (
  EXPLICIT + HYGIENE + MARGINAL + ST + GAN_ADAM + ["train.adversarial_warmup_steps = 0"]
)


def _decoder_weight(lam):
  return MARGINAL_GAN_ADAM + [f"model.f2_decoder_weight = {lam:.1f}"]


# key -> (label, gin file, extra bindings)
ROWS = {
  "vae": ("VAE (eq. 1)", "mnist_vae.gin", []),
  "vae_gan_adam": ("VAE, generator Adam beta_1 0.5", "mnist_vae.gin", GAN_ADAM),
  "asvae_r_joint": ("AS-VAE-r, joint f1 (paper literal)", "mnist_asvae_r.gin", []),
  "asvae_r_explicit": (
    "AS-VAE-r, explicit f1, x-only residual",
    "mnist_asvae_r.gin",
    ["model.ratio_estimator = 'explicit'"],
  ),
  "asvae_r_explicit_xz": (
    "AS-VAE-r, explicit f1, (x, z) residual",
    "mnist_asvae_r.gin",
    ["model.ratio_estimator = 'explicit'", "model.f1_residual_inputs = 'xz'"],
  ),
  "asvae_joint": (
    "AS-VAE, joint f1 + f2 (paper literal)",
    "mnist.gin",
    ["model.ratio_estimator = 'joint'", "model.f2_estimator = 'joint'"]
    + [
      "model.generator_pass_dropout = True",
      "discriminator/optimizer.beta_1 = 0.9",
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_explicit": (
    "AS-VAE, explicit f1, joint f2",
    "mnist.gin",
    EXPLICIT_F1
    + [
      "model.generator_pass_dropout = True",
      "discriminator/optimizer.beta_1 = 0.9",
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_hygiene": (
    "  + hygiene (no dropout in generator pass, D Adam beta_1 0.5)",
    "mnist.gin",
    EXPLICIT_F1
    + HYGIENE
    + [
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_explicit_f2": (
    "  + explicit f2 (E2 + D(x) + h(z))",
    "mnist.gin",
    EXPLICIT
    + HYGIENE
    + [
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_warmup": (
    "  + warm-up (350 steps)",
    "mnist.gin",
    EXPLICIT + HYGIENE + WARMUP + ["bernoulli_likelihood.reparameterization = 'straight_through'"],
  ),
  "asvae_st_linear": (
    "  + linear straight-through",
    "mnist.gin",
    EXPLICIT + HYGIENE + WARMUP + ST_LINEAR,
  ),
  "asvae_f2_no_mi": (
    "  explicit f2, decoder gradient 'marginal_infomax' (not the paper's optimum)",
    "mnist.gin",
    EXPLICIT
    + HYGIENE
    + NO_MI
    + [
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_f2_k8": (
    "  explicit f2, E2 with k = 8 importance samples",
    "mnist.gin",
    EXPLICIT
    + HYGIENE
    + [
      "model.f2_marginal_samples = 8",
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_joint_r1": (
    "AS-VAE, joint f1 + R1 gamma 1 (negative control)",
    "mnist.gin",
    [
      "model.ratio_estimator = 'joint'",
      "model.f2_estimator = 'joint'",
      "model.r1_gamma = 1.0",
      "model.generator_pass_dropout = True",
      "discriminator/optimizer.beta_1 = 0.9",
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ],
  ),
  "asvae_g_joint": (
    "AS-VAE-g, joint f2 (paper literal)",
    "mnist_asvae_g.gin",
    [
      "model.ratio_estimator = 'joint'",
      "model.generator_pass_dropout = True",
      "discriminator/optimizer.beta_1 = 0.9",
      "train.adversarial_warmup_steps = 0",
      "bernoulli_likelihood.reparameterization = 'straight_through'",
    ]
    + ZERO_BIAS,
  ),
  "asvae_g_fixed": (
    "AS-VAE-g, explicit f2 + hygiene + linear straight-through",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + ST_LINEAR + ZERO_BIAS,
  ),
  "asvae_g_joint_hygiene": (
    "AS-VAE-g, joint f2 + hygiene + generator Adam beta_1 0.5",
    "mnist_asvae_g.gin",
    ["model.ratio_estimator = 'joint'"] + HYGIENE + GAN_ADAM + ST + ZERO_BIAS,
  ),
  "asvae_g_explicit": (
    "AS-VAE-g, explicit f2 + hygiene + generator Adam beta_1 0.5",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST + ZERO_BIAS,
  ),
  "asvae_g_no_mi": (
    "AS-VAE-g, explicit f2 'marginal_infomax' + hygiene + gen. beta_1 0.5",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST + NO_MI + ZERO_BIAS,
  ),
  "asvae_g_no_mi_linear": (
    "AS-VAE-g, as above + linear straight-through",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST_LINEAR + NO_MI + ZERO_BIAS,
  ),
  "asvae_f2_marginal": (
    "  explicit f2, decoder gradient 'marginal'",
    "mnist.gin",
    EXPLICIT + HYGIENE + MARGINAL + ST + ["train.adversarial_warmup_steps = 0"],
  ),
  "asvae_marginal_gan_adam": (
    "  + generator Adam beta_1 0.5 (gin/mnist.gin until 2026-12-01)",
    "mnist.gin",
    MARGINAL_GAN_ADAM,
  ),
  "asvae_weight2": (
    "    beta_1 0.5 row + decoder adversarial weight 2 (model.f2_decoder_weight)",
    "mnist.gin",
    _decoder_weight(2),
  ),
  "asvae_weight3": (
    "    beta_1 0.5 row + decoder adversarial weight 3 (gin/mnist.gin until 2026-12-02)",
    "mnist.gin",
    _decoder_weight(3),
  ),
  "asvae_weight4": (
    "    beta_1 0.5 row + decoder adversarial weight 4 (gin/mnist.gin)",
    "mnist.gin",
    _decoder_weight(4),
  ),
  "asvae_marginal_r1": (
    "    beta_1 0.5 row + R1 gamma 1 on the residuals r1 and D",
    "mnist.gin",
    EXPLICIT + HYGIENE + MARGINAL + ST + GAN_ADAM + ["model.r1_gamma = 1.0"],
  ),
  "asvae_marginal_warmup": (
    "    beta_1 0.5 row + warm-up (350 steps)",
    "mnist.gin",
    EXPLICIT + HYGIENE + MARGINAL + ST + GAN_ADAM + WARMUP,
  ),
  "asvae_g_marginal": (
    "AS-VAE-g, explicit f2 'marginal' + hygiene + generator beta_1 0.5",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST + MARGINAL + ZERO_BIAS,
  ),
  "asvae_g_noise": (
    "  + instance noise 0.5 on D (model.f2_input_noise)",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST + MARGINAL + NOISE + ZERO_BIAS,
  ),
  "asvae_g_d2": (
    "  + 2 discriminator steps per step (no noise)",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST + MARGINAL + D_STEPS_2 + ZERO_BIAS,
  ),
  "asvae_g_data_mean": (
    "  + decoder output bias at the data mean (gin/mnist_asvae_g.gin)",
    "mnist_asvae_g.gin",
    EXPLICIT + HYGIENE + GAN_ADAM + ST + MARGINAL + DATA_MEAN_BIAS,
  ),
  "asvae_noise": (
    "AS-VAE (row asvae_marginal_gan_adam) + instance noise 0.5 on D",
    "mnist.gin",
    EXPLICIT + HYGIENE + MARGINAL + ST + GAN_ADAM + NOISE,
  ),
  "asvae_d2": (
    "AS-VAE (row asvae_marginal_gan_adam) + 2 discriminator steps per step",
    "mnist.gin",
    EXPLICIT + HYGIENE + MARGINAL + ST + GAN_ADAM + D_STEPS_2,
  ),
}

lib.define_flags(
  "ablation_mnist10k", "Model dirs and the classifier go here (finished rows are reused)."
)
flags.adopt_module_key_flags(lib)  # --helpshort lists the shared flags too
# The table's order: baselines, the f1 half, the f2 half, the chosen config, AS-VAE-g.
ORDER = [
  "vae",
  "vae_gan_adam",
  "asvae_r_joint",
  "asvae_r_explicit",
  "asvae_r_explicit_xz",
  "asvae_joint",
  "asvae_joint_r1",
  "asvae_explicit",
  "asvae_hygiene",
  "asvae_explicit_f2",
  "asvae_f2_k8",
  "asvae_warmup",
  "asvae_st_linear",
  "asvae_f2_no_mi",
  "asvae_f2_marginal",
  "asvae_marginal_gan_adam",
  "asvae_weight2",
  "asvae_weight3",
  "asvae_weight4",
  "asvae_marginal_r1",
  "asvae_marginal_warmup",
  "asvae_g_joint",
  "asvae_g_joint_hygiene",
  "asvae_g_fixed",
  "asvae_g_explicit",
  "asvae_g_no_mi",
  "asvae_g_no_mi_linear",
  "asvae_g_marginal",
  "asvae_g_noise",
  "asvae_g_d2",
  "asvae_g_data_mean",
  "asvae_noise",
  "asvae_d2",
]
assert sorted(ORDER) == sorted(ROWS)

flags.DEFINE_list("rows", ORDER, "Rows to run, in this order.")
flags.DEFINE_integer("seed", 0, "Training seed.")
FLAGS = flags.FLAGS


def _fmt(m, key, spec=".2f"):
  v = m.get(key)
  return "n/a" if v is None else format(v, spec)


def table(results, header):
  lines = [
    header,
    "",
    "| row | bindings | -ELBO | IWAE NLL | classifier FID | classifier score "
    "| exact KL | ratio gap (E f1 - KL) | best step / run | min |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for key, m in results.items():
    label, gin_file, extra = ROWS[key]
    lines.append(
      f"| {label} | `{gin_file}` {'; '.join(f'`{b}`' for b in extra)} "
      f"| {m['neg_elbo']:.2f} ± {m['neg_elbo_se']:.2f} "
      f"| {m['iwae_nll']:.2f} ± {m['iwae_nll_se']:.2f} | {_fmt(m, 'classifier_fid')} "
      f"| {_fmt(m, 'classifier_score')} | {_fmt(m, 'kl_exact')} | {_fmt(m, 'ratio_gap')} "
      f"| {m['step']} / {m['final_step']} "
      f"| {(m['train_seconds'] + m['eval_seconds']) / 60:.1f} |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  epochs, k, num_generated, max_examples = lib.eval_settings(FLAGS.quick)
  unknown = [r for r in FLAGS.rows if r not in ROWS]
  if unknown:
    raise app.UsageError(f"unknown --rows {unknown}; choose from {list(ROWS)}")
  splits = lib.load_splits(FLAGS.mnist_dir)
  bindings = lib.protocol_bindings(
    FLAGS.mnist_dir, len(splits.train), epochs, FLAGS.seed, FLAGS.learning_rate
  )
  work = FLAGS.work_dir + ("_quick" if FLAGS.quick else "")
  lib.stamp_work_dir(
    work, dict(bindings=bindings, k=k, num_generated=num_generated, max_examples=max_examples)
  )
  clf_dir = os.path.join(work, "classifier")
  clf = lib.classifier(FLAGS.mnist_dir, clf_dir, epochs=1 if FLAGS.quick else 8)
  results, start = {}, time.time()
  for key in FLAGS.rows:
    label, gin_file, extra = ROWS[key]
    print(f"== {key}: {label}", flush=True)
    results[key] = lib.run(
      gin_file,
      os.path.join(work, key),
      bindings + PAPER_LITERAL + extra,
      clf_dir,
      k,
      num_generated,
      max_examples,
    )
    print(table({key: results[key]}, ""), flush=True)
  header = (
    f"MNIST-10k ablation ({datetime.date.today().isoformat()}, {os.cpu_count()} x "
    f"{lib.cpu_name()}, TF {tf.__version__}; "
    f"{'QUICK smoke run, not a result; ' if FLAGS.quick else ''}{epochs} epochs, "
    f"batch {lib.BATCH}, Adam lr {FLAGS.learning_rate}, seed {FLAGS.seed}, IWAE k = {k} "
    f"on {results[FLAGS.rows[0]]['num_examples']} test images, {num_generated} samples, "
    f"classifier test accuracy {clf['test_accuracy']:.4f}; the min column is each row's "
    f"train + eval wall time, other jobs may have shared the cores; "
    f"{(time.time() - start) / 60:.1f} min this invocation, finished rows reused)"
  )
  out = table(results, header)
  print("\n" + out)
  payload = dict(
    header=header,
    protocol_bindings=bindings,
    row_base=PAPER_LITERAL,
    classifier=clf,
    rows={
      k_: dict(label=ROWS[k_][0], gin_file=ROWS[k_][1], bindings=ROWS[k_][2], metrics=m)
      for k_, m in results.items()
    },
  )
  lib.write_results(FLAGS.results_dir, "ablation_mnist10k", FLAGS.quick, payload, out)


if __name__ == "__main__":
  app.run(main)
