"""The planar flow's layer loops: forward pass and numerical (Newton) inverse.

Batch-major throughout: u_hat, w [batch, K, D], b, c [batch, K], states
[..., batch, D] (extra leading sample dims allowed), per-layer scalars
[..., batch, K].  Layer k maps x -> y = x + u_k tanh(a_k), a_k = w_k . x + b_k,
and c_k = w_k . u_hat_k.  The loops return the per-layer tanh values
th_k [..., batch, K] next to the result: the log-dets sum_k log(1 + c_k (1 - th_k^2))
and the analytic VJPs of `planar_grad` are computed from them afterwards.

Inverse of one layer, y = z + u tanh(w.z + b): with t = w.z + b (the
pre-activation) and r = w.y + b, t solves
    g(t) = t + c tanh(t) - r = 0,   g'(t) = 1 + c (1 - tanh^2 t) >= delta,
a monotone scalar equation whose root lies in the bracket [r - |c|, r + |c|].
g has a single inflection point, t = 0: on the root's side of it g is
concave (c > 0) or convex (c < 0).  Newton started at the inflection point
clipped into the bracket therefore converges monotonically: on a concave
increasing piece the iterates approach the root from the left; on a convex
piece the first step lands right of the root (it is clipped into the
bracket) and the iterates then decrease monotonically to it.  Only the first
step needs the bracket.  `newton_iterations` steps (the first one clipped) run
(default 10 for float64: 1e-12 relative accuracy over c in [-1 + delta, 1e3],
|r| <= 1e3; 8 for float32, which then sits at its rounding floor), and one last
unclipped Newton step follows.  Then z = y - u tanh(t).

`_layer_loop` drives both (and the cotangent recursions of `planar_grad`): a
tf.while_loop with a static trip count (XLA-friendly, quick to trace) whose body
runs several layers Python-unrolled.
"""

import tensorflow as tf

__all__ = []


def _unrolled_layers(step, state, params, layers, reverse):
  """Runs `step` over the layers of the range `layers` in a Python loop.

  Returns:
    (state tuple, outs [..., len(layers)]) with the outputs in layer order.
  """
  outs = {}
  for k in reversed(layers) if reverse else layers:
    state, outs[k] = step(state, tuple(tf.gather(p, k, axis=ax) for p, ax in params))
  return tuple(state), tf.concat([outs[k] for k in layers], -1)


def _chunked_layers(step, state, params, num_chunks, unroll, reverse):
  """Runs `step` over layers [0, num_chunks * unroll) in a tf.while_loop.

  Iteration i runs the `unroll` consecutive layers of chunk i (reverse: chunk
  num_chunks - 1 - i, its layers last to first), Python-unrolled inside the body;
  it reads them with one tf.gather + one tf.unstack per parameter tensor.

  Returns:
    (state tuple, outs [..., num_chunks * unroll]) with the outputs in layer order.
  """
  out_array = tf.TensorArray(state[0].dtype, size=num_chunks)
  offsets = tf.range(unroll)

  def body(i, out_array, *st):
    chunk = (num_chunks - 1 - i) if reverse else i
    idx = chunk * unroll + offsets
    ps = [tf.unstack(tf.gather(p, idx, axis=ax), num=unroll, axis=ax) for p, ax in params]
    chunk_outs = [None] * unroll
    for j in range(unroll - 1, -1, -1) if reverse else range(unroll):
      st, chunk_outs[j] = step(st, tuple(p[j] for p in ps))
    return (i + 1, out_array.write(chunk, tf.concat(chunk_outs, -1))) + tuple(st)

  loop_out = tf.while_loop(
    lambda i, *_: i < num_chunks,
    body,
    (tf.constant(0, tf.int32), out_array) + state,
    maximum_iterations=num_chunks,
  )
  stacked = loop_out[1].stack()  # [chunks, ..., unroll]
  rank = stacked.shape.rank
  stacked = tf.transpose(stacked, list(range(1, rank - 1)) + [0, rank - 1])
  outs = tf.reshape(stacked, tf.concat([tf.shape(stacked)[:-2], [num_chunks * unroll]], 0))
  return tuple(loop_out[2:]), outs


def _layer_loop(step, state, params, reverse, layers_per_iteration):
  """Runs `state, out_k = step(state, params_k)` over the K layers, batch-major.

  Layers k = 0..K-1 in order (reverse=True: K-1..0).  `params` is a tuple of
  (tensor, axis) pairs: the layer axis of each tensor (e.g. -2 for [..., K, D],
  -1 for [..., K]); `params_k` is the tuple of their k-th slices along it.
  `out_k` is one tensor [..., 1].  The first floor(K / n) n layers
  (n = layers_per_iteration) go through a tf.while_loop running n layers per
  iteration (`_chunked_layers`), the other ones through a Python loop; when the
  while_loop would run only once (n > K / 2), every layer is Python-unrolled.

  Returns:
    (final state tuple, outs [..., K]) with outs[..., k] = out_k[..., 0].
  """
  num_layers = params[0][0].shape[params[0][1]]
  unroll = max(1, min(int(layers_per_iteration), num_layers))
  num_chunks = num_layers // unroll
  if num_chunks <= 1:  # everything Python-unrolled
    num_chunks, unroll = 0, 0
  rest = range(num_chunks * unroll, num_layers)  # the Python-unrolled layers
  state = tuple(state)
  parts = []
  if reverse and rest:
    state, rest_outs = _unrolled_layers(step, state, params, rest, reverse)
  if num_chunks:
    state, looped_outs = _chunked_layers(step, state, params, num_chunks, unroll, reverse)
    parts.append(looped_outs)
  if not reverse and rest:
    state, rest_outs = _unrolled_layers(step, state, params, rest, reverse)
  if rest:
    parts.append(rest_outs)
  return state, parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def _planar_forward(z, u_hat, w, b, layers_per_iteration):
  """Forward loop (layers 0..K-1).

  Args:
    z: [..., batch, D]; u_hat, w: [batch, K, D]; b: [batch, K].
  Returns:
    (y [..., batch, D], ths [..., batch, K]) with ths[..., k] = tanh(a_k).
  """

  def step(state, p):
    (x,) = state
    u_k, w_k, b_k = p
    th = tf.tanh(tf.reduce_sum(x * w_k, axis=-1, keepdims=True) + b_k)
    return (x + u_k * th,), th

  (y,), ths = _layer_loop(
    step,
    (z,),
    ((u_hat, -2), (w, -2), (b[..., tf.newaxis], -2)),
    reverse=False,
    layers_per_iteration=layers_per_iteration,
  )
  return y, ths


def _planar_inverse(y, u_hat, w, b, c, newton_iterations, layers_per_iteration):
  """Inverse loop (layers K-1..0), Newton per layer (see the module docstring).

  Args:
    y: [..., batch, D]; u_hat, w: [batch, K, D]; b, c: [batch, K].
  Returns:
    (z [..., batch, D], ths [..., batch, K]), ths at the recovered layer inputs.
  """

  def step(state, p):
    (x,) = state
    u_k, w_k, b_k, c_k = p
    r = tf.reduce_sum(x * w_k, axis=-1, keepdims=True) + b_k  # w.y + b
    # Newton on g(t) = t + c tanh t - r from the inflection point.
    one_plus_c = 1.0 + c_k
    abs_c = tf.abs(c_k)
    lo = r - abs_c
    hi = r + abs_c

    def newton_step(t):
      th = tf.tanh(t)
      return t - (t + c_k * th - r) / (one_plus_c - c_k * th * th)

    t = tf.clip_by_value(tf.zeros_like(r), lo, hi)
    for i in range(newton_iterations):
      t = newton_step(t)
      if i == 0:  # only the first step needs the bracket
        t = tf.clip_by_value(t, lo, hi)
    th = tf.tanh(newton_step(t))  # one last, unclipped step
    return (x - u_k * th,), th

  params = ((u_hat, -2), (w, -2), (b[..., tf.newaxis], -2), (c[..., tf.newaxis], -2))
  (z,), ths = _layer_loop(
    step, (y,), params, reverse=True, layers_per_iteration=layers_per_iteration
  )
  return z, ths
