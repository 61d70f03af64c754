"""The MNIST-10k protocol shared by bench/quality_mnist10k.py, bench/ablation_mnist10k.py,
bench/variants_mnist10k.py and bench/tune_mnist10k.py (their common flags and result files too).

../shared/data/mnist/README.md: t10k images 0..7999 train (the last 1,000 are the
early-stopping validation slice), 8000..9999 test (binarised once, sha256 checked by
asvae_tf.data); D = 32, 784-500-500 / 32-500-500-784 MLPs, Bernoulli decoder, batch
100, at most 20 passes over the 7,000 training images (quality_mnist10k.py --refit: all
8,000, no early stopping); -ELBO and IWAE (k = 1000) on the 2,000 test images at the best
checkpoint (--refit: the last); classifier FID / score of 10,000
samples with the CNN of tools/train_classifier.py trained on images 0..7999.
"""

import hashlib
import json
import math
import os
import re
import shutil

from absl import flags
from absl import logging

from asvae_tf import data
from asvae_tf import experiments
from asvae_tf.evaluation import feature_nets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
BATCH = 100
# (metric key, table header) of the columns every MNIST-10k table shows.
METRIC_COLUMNS = (
  ("neg_elbo", "-ELBO"),
  ("iwae_nll", "IWAE NLL"),
  ("classifier_fid", "classifier FID"),
  ("classifier_score", "classifier score"),
  ("kl_exact", "exact KL"),
)


def define_flags(name, work_help):
  """The flags every MNIST-10k script defines: --mnist_dir, --work_dir (default runs/<name>,
  with help text work_help), --results_dir, --learning_rate and --quick."""
  flags.DEFINE_string("mnist_dir", MNIST_DIR, "Directory with the MNIST t10k IDX files.")
  flags.DEFINE_string("work_dir", os.path.join(ROOT, "runs", name), work_help)
  flags.DEFINE_string(
    "results_dir", os.path.join(ROOT, "bench", "results"), f"Where {name}.json / .md are written."
  )
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of all networks.")
  flags.DEFINE_bool("quick", False, "1 epoch, k = 50, 1,000 samples, 500 test images.")


def write_results(results_dir, name, quick, payload, markdown):
  """Writes <results_dir>/<name>[_quick].json (payload) and .md (markdown); returns the stem."""
  os.makedirs(results_dir, exist_ok=True)
  stem = os.path.join(results_dir, name + ("_quick" if quick else ""))
  with open(stem + ".json", "w") as f:
    json.dump(payload, f, indent=1)
  with open(stem + ".md", "w") as f:
    f.write(markdown + "\n")
  print(f"\nwrote {stem}.json/.md")
  return stem


def eval_settings(quick):
  """(passes, IWAE k, generated samples, test images or None = all): the protocol's, or a
  --quick smoke run's (1 pass, k = 50, 1,000 samples, 500 test images)."""
  return (1, 50, 1000, 500) if quick else (20, 1000, 10000, None)


def load_splits(mnist_dir, validation_size=None):
  """The MNIST-10k splits (sha256 of the test binarisation checked); ValueError otherwise.
  validation_size: None = the protocol's 1,000-image slice; 0 = all 8,000 train."""
  splits = data.load_splits(name="mnist", local_dir=mnist_dir, validation_size=validation_size)
  if len(splits.train) + len(splits.validation) != data.MNIST10K_NUM_TRAIN:
    raise ValueError(f"{mnist_dir} is not the MNIST-10k setting: {splits.note}")
  return splits


def protocol_bindings(mnist_dir, train_size, epochs, seed, learning_rate):
  """Gin bindings of the protocol: data, budget (epochs x train_size / 100 steps), seed."""
  steps_per_epoch = train_size // BATCH
  return [
    f"dataset.local_dir = '{mnist_dir}'",
    "dataset.name = 'mnist'",
    f"train.batch_size = {BATCH}",
    f"train.num_steps = {epochs * steps_per_epoch}",
    f"train.seed = {seed}",
    "train.strategy = 'default'",
    f"train.validate_every = {steps_per_epoch}",
    f"train.summary_every = {steps_per_epoch}",
    f"train.checkpoint_every = {steps_per_epoch * 5}",
    f"train.image_every = {steps_per_epoch * 5}",
    f"generator/optimizer.learning_rate = {learning_rate}",
    f"discriminator/optimizer.learning_rate = {learning_rate}",
  ]


def classifier(mnist_dir, directory, epochs=8):
  """Metadata of the MNIST classifier in `directory`, trained there first if missing.

  Trained in a private directory renamed into place, so processes sharing a work dir never
  read a half-written classifier; when two train at once, the first rename wins and the
  other's copy is discarded (the same seed gives the same network)."""
  path = os.path.join(directory, feature_nets.CLASSIFIER_METADATA)
  if not os.path.isfile(path):
    logging.info("training the MNIST classifier on t10k images 0..7999")
    private = f"{directory.rstrip(os.sep)}.partial{os.getpid()}"
    shutil.rmtree(private, ignore_errors=True)
    feature_nets.train_classifier(mnist_dir, private, epochs=epochs, verbose=0)
    try:
      os.rename(private, directory)  # atomic; fails if another process got there first
    except OSError:
      if not os.path.isfile(path):
        raise
      shutil.rmtree(private, ignore_errors=True)
  with open(path) as f:
    return json.load(f)


def stamp_work_dir(work_dir, settings):
  """Refuses to mix runs: work_dir/settings.json must equal `settings` (written if new)."""
  os.makedirs(work_dir, exist_ok=True)
  stamp = os.path.join(work_dir, "settings.json")
  _check_stamp(
    stamp,
    settings,
    f"{work_dir} holds runs made with other settings; delete it or pass another --work_dir",
  )
  if not os.path.isfile(stamp):
    with open(stamp, "w") as f:
      json.dump(settings, f, indent=1)


def _check_stamp(path, expected, message):
  """ValueError(message) if the JSON file at path exists and differs from expected."""
  if os.path.isfile(path):
    with open(path) as f:
      if json.load(f) != expected:
        raise ValueError(message)


def run(
  gin_file,
  model_dir,
  bindings,
  classifier_dir,
  num_importance_samples,
  num_generated,
  max_examples=None,
  checkpoint="best",
  split="test",
):
  """Trains (or resumes) one model and evaluates its `checkpoint` ("best": the early-stopping
  best; "latest" for a run without a validation slice or with early stopping off); the
  metrics dict.

  A model_dir that already holds eval/result.json of a finished run is not rerun. Its
  run_request.json (the gin text with its includes, the bindings and the evaluation
  settings) must equal this call's: a gin file or binding changed since is a ValueError,
  not a stale result under a new label (runs made before the stamp existed are reused).
  split: the evaluated split, "test" or "validation" (bench/tune_mnist10k.py).
  """
  params = [
    f"evaluate.num_importance_samples = {num_importance_samples}",
    f"evaluate.num_generated = {num_generated}",
    f"evaluate.classifier_dir = '{classifier_dir}'",
  ]
  if max_examples:
    params.append(f"evaluate.max_examples = {max_examples}")
  if split != "test":  # only then, so the stamps of earlier test-split runs stay valid
    params.append(f"evaluate.split = '{split}'")
  gin_path = os.path.join(experiments.GIN_DIR, gin_file)
  request = dict(gin_file=gin_file, gin_sha256=gin_sha256(gin_path), bindings=list(bindings),
                 params=params)  # fmt: skip
  stamp = os.path.join(model_dir, "run_request.json")
  _check_stamp(
    stamp,
    request,
    f"{model_dir} was trained with another gin text, bindings or evaluation settings; "
    "delete it (or the work dir) to rerun",
  )
  done = os.path.join(model_dir, "eval", "result.json")
  if os.path.isfile(done):
    with open(done) as f:
      return json.load(f)
  os.makedirs(model_dir, exist_ok=True)
  with open(stamp, "w") as f:
    json.dump(request, f, indent=1)
  metrics = experiments.train_and_evaluate(
    gin_path, model_dir, bindings, params, checkpoint=checkpoint
  )
  with open(done, "w") as f:
    json.dump(metrics, f, indent=1)
  return metrics


def cpu_name():
  """The CPU's model name from /proc/cpuinfo ("?" where there is none), for table headers."""
  try:
    with open("/proc/cpuinfo") as f:
      return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
  except OSError:
    return "?"


def gin_sha256(path):
  """sha256 of a gin file's text followed by the texts of its includes (recursively, each
  resolved beside the including file), so an edit of an included file changes it too."""
  digest = hashlib.sha256()

  def add(p):
    with open(p) as f:
      text = f.read()
    digest.update(text.encode())
    for name in re.findall(r"^include\s+['\"]([^'\"]+)['\"]", text, flags=re.M):
      add(os.path.join(os.path.dirname(p), name))

  add(path)
  return digest.hexdigest()


def mean_se(values):
  """(mean, standard error) of a list of numbers (se = 0 for one value)."""
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, 0.0
  var = sum((v - mean) ** 2 for v in values) / (n - 1)
  return mean, math.sqrt(var / n)


def cell(values, spec=".2f"):
  """A table cell: "mean ± se" over values (None dropped), the value alone for one, "n/a"
  for none."""
  values = [v for v in values if v is not None]
  if not values:
    return "n/a"
  mean, se = mean_se(values)
  return f"{mean:{spec}} ± {se:{spec}}" if len(values) > 1 else f"{mean:{spec}}"
