"""asvae_tf: the Adversarial Symmetric VAE (Pu et al., NIPS 2017) in TensorFlow 2 / Keras 3.

Where things are (README "Package layout and public names"): losses (eqs. 1, 5, 6, 11),
terms (what they are built from), ratios (the f1 / f2 estimators), model (ASVAE), flows
(posterior normalizing flows on TFP bijectors, the Posterior layer), dists (Gaussian
density, decoder likelihoods), nets (Keras 3 networks), data (sources, formats, tf.data),
rng (stateless replica-invariant draws), train (strategy, trainer, controller), evaluation
(section 5.1 metrics), export (SavedModel), gin_config / registry (gin), errors, cli.
"""

__version__ = "0.1.0"
