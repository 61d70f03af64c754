"""Registers every gin configurable (by importing its module) and parses configs.

`parse` is the entry point the tools, experiments and tests use: it guarantees that all
configurables exist before gin reads a file, so a typo in a binding is an error, never a
silently ignored line. Adding a configurable = adding its module to the imports below.
"""

import os

import gin

# pylint: disable=unused-import
from asvae_tf import data  # noqa: F401  dataset
from asvae_tf import errors
from asvae_tf import flows  # noqa: F401  posterior
from asvae_tf import gin_config
from asvae_tf import model  # noqa: F401  model, likelihoods, networks
from asvae_tf import optimizers  # noqa: F401  optimizer
from asvae_tf import precision  # noqa: F401  serving
from asvae_tf import evaluation  # noqa: F401  evaluate
from asvae_tf import train  # noqa: F401  train


def parse_model_dir(model_dir, gin_files=(), gin_params=()):
  """Parses model_dir/operative_config.gin to rebuild its model, then gin_files and params.

  The config's `train.*` lines are skipped: evaluation, export and sampling never run the
  training loop, and a model_dir written by an older release may name training settings
  this release no longer has. Errors as `parse` (a missing config: GinFileNotFoundError).
  """
  path = os.path.join(model_dir, gin_config.OPERATIVE_CONFIG)
  if not os.path.isfile(path):
    raise errors.GinFileNotFoundError(
      f"no {gin_config.OPERATIVE_CONFIG} in model_dir {model_dir} (is it a training model_dir?)"
    )
  with open(path) as f:
    lines = [line for line in f if not line.startswith("train.")]
  try:
    gin.parse_config(lines)
  except (ValueError, KeyError, SyntaxError) as e:
    raise errors.GinError(f"bad gin configuration in {path}: {errors.one_line(e)}") from None
  parse(gin_files, gin_params)


def parse(gin_files=(), gin_params=()):
  """gin_config.parse after registering every configurable.

  Raises:
    errors.GinFileNotFoundError: a gin file does not exist (also a FileNotFoundError).
    errors.GinError: gin rejects a file or binding (also a ValueError); the message starts
      with "bad gin configuration: ".
  """
  try:
    gin_config.parse(gin_files, gin_params)
  except FileNotFoundError as e:
    raise errors.GinFileNotFoundError(f"bad gin configuration: {errors.one_line(e)}") from None
  except (ValueError, KeyError, SyntaxError) as e:
    raise errors.GinError(f"bad gin configuration: {errors.one_line(e)}") from None
