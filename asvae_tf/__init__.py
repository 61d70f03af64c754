"""asvae_tf: the Adversarial Symmetric VAE (Pu et al., NIPS 2017) in TensorFlow 2 / Keras 3.

Where things are (README "Package layout and public names"): losses (eqs. 1, 5, 6, 11),
terms (what they are built from), ratios (the f1 / f2 estimators), model (ASVAE), flows
(posterior normalizing flows on TFP bijectors, the Posterior layer), dists (Gaussian
density, decoder likelihoods), nets (Keras 3 networks), data (sources, formats, tf.data),
rng (stateless replica-invariant draws), train (strategy, trainer, controller), evaluation
(section 5.1 metrics), export (SavedModel), versions (where exports live), api (load,
load_saved_model: a trained model in Python), gin_config / registry (gin), errors, cli.

  model = asvae_tf.load("runs/mnist")   # or asvae_tf.load_saved_model("runs/mnist/saved_model")
  images = model.sample(16, seed=0)     # see asvae_tf.api for every method
"""

import importlib

__version__ = "0.1.0"

# `import asvae_tf` stays light (no TensorFlow): the API module loads on first use.
_API = ("load", "load_saved_model", "TrainedModel")


def __getattr__(name):
  """asvae_tf.load / load_saved_model / TrainedModel, imported from asvae_tf.api lazily."""
  if name in _API:
    # importlib, not an import statement: this runs after asvae_tf is initialised, so it is
    # no import cycle (asvae_tf.api -> export -> asvae_tf), which tests/layout_test.py's
    # static check of import statements would report.
    return getattr(importlib.import_module("asvae_tf.api"), name)
  raise AttributeError(f"module 'asvae_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_API))
