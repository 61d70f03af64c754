"""PNG grids from an exported AS-VAE: samples, reconstructions, latent interpolations.

  python tools/sample.py --saved_model=E --out_dir=O [--num=64] [--seed=0] [--scale=0]
  python tools/sample.py --model_dir=D  --out_dir=O [--num=64] [--seed=0] [--scale=0]

Writes to --out_dir:
  samples.png         --num decoder means of prior draws, a near-square grid;
  reconstructions.png test image / reconstruction pairs (min(num, 32) pairs, 4 pairs a
                      row; needs data: only with --model_dir, whose gin config names
                      the dataset);
  interpolations.png  rows of 10 decoder means along straight lines in z between the
                      posterior means of pairs of test images (--model_dir) or between
                      pairs of prior draws (--saved_model alone).
--saved_model takes an export base (its highest numbered version, as TF Serving serves it),
a version directory <base>/<step> or a flat SavedModel of an earlier release; --model_dir
uses D/saved_model, which training wrote from the default checkpoint (checkpoints.DEFAULT:
the early-stopping best, else the final weights).
Tiles are scaled up by nearest neighbour (--scale; 0: the smallest factor that makes each
picture at least 600 px wide) with --separator grey pixels between tiles.
"""

import math
import os

from absl import flags
import numpy as np
import tensorflow as tf

from asvae_tf import cli
from asvae_tf import data
from asvae_tf import errors
from asvae_tf import gin_config
from asvae_tf import registry
from asvae_tf import versions
from asvae_tf.images import pairs, picture, write_png

flags.DEFINE_string(
  "saved_model", None, "Export base (highest version) or SavedModel directory (a version)."
)
flags.DEFINE_string(
  "model_dir",
  None,
  "Training model_dir (uses model_dir/saved_model and the dataset of its operative_config.gin).",
)
flags.DEFINE_string("out_dir", None, "Where the PNGs go.")
flags.DEFINE_integer("num", 64, "Number of samples.")
flags.DEFINE_integer("seed", 0, "Seed of all randomness.")
flags.DEFINE_integer(
  "scale", 0, "Nearest-neighbour scale of every tile; 0: the smallest that makes a picture "
  ">= 600 px wide.", lower_bound=0,
)  # fmt: skip
flags.DEFINE_integer("separator", 2, "Grey pixels between tiles.", lower_bound=0)
FLAGS = flags.FLAGS

STEPS = 10  # images per interpolation strip
PAIRS_PER_ROW = 4  # test/reconstruction pairs per grid row


def _test_images(model_dir, n):
  """float32 [n, H, W, C] test images of model_dir's dataset, or None with a note."""
  try:
    with gin_config.fresh():
      registry.parse_model_dir(model_dir)
      splits = data.load_splits()
  except Exception as e:  # pylint: disable=broad-except  (samples still get written)
    print(f"note: no test images ({errors.one_line(e)}); skipping reconstructions")
    return None
  return data.to_float(splits.test[:n], splits.binary)


def _picture(images, cols):
  """uint8 picture of images in `cols` columns with the --scale and --separator flags."""
  return picture(images, cols, FLAGS.scale, FLAGS.separator)


def main(argv):
  del argv
  if bool(FLAGS.saved_model) == bool(FLAGS.model_dir) or not FLAGS.out_dir:
    return cli.fail("give --out_dir and exactly one of --saved_model, --model_dir")
  if FLAGS.num <= 0:
    return cli.fail("--num must be >= 1")
  export_dir = FLAGS.saved_model or os.path.join(FLAGS.model_dir, "saved_model")
  m = tf.saved_model.load(versions.resolve(export_dir))
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  seed = tf.constant([FLAGS.seed, 0], tf.int32)

  out = m.signatures["sample"](num_samples=tf.constant(FLAGS.num), seed=seed)
  samples = out["images"].numpy()
  cols = int(math.ceil(math.sqrt(FLAGS.num)))
  write_png(_picture(samples, cols), os.path.join(FLAGS.out_dir, "samples.png"))

  x = _test_images(FLAGS.model_dir, min(FLAGS.num, 32)) if FLAGS.model_dir else None
  if x is None:
    if not FLAGS.model_dir:
      print(
        "note: no data with --saved_model alone; skipping reconstructions, "
        "interpolating between prior draws"
      )
    ends = out["z"].numpy()
  else:
    rec = m.signatures["reconstruct"](images=tf.constant(x), seed=seed)["images"].numpy()
    write_png(
      _picture(pairs(x, rec), PAIRS_PER_ROW), os.path.join(FLAGS.out_dir, "reconstructions.png")
    )
    ends = m.signatures["encode"](images=tf.constant(x), seed=seed)["posterior_mean"].numpy()
  num_pairs = max(1, min(8, len(ends) // 2))
  if len(ends) < 2:
    ends = np.concatenate([ends, -ends])
  t = np.linspace(0.0, 1.0, STEPS, dtype=np.float32)[None, :, None]
  a, b = ends[0 : 2 * num_pairs : 2, None], ends[1 : 2 * num_pairs : 2, None]
  z = ((1.0 - t) * a + t * b).reshape(-1, ends.shape[-1])
  strips = m.signatures["decode"](z=tf.constant(z))["images"].numpy()
  write_png(_picture(strips, STEPS), os.path.join(FLAGS.out_dir, "interpolations.png"))
  print(f"wrote {', '.join(sorted(os.listdir(FLAGS.out_dir)))} to {FLAGS.out_dir}")
  return 0


def run():
  """Console script `asvae-sample` (setup.py entry point); tools/sample.py calls it too."""
  cli.main(main)


if __name__ == "__main__":
  run()
