"""Mixed precision (gin `train.dtype_policy`, `serving.dtype_policy`): the networks' Keras
dtype policy and the dynamic loss scale of mixed_float16.

Policies (`DTYPE_POLICIES`):
  'float32'         the default; nothing is cast, every number is as without this module.
  'mixed_bfloat16'  the encoder, decoder and discriminator bodies compute in bfloat16.
  'mixed_float16'   the same in float16, with dynamic loss scaling (`DynamicLossScale`).

What runs in float32 under every policy: all variables (the networks' weights are float32
master weights, cast to the compute dtype when a layer uses them), gradients, optimizer
state; the outputs of the networks (`nets.layers.Network` casts them to float32: encoder
features before the posterior, decoder parameters before the likelihood, discriminator
logits before the losses); the posterior (its heads and flow: log-determinants, the planar
Newton inverse and its implicit gradients), the prior, the likelihoods, the ratio
estimators' explicit parts, every loss and metric.

`policy_scope` sets the Keras global policy only while `train` builds the model (a layer
keeps the policy it was built with) and restores the previous one afterwards, so models
built later in the process (evaluation, export, tests) get the process's own policy.
Variables are float32 in every policy, so checkpoints are interchangeable between them; an
export (rebuilt from a checkpoint outside the training scope) computes in
`serving.dtype_policy` (default float32), whatever the training policy was.
"""

import contextlib

import gin
import keras
import tensorflow as tf

from asvae_tf.errors import ConfigError

DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

# mixed_float16's dynamic loss scale (the values of Keras' LossScaleOptimizer): start at
# 2^15, halve on an overflow, double after GROWTH_INTERVAL consecutive applied updates.
INITIAL_SCALE = 2.0**15
GROWTH_INTERVAL = 2000
MIN_SCALE = 1.0


def check_policy(name, setting="train.dtype_policy"):
  """ConfigError (one line, naming `setting`) unless name is one of DTYPE_POLICIES."""
  if name not in DTYPE_POLICIES:
    raise ConfigError(f"{setting} must be one of {DTYPE_POLICIES}, got {name!r}")


@contextlib.contextmanager
def policy_scope(name):
  """Sets the Keras global dtype policy to `name` inside the block, then restores the
  previous one (also on an error)."""
  check_policy(name, "dtype policy")
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(name)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


@gin.configurable("serving")
def serving_dtype_policy(dtype_policy="float32"):
  """The dtype policy an export's networks compute in (gin `serving.dtype_policy`).

  'float32' (default), 'mixed_bfloat16' or 'mixed_float16': the export is built under it
  (export.export_checkpoint), so its encoder, decoder and discriminator bodies run in that
  dtype while everything else (the posterior and flow, the likelihoods, the signatures'
  inputs and outputs) stays float32. Independent of train.dtype_policy: checkpoints are
  float32 in every policy. Raises ConfigError (one line) for another name.
  """
  check_policy(dtype_policy, "serving.dtype_policy")
  return dtype_policy


def compute_dtype(mdl):
  """The dtype the model's networks compute in ('float32', 'bfloat16' or 'float16')."""
  return mdl.encoder.compute_dtype


class DynamicLossScale(tf.Module):
  """The dynamic loss scale S of one optimizer's updates, and its part in the finite guard.

  Inactive (float32, mixed_bfloat16) it changes nothing: `scale_loss` and `unscale` return
  their argument and `finite` / `verdict` are exactly the guard's plain checks. It is
  checkpointed in every policy (S stays INITIAL_SCALE when inactive), so a checkpoint of
  one policy resumes under another and a float16 run resumes bit-identically.

  Active (mixed_float16) the gradient of S * loss is taken and multiplied by 1 / S (exact:
  S is a power of two) before the guard sees it. An update is then one of:
    - applied: loss and unscaled gradients finite on every replica; after GROWTH_INTERVAL
      consecutive applied updates S doubles.
    - an overflow: the loss is finite everywhere but a gradient is not, and S > MIN_SCALE:
      S * loss overflowed float16 in the backward pass. Nothing is applied and S halves,
      but the step is NOT a bad step of the guard: it counts as good (it ends a non-finite
      streak and triggers no rollback: lowering S is its remedy), its finite metrics kept.
    - bad: the loss is non-finite (the forward pass does not depend on S, so lowering S
      cannot help; S is kept), or the gradients are non-finite at S = MIN_SCALE (nothing
      left to lower). Nothing is applied and the guard counts the step as usual.
  The verdict is all-reduced first, so every replica and worker agrees on it and on S.
  """

  def __init__(self, active, name):
    super().__init__(name=name)
    self.active = bool(active)
    agg = tf.VariableAggregation.ONLY_FIRST_REPLICA  # assigned in replica context
    self.scale = tf.Variable(
      INITIAL_SCALE, dtype=tf.float32, trainable=False, aggregation=agg, name="scale"
    )
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=agg,
                                  name="good_steps")  # fmt: skip

  def scale_loss(self, loss):
    """S * loss (the loss the tape differentiates); loss itself when inactive."""
    return loss * self.scale if self.active else loss

  def unscale(self, grads):
    """The gradients of S * loss divided by S; grads itself when inactive."""
    if not self.active:
      return grads
    inverse = 1.0 / self.scale
    return [None if g is None else g * inverse for g in grads]

  def finite(self, loss, total):
    """This replica's finiteness flags of one update: is_finite(total) (total = loss + the
    sum of every gradient element) when inactive; active: [is_finite(loss), that]."""
    if not self.active:
      return tf.math.is_finite(total)
    return tf.stack([tf.math.is_finite(loss), tf.math.is_finite(total)])

  def verdict(self, bad):
    """(apply, not_bad) from the all-reduced count of replicas whose flags were False
    (the shape of `finite`): apply the update?, and is the step not a bad step of the
    guard? Active: also updates S (see the class docstring)."""
    if not self.active:
      ok = tf.equal(bad, 0.0)
      return ok, ok
    ok = tf.equal(bad[1], 0.0)
    overflow = tf.logical_and(
      tf.logical_and(tf.equal(bad[0], 0.0), tf.logical_not(ok)), self.scale > MIN_SCALE
    )
    grow = tf.logical_and(ok, self.good_steps + 1 >= GROWTH_INTERVAL)
    factor = tf.where(overflow, 0.5, tf.where(grow, 2.0, 1.0))
    self.good_steps.assign(tf.where(tf.logical_and(ok, tf.logical_not(grow)),
                                    self.good_steps + 1, tf.constant(0, tf.int64)))  # fmt: skip
    self.scale.assign(self.scale * factor)
    return ok, tf.logical_or(ok, overflow)

  def metrics(self, mode):
    """{'loss_scale/<mode>': this replica's share of S} when active (summed over replicas it
    is S; averaged over a summary window, the mean S), else {}."""
    if not self.active:
      return {}
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return {f"loss_scale/{mode}": self.scale / replicas}


def loss_scales(mdl):
  """{'generator': DynamicLossScale, 'discriminator': ...} for the model's updates, active
  when its networks compute in float16. Create under the strategy's scope."""
  active = compute_dtype(mdl) == "float16"
  return {mode: DynamicLossScale(active, f"{mode}_loss_scale")
          for mode in ("generator", "discriminator")}  # fmt: skip
