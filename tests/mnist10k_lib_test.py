"""bench/mnist10k_lib.py: the MNIST-10k protocol bindings, seed statistics, run stamping."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from bench import mnist10k_lib as lib
from conftest import MNIST_DIR


def test_mean_and_standard_error_match_scipy():
  values = [109.6, 110.4, 108.9]
  mean, se = lib.mean_se(values)
  np.testing.assert_allclose(mean, np.mean(values), rtol=1e-12)
  np.testing.assert_allclose(se, stats.sem(values), rtol=1e-12)
  assert lib.mean_se([3.0]) == (3.0, 0.0)


def test_table_cells():
  assert lib.cell([1.0, 2.0, None]) == f"1.50 ± {stats.sem([1.0, 2.0]):.2f}"
  assert lib.cell([3.14159]) == "3.14" and lib.cell([None]) == "n/a"
  assert lib.cell([0.5, 0.7], ".1f") == "0.6 ± 0.1"


def test_protocol_bindings_are_the_budget():
  b = lib.protocol_bindings("/d", 7000, 20, 2, 1e-3)
  assert "train.num_steps = 1400" in b and "train.seed = 2" in b
  assert "train.batch_size = 100" in b and "dataset.local_dir = '/d'" in b
  assert "generator/optimizer.learning_rate = 0.001" in b


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="needs ../shared/data/mnist")
def test_refit_splits_train_on_all_8000_images():
  """quality_mnist10k.py --refit: the validation slice joins the training images."""
  held_out = lib.load_splits(MNIST_DIR)
  refit = lib.load_splits(MNIST_DIR, validation_size=0)
  assert (len(held_out.train), len(held_out.validation)) == (7000, 1000)
  assert (len(refit.train), len(refit.validation)) == (8000, 0)
  np.testing.assert_array_equal(refit.train, np.concatenate([held_out.train, held_out.validation]))
  np.testing.assert_array_equal(refit.test_binarized, held_out.test_binarized)


def test_a_work_dir_refuses_runs_with_other_settings(tmp_path):
  lib.stamp_work_dir(str(tmp_path), {"k": 1000})
  lib.stamp_work_dir(str(tmp_path), {"k": 1000})  # same settings: fine
  with pytest.raises(ValueError, match="other settings"):
    lib.stamp_work_dir(str(tmp_path), {"k": 50})


def test_gin_hash_follows_includes(tmp_path):
  (tmp_path / "base.gin").write_text("model.latent_dim = 32\n")
  (tmp_path / "variant.gin").write_text("include 'base.gin'\nmodel.objective = 'vae'\n")
  before = lib.gin_sha256(str(tmp_path / "variant.gin"))
  assert lib.gin_sha256(str(tmp_path / "variant.gin")) == before
  (tmp_path / "base.gin").write_text("model.latent_dim = 16\n")  # only the include changes
  assert lib.gin_sha256(str(tmp_path / "variant.gin")) != before


def test_a_finished_run_with_another_request_is_refused(tmp_path, monkeypatch):
  """A reused model_dir must have been trained from the same gin text and bindings."""
  monkeypatch.setattr(lib.experiments, "GIN_DIR", str(tmp_path))
  (tmp_path / "m.gin").write_text("model.latent_dim = 32\n")
  model_dir = tmp_path / "run"
  calls = []

  def fake_train_and_evaluate(*a, **k):  # evaluate writes model_dir/eval/
    calls.append(a + (k,))
    (model_dir / "eval").mkdir()
    return {"iwae_nll": 1.0}

  monkeypatch.setattr(lib.experiments, "train_and_evaluate", fake_train_and_evaluate)
  args = ("m.gin", str(model_dir), ["train.seed = 0"], "/clf", 10, 20)
  assert lib.run(*args) == {"iwae_nll": 1.0} and len(calls) == 1
  assert lib.run(*args) == {"iwae_nll": 1.0} and len(calls) == 1  # reused, not retrained
  assert calls[0][4] == {"checkpoint": "best"}  # the early-stopping best by default
  with pytest.raises(ValueError, match="another gin text, bindings"):
    lib.run("m.gin", str(model_dir), ["train.seed = 1"], "/clf", 10, 20)
  (tmp_path / "m.gin").write_text("model.latent_dim = 16\n")
  with pytest.raises(ValueError, match="another gin text, bindings"):
    lib.run(*args)
  model_dir = tmp_path / "refit"  # a run without a validation slice evaluates its latest
  assert lib.run("m.gin", str(model_dir), [], "/clf", 10, 20, checkpoint="latest")
  assert calls[-1][4] == {"checkpoint": "latest"}


@pytest.mark.parametrize("quick, stem", [(False, "table"), (True, "table_quick")])
def test_results_are_written_as_json_and_markdown(tmp_path, quick, stem):
  out = tmp_path / "results"  # created on demand
  got = lib.write_results(str(out), "table", quick, {"rows": {"vae": 109.6}}, "| a |")
  assert got == str(out / stem)
  assert json.loads((out / f"{stem}.json").read_text()) == {"rows": {"vae": 109.6}}
  assert (out / f"{stem}.md").read_text() == "| a |\n"
  assert sorted(p.name for p in out.iterdir()) == [f"{stem}.json", f"{stem}.md"]
