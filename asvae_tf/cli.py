"""Shared plumbing of the command-line tools: config parsing and clean failures.

User mistakes (missing gin file, unknown binding, bad data or settings, a model_dir
holding another model's checkpoint) and a training run that keeps diverging after its
rollback budget end the process with exit code 2 and ONE line on stderr instead of a
traceback; model_dir is not modified by a rejected configuration.
"""

import sys

from absl import logging

EXIT_USAGE = 2


def fail(message):
  """Prints `asvae_tf: error: <message>` on stderr and returns the usage exit code."""
  print(f"asvae_tf: error: {message}", file=sys.stderr)
  return EXIT_USAGE


def run_training(gin_files, gin_params, model_dir):
  """Parses the config and trains into model_dir. Returns a process exit code."""
  from asvae_tf import config  # pylint: disable=g-import-not-at-top
  from asvae_tf import data
  from asvae_tf import train_lib

  if not gin_files:
    return fail("at least one --gin_file is required (e.g. --gin_file=gin/mnist.gin)")
  try:
    config.parse(gin_files, gin_params)
  except (FileNotFoundError, ValueError, KeyError, SyntaxError) as e:
    return fail(f"bad gin configuration: {_one_line(e)}")
  logging.info("model_dir: %s", model_dir)
  try:
    train_lib.train(model_dir)
  except data.DataError as e:
    return fail(_one_line(e))
  except config.ConfigError as e:
    return fail(_one_line(e))
  except train_lib.TrainingDivergedError as e:
    return fail(f"training diverged: {_one_line(e)}")
  return 0


def _one_line(e):
  return " ".join(str(e).split())
