"""asvae_tf: the Adversarial Symmetric VAE (Pu et al., NIPS 2017) in TensorFlow 2 / Keras 3.

Modules: noise (stateless replica-invariant RNG), data (tf.data pipelines),
networks (Keras 3 bodies), flows (posterior normalizing flows on TFP
bijectors), dists (posterior, decoder likelihoods), losses (eqs. 1, 5, 6, 11), model (the
AS-VAE), config (gin), train_lib (distributed training loop), cli (tools).
"""

__version__ = "0.1.0"
