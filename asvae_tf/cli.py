"""Shared plumbing of the command-line tools: flags, config parsing and clean failures.

Every tool's entry point goes through `main`: user mistakes (missing gin file, unknown
binding, bad data or settings, a model_dir holding another model's checkpoint) and a
training run that keeps diverging after its rollback budget end the process with exit
code 2 and ONE line `asvae_tf: error: <message>` on stderr instead of a traceback;
model_dir is not modified by a rejected configuration. The mapping:
  errors.TrainingDivergedError            -> "training diverged: <message>"
  errors.AsvaeError (config, data, ...)   -> "<message>"
  FileNotFoundError, FileExistsError      -> "<message>" (a missing input, an existing output)
  (gin's own errors arrive as errors.GinError: "bad gin configuration: <message>")
  errors.Preempted (SIGTERM / SIGINT, checkpoint saved) -> exit 75 (EX_TEMPFAIL) and one line
  `asvae_tf: preempted by SIGTERM at step N: checkpoint ... saved; rerun ...`
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from asvae_tf import errors
from asvae_tf import registry
from asvae_tf import train

EXIT_USAGE = 2
_USER_ERRORS = (errors.AsvaeError, FileNotFoundError, FileExistsError)


def fail(message):
  """Prints `asvae_tf: error: <message>` on stderr and returns the usage exit code."""
  print(f"asvae_tf: error: {message}", file=sys.stderr)
  return EXIT_USAGE


def guarded(fn, *args, **kwargs):
  """fn(*args, **kwargs) -> its int exit code, or 2 after one error line (see module doc)."""
  try:
    return fn(*args, **kwargs)
  except errors.Preempted as e:  # not a failure: a checkpoint was saved
    print(f"asvae_tf: {errors.one_line(e)}", file=sys.stderr)
    return errors.EXIT_PREEMPTED
  except errors.TrainingDivergedError as e:
    return fail(f"training diverged: {errors.one_line(e)}")
  except _USER_ERRORS as e:
    return fail(errors.one_line(e))


def main(fn):
  """Runs an absl tool: fn(argv) -> exit code, with INFO logging and `guarded` errors."""

  def entry(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return guarded(fn, argv)

  logging.set_verbosity(logging.INFO)
  app.run(entry)


# Flags of asvae-evaluate and asvae-reproduce that each set the evaluate.<same name> binding.
SAMPLE_QUALITY_FLAGS = ("inception_weights", "inception_graph", "fid_reference_stats",
                        "classifier_dir")  # fmt: skip


def sample_quality_bindings(flag_values):
  """The `evaluate.<name> = <value>` bindings of the SAMPLE_QUALITY_FLAGS that are set."""
  return [
    f"evaluate.{name} = {json.dumps(flag_values[name].value)}"
    for name in SAMPLE_QUALITY_FLAGS
    if name in flag_values and flag_values[name].value
  ]


# ---- training ---------------------------------------------------------------------


def define_train_flags():
  """The flags of tools/train.py (also used by test harnesses that wrap it)."""
  flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), applied in order.")
  flags.DEFINE_multi_string("gin_param", [], "Gin binding(s), applied after the files.")
  flags.DEFINE_string(
    "model_dir", None, "Output directory; default runs/<stem of the first --gin_file>."
  )
  flags.DEFINE_enum(
    "strategy", None, ["mirrored", "default", "multi_worker"], "Overrides train.strategy."
  )


def train_main(hooks=None):
  """tools/train.py's body on the parsed flags; returns the exit code."""
  flag_values = flags.FLAGS
  params = list(flag_values.gin_param)
  if flag_values.strategy:
    params.append(f"train.strategy = '{flag_values.strategy}'")
  model_dir = flag_values.model_dir
  if not model_dir:
    first = flag_values.gin_file[0] if flag_values.gin_file else "run"
    model_dir = os.path.join("runs", os.path.splitext(os.path.basename(first))[0])
  return run_training(flag_values.gin_file, params, model_dir, hooks=hooks)


def run_training(gin_files, gin_params, model_dir, hooks=None):
  """Parses the config and trains into model_dir. Returns a process exit code.

  hooks: an `asvae_tf.train.hooks.Hooks` (test harnesses), or None.
  """
  if not gin_files:
    return fail("at least one --gin_file is required (e.g. --gin_file=gin/mnist.gin)")

  def run():
    registry.parse(gin_files, gin_params)
    logging.info("model_dir: %s", model_dir)
    train.train(model_dir, **({"hooks": hooks} if hooks is not None else {}))
    return 0

  return guarded(run)
