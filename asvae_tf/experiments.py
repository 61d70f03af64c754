"""Train-then-evaluate runs and the paper's result tables (used by tools/reproduce.py and
bench/quality_mnist10k.py).

`train_and_evaluate` trains one gin config into a model_dir (resuming if it already
holds checkpoints) and evaluates a checkpoint with `evaluation.evaluate`.
`PAPER_TABLES` holds the paper's Tables 1-3 (section 5) and which gin file
reproduces each row; `reproduce(table, ...)` runs every row and `format_comparison`
prints paper vs measured.
"""

import dataclasses
import json
import os
import time
from typing import Dict, Tuple

from asvae_tf import errors
from asvae_tf import gin_config
from asvae_tf import registry
from asvae_tf import evaluation
from asvae_tf import train

GIN_DIR = gin_config.config_dir()  # the paper configs (package data or the checkout's gin/)


def train_and_evaluate(gin_file, model_dir, bindings=(), eval_bindings=(), checkpoint=None):
  """Trains gin_file (+ bindings) into model_dir, then evaluates `checkpoint` of it
  (default: checkpoints.DEFAULT, the early-stopping best, else the latest).

  Returns the metrics dict of `evaluation.evaluate` plus train_seconds,
  eval_seconds and final_step (the last trained step).
  A driver, not a library function: it parses its own gin configs, so the global gin
  config is empty afterwards (`gin_config.fresh`).
  """
  with gin_config.fresh():
    registry.parse([gin_file], list(bindings))
    t0 = time.time()
    result = train.train(model_dir)
  train_seconds = time.time() - t0
  with gin_config.fresh():
    registry.parse_model_dir(model_dir, (), list(eval_bindings))
    t0 = time.time()
    metrics = evaluation.evaluate(model_dir, checkpoint=checkpoint)
  metrics.update(
    train_seconds=train_seconds, eval_seconds=time.time() - t0, final_step=result["step"]
  )
  return metrics


@dataclasses.dataclass(frozen=True)
class Row:
  label: str
  gin_file: str  # in gin/
  paper: Dict[str, float]  # metric key -> the paper's number


@dataclasses.dataclass(frozen=True)
class Table:
  title: str
  rows: Dict[str, Row]
  columns: Tuple[Tuple[str, str, str], ...]  # (metric key, header, format)
  quick_shape: Tuple[int, int, int]  # synthetic stand-in data for --quick


_MNIST_COLUMNS = (
  ("neg_elbo", "-ELBO (nats)", ".2f"),
  ("iwae_nll", "IWAE NLL (nats)", ".2f"),
  ("classifier_fid", "classifier FID", ".2f"),
  ("classifier_score", "classifier score", ".2f"),
)
_NATURAL_COLUMNS = (
  ("neg_elbo_bits_per_dim", "NLL bits/dim (-ELBO)", ".3f"),
  ("iwae_bits_per_dim", "IWAE bits/dim", ".3f"),
  ("rmse", "RMSE [0, 255]", ".2f"),
  ("inception_score", "IS", ".2f"),
  ("fid", "FID", ".2f"),
)

PAPER_TABLES = {
  1: Table(
    "Table 1: NLL on MNIST (paper: negative ELBO of eq. 1, nats)",
    {
      "vae": Row("VAE, planar K=80 (paper: NF k=80)", "mnist_vae.gin", {"neg_elbo": 85.1}),
      "asvae_r": Row("AS-VAE-r", "mnist_asvae_r.gin", {"neg_elbo": 81.14}),
      "asvae_g": Row("AS-VAE-g", "mnist_asvae_g.gin", {"neg_elbo": 146.32}),
      "asvae": Row("AS-VAE", "mnist.gin", {"neg_elbo": 82.51}),
    },
    _MNIST_COLUMNS,
    (28, 28, 1),
  ),
  2: Table(
    "Table 2: CIFAR-10 (NLL in bits/dim, RMSE on [0, 255], IS)",
    {
      "asvae_r": Row(
        "AS-VAE-r",
        "cifar10_asvae_r.gin",
        {"neg_elbo_bits_per_dim": 3.09, "rmse": 3.17, "inception_score": 2.91},
      ),
      "asvae_g": Row(
        "AS-VAE-g",
        "cifar10_asvae_g.gin",
        {"neg_elbo_bits_per_dim": 93.12, "rmse": 13.12, "inception_score": 6.89},
      ),
      "asvae": Row(
        "AS-VAE",
        "cifar10.gin",
        {"neg_elbo_bits_per_dim": 3.32, "rmse": 3.36, "inception_score": 6.34},
      ),
    },
    _NATURAL_COLUMNS,
    (32, 32, 3),
  ),
  3: Table(
    "Table 3: ImageNet 64x64 (NLL in bits/dim, IS)",
    {
      "asvae": Row(
        "AS-VAE", "imagenet64.gin", {"neg_elbo_bits_per_dim": 3.71, "inception_score": 11.14}
      ),
    },
    _NATURAL_COLUMNS,
    (64, 64, 3),
  ),
}

# --quick: tiny networks on synthetic data of the table's shape, 2 steps, tiny evaluation.
_QUICK_MLP = [
  "mlp_encoder.hidden_units = (16,)",
  "mlp_decoder.hidden_units = (16,)",
  "joint_discriminator.x_units = (8,)",
  "joint_discriminator.z_units = (8,)",
  "joint_discriminator.joint_units = (8,)",
  "posterior.num_flows = 2",
]
_QUICK_CONV = [
  f"{net}.{key} = {value}"
  for net in ("conv_encoder", "conv_decoder", "conv_joint_discriminator")
  for key, value in (("base_width", 4), ("max_width", 8))
] + ["conv_joint_discriminator.z_units = (8,)", "conv_joint_discriminator.joint_units = (8,)"]


def quick_bindings(table):
  """Training and evaluation bindings of a --quick smoke run of `table`."""
  shape = PAPER_TABLES[table].quick_shape
  train_bindings = (_QUICK_MLP if shape[-1] == 1 else _QUICK_CONV) + [
    "model.latent_dim = 4",
    "dataset.name = 'synthetic'",
    f"dataset.synthetic_image_shape = {shape}",
    "dataset.synthetic_num_examples = 64",
    "train.batch_size = 8",
    "train.num_steps = 2",
    "train.validate_every = 2",
    "train.strategy = 'default'",
    "train.early_stopping_patience = 0",
  ]
  evaluate = [
    "evaluate.num_importance_samples = 5",
    "evaluate.num_generated = 20",
    "evaluate.num_splits = 2",
    "evaluate.max_examples = 16",
  ]
  return train_bindings, evaluate


def reproduce(table, work_dir, bindings=(), eval_bindings=(), models=None, quick=False):
  """Trains and evaluates every row (or `models`) of paper table 1, 2 or 3.

  Returns {row key: metrics}; also writes work_dir/table<N>.json and .md.
  """
  if table not in PAPER_TABLES:
    raise errors.ConfigError(f"--table must be one of {sorted(PAPER_TABLES)}, got {table}")
  spec = PAPER_TABLES[table]
  models = list(models or spec.rows)
  unknown = [m for m in models if m not in spec.rows]
  if unknown:
    raise errors.ConfigError(f"table {table} has no rows {unknown}; rows: {list(spec.rows)}")
  train_b, eval_b = quick_bindings(table) if quick else ([], [])
  results = {}
  for key in models:
    row = spec.rows[key]
    results[key] = train_and_evaluate(
      os.path.join(GIN_DIR, row.gin_file),
      os.path.join(work_dir, key),
      train_b + list(bindings),
      eval_b + list(eval_bindings),
    )
  text = format_comparison(table, results, quick)
  os.makedirs(work_dir, exist_ok=True)
  with open(os.path.join(work_dir, f"table{table}.json"), "w") as f:
    json.dump(
      dict(
        table=table,
        quick=quick,
        bindings=list(bindings),
        eval_bindings=list(eval_bindings),
        results=results,
      ),
      f,
      indent=2,
    )
  with open(os.path.join(work_dir, f"table{table}.md"), "w") as f:
    f.write(text + "\n")
  return results, text


def format_comparison(table, results, quick=False):
  """Markdown: for each column the paper's number beside ours ('-' where absent)."""
  spec = PAPER_TABLES[table]
  head = ["model"]
  for _, name, _ in spec.columns:
    head += [f"{name} paper", f"{name} ours"]
  head += ["checkpoint step", "train + eval min"]
  lines = [
    f"{spec.title}{' (QUICK smoke run: synthetic data, not a result)' if quick else ''}",
    "",
    "| " + " | ".join(head) + " |",
    "|" + "---|" * len(head),
  ]
  for key, m in results.items():
    row = spec.rows[key]
    cells = [row.label]
    for metric, _, fmt in spec.columns:
      paper = row.paper.get(metric)
      cells.append("-" if paper is None else f"{paper:g}")
      ours = m.get(metric)
      cells.append("-" if ours is None else format(ours, fmt))
    cells += [str(m["step"]), f"{m['train_seconds'] / 60:.1f} + {m['eval_seconds'] / 60:.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
  networks = {m["inception_network"] for m in results.values() if "inception_network" in m}
  if networks:
    lines += ["", f"IS / FID network: {'; '.join(sorted(networks))}"]
  return "\n".join(lines)
