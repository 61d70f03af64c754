"""Normalizing flows of the AS-VAE posterior q_phi(z|x), on TFP bijectors.

  planar        `PlanarFlow` (K planar layers in one bijector, numerical inverse),
                `planar_flow` (from raw parameters), `planar_reparameterize_u`,
                `planar_identity_bias`
  planar_loops  the forward and Newton-inverse layer loops of the planar flow
  planar_grad   their hand-written VJPs
  conditioners  `MADE`, `CouplingNet` (Keras 3 conditioner networks)
  stacks        `maf_bijector`, `iaf_bijector`, `realnvp_bijector`
  posterior     `Posterior` (gin `posterior`): diagonal Normal + one of the flows above,
                `POSTERIOR_KINDS`

`soft_clip` and `diag_normal_log_prob` (of `asvae_tf.dists.gaussian`) are re-exported
for compatibility.
"""

from asvae_tf.dists.gaussian import diag_normal_log_prob
from asvae_tf.dists.gaussian import soft_clip
from asvae_tf.flows.conditioners import MADE
from asvae_tf.flows.conditioners import CouplingNet
from asvae_tf.flows.planar import PlanarFlow
from asvae_tf.flows.planar import planar_flow
from asvae_tf.flows.planar import planar_identity_bias
from asvae_tf.flows.planar import planar_reparameterize_u
from asvae_tf.flows.stacks import iaf_bijector
from asvae_tf.flows.stacks import maf_bijector
from asvae_tf.flows.stacks import realnvp_bijector
from asvae_tf.flows.posterior import POSTERIOR_KINDS, Posterior

__all__ = [
  "POSTERIOR_KINDS",
  "soft_clip",
  "planar_reparameterize_u",
  "PlanarFlow",
  "planar_flow",
  "planar_identity_bias",
  "MADE",
  "CouplingNet",
  "maf_bijector",
  "iaf_bijector",
  "realnvp_bijector",
  "diag_normal_log_prob",
  "Posterior",
]
