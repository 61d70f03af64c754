"""bench/tune_lib.py (bench/tune_mnist10k.py's sweeps): candidates, run dirs, divergence, table."""

import os

import pytest
from scipy import stats

from asvae_tf import errors
from bench import tune_lib as tune


def test_a_sweep_makes_one_candidate_per_value_after_the_baseline():
  extra = "train.jit_compile = 'flow'"
  got = tune.candidates(["mnist_vae.gin", "mnist.gin"], "model.f2_decoder_weight=1.0, 3.0", [extra])
  assert got == [
    ("mnist_vae", "mnist_vae.gin", [extra]),
    ("mnist model.f2_decoder_weight=1.0", "mnist.gin", [extra, "model.f2_decoder_weight = 1.0"]),
    ("mnist model.f2_decoder_weight=3.0", "mnist.gin", [extra, "model.f2_decoder_weight = 3.0"]),
  ]
  assert tune.candidates(["a.gin", "b.gin", "c.gin"], None) == [
    ("a", "a.gin", []), ("b", "b.gin", []), ("c", "c.gin", []),
  ]  # fmt: skip


@pytest.mark.parametrize(
  "gin_files, sweep, bindings, match",
  [
    (["a.gin", "b.gin"], "model.f2_decoder_weight", [], "--sweep must look like"),
    (["a.gin", "b.gin"], "=1,2", [], "--sweep must look like"),
    (["a.gin", "b.gin"], "a b=1", [], "--sweep must look like"),
    (["a.gin", "b.gin"], "x.y=", [], "--sweep must look like"),
    (["a.gin", "b.gin"], "x.y=1,1", [], "repeats a value"),
    (["a.gin"], "x.y=1,2", [], "needs a second --gin_files"),
    (["a.gin", "a.gin"], None, [], "repeats a file"),
    (["a.gin", "b.gin"], None, ["no equals sign"], "--binding must look like"),
    (["a.gin", "b.gin"], "train.num_steps=10,20", [], "fixed by the tuning setup"),
    (["a.gin", "b.gin"], None, ["train.early_stopping_patience = 3"], "fixed by the tuning"),
    (["a.gin", "b.gin"], None, ["generator/optimizer.learning_rate = 1"], "--learning_rate"),
  ],
)
def test_bad_sweeps_are_refused_by_name(gin_files, sweep, bindings, match):
  with pytest.raises(ValueError, match=match):
    tune.candidates(gin_files, sweep, bindings)


def test_run_dirs_differ_for_every_candidate_and_seed():
  # Values a character-level slug would merge ('@f' / '%f', 'a b' / 'a_b') stay apart.
  cands = [("m.gin", [f"x.y = {v}"]) for v in ("@f", "%f", "'a b'", "'a_b'", "1.0")]
  dirs = {tune.run_dir("/w", g, b, s) for g, b in cands for s in (0, 1)}
  assert len(dirs) == 10
  long = tune.run_dir("/w", "m.gin", [f"x.y = {'9' * 400}"], 0)
  assert len(os.path.basename(long)) < 120  # a file name, well below 255 bytes
  assert tune.run_dir("/w", "m.gin", ["x.y = 1"], 0) == tune.run_dir("/w", "m.gin", ["x.y = 1"], 0)


def test_sweep_runs_every_candidate_and_records_a_divergence():
  calls = []

  def run_fn(gin_file, model_dir, bindings):
    calls.append((gin_file, model_dir, bindings))
    if "x.y = 2" in bindings and bindings[-1] == "seed 1":
      raise errors.TrainingDivergedError("non-finite loss at step 7")
    return {"iwae_nll": 100.0 + len(calls)}

  cands = tune.candidates(["a.gin", "b.gin"], "x.y=1,2")
  rows = tune.sweep(cands, [0, 1], lambda seed: [f"seed {seed}"], run_fn, "/w")
  assert [label for label, _ in rows] == ["a", "b x.y=1", "b x.y=2"]
  assert len(calls) == 6 and len({c[1] for c in calls}) == 6
  assert calls[3] == ("b.gin", tune.run_dir("/w", "b.gin", ["x.y = 1"], 1), ["x.y = 1", "seed 1"])
  assert rows[2][1][1] == {"error": "TrainingDivergedError: non-finite loss at step 7"}
  assert rows[2][1][0] == {"iwae_nll": 105.0}


def test_table_pairs_each_candidate_with_the_baseline_by_seed():
  def m(nll):
    return {"iwae_nll": nll, "neg_elbo": nll + 8, "classifier_fid": 100.0}

  rows = [
    ("vae", {0: m(102.0), 1: m(103.0), 2: m(104.0)}),
    ("asvae", {0: m(101.0), 1: m(102.5), 2: m(103.0)}),
    ("broken", {0: m(101.0), 1: {"error": "TrainingDivergedError: x"}, 2: m(104.5)}),
  ]
  out = tune.table(rows, [0, 1, 2], "header").splitlines()
  assert out[0] == "header" and out[2].startswith("| candidate | seeds | -ELBO | IWAE NLL")
  assert out[4].startswith(f"| vae | 0,1,2 | 111.00 ± {stats.sem([110, 111, 112]):.2f} |")
  assert out[4].endswith(" | n/a | n/a | - | - |")  # no score or KL in these metrics
  diff = f"-0.83 ± {stats.sem([-1.0, -0.5, -1.0]):.2f}"
  assert out[5].startswith("| asvae | 0,1,2 |") and out[5].endswith(f" | - | {diff} |")
  # The diverged seed is out of the means and the pairs, and named.
  assert out[6].startswith(f"| broken | 0,1,2 | 110.75 ± {stats.sem([109, 112.5]):.2f} |")
  assert out[6].endswith(f" | 1 | -0.25 ± {stats.sem([-1.0, 0.5]):.2f} (n = 2) |")
