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


def test_a_validation_run_asks_the_evaluation_for_that_split(tmp_path, monkeypatch):
  """bench/tune_mnist10k.py evaluates the validation slice; test-split requests are as before
  (so the stamps of earlier runs stay valid)."""
  monkeypatch.setattr(lib.experiments, "GIN_DIR", str(tmp_path))
  (tmp_path / "m.gin").write_text("model.latent_dim = 32\n")
  params = []

  def fake_train_and_evaluate(gin_path, model_dir, bindings, eval_params, checkpoint):
    params.append(list(eval_params))
    os.makedirs(os.path.join(model_dir, "eval"))
    return {"iwae_nll": 1.0}

  monkeypatch.setattr(lib.experiments, "train_and_evaluate", fake_train_and_evaluate)
  lib.run("m.gin", str(tmp_path / "a"), [], "/clf", 10, 20, split="validation")
  lib.run("m.gin", str(tmp_path / "b"), [], "/clf", 10, 20)
  assert "evaluate.split = 'validation'" in params[0]
  assert not any("evaluate.split" in p for p in params[1])


def test_cpu_name_reads_proc_cpuinfo(monkeypatch):
  import builtins
  import io

  real_open = builtins.open
  text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"

  def fake_open(path, *a, **k):
    return io.StringIO(text) if path == "/proc/cpuinfo" else real_open(path, *a, **k)

  monkeypatch.setattr(builtins, "open", fake_open)
  assert lib.cpu_name() == "AMD EPYC 7B13"
  text = "processor\t: 0\n"  # no model name line (e.g. some ARM kernels)
  assert lib.cpu_name() == "?"

  def no_file(path, *a, **k):
    raise FileNotFoundError(path)

  monkeypatch.setattr(builtins, "open", no_file)
  assert lib.cpu_name() == "?"


def test_a_classifier_is_trained_once_and_moved_into_place(tmp_path, monkeypatch):
  """Processes sharing a work dir: the classifier appears whole or not at all."""
  trained = []

  def fake_train(mnist_dir, out, epochs, verbose):
    trained.append(out)
    os.makedirs(out)
    meta = {"test_accuracy": 0.99}
    with open(os.path.join(out, lib.feature_nets.CLASSIFIER_METADATA), "w") as f:
      json.dump(meta, f)
    return meta

  monkeypatch.setattr(lib.feature_nets, "train_classifier", fake_train)
  target = str(tmp_path / "classifier")
  assert lib.classifier("/mnist", target) == {"test_accuracy": 0.99}
  assert trained[0] != target and not os.path.exists(trained[0])  # trained aside, renamed
  assert lib.classifier("/mnist", target) == {"test_accuracy": 0.99} and len(trained) == 1
  # Another process finished first: this one's copy is discarded, the winner's kept.
  other = str(tmp_path / "other")
  real_train = fake_train

  def lose_the_race(mnist_dir, out, epochs, verbose):
    real_train(mnist_dir, other, epochs, verbose)  # the winner...
    os.rename(other, out.rsplit(".partial", 1)[0])  # ...moves its copy in first
    return real_train(mnist_dir, out, epochs, verbose)

  monkeypatch.setattr(lib.feature_nets, "train_classifier", lose_the_race)
  target2 = str(tmp_path / "classifier2")
  assert lib.classifier("/mnist", target2) == {"test_accuracy": 0.99}
  assert sorted(os.listdir(tmp_path)) == ["classifier", "classifier2"]
