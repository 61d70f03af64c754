"""IAF / MAF / RealNVP flows: stacks of TFP bijectors driven by Keras 3 conditioners.

Each builder takes the K conditioner layers (`MADE` / `CouplingNet`, owned by
the posterior), the encoder context h [batch, C] and the event size D, and
returns a tfb.Chain acting on codes [..., batch, D] that applies layer 0 first,
with order-reversing permutations between layers so that every coordinate gets
transformed:
  * `maf_bijector` (Papamakarios et al. 2017): density in one pass, sampling
    sequential (D conditioner passes per layer);
  * `iaf_bijector` (Kingma et al. 2016): the inverse trade-off;
  * `realnvp_bijector` (Dinh et al. 2017): both directions in one pass.
"""

import numpy as np
import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = ["maf_bijector", "iaf_bijector", "realnvp_bijector"]


def _memoize_last(fn):
  """Wraps fn(x) to return the previous result when called again on the SAME tensor.

  TFP's MaskedAutoregressiveFlow calls its conditioner once in `_inverse(y)` and
  again in `_inverse_log_det_jacobian(y)` with the same `y` object; this avoids
  the second network pass.  Identity (`is`) comparison with a strong reference
  to the last input: never a false hit for a given set of weights (the same
  semantics as TFP's own bijector cache, which also keys on tensor identity).
  """
  memo = {}

  def wrapped(x):
    if memo and memo["x"] is x:
      return memo["out"]
    out = fn(x)
    memo["x"], memo["out"] = x, out
    return out

  return wrapped


def _reverse_permutation(event_size):
  return tfb.Permute(permutation=np.arange(event_size - 1, -1, -1))


def _stack(layers, event_size):
  """Chain applying layers[0] first, with order-reversing permutations between."""
  bijectors = []
  for k, layer in enumerate(layers):
    if k > 0:
      bijectors.append(_reverse_permutation(event_size))
    bijectors.append(layer)
  return tfb.Chain(list(reversed(bijectors)))


def maf_bijector(conditioners, context, event_size):
  """Stack of K masked autoregressive flows (Papamakarios et al. 2017).

  Each layer k is tfb.MaskedAutoregressiveFlow with shift_and_log_scale_fn
  y -> conditioners[k](y, context): forward y_d = x_d exp(s_d(y_<d)) + m_d(y_<d)
  (D sequential conditioner passes), inverse and its log-det in one pass, so the
  DENSITY at any z is one pass and sampling is sequential.  Reverse permutations
  between layers.

  Args:
    conditioners: list of K `MADE` layers (event_size D, context_dim C).
    context: [batch, C] tensor (or None if the MADEs take none).
    event_size: D.
  Returns:
    tfb.Chain acting on [..., batch, D].
  """
  layers = []
  for made in conditioners:
    fn = _memoize_last(lambda y, made=made: made(y, context))
    layers.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn))
  return _stack(layers, event_size)


def iaf_bijector(conditioners, context, event_size):
  """Stack of K inverse autoregressive flows (Kingma et al. 2016).

  Each layer is tfb.Invert(tfb.MaskedAutoregressiveFlow(...)): the forward
  (sampling) direction z_d -> (z_d - m_d(z_<d)) exp(-s_d(z_<d)) is one
  conditioner pass; the density at an arbitrary z needs the inverse, D
  sequential passes per layer (TFP's while_loop).  Same arguments and result
  as `maf_bijector`.
  """
  layers = []
  for made in conditioners:
    fn = _memoize_last(lambda y, made=made: made(y, context))
    layers.append(tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn)))
  return _stack(layers, event_size)


def realnvp_bijector(conditioners, context, event_size, num_masked):
  """Stack of K affine coupling layers (Dinh et al. 2017), tfb.RealNVP.

  Layer k keeps x_{1:d} (d = num_masked) and maps
  x_{d+1:D} -> x_{d+1:D} exp(s(x_{1:d}, h)) + m(x_{1:d}, h); both directions
  and the log-det are one pass.  Reverse permutations between layers so every
  coordinate gets transformed.

  Args:
    conditioners: list of K `CouplingNet` (input_units=d, output_units=D-d).
    context: [batch, C] tensor or None.
    event_size: D.  num_masked: d in [1, D-1].
  Returns:
    tfb.Chain acting on [..., batch, D].
  """
  layers = []
  for net in conditioners:

    def bijector_fn(x0, output_units, net=net, **condition_kwargs):
      del output_units, condition_kwargs
      shift, log_scale = net(x0, context)
      return tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale)])

    layers.append(tfb.RealNVP(num_masked=num_masked, bijector_fn=bijector_fn))
  return _stack(layers, event_size)
