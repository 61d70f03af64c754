#!/usr/bin/env python
"""How much of each model's IWAE NLL is its encoder: the bound with a refined proposal.

For each finished run of bench/quality_mnist10k.py (its --work_dir), this restores the
evaluated checkpoint, fits the encoder and flow to the test images by the ELBO with the
decoder frozen (`evaluation.refine_proposal`), and recomputes the IWAE bound with the
protocol evaluation's own samples (seed, k, images). Any proposal gives a bound on the
same model's -log p_theta(x), so the refined IWAE is a tighter estimate of the model's
NLL, and the drop from the protocol's IWAE is the part of it that the encoder's
amortisation costs. It does not retrain or change any run.

  .venv/bin/python bench/refined_bounds_mnist10k.py --work_dir=runs/quality_mnist10k \
      --models=vae,asvae --seeds=0,1,2,3,4
Writes bench/results/refined_bounds_mnist10k.{json,md}.
"""

import datetime
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np
import tensorflow as tf

from asvae_tf import checkpoints
from asvae_tf import evaluation
from asvae_tf import experiments
from asvae_tf import gin_config
from asvae_tf import model as model_lib
from asvae_tf import registry
from asvae_tf import rng
from asvae_tf.evaluation import run as eval_run
import mnist10k_lib as lib

TABLE1 = experiments.PAPER_TABLES[1].rows

lib.define_flags("quality_mnist10k", "The work dir of bench/quality_mnist10k.py (read only).")
flags.adopt_module_key_flags(lib)
flags.DEFINE_list("models", ["vae", "asvae"], "Models (their runs must be finished).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the runs.")
flags.DEFINE_integer(
  "passes",
  20,
  "Passes of the proposal's fit over the test images; 0 checks that the protocol "
  "evaluation's IWAE and -ELBO are reproduced (same checkpoint, images and samples).",
)
FLAGS = flags.FLAGS
REFINE_SEED = (0, 0x4EF1)


# pylint: disable=protected-access  # eval_run._load_images and _is_discretized
def refined(model_dir, passes, learning_rate):
  """The protocol evaluation's metrics of a finished run and its refined bounds, a dict."""
  with open(os.path.join(model_dir, "eval", "metrics.json")) as f:
    metrics = json.load(f)
  with open(os.path.join(model_dir, "run_request.json")) as f:
    params = json.load(f)["params"]
  if metrics["split"] != "test" or any(p.startswith("evaluate.seed") for p in params):
    raise app.UsageError(f"{model_dir} was not evaluated on the test split with seed 0")
  with gin_config.isolated():  # evaluate()'s own images, model and samples
    registry.parse_model_dir(model_dir)
    splits, x, _ = eval_run._load_images("test", metrics["num_examples"], {}, 1)
    mdl = model_lib.build_for_data(splits)
    checkpoints.restore_latest_intact(mdl, model_dir, metrics["checkpoint"])
  per_pass = evaluation.refine_proposal(
    mdl, x, passes, learning_rate, tf.constant(REFINE_SEED, tf.int32)
  )
  iwae, elbo = evaluation.likelihood_bounds(
    mdl,
    x,
    metrics["num_importance_samples"],
    rng.split(rng.run_seed(0, "evaluation"), 2)[0],  # evaluate()'s at seed 0; --passes=0 checks
    discretized=eval_run._is_discretized(mdl),
  )
  if passes == 0:  # the protocol's own numbers, recomputed
    got = (float(-iwae.mean()), float(-elbo.mean()))
    if not np.allclose(got, (metrics["iwae_nll"], metrics["neg_elbo"]), rtol=0, atol=1e-3):
      raise ValueError(f"{model_dir}: protocol bounds not reproduced: {got}")
  return dict(
    checkpoint=metrics["checkpoint"],
    iwae_nll=metrics["iwae_nll"],
    neg_elbo=metrics["neg_elbo"],
    refined_iwae_nll=float(-iwae.mean()),
    refined_neg_elbo=float(-elbo.mean()),
    fit_neg_elbo_per_pass=per_pass.tolist(),
  )


def table(runs, header):
  """runs: {model: {seed: refined(...)}} -> markdown, mean ± se over seeds."""
  keys = (
    ("iwae_nll", "IWAE NLL (protocol)"),
    ("refined_iwae_nll", "refined IWAE NLL"),
    ("neg_elbo", "-ELBO (protocol)"),
    ("refined_neg_elbo", "refined -ELBO"),
  )
  lines = [
    header,
    "",
    "| model | seeds | " + " | ".join(h for _, h in keys) + " | IWAE gain | refined IWAE - VAE |",
    "|---" * (len(keys) + 4) + "|",
  ]
  vae = runs.get("vae", {})
  for name, by_seed in runs.items():
    seeds = sorted(by_seed)
    cells = [lib.cell([by_seed[s][k] for s in seeds]) for k, _ in keys]
    gain = lib.cell([by_seed[s]["iwae_nll"] - by_seed[s]["refined_iwae_nll"] for s in seeds])
    common = [s for s in seeds if s in vae]
    paired = (
      lib.cell([by_seed[s]["refined_iwae_nll"] - vae[s]["refined_iwae_nll"] for s in common])
      if name != "vae" and common
      else "-"
    )
    lines.append(
      f"| {TABLE1[name].label} | {','.join(map(str, seeds))} | "
      + " | ".join(cells + [gain, paired])
      + " |"
    )
  return "\n".join(lines)


def main(argv):
  del argv
  work = FLAGS.work_dir + ("_quick" if FLAGS.quick else "")
  passes = min(2, FLAGS.passes) if FLAGS.quick else FLAGS.passes
  runs = {}
  for name in FLAGS.models:
    if name not in TABLE1:
      raise app.UsageError(f"unknown model {name!r}; choose from {sorted(TABLE1)}")
    for seed in [int(s) for s in FLAGS.seeds]:
      model_dir = os.path.join(work, f"{name}_seed{seed}")
      if not os.path.isfile(os.path.join(model_dir, "eval", "metrics.json")):
        raise app.UsageError(f"{model_dir} has no finished run: run quality_mnist10k.py first")
      print(f"== {name} seed {seed}: {passes} passes, lr {FLAGS.learning_rate}", flush=True)
      runs.setdefault(name, {})[seed] = refined(model_dir, passes, FLAGS.learning_rate)
  header = (
    f"Refined-proposal bounds ({datetime.date.today().isoformat()}; runs of {work}; "
    f"{'QUICK smoke run, not a result; ' if FLAGS.quick else ''}the encoder and flow fitted "
    f"to the test images by the ELBO for {passes} passes, Adam lr {FLAGS.learning_rate}, "
    "batch 100, decoder frozen; IWAE with the protocol evaluation's samples; mean ± standard "
    "error over seeds; 'IWAE gain' = protocol IWAE NLL - refined, per seed)"
  )
  out = table(runs, header)
  print("\n" + out)
  payload = dict(
    header=header,
    passes=passes,
    learning_rate=FLAGS.learning_rate,
    runs={m: {str(s): v for s, v in r.items()} for m, r in runs.items()},
  )
  lib.write_results(FLAGS.results_dir, "refined_bounds_mnist10k", FLAGS.quick, payload, out)


if __name__ == "__main__":
  app.run(main)
