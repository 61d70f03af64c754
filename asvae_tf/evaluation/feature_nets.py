"""Networks that score generated images (section 5.1): InceptionV3 and an MNIST CNN.

Both expose `predict(images) -> (probs [N, C], features [N, F])` on images
[N, H, W, C] float in [0, 1]; `metrics.inception_score` turns probs into the
Inception Score (with the MNIST CNN: the "classifier score") and
`metrics.fid_from_features` turns features of generated and real images into
the FID.

  * `InceptionNet(weights_path)`: Keras' InceptionV3 (1000 ImageNet classes,
    2048-d pool features) with weights from a LOCAL file (machines here cannot
    download them), e.g. Keras' inception_v3_weights_tf_dim_ordering_tf_kernels.h5.
    Images are resized to 299x299 (bilinear), grey images repeated to 3 channels,
    and scaled to [-1, 1]. Labelled NOT comparable (`comparable`, `provenance`):
    published IS/FID numbers use the 2015 TF Inception graph, which
    `inception_graph.InceptionGraph` runs; Keras' weights give numbers of the same
    kind that are not digit-for-digit comparable with them.
  * `Classifier`: a small CNN trained on MNIST by `train_classifier`
    (tools/train_classifier.py), saved as DIR/classifier.keras + DIR/classifier.json
    (its test accuracy and data provenance). Features are its 128-d penultimate layer.
    `build_classifier`, `load_labeled_mnist` and `train_classifier` make it.
  * `sample_quality(net, generated, real, num_splits)`: score, its std, the score of the
    real images and the FID, with any of these networks (against the net's
    `reference_stats` (mu, sigma) when it has them, else against the real images).
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from asvae_tf import data
from asvae_tf import errors
from asvae_tf.evaluation import metrics

CLASSIFIER_FILE = "classifier.keras"
CLASSIFIER_METADATA = "classifier.json"
FEATURES_LAYER = "features"


class _FeatureNet:
  """predict(images) in batches with a compiled forward pass."""

  def __init__(self, forward, batch_size):
    self._forward = tf.function(forward)
    self.batch_size = int(batch_size)

  def predict(self, images, batch_size=None):
    """images float [N, H, W, C] in [0, 1] -> (probs [N, C], features [N, F]) float64."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
      raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    bs = int(batch_size or self.batch_size)
    # One trace per image shape, for any batch size (tf.function caches it per spec): a last
    # partial batch or another set's size does not retrace (InceptionV3 takes seconds).
    spec = tf.TensorSpec([None, *images.shape[1:]], tf.float32)
    forward = self._forward.get_concrete_function(spec)
    probs, feats = [], []
    for i in range(0, len(images), bs):
      p, f = forward(tf.constant(images[i : i + bs]))
      probs.append(p.numpy().astype(np.float64))
      feats.append(f.numpy().astype(np.float64))
    return np.concatenate(probs), np.concatenate(feats)


class InceptionNet(_FeatureNet):
  """InceptionV3 with weights from a local file: (softmax [N, 1000], pool3 [N, 2048])."""

  comparable = False  # with published IS / FID: those use the 2015 TF graph

  def __init__(self, weights_path, batch_size=50):
    if not weights_path or not os.path.isfile(weights_path):
      raise FileNotFoundError(
        f"InceptionV3 weights file not found: {weights_path!r} (machines here cannot "
        f"download it; copy Keras' inception_v3_weights_tf_dim_ordering_tf_kernels.h5 "
        f"there, or leave evaluate.inception_weights unset to skip IS/FID)"
      )
    try:
      base = keras.applications.InceptionV3(include_top=True, weights=weights_path)
    except (ValueError, OSError, KeyError) as e:
      raise errors.ConfigError(
        f"{weights_path} is not a weights file of Keras' InceptionV3 with its top "
        f"(1000-class) layer: {errors.one_line(e)[:200]}"
      ) from None
    net = keras.Model(base.inputs, [base.output, base.get_layer("avg_pool").output])
    self.name = os.path.basename(weights_path)
    self.weights_path = weights_path

    def forward(x):
      if x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
      x = tf.image.resize(x, (299, 299), method="bilinear")
      return net(x * 2.0 - 1.0, training=False)

    super().__init__(forward, batch_size)

  @property
  def provenance(self):
    """metrics.json keys naming the network and what the FID is measured against."""
    return {
      "inception_weights": self.weights_path,
      "inception_network": "Keras InceptionV3 weights: NOT comparable with published IS/FID "
      "(use evaluate.inception_graph)",
      "inception_comparable": False,
      "fid_reference": "the evaluated split",
    }


class Classifier(_FeatureNet):
  """The MNIST CNN saved by `train_classifier`: (softmax [N, 10], features [N, 128])."""

  def __init__(self, directory, batch_size=500):
    path = os.path.join(directory, CLASSIFIER_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(
        f"no {CLASSIFIER_FILE} in {directory!r}; train one with "
        f"tools/train_classifier.py --output_dir={directory}"
      )
    try:
      net = keras.saving.load_model(path, compile=False)
      feat = keras.Model(net.inputs, [net.output, net.get_layer(FEATURES_LAYER).output])
      with open(os.path.join(directory, CLASSIFIER_METADATA)) as f:
        self.metadata = json.load(f)
    except (ValueError, OSError, KeyError) as e:  # corrupt files, json errors included
      raise errors.ConfigError(
        f"cannot load the classifier in {directory!r} (saved by "
        f"tools/train_classifier.py?): {errors.one_line(e)[:200]}"
      ) from None
    self.name = f"classifier ({directory})"
    self.directory = directory
    self.image_shape = tuple(net.inputs[0].shape[1:])
    super().__init__(lambda x: feat(x, training=False), batch_size)


def sample_quality(net, generated, real, num_splits):
  """Scores of generated images with a feature net: the Inception Score (with the MNIST
  CNN: the classifier score) and the FID against real images.

  Args:
    net: an `InceptionNet`, `inception_graph.InceptionGraph` or `Classifier`.
    generated, real: float32 [N, H, W, C] in [0, 1] (N >= num_splits; N >= 2 for the FID).
    num_splits: splits of the score.
  Returns:
    (score mean, score std, score of the real images, FID), floats. The FID is between
    the generated images' features and net.reference_stats (mu, sigma) if the net has
    them (TTUR's reference statistics), else the real images' features.
  """
  probs_gen, feats_gen = net.predict(generated)
  probs_real, feats_real = net.predict(real)
  score, score_std = metrics.inception_score(probs_gen, num_splits)
  real_score, _ = metrics.inception_score(probs_real, num_splits)
  reference = getattr(net, "reference_stats", None)
  if reference is None:
    return score, score_std, real_score, metrics.fid_from_features(feats_real, feats_gen)
  mu, sigma = feats_gen.mean(axis=0), np.atleast_2d(np.cov(feats_gen, rowvar=False))
  return score, score_std, real_score, metrics.frechet_distance(mu, sigma, *reference)


def build_classifier(input_shape=(28, 28, 1), num_classes=10):
  """Two conv blocks (32, 64 channels), a 128-unit feature layer, softmax head."""
  inputs = keras.Input(input_shape)
  x = inputs
  for width in (32, 64):
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(128, activation="relu", name=FEATURES_LAYER)(x)
  x = keras.layers.Dropout(0.3)(x)
  outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
  return keras.Model(inputs, outputs, name="mnist_classifier")


def load_labeled_mnist(local_dir):
  """Labelled MNIST from IDX files, split like `data.load_splits` splits the images.

  Full MNIST when train-images/labels are present (train 60k / test t10k); otherwise
  the MNIST-10k protocol: t10k 0..7999 train, 8000..9999 test (the AS-VAE test split
  is never trained on).

  Returns:
    dict: train_x, test_x uint8 [N, 28, 28, 1]; train_y, test_y uint8 [N]; note str.
  Raises:
    errors.DataError: missing or corrupt files.
  """
  if not local_dir or not os.path.isdir(local_dir):
    raise errors.DataError(f"MNIST directory {local_dir!r} does not exist")
  entries = set(os.listdir(local_dir))

  def find(names, what):
    for name in names:
      if name in entries:
        return os.path.join(local_dir, name)
    if what:
      raise errors.DataError(f"{local_dir} has no {what} file ({names[0]}[.gz])")
    return None

  test_x, test_y = data.read_labeled_idx(
    find(data.MNIST_TEST_IMAGE_FILES, "t10k images"),
    find(data.MNIST_TEST_LABEL_FILES, "t10k labels"),
  )
  train_images = find(data.MNIST_TRAIN_IMAGE_FILES, None)
  train_labels = find(data.MNIST_TRAIN_LABEL_FILES, None)
  if train_images and train_labels:
    train_x, train_y = data.read_labeled_idx(train_images, train_labels)
    return dict(
      train_x=train_x,
      train_y=train_y,
      test_x=test_x,
      test_y=test_y,
      note="full MNIST: train 60k / test t10k",
    )
  n = data.MNIST10K_NUM_TRAIN
  return dict(
    train_x=test_x[:n],
    train_y=test_y[:n],
    test_x=test_x[n:],
    test_y=test_y[n:],
    note="MNIST-10k: t10k 0..7999 train / 8000..9999 test",
  )


def train_classifier(
  local_dir, output_dir, epochs=8, batch_size=128, seed=0, max_train_examples=None, verbose=2
):
  """Trains `build_classifier` on labelled MNIST and saves it to output_dir.

  Args:
    local_dir: directory with MNIST IDX files (see `load_labeled_mnist`).
    output_dir: gets classifier.keras and classifier.json.
    epochs, batch_size, seed: training settings (Adam 1e-3, grey levels / 255).
    max_train_examples: optional cap (for smoke tests).
    verbose: Keras fit verbosity (2 = one line per epoch).
  Returns:
    the metadata dict written to classifier.json (test_accuracy, note, ...).
  """
  if epochs <= 0 or batch_size <= 0:
    raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
  d = load_labeled_mnist(local_dir)
  train_x, train_y = d["train_x"], d["train_y"]
  if max_train_examples:
    train_x, train_y = train_x[:max_train_examples], train_y[:max_train_examples]
  keras.utils.set_random_seed(seed)
  net = build_classifier()
  net.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
  )
  net.fit(
    train_x.astype(np.float32) / 255.0,
    train_y.astype(np.int32),
    epochs=epochs,
    batch_size=batch_size,
    shuffle=True,
    verbose=verbose,
  )
  _, accuracy = net.evaluate(
    d["test_x"].astype(np.float32) / 255.0, d["test_y"].astype(np.int32), verbose=0
  )
  os.makedirs(output_dir, exist_ok=True)
  net.save(os.path.join(output_dir, CLASSIFIER_FILE))
  metadata = dict(
    test_accuracy=float(accuracy),
    num_train=int(len(train_x)),
    num_test=int(len(d["test_x"])),
    data=d["note"],
    epochs=int(epochs),
    batch_size=int(batch_size),
    seed=int(seed),
    source_dir=str(local_dir),
  )
  with open(os.path.join(output_dir, CLASSIFIER_METADATA), "w") as f:
    json.dump(metadata, f, indent=2)
  return metadata
