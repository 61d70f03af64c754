"""Evaluation of a trained AS-VAE with the metrics of section 5.1.

  run.py           `evaluate(model_dir)` (gin name `evaluate`): a checkpoint ->
                   metrics.json + TensorBoard scalars; `format_table` (the CLI's view).
  bounds.py        TF loops over a model: `likelihood_bounds` (IWAE / ELBO),
                   `refine_proposal`, `ratio_diagnostics`, `reconstructions`, `generate`.
  metrics.py       NumPy metrics: `mean_and_standard_error`, `nats_to_bits_per_dim`,
                   `mean_squared_error`, `rmse`, `inception_score`, `frechet_distance`,
                   `fid_from_features`.
  feature_nets.py  networks that score samples: `InceptionNet` (Keras weights: not
                   comparable), the MNIST `Classifier` (`build_classifier`,
                   `load_labeled_mnist`, `train_classifier`), `sample_quality`.
  inception_graph.py  `InceptionGraph`: the 2015 TF Inception GraphDef of published
                   IS / FID (comparable); `load_reference_stats` (TTUR mu / sigma .npz).

The public names of all five are re-exported here (`evaluation.evaluate(...)`,
`evaluation.rmse(...)`, ...). This package replaces the former modules asvae_tf.evaluation, asvae_tf.eval_lib and
asvae_tf.feature_nets.
"""

# pylint: disable=g-importing-member
from asvae_tf.evaluation.metrics import fid_from_features
from asvae_tf.evaluation.metrics import frechet_distance
from asvae_tf.evaluation.metrics import inception_score
from asvae_tf.evaluation.metrics import mean_and_standard_error
from asvae_tf.evaluation.metrics import mean_squared_error
from asvae_tf.evaluation.metrics import nats_to_bits_per_dim
from asvae_tf.evaluation.metrics import rmse
from asvae_tf.evaluation.bounds import generate
from asvae_tf.evaluation.bounds import likelihood_bounds
from asvae_tf.evaluation.bounds import refine_proposal
from asvae_tf.evaluation.bounds import ratio_diagnostics
from asvae_tf.evaluation.bounds import reconstructions
from asvae_tf.evaluation.feature_nets import CLASSIFIER_FILE
from asvae_tf.evaluation.feature_nets import CLASSIFIER_METADATA
from asvae_tf.evaluation.feature_nets import Classifier
from asvae_tf.evaluation.feature_nets import FEATURES_LAYER
from asvae_tf.evaluation.feature_nets import InceptionNet
from asvae_tf.evaluation.feature_nets import build_classifier
from asvae_tf.evaluation.feature_nets import load_labeled_mnist
from asvae_tf.evaluation.feature_nets import sample_quality
from asvae_tf.evaluation.feature_nets import train_classifier
from asvae_tf.evaluation.inception_graph import InceptionGraph
from asvae_tf.evaluation.inception_graph import load_reference_stats
from asvae_tf.evaluation.run import METRICS_FILE
from asvae_tf.evaluation.run import evaluate
from asvae_tf.evaluation.run import format_table

__all__ = [
  "CLASSIFIER_FILE",
  "CLASSIFIER_METADATA",
  "Classifier",
  "FEATURES_LAYER",
  "InceptionGraph",
  "InceptionNet",
  "METRICS_FILE",
  "build_classifier",
  "evaluate",
  "fid_from_features",
  "format_table",
  "frechet_distance",
  "generate",
  "inception_score",
  "likelihood_bounds",
  "load_reference_stats",
  "load_labeled_mnist",
  "mean_and_standard_error",
  "mean_squared_error",
  "nats_to_bits_per_dim",
  "ratio_diagnostics",
  "refine_proposal",
  "reconstructions",
  "rmse",
  "sample_quality",
  "train_classifier",
]
