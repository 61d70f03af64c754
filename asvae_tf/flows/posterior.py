"""The encoder posterior q_phi(z|x) of the AS-VAE (Pu et al., NIPS 2017): gin `posterior`.

The AS-VAE objective (eq. 11 of the paper) needs the encoder density
log q_phi(z|x') at a code z that the encoder did NOT produce (a prior draw pushed
through the decoder).  A posterior is therefore only usable if its density can be
evaluated at any z.  `Posterior` is the Keras 3 layer mapping encoder features
h [batch, F] to a diagonal-Normal base distribution followed by a normalizing flow f:
    z_0 = loc + exp(log_scale) eps,  eps ~ N(0, I);  z = f(z_0),
    log q(z|x) = log N(z_0; loc, diag(exp(log_scale))^2) - log|det df/dz_0|,
with, at an arbitrary z, z_0 = f^{-1}(z) and -log|det df/dz_0| = log|det df^{-1}/dz|.
The flow (`POSTERIOR_KINDS`) is none ("gaussian"), a planar flow with a numerical
inverse (`asvae_tf.flows.planar`), or an IAF / MAF / RealNVP stack of TFP
bijectors whose Keras 3 conditioners this layer owns (`asvae_tf.flows.stacks`,
`asvae_tf.flows.conditioners`).

Shapes: codes z are [batch, D], or [S, batch, D] with a leading sample shape.
dtype follows the layer's dtype policy (float32 and float64 both work).
Randomness is stateless: sampling takes `seed`, an int32 Tensor of shape [2] (or
the standard-normal noise `eps` itself).  Everything runs under tf.function and
tf.function(jit_compile=True).
"""

import inspect

import gin
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from asvae_tf import errors
from asvae_tf import rng
from asvae_tf.dists import gaussian
from asvae_tf.flows.conditioners import MADE
from asvae_tf.flows.conditioners import CouplingNet
from asvae_tf.flows.conditioners import _small_init
from asvae_tf.flows.planar import PlanarFlow
from asvae_tf.flows.planar import planar_flow
from asvae_tf.flows.planar import planar_identity_bias
from asvae_tf.flows.stacks import iaf_bijector
from asvae_tf.flows.stacks import maf_bijector
from asvae_tf.flows.stacks import realnvp_bijector

tfd = tfp.distributions

__all__ = ["POSTERIOR_KINDS", "Posterior"]

POSTERIOR_KINDS = ("gaussian", "planar", "iaf", "maf", "realnvp")


def _check_arguments(kind, num_flows, delta, min_log_scale, max_log_scale):
  if kind not in POSTERIOR_KINDS:
    raise errors.ConfigError(
      f"posterior.kind must be one of {', '.join(POSTERIOR_KINDS)}; got {kind!r}."
    )
  if int(num_flows) < 0:
    raise errors.ConfigError(f"posterior.num_flows must be >= 0, got {num_flows}.")
  if not 0.0 < delta < 1.0:
    raise errors.ConfigError(f"posterior.delta must be in (0, 1), got {delta}.")
  if not min_log_scale < max_log_scale:
    raise errors.ConfigError(
      "posterior.min_log_scale must be < posterior.max_log_scale, got "
      f"{min_log_scale} and {max_log_scale}."
    )


@gin.configurable("posterior")
class Posterior(keras.layers.Layer):
  """Encoder posterior q_phi(z|x): diagonal Normal base + optional flow.

  kind:
    "gaussian": no flow (num_flows ignored).
    "planar":   K = num_flows planar layers with per-example parameters
                u, w: [batch, K, D], b: [batch, K] produced from the features
                (Rezende & Mohamed 2015).  Density at any z via the numerical
                inverse of `PlanarFlow`.
    "iaf":      K IAF layers (MADE conditioners taking the context).
    "maf":      K MAF layers.
    "realnvp":  K affine coupling layers (needs latent_dim >= 2).
  num_flows = 0 reduces every kind to the diagonal Gaussian.

  Weights (all owned and tracked by this Keras 3 layer):
    loc head Dense(F->D); log-scale head Dense(F->D) (small kernel, zero bias:
    scale ~ 1 at init).  The log-scale is bounded with `soft_clip` into
    (min_log_scale, max_log_scale) -- smooth, identity-like inside, so the
    scale can neither underflow nor explode and gradients never vanish at a
    hard boundary.
    planar: if hidden_units is set, a linear bottleneck Dense(F->hidden_units,
    no bias) then Dense(->K(2D+1)) producing [u | w | b] per layer (a rank
    `hidden_units` factorisation of the direct head -- the direct F->K(2D+1)
    matmul alone costs ~3 ms at F=500, K=80, D=32, batch 100 on 2 CPU cores);
    hidden_units=None: the direct Dense(F->K(2D+1)).  The output kernel is small
    and the bias is `planar_identity_bias`: the flow starts at (near) identity.
    Measured (bench/flows_speed.py, float32, 2 CPU cores, tf.function / XLA):
    sample_and_log_prob 2.3 / 1.8 ms, log_prob + gradient 10.9 / 5.3 ms with
    hidden_units=64; 5.0 / 4.9 ms and 18.5 / 10.7 ms with the direct head.
    iaf/maf/realnvp: a context head Dense(F->hidden_units) (the IAF paper's
    context h), and per flow layer one MADE / CouplingNet with
    `conditioner_layers` hidden layers of `hidden_units` units.

  Args:
    latent_dim: D.
    kind: one of POSTERIOR_KINDS.
    num_flows: K >= 0.
    hidden_units: conditioner width (see above).
    delta: planar invertibility margin (w.u_hat >= -1 + delta).
    newton_iterations: planar inverse Newton steps per layer (None: 10 for
      float64, 8 otherwise).
    layers_per_iteration: planar layers per tf.while_loop iteration (8 was the
      fastest with and without XLA at K=80 on 2 CPU cores).
    conditioner_layers: hidden layers of each MADE / CouplingNet.
    activation: conditioner activation.
    min_log_scale, max_log_scale: soft bounds of the base log-scale.
    flow_init_scale: stddev * sqrt(fan_in) of the flow heads' output kernels.
    **kwargs: keras.layers.Layer kwargs (name, dtype, ...).
  Raises:
    errors.ConfigError: an impossible setting.
  """

  def __init__(
    self,
    latent_dim,
    kind="gaussian",
    num_flows=0,
    hidden_units=64,
    delta=0.05,
    newton_iterations=None,
    layers_per_iteration=8,
    conditioner_layers=2,
    activation="elu",
    min_log_scale=-9.0,
    max_log_scale=3.0,
    flow_init_scale=1e-2,
    **kwargs,
  ):
    super().__init__(**kwargs)
    _check_arguments(kind, num_flows, delta, min_log_scale, max_log_scale)
    self.latent_dim = int(latent_dim)
    self.kind = kind
    self.num_flows = int(num_flows)
    self.hidden_units = None if hidden_units is None else int(hidden_units)
    self.delta = float(delta)
    self.newton_iterations = None if newton_iterations is None else int(newton_iterations)
    self.layers_per_iteration = int(layers_per_iteration)
    self.conditioner_layers = int(conditioner_layers)
    self.activation = activation
    self.min_log_scale = float(min_log_scale)
    self.max_log_scale = float(max_log_scale)
    self.flow_init_scale = float(flow_init_scale)
    self.has_flow = kind != "gaussian" and self.num_flows > 0
    # XLA for the planar flow's loops; set by the trainer (train.jit_compile = 'flow'),
    # not by gin, so exports and evaluations built from a checkpoint stay plain TF.
    self.jit_compile_flow = False

    self.loc_head = keras.layers.Dense(self.latent_dim, dtype=self.dtype_policy, name="loc")
    self.log_scale_head = keras.layers.Dense(
      self.latent_dim,
      kernel_initializer=_small_init(0.1),
      dtype=self.dtype_policy,
      name="log_scale",
    )
    if self.has_flow and kind == "planar":
      self._make_planar_head()
    elif self.has_flow:
      self._make_conditioners()

  def _make_planar_head(self):
    """The [u | w | b] head of the planar flow (optionally behind a bottleneck)."""
    k, d, policy = self.num_flows, self.latent_dim, self.dtype_policy
    if self.hidden_units:
      self.planar_bottleneck = keras.layers.Dense(
        self.hidden_units, use_bias=False, dtype=policy, name="planar_bottleneck"
      )
    bias = planar_identity_bias(k, d, self.delta).reshape(-1)
    self.planar_head = keras.layers.Dense(
      k * (2 * d + 1),
      kernel_initializer=_small_init(self.flow_init_scale),
      bias_initializer=keras.initializers.Constant(bias),
      dtype=policy,
      name="planar_params",
    )

  def _make_conditioners(self):
    """The context head and the K MADE (iaf/maf) or CouplingNet (realnvp) layers."""
    d, policy = self.latent_dim, self.dtype_policy
    if self.hidden_units is None:
      raise errors.ConfigError(f"posterior.kind={self.kind!r} needs posterior.hidden_units.")
    if self.conditioner_layers < 1:
      raise errors.ConfigError("posterior.conditioner_layers must be >= 1.")
    common = dict(
      hidden_units=(self.hidden_units,) * self.conditioner_layers,
      context_dim=self.hidden_units,
      activation=self.activation,
      output_init_scale=self.flow_init_scale,
      dtype=policy,
    )
    self.context_head = keras.layers.Dense(self.hidden_units, dtype=policy, name="context")
    if self.kind in ("iaf", "maf"):
      conditioners = [MADE(d, name=f"made_{i}", **common) for i in range(self.num_flows)]
    else:  # realnvp
      if d < 2:
        raise errors.ConfigError("posterior.kind='realnvp' needs latent_dim >= 2.")
      self.num_masked = d // 2
      conditioners = [
        CouplingNet(self.num_masked, d - self.num_masked, name=f"coupling_{i}", **common)
        for i in range(self.num_flows)
      ]
    # One attribute per conditioner (a list would be missed by tf.train.Checkpoint).
    for i, net in enumerate(conditioners):
      setattr(self, f"conditioner_{i}", net)

  @property
  def conditioners(self):
    """The K MADE / CouplingNet layers (iaf/maf/realnvp), in flow order."""
    if not self.has_flow or self.kind == "planar":
      return []
    return [getattr(self, f"conditioner_{i}") for i in range(self.num_flows)]

  def build(self, input_shape):
    features = int(input_shape[-1])
    self.loc_head.build((None, features))
    self.log_scale_head.build((None, features))
    if self.has_flow:
      if self.kind == "planar":
        if self.hidden_units:
          self.planar_bottleneck.build((None, features))
          self.planar_head.build((None, self.hidden_units))
        else:
          self.planar_head.build((None, features))
      else:
        self.context_head.build((None, features))
        for net in self.conditioners:
          net.build()
    self.built = True

  def call(self, features):
    """features h [batch, F] -> dict of tensors.

    Always: "loc" [batch, D], "log_scale" [batch, D] (soft-clipped).
    planar: "u" [batch, K, D] (raw, before the invertibility
    reparameterisation), "w" [batch, K, D], "b" [batch, K].
    iaf/maf/realnvp: "context" [batch, hidden_units].
    """
    d = self.latent_dim
    out = {
      "loc": self.loc_head(features),
      "log_scale": gaussian.soft_clip(
        self.log_scale_head(features), self.min_log_scale, self.max_log_scale
      ),
    }
    if not self.has_flow:
      return out
    if self.kind == "planar":
      h = self.planar_bottleneck(features) if self.hidden_units else features
      p = tf.reshape(self.planar_head(h), [-1, self.num_flows, 2 * d + 1])
      # tf.split, not three slices: its gradient is one concat, where each slice's
      # StridedSliceGrad writes a zero-padded [batch, K, 2D + 1] tensor (bit-identical sums).
      out["u"], out["w"], b = tf.split(p, [d, d, 1], axis=-1)
      out["b"] = b[..., 0]
    else:
      out["context"] = self.context_head(features)
    return out

  # -- flow construction ------------------------------------------------------

  def bijector(self, params):
    """The flow f as a TFP bijector from `call()` outputs (None if no flow)."""
    if not self.has_flow:
      return None
    if self.kind == "planar":
      return planar_flow(
        params["u"],
        params["w"],
        params["b"],
        delta=self.delta,
        newton_iterations=self.newton_iterations,
        layers_per_iteration=self.layers_per_iteration,
        jit_compile=self.jit_compile_flow,
      )
    ctx = params["context"]
    if self.kind == "iaf":
      return iaf_bijector(self.conditioners, ctx, self.latent_dim)
    if self.kind == "maf":
      return maf_bijector(self.conditioners, ctx, self.latent_dim)
    return realnvp_bijector(self.conditioners, ctx, self.latent_dim, self.num_masked)

  def distribution(self, features):
    """tfd.Distribution with event shape [D], batch shape [batch].

    Independent(Normal(loc, exp(log_scale)), 1), transformed by the flow
    (TransformedDistribution) unless kind="gaussian" / num_flows=0.
    """
    params = self(features)
    base = tfd.Independent(
      tfd.Normal(params["loc"], tf.exp(params["log_scale"])), reinterpreted_batch_ndims=1
    )
    bij = self.bijector(params)
    if bij is None:
      return base
    return tfd.TransformedDistribution(base, bij)

  def sample_and_log_prob(self, features, seed=None, sample_shape=(), eps=None):
    """Reparameterised z ~ q(z|x) and log q(z|x) from ONE forward pass.

    Args:
      features: [batch, F].
      seed: int32 [2] stateless seed; eps ~ N(0, I) is drawn from it
        (rng.stateless_normal: tf.random's Philox draw; XLA's default algorithm is
        ~6x slower on CPU).
      sample_shape: optional leading sample shape S (default none).
      eps: alternatively the standard-normal noise itself, [*S, batch, D]
        (e.g. replica-invariant noise drawn by the caller); overrides seed.
    Returns:
      z: [*S, batch, D]; log_q: [*S, batch] = log N(z_0) - fldj(z_0), with
      z_0 = loc + exp(log_scale) * eps.
    """
    params = self(features)
    loc, log_scale = params["loc"], params["log_scale"]
    if eps is None:
      if seed is None:
        raise ValueError("sample_and_log_prob needs `seed` or `eps`.")
      shape = tf.concat(
        [tf.constant(sample_shape, tf.int32, [len(sample_shape)]), tf.shape(loc)], 0
      )
      eps = rng.stateless_normal(shape, seed, loc.dtype)
    else:
      eps = tf.convert_to_tensor(eps, dtype=loc.dtype)
    z0 = loc + tf.exp(log_scale) * eps
    base_lp = tf.reduce_sum(gaussian.normal_log_density(eps, log_scale), axis=-1)
    bij = self.bijector(params)
    if bij is None:
      return z0, base_lp
    if isinstance(bij, PlanarFlow):
      z, fldj = bij.forward_and_log_det(z0)
    else:
      z = bij.forward(z0)
      fldj = bij.forward_log_det_jacobian(z0, event_ndims=1)  # cached intermediates
    return z, base_lp - fldj

  def log_prob(self, features, z):
    """log q(z|x) [..., batch] at ANY z [..., batch, D] (inverse flow for planar/IAF)."""
    params = self(features)
    loc, log_scale = params["loc"], params["log_scale"]
    z = tf.convert_to_tensor(z, dtype=loc.dtype)
    bij = self.bijector(params)
    if bij is None:
      return gaussian.diag_normal_log_prob(z, loc, log_scale)
    if isinstance(bij, PlanarFlow):
      z0, ildj = bij.inverse_and_log_det(z)
    else:
      z0 = bij.inverse(z)
      ildj = bij.inverse_log_det_jacobian(z, event_ndims=1)  # cached intermediates
    return gaussian.diag_normal_log_prob(z0, loc, log_scale) + ildj

  def mean(self, features):
    """[batch, D]: the base mean pushed through the flow, f(loc).

    (Not E[z] for a non-affine flow -- TransformedDistribution has no closed-form
    mean -- but the deterministic code of x, as in Rezende & Mohamed.)
    """
    params = self(features)
    bij = self.bijector(params)
    if bij is None:
      return params["loc"]
    if isinstance(bij, PlanarFlow):
      return bij.forward_and_log_det(params["loc"])[0]
    return bij.forward(params["loc"])

  def get_config(self):
    config = super().get_config()
    config.update(
      latent_dim=self.latent_dim,
      kind=self.kind,
      num_flows=self.num_flows,
      hidden_units=self.hidden_units,
      delta=self.delta,
      newton_iterations=self.newton_iterations,
      layers_per_iteration=self.layers_per_iteration,
      conditioner_layers=self.conditioner_layers,
      activation=self.activation,
      min_log_scale=self.min_log_scale,
      max_log_scale=self.max_log_scale,
      flow_init_scale=self.flow_init_scale,
    )
    return config


# gin replaces Posterior.__init__ by a (*args, **kwargs) wrapper; Keras 3 inspects
# the __init__ argspec of every layer class (for auto get_config) and fails on it.
# Expose the real signature again (inspect.signature follows __wrapped__).
Posterior.__init__.__signature__ = inspect.signature(Posterior.__init__)
