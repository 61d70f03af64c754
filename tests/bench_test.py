"""bench/throughput.py's FLOP counting: hand counts and the TF profiler on tiny MLPs."""

import keras
import pytest
import tensorflow as tf

from asvae_tf import losses
from bench import throughput

TINY = [(3, 4), (4, 2)]  # 12 + 8 = 20 multiply-adds per example


@pytest.mark.parametrize(
  "mode,flops",
  [
    ("none", 40),  # forward 2 * 20
    ("input", 80),  # + input gradients 2 * 20
    ("full", 120),  # + weight gradients 2 * 20
    ("params", 96),  # full minus the first layer's input gradient 2 * 12
  ],
)
def test_dense_flops_hand_count(mode, flops):
  assert throughput.dense_flops(TINY, mode) == flops


def test_dense_flops_rejects_unknown_mode():
  with pytest.raises(ValueError):
    throughput.dense_flops(TINY, "forward")


def _shapes():
  return {
    "encoder": [(6, 4)],
    "heads": [(4, 2), (4, 2)],
    "decoder": [(2, 6)],
    "x_path": [(6, 3)],
    "z_path": [(2, 3)],
    "joint": [(6, 3), (3, 1)],
  }


def test_vae_step_hand_count():
  passes = throughput.step_passes(losses.get_objective("vae"), False, _shapes())
  flops = throughput.passes_flops(passes, disc_steps=0)
  # encoder(x) 24 MACs: 6*24 - 2*24 = 96; heads 16 MACs full: 96; decoder 12 MACs full: 72.
  assert flops == {"generator": 96 + 96 + 72, "discriminator": 0, "step": 264}


def test_asvae_step_hand_count():
  passes = throughput.step_passes(losses.get_objective("asvae"), True, _shapes())
  flops = throughput.passes_flops(passes, disc_steps=2)
  # MACs: encoder 24, heads 16, decoder 12, x path 18, z path 6, joint+logit 18 + 3 = 21.
  generator = (
    96
    + 96
    + 72  # encoder(x) params, heads full, decoder(z_q) full
    + (72 - 2 * 12)
    + 144
    + 96  # decoder(z_p) params, encoder(x') full, heads full
    + 2 * 18
    + 4 * 6
    + 4 * 21  # f1(x, z_q): x path fwd, z path / joint fwd+input
    + 4 * 18
    + 2 * 6
    + 4 * 21
  )  # f2(x', z_p): x path / joint fwd+input, z path fwd
  # Forward encoder, heads, decoder; 4 discriminator passes, weight gradients only in paths.
  discriminator = 2 * (24 + 16 + 12) + 4 * ((6 * 18 - 36) + (6 * 6 - 12) + 6 * 21)
  assert flops == {
    "generator": generator,
    "discriminator": discriminator,
    "step": generator + 2 * discriminator,
  }


def test_profiler_matches_analytic_on_tiny_mlp():
  """Gradient step of a bias-free 7-5-3 MLP: profiler (executed graph) == analytic."""
  net = keras.Sequential(
    [
      keras.Input((7,)),
      keras.layers.Dense(5, use_bias=False),
      keras.layers.Dense(3, use_bias=False),
    ]
  )
  other = keras.layers.Dense(3, use_bias=False)
  other.build((None, 5))

  @tf.function
  def grads(x):
    with tf.GradientTape() as tape:
      h = net.layers[0](x)
      # `other`'s kernel is watched but its gradient unused: traced, pruned at run time.
      loss = tf.reduce_sum(net.layers[1](h) * other(h))
    return tape.gradient(loss, net.trainable_variables)

  batch = 4
  executed, whole, loops = throughput.graph_flops(
    grads.get_concrete_function(tf.TensorSpec([batch, 7], tf.float32))
  )
  analytic = batch * (
    throughput.dense_flops([(7, 5), (5, 3)], "params") + throughput.dense_flops([(5, 3)], "input")
  )
  # The profiler also counts a few elementwise ops (here the product and the gradient sum).
  assert analytic <= executed <= analytic + batch * 20, (executed, analytic)
  assert whole >= executed + 2 * batch * 5 * 3  # + the unused weight gradient of `other`
  assert loops == 0


def test_matmul_limit_shapes_are_the_counted_flops():
  from bench import matmul_limit

  # One layer chain by hand: (3, 4), (4, 2) at batch 5 with "params": forwards (5,3,4),
  # (5,4,2); weight gradients (3,5,4), (4,5,2); input gradient of the second layer (5,2,4).
  chain = matmul_limit.chain_matmuls(TINY, 5, "params")
  assert sorted(chain) == sorted([(5, 3, 4), (5, 4, 2), (3, 5, 4), (4, 5, 2), (5, 2, 4)])
  for objective, has_d, disc_steps in (("vae", False, 0), ("asvae", True, 2)):
    passes = throughput.step_passes(losses.get_objective(objective), has_d, _shapes())
    counts = matmul_limit.matmul_shapes(passes, 7, disc_steps)
    assert matmul_limit.flops(counts) == 7 * throughput.passes_flops(passes, disc_steps)["step"]
  seconds, lo, hi = matmul_limit.time_matmuls({(2, 3, 4): 2}, tf.bfloat16, iters=1, windows=1)
  assert 0 < lo <= seconds <= hi


def test_interleaved_rates_time_the_runs_round_robin():
  from bench import bench_lib  # pylint: disable=g-import-not-at-top

  calls = []
  runs = [lambda i=i: calls.append(i) for i in range(3)]
  rates = bench_lib.interleaved_rates(runs, steps=2, num_windows=2, batch_size=5)
  assert calls == [0, 1, 2, 0, 1, 2]  # window by window, every run in turn
  assert len(rates) == 3 and all(0 < lo <= med <= hi for med, lo, hi in rates)
