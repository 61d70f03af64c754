"""Keras 3 network bodies: MLP and convolutional encoders / decoders and joint
discriminators.

Architectures only; no probability here. The encoder maps images to a feature
vector that `flows.Posterior` turns into q_phi(z|x); the decoder maps codes to
the parameters of a `dists.likelihoods` likelihood; the joint discriminators f_psi(x, z) of
eqs. (5) and (6) map an (image, code) pair to a logit.

Gin sees factory functions (`mlp_encoder`, `mlp_decoder`,
`joint_discriminator`, `conv_encoder`, `conv_decoder`,
`conv_joint_discriminator`), not the Keras classes: Keras 3 inspects a layer
class's __init__ signature, which gin's class decoration hides.

Convolutional networks (natural images, NHWC / channels-last) are DCGAN-like:
`num_stages` stride-2 convolutions (kernel 4, 'same' padding: each halves H and
W exactly) of widths base_width * 2^i (capped at max_width); by default
num_stages is derived from the image size so that the smallest feature map is
4x4 (32x32 -> 3 stages of 64, 128, 256; 64x64 -> 4 stages of 64, 128, 256, 512).
The decoder mirrors the encoder with stride-2 transposed convolutions. No batch
normalisation: batch statistics would couple the examples of a batch (and the
replicas of a step) and break the per-example terms of eq. (11).

All weights use Xavier/Glorot-uniform initialisation (section 5). Dropout is
stateless and replica-invariant (`rng.dropout`): pass `seed` (int32 [2]) and
`training=True` to apply it.

  layers.py  activations, the dropout-aware layer stack
  mlp.py     MLPEncoder, MLPDecoder, JointDiscriminator (MNIST)
  conv.py    ConvEncoder, ConvDecoder, ConvJointDiscriminator, conv_stages, conv_widths
  folded.py  FoldedMLP, fold: a bfloat16 export's MLP decoder with its biases in the matmuls
"""

# pylint: disable=unused-import
from asvae_tf.nets.conv import (  # noqa: F401
  ConvDecoder,
  ConvEncoder,
  ConvJointDiscriminator,
  conv_decoder,
  conv_encoder,
  conv_joint_discriminator,
  conv_stages,
  conv_widths,
)
from asvae_tf.nets.mlp import (  # noqa: F401
  JointDiscriminator,
  MLPDecoder,
  MLPEncoder,
  joint_discriminator,
  mlp_decoder,
  mlp_encoder,
)
