"""gin_config: bare-name lookup of the shipped configs, includes, operative values."""

import glob
import os

import gin
import pytest

from asvae_tf import errors
from asvae_tf import gin_config
from asvae_tf import losses
from asvae_tf import registry
from conftest import ROOT


def test_config_dir_is_the_checkouts_gin_dir():
  assert os.path.samefile(gin_config.config_dir(), os.path.join(ROOT, "gin"))


def test_bare_names_resolve_to_the_shipped_configs_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert os.path.samefile(
    gin_config.find_gin_file("mnist.gin"), os.path.join(ROOT, "gin", "mnist.gin")
  )
  with pytest.raises(FileNotFoundError, match="shipped configs: cifar10.gin"):
    gin_config.find_gin_file("no_such.gin")
  # A path that exists wins over a shipped config of the same name.
  (tmp_path / "mnist.gin").write_text("dataset.name = 'synthetic'\n")
  assert gin_config.find_gin_file("mnist.gin") == "mnist.gin"


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "gin", "*_*.gin"))))
def test_variants_are_their_base_plus_the_bindings_that_differ(path, tmp_path, monkeypatch):
  name = os.path.basename(path)
  base = name.split("_")[0] + ".gin"
  lines = [line for line in open(path) if line.strip() and not line.startswith("#")]
  assert lines[0].strip() == f"include '{base}'", name
  assert len(lines) <= 8, (name, lines)  # include + a few bindings, not a copy
  monkeypatch.chdir(tmp_path)  # the include resolves without the checkout as cwd
  with gin_config.fresh():
    registry.parse([name])
    suffix = name.split("_", 1)[1][: -len(".gin")]
    # <base>_<objective>.gin changes the objective; another suffix (mnist_fast.gin: training
    # settings) keeps the base's objective.
    objective = suffix if suffix in losses.OBJECTIVES else "asvae"
    assert gin.query_parameter("model.objective") == objective
    assert gin.query_parameter("model.latent_dim") is not None  # from the base
    assert gin.query_parameter("dataset.name") == name.split("_")[0]


def test_missing_gin_file_is_a_one_line_config_error_and_a_file_not_found_error():
  with gin_config.fresh():
    with pytest.raises(errors.GinFileNotFoundError, match="bad gin configuration: gin file"):
      registry.parse(["/no/such/file.gin"])
    with pytest.raises(FileNotFoundError):
      registry.parse(["/no/such/file.gin"])
    with pytest.raises(errors.GinError, match="bad gin configuration") as info:
      registry.parse([], ["model.no_such_parameter = 1"])
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_operative_value_reads_a_binding(tmp_path):
  (tmp_path / "operative_config.gin").write_text(
    "# comment\ntrain.early_stopping_metric = 'elbo'\ntrain.early_stopping_patience = 3\n"
  )
  assert gin_config.operative_value(str(tmp_path), "train.early_stopping_metric") == "elbo"
  assert gin_config.operative_value(str(tmp_path), "train.early_stopping_patience") == "3"
  assert gin_config.operative_value(str(tmp_path), "train.seed", "0") == "0"
  assert gin_config.operative_value(str(tmp_path / "missing"), "train.seed", None) is None


def test_fresh_clears_the_config_before_and_after():
  gin.bind_parameter("model.latent_dim", 7)
  with gin_config.fresh():
    with pytest.raises(ValueError):
      gin.query_parameter("model.latent_dim")
    gin.bind_parameter("model.latent_dim", 5)
  with pytest.raises(ValueError):
    gin.query_parameter("model.latent_dim")


def test_parse_model_dir_skips_training_settings_an_older_release_wrote(tmp_path):
  (tmp_path / "operative_config.gin").write_text(
    "model.objective = 'vae'\nmodel.latent_dim = 3\n"
    "train.a_setting_this_release_does_not_have = (2,)\ntrain.seed = 5\n"
  )
  with gin_config.fresh():
    registry.parse_model_dir(str(tmp_path), (), ["model.latent_dim = 4"])
    assert gin.query_parameter("model.objective") == "vae"
    assert gin.query_parameter("model.latent_dim") == 4  # params after the config
    with pytest.raises(ValueError):
      gin.query_parameter("train.seed")  # training settings are not parsed
  with gin_config.fresh():
    with pytest.raises(errors.GinFileNotFoundError, match="is it a training model_dir"):
      registry.parse_model_dir(str(tmp_path / "missing"))
    (tmp_path / "operative_config.gin").write_text("model.no_such_parameter = 1\n")
    with pytest.raises(errors.GinError, match="bad gin configuration in"):
      registry.parse_model_dir(str(tmp_path))
