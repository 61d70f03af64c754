"""The per-step trainer: tf.function -> strategy.run -> strategy.reduce, with a finite guard.

Pattern (as in tensorflow/models orbit's StandardTrainer): everything is built under
`strategy.scope()`; a `tf.function` loop pulls per-replica batches from a distributed
iterator, runs the per-replica step with `strategy.run` and reduces the metrics with
`strategy.reduce`. Per-replica losses are averaged with the GLOBAL batch size
(`tf.nn.compute_average_loss`) because Keras 3 optimizers sum gradients over replicas.
One step = `discriminator_steps` discriminator updates (eqs. 5, 6) + one generator update
(eq. 11; the VAE: eq. 1 only).

Update schemes (train.update_scheme): 'alternating' (the paper's): each discriminator
update and then the generator update runs its own forward pass, the generator seeing the
freshly updated discriminators. 'shared': one forward pass (`terms.compute_shared`) whose
terms feed both updates (one persistent tape; the generator's gradient w.r.t. theta, phi,
the discriminators' w.r.t. psi of their own loss, whose inputs are stop-gradient'ed), then
the discriminator and generator updates are applied, each behind its own finite guard.
'shared' needs discriminator_steps == 1.

Determinism: the noise of global step s is keyed on (train.seed, s) (`rng.step_seed`,
`rng.update_seed`), so the checkpointed step counter IS the RNG state.

Non-finite guard: every update checks its loss and gradients with `tf.math.is_finite`,
agrees on the verdict over all replicas and workers (all-reduce) and applies the
optimizer only when everything is finite (`tf.cond`), so a bad step leaves weights, Adam
moments and optimizer iterations untouched (the data position still advances).
`consecutive_bad` counts the current streak; the controller rolls back on a long one.
"""

import hashlib

import gin
import numpy as np
import tensorflow as tf

from asvae_tf import optimizers
from asvae_tf import rng
from asvae_tf import precision
from asvae_tf.train.hooks import NO_HOOKS
from asvae_tf.train.step_options import UPDATE_SCHEMES  # noqa: F401  (re-exported)
from asvae_tf.train.step_options import check_jit_compile
from asvae_tf.train.step_options import check_update_scheme


def _update_variables(mdl):
  """{"generator": [...], "discriminator": [...]}: what each update differentiates and
  applies. All of the optimizer's variables but model.idle_variables, whose gradient is
  exactly 0 (their input is held at 0), so Adam would leave them and their moments
  unchanged anyway: skipping them is bit-identical and saves their gradients and Adam
  updates. The optimizers are built on all variables, so checkpoints keep every slot."""
  idle = {id(v) for v in mdl.idle_variables}
  return {
    "generator": mdl.generator_variables,
    "discriminator": [v for v in mdl.discriminator_variables if id(v) not in idle],
  }


class Trainer:
  """Holds the built model, optimizers, checkpointing and the compiled functions."""

  def __init__(
    self,
    strategy,
    mdl,
    global_batch_size,
    seed,
    disc_steps,
    jit_compile,
    max_bad_steps=10,
    adversarial_warmup_steps=0,
    hooks=NO_HOOKS,
    update_scheme="alternating",
  ):
    self.strategy = strategy
    self.model = mdl
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.disc_steps = disc_steps if mdl.has_discriminators else 0
    self.max_bad_steps = int(max_bad_steps)
    self.adversarial_warmup_steps = int(adversarial_warmup_steps)
    self.hooks = hooks
    self.update_scheme = check_update_scheme(update_scheme, self.disc_steps)
    jit_compile = check_jit_compile(jit_compile, mdl)
    mdl.posterior.jit_compile_flow = jit_compile == "flow"  # read when functions are traced
    with strategy.scope():
      with gin.config_scope("generator"):
        self.g_opt = optimizers.make_optimizer()
      with gin.config_scope("discriminator"):
        self.d_opt = optimizers.make_optimizer()
      self.g_opt.build(mdl.generator_variables)
      if mdl.has_discriminators:
        self.d_opt.build(mdl.discriminator_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
      self.best_metric = tf.Variable(np.inf, dtype=tf.float64, trainable=False)
      self.bad_validations = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.stopped_early = tf.Variable(False, trainable=False)
      # Non-finite guard state (checkpointed: a resumed run replays it exactly).
      self.consecutive_bad = tf.Variable(
        0, dtype=tf.int64, trainable=False, name="consecutive_bad_steps"
      )
      self.rollbacks = tf.Variable(0, dtype=tf.int64, trainable=False, name="rollbacks")
      # mixed_float16's dynamic loss scales (precision.py; checkpointed, inert otherwise).
      self.loss_scales = precision.loss_scales(mdl)
    self._make_stop_flags(strategy)
    self._update_variables = _update_variables(mdl)

    # Each per-replica gradient function is a tf.function of its own (XLA-compiled with
    # jit_compile) so it is traced once and reused: the loop calls the step twice (before
    # and inside its tf.range) and MirroredStrategy once per replica, and tracing the
    # model's terms is most of a run's start-up time. (Grappler inlines the calls.)
    def compiled(fn):
      return tf.function(fn, jit_compile=jit_compile is True, autograph=False)

    self._grad_fns = {m: compiled(self._make_grad_fn(m)) for m in ("generator", "discriminator")}
    self._shared_grad_fn = compiled(self._make_shared_grad_fn())
    # Autograph is needed for the loop's tensor control flow only; the model code uses
    # explicit tf.while_loop/tf.cond, and converting it costs seconds of tracing.
    self._replica_step = tf.autograph.experimental.do_not_convert(self._replica_step)
    self.loop = tf.function(self._loop)
    self.weights_finite = tf.function(self._weights_finite, autograph=False)

  def _make_stop_flags(self, strategy):
    """Preemption flags (plain variables: not mirrored, not checkpointed).

    stop_requested: set by train.preemption.PreemptionWatcher (another thread) on SIGTERM /
      SIGINT; the loop ends before its next step.
    stop_agreed (multi-worker): a signal reaches one worker (or all, at different steps),
      but every worker must stop after the same step or the next step's collectives hang.
      At the end of each step the workers all-reduce their stop_requested flags (one
      scalar) into stop_agreed, equal on all workers; the loop and the controller read it.
    """
    self.stop_requested = tf.Variable(False, trainable=False, name="stop_requested")
    self.multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    self.stop_agreed = tf.Variable(False, trainable=False, name="stop_agreed")

  def checkpointed(self):
    """Everything a checkpoint holds (the dict for tf.train.Checkpoint)."""
    return dict(
      model=self.model,
      generator_optimizer=self.g_opt,
      discriminator_optimizer=self.d_opt,
      step=self.step,
      best_metric=self.best_metric,
      bad_validations=self.bad_validations,
      stopped_early=self.stopped_early,
      consecutive_bad_steps=self.consecutive_bad,
      rollbacks=self.rollbacks,
      generator_loss_scale=self.loss_scales["generator"],
      discriminator_loss_scale=self.loss_scales["discriminator"],
    )

  def state_variables(self):
    """(name, variable) of the model, both optimizers and the step, in a fixed order."""
    out = [(f"model/{v.path}", v) for v in self.model.variables]
    for name, opt in (("generator_optimizer", self.g_opt), ("discriminator_optimizer", self.d_opt)):
      out += [(f"{name}/{i}/{v.path}", v) for i, v in enumerate(opt.variables)]
    return out + [("step", self.step)]

  def weights_digest(self):
    """sha256 of every model and optimizer variable and the step (same on all workers)."""
    h = hashlib.sha256()
    for name, v in self.state_variables():
      value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
      h.update(name.encode())
      h.update(str(value.dtype).encode() + str(value.shape).encode())
      h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()

  def _weights_finite(self):
    flags = [
      tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))
      for _, v in self.state_variables()
      if tf.as_dtype(v.dtype).is_floating
    ]
    return tf.reduce_all(tf.stack(flags))

  # ---- per-replica computation ----------------------------------------------

  def _make_grad_fn(self, mode):
    mdl, gbs = self.model, self.global_batch_size
    variables = self._update_variables[mode]
    scaler = self.loss_scales[mode]  # a no-op unless mixed_float16

    def grad_fn(x, seed, adversarial_weight, loss_scale=None):
      with tf.GradientTape() as tape:
        terms = mdl.terms(x, seed, mode, training=True, adversarial_weight=adversarial_weight)
        per_example = (
          mdl.generator_loss(terms) if mode == "generator" else mdl.discriminator_loss(terms)
        )
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=gbs)
        if loss_scale is not None:  # only when a hook asks for it (Hooks.scale_loss)
          loss = loss * loss_scale
        scaled = scaler.scale_loss(loss)
      grads = scaler.unscale(tape.gradient(scaled, variables))
      # One sum per gradient: NaN/Inf anywhere make it non-finite (cheaper than is_finite
      # on every element; a finite gradient summing past float32's range is also skipped).
      total = loss + tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])
      metrics = {**_metrics(terms, mode, loss, gbs), **scaler.metrics(mode)}
      return grads, metrics, scaler.finite(loss, total)

    return grad_fn

  def _make_shared_grad_fn(self):
    mdl, gbs = self.model, self.global_batch_size

    def grad_fn(x, seed, adversarial_weight, loss_scale=None):
      with tf.GradientTape(persistent=True) as tape:
        g_terms, d_terms = mdl.terms_shared(x, seed, adversarial_weight=adversarial_weight)
        losses = {}
        for mode, terms, loss_fn in (
          ("generator", g_terms, mdl.generator_loss),
          ("discriminator", d_terms, mdl.discriminator_loss),
        ):
          losses[mode] = tf.nn.compute_average_loss(loss_fn(terms), global_batch_size=gbs)
          if loss_scale is not None:  # only when a hook asks for it (Hooks.scale_loss)
            losses[mode] = losses[mode] * loss_scale
        scaled = {m: self.loss_scales[m].scale_loss(loss) for m, loss in losses.items()}
      out = {}
      for mode, terms in (("discriminator", d_terms), ("generator", g_terms)):
        variables = self._update_variables[mode]
        scaler = self.loss_scales[mode]  # a no-op unless mixed_float16
        grads = scaler.unscale(tape.gradient(scaled[mode], variables))
        total = losses[mode] + tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])
        metrics = {**_metrics(terms, mode, losses[mode], gbs), **scaler.metrics(mode)}
        out[mode] = (grads, metrics, scaler.finite(losses[mode], total))
      del tape
      return out

    return grad_fn

  def _guarded_apply(self, opt, grads, variables, finite):
    """Applies grads only if loss and gradients are finite on EVERY replica/worker.

    Returns the global verdict (bool scalar, equal on all replicas): False for a bad step.
    Unless it applies, nothing of the optimizer runs: weights, moments and `iterations`
    stay unchanged. Under mixed_float16 a loss-scale overflow is skipped but not bad, and
    lowers the scale (precision.DynamicLossScale.verdict).
    """
    ctx = tf.distribute.get_replica_context()
    bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    scaler = self.loss_scales["generator" if opt is self.g_opt else "discriminator"]
    ok, not_bad = scaler.verdict(bad)  # ok: apply; both tf.equal(bad, 0.0) unless float16
    variables = list(variables)

    def apply(g):
      opt.apply_gradients(zip(g, variables))

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
      tf.cond(ok, lambda: apply(grads), lambda: None)
    else:
      # Keras' LossScaleOptimizer pattern: a cond whose branch calls merge_call (as
      # apply_gradients does under Mirrored/MultiWorkerMirrored strategies) must be
      # built in cross-replica context.
      def cross_replica(distribution, grads, ok):
        first_ok = distribution.experimental_local_results(ok)[0]
        tf.cond(
          first_ok,
          lambda: distribution.extended.call_for_each_replica(apply, args=(grads,)),
          lambda: None,
        )

      ctx.merge_call(cross_replica, args=(grads, ok))
    return not_bad

  def _replica_step(self, x, step):
    # MultiWorkerMirroredStrategy's distributed datasets lose the static batch size.
    per_replica = self.global_batch_size // self.strategy.num_replicas_in_sync
    x = tf.ensure_shape(x, [per_replica] + list(self.model.image_shape))
    seed = rng.step_seed(self.seed, step)
    loss_scale = self.hooks.scale_loss(step, self.rollbacks)
    weight = adversarial_weight(step, self.adversarial_warmup_steps)
    if self.update_scheme == "shared":
      return self._shared_replica_step(x, seed, weight, loss_scale)
    metrics, ok = {}, tf.constant(True)
    for k in range(self.disc_steps):
      grads, metrics, finite = self._grad_fns["discriminator"](
        x, rng.update_seed(seed, "discriminator", k), weight, loss_scale
      )
      ok = tf.logical_and(
        ok, self._guarded_apply(self.d_opt, grads, self._update_variables["discriminator"], finite)
      )
    grads, g_metrics, finite = self._grad_fns["generator"](
      x, rng.update_seed(seed, "generator"), weight, loss_scale
    )
    ok = tf.logical_and(
      ok, self._guarded_apply(self.g_opt, grads, self._update_variables["generator"], finite)
    )
    metrics.update(g_metrics)
    return metrics, ok

  def _shared_replica_step(self, x, seed, weight, loss_scale):
    out = self._shared_grad_fn(x, rng.update_seed(seed, "generator"), weight, loss_scale)
    metrics, ok = {}, tf.constant(True)
    for mode, opt in (("discriminator", self.d_opt), ("generator", self.g_opt)):
      grads, mode_metrics, finite = out[mode]
      ok = tf.logical_and(ok, self._guarded_apply(opt, grads, self._update_variables[mode], finite))
      metrics.update(mode_metrics)
    return metrics, ok

  def _stop_votes(self):
    """Replica fn: how many workers' stop_requested flags are set (all-reduced), float32."""
    vote = tf.cast(self.stop_requested.read_value(), tf.float32)
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, vote)

  def stop_now(self):
    """Python bool: should training stop for preemption? Multi-worker: the agreed verdict
    of the last step (same on every worker); otherwise this process's flag."""
    flag = self.stop_agreed if self.multi_worker else self.stop_requested
    return bool(flag.numpy())

  def _one_step(self, iterator):
    metrics, ok = self.strategy.run(
      self._replica_step, args=(next(iterator), self.step.read_value())
    )
    if self.multi_worker:  # the flags as this step ends, agreed on every worker alike
      with tf.control_dependencies([ok]):
        votes = self.strategy.run(self._stop_votes)
      votes = self.strategy.experimental_local_results(votes)[0]
      self.stop_agreed.assign(votes > 0)
    ok = self.strategy.experimental_local_results(ok)[0]  # equal on all replicas
    self.step.assign_add(1)
    self.consecutive_bad.assign(tf.where(ok, tf.constant(0, tf.int64), self.consecutive_bad + 1))
    metrics = {
      k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in metrics.items()
    }
    # A bad step's metrics are NaN/Inf: they are left out of the sums.
    return {k: tf.where(ok, v, tf.zeros_like(v)) for k, v in metrics.items()}, ok

  def _loop(self, iterator, num_steps):
    """Runs up to num_steps >= 1 (int32 scalar tensor) training steps.

    Stops early once train.max_bad_steps consecutive steps were non-finite, or when
    stop_requested is set (preemption: the step in flight completes; multi-worker: when
    stop_agreed is, i.e. after the step at whose end any worker's flag was set).
    Returns (metric sums over the good steps, number of good steps, steps run).
    """
    sums, ok = self._one_step(iterator)
    good = tf.cast(ok, tf.int32)
    done = tf.constant(1)
    stop_flag = self.stop_agreed if self.multi_worker else self.stop_requested
    for _ in tf.range(num_steps - 1):
      if self.consecutive_bad >= self.max_bad_steps or stop_flag:
        break
      metrics, ok = self._one_step(iterator)
      sums = {k: sums[k] + metrics[k] for k in sums}
      good += tf.cast(ok, tf.int32)
      done += 1
    return sums, good, done


def adversarial_weight(step, warmup_steps):
  """Warm-up weight of the learned ratio terms of eq. (11) in the step that ends at global
  step step + 1: min(1, (step + 1) / warmup_steps), or 1 without warm-up (float32 scalar)."""
  if warmup_steps <= 0:
    return tf.constant(1.0)
  return tf.minimum(1.0, tf.cast(step + 1, tf.float32) / warmup_steps)


def _metrics(terms, mode, loss, global_batch_size):
  """Per-replica metric contributions; summed over replicas they are global means."""

  def mean(v):
    return tf.reduce_sum(tf.cast(v, tf.float32)) / global_batch_size

  out = {f"loss/{mode}": loss}
  if mode == "generator":
    for name in ("log_px_given_zq", "log_q_prior", "f1_real", "f2_real"):
      value = getattr(terms, name)
      if value is not None:
        out[f"generator/{name}"] = mean(value)
    if terms.log_px_given_zq is not None:
      out["generator/neg_elbo"] = mean(-(terms.log_px_given_zq + terms.log_pzq - terms.log_qzq))
      # What f1 should charge (exact, eq. 7's explicit part) beside what it charges.
      out["ratio/kl_exact"] = mean(terms.log_qzq - terms.log_pzq)
      if terms.f1_real is not None:
        out["ratio/f1_mean"] = mean(terms.f1_real)
        out["ratio/gap"] = out["ratio/f1_mean"] - out["ratio/kl_exact"]
    if terms.f2_real is not None:
      out["ratio/f2_mean"] = mean(terms.f2_real)
      if terms.f2_explicit is not None:
        out["ratio/f2_explicit"] = mean(terms.f2_explicit)
  else:
    for eq, real, fake in (
      ("eq5", terms.f1_real, terms.f1_fake),
      ("eq6", terms.f2_real, terms.f2_fake),
      ("eq6_x", terms.f2x_real, terms.f2x_fake),
      ("eq6_z", terms.f2z_real, terms.f2z_fake),
    ):
      if fake is None:
        continue
      out[f"discriminator/{eq}_accuracy"] = 0.5 * (mean(real > 0) + mean(fake < 0))
      out[f"discriminator/{eq}_real_logit"] = mean(real)
      out[f"discriminator/{eq}_fake_logit"] = mean(fake)
  return out
