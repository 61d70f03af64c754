"""tools/reproduce.py and asvae_tf.experiments: --quick smoke runs of the paper tables."""

import json
import math
import os

import numpy as np
import pytest

from asvae_tf import config
from asvae_tf import experiments
from harness import run_tool
import tiny_inception


def test_every_paper_row_names_an_existing_gin_file():
  for table in experiments.PAPER_TABLES.values():
    for row in table.rows.values():
      assert os.path.isfile(os.path.join(experiments.GIN_DIR, row.gin_file)), row.gin_file


def test_table1_quick_cli(tmp_path):
  out = run_tool(
    "reproduce",
    [
      "--table=1",
      "--quick",
      "--models=vae",
      f"--work_dir={tmp_path}",
    ],
    timeout=400,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  saved = json.load(open(tmp_path / "table1.json"))
  m = saved["results"]["vae"]
  assert saved["quick"] and list(saved["results"]) == ["vae"]
  assert m["step"] == 2 and m["final_step"] == 2 and m["num_importance_samples"] == 5
  assert math.isfinite(m["neg_elbo"]) and m["iwae_nll"] <= m["neg_elbo"]
  text = (tmp_path / "table1.md").read_text()
  assert "| VAE, planar K=80 (paper: NF k=80) | 85.1 | " in text
  assert f"{m['neg_elbo']:.2f}" in text and text.strip() in out.stdout
  assert os.path.isfile(tmp_path / "vae" / "saved_model" / "2" / "saved_model.pb")


@pytest.mark.slow(25)
def test_table2_quick_cli_on_32x32_conv_model(tmp_path):
  graph, stats = str(tmp_path / "graph.pb"), str(tmp_path / "stats.npz")
  tiny_inception.write_graph(graph)  # the 2015 Inception graph's tensor names, tiny
  tiny_inception.write_stats(stats, np.random.RandomState(0).normal(size=(30, 5)))
  out = run_tool(
    "reproduce",
    [
      "--table=2",
      "--quick",
      "--models=asvae",
      f"--work_dir={tmp_path}",
      f"--inception_graph={graph}",
      f"--fid_reference_stats={stats}",
    ],
    timeout=400,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "| AS-VAE | 3.32 |" in out.stdout
  m = json.load(open(tmp_path / "table2.json"))["results"]["asvae"]
  assert m["likelihood"] == "discretized_gaussian" and m["rmse_pixel_scale"] == "[0, 255]"
  assert 0 < m["iwae_bits_per_dim"] <= m["neg_elbo_bits_per_dim"]
  assert m["inception_comparable"] is True and m["fid_reference"] == stats
  assert "IS / FID network: 2015 TF Inception graph" in out.stdout


def test_comparison_table_puts_paper_beside_ours():
  m = dict(
    neg_elbo_bits_per_dim=3.5,
    iwae_bits_per_dim=3.4,
    rmse=4.0,
    inception_score=5.0,
    fid=30.0,
    step=100,
    train_seconds=60.0,
    eval_seconds=30.0,
  )
  text = experiments.format_comparison(2, {"asvae": m, "asvae_g": dict(m, fid=None)})
  rows = text.splitlines()
  assert rows[0].startswith("Table 2")
  assert rows[4] == (
    "| AS-VAE | 3.32 | 3.500 | - | 3.400 | 3.36 | 4.00 | 6.34 | 5.00 | - | 30.00 "
    "| 100 | 1.0 + 0.5 |"
  )
  assert rows[5].startswith("| AS-VAE-g | 93.12 | 3.500 |") and "| - | - | 100 |" in rows[5]


def test_bad_table_and_rows_are_clear_errors(tmp_path):
  with pytest.raises(config.ConfigError, match="--table"):
    experiments.reproduce(4, str(tmp_path))
  with pytest.raises(config.ConfigError, match="no rows"):
    experiments.reproduce(2, str(tmp_path), models=["vae"])
  out = run_tool(
    "reproduce",
    [
      "--table=3",
      "--models=nope",
      f"--work_dir={tmp_path}",
    ],
    timeout=120,
  )
  assert out.returncode == 2 and "no rows" in out.stderr and "Traceback" not in out.stderr
