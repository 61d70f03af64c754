"""Exports a training checkpoint as a SavedModel (see docs/serving.md).

  python tools/export.py --model_dir=runs/mnist --export_dir=exported/mnist \
      [--checkpoint=best|latest|runs/mnist/best/ckpt-5000] [--dtype_policy=mixed_bfloat16]

The model is rebuilt from model_dir/operative_config.gin; --checkpoint defaults to the
default checkpoint (checkpoints.DEFAULT: the early-stopping best of model_dir/best if there
is one, else the latest of model_dir/checkpoints). The SavedModel goes to
<export_dir>/<step>/ (TF Serving's numbered versions; other versions are kept).
--dtype_policy (gin serving.dtype_policy) is what the networks of the export compute in.
"""

import os

from absl import flags
from absl import logging

from asvae_tf import cli
from asvae_tf import errors
from asvae_tf import export
from asvae_tf import precision
from asvae_tf import registry

flags.DEFINE_string("model_dir", None, "Training model_dir (holds operative_config.gin).")
flags.DEFINE_string(
  "checkpoint", None, "'best', 'latest' or a checkpoint prefix; default: best if any, else latest."
)
flags.DEFINE_string(
  "export_dir", None, "Export base: the SavedModel goes to <export_dir>/<step>/ (replaced)."
)
flags.DEFINE_enum(
  "dtype_policy", None, list(precision.DTYPE_POLICIES),
  "What the export's networks compute in (sets serving.dtype_policy; default float32).",
)  # fmt: skip
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.model_dir or not FLAGS.export_dir:
    return cli.fail("--model_dir and --export_dir are required")
  operative = os.path.join(FLAGS.model_dir, export.CONFIG_FILE)
  if not os.path.isfile(operative):
    return cli.fail(f"no {export.CONFIG_FILE} in model_dir {FLAGS.model_dir}")
  params = [f"serving.dtype_policy = '{FLAGS.dtype_policy}'"] if FLAGS.dtype_policy else []
  registry.parse_model_dir(FLAGS.model_dir, (), params)  # the model is built from its gin config
  try:
    export_dir, ckpt = export.export_checkpoint(FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint)
  except ValueError as e:  # e.g. a checkpoint prefix that is not a checkpoint
    return cli.fail(errors.one_line(e))
  reason = export.read_metadata(export_dir)["chosen_because"]
  logging.info("exported %s (%s) to %s", ckpt, reason, export_dir)
  print(f"exported {ckpt} ({reason}) -> {export_dir}")
  return 0


def run():
  """Console script `asvae-export` (setup.py entry point); tools/export.py calls it too."""
  cli.main(main)


if __name__ == "__main__":
  run()
