"""Validation of the trainer's step options: train.update_scheme and train.jit_compile.

Kept apart from trainer.py so that train.run can refuse a bad value before any data is
loaded or any model is built.
"""

from asvae_tf import errors

__all__ = ["UPDATE_SCHEMES", "check_jit_compile", "check_jit_compile_value", "check_update_scheme"]

UPDATE_SCHEMES = ("alternating", "shared")


def check_jit_compile_value(setting):
  """Raises errors.ConfigError unless train.jit_compile is True, False or 'flow'."""
  if not (setting is True or setting is False or setting == "flow"):
    raise errors.ConfigError(f"train.jit_compile must be True, False or 'flow', got {setting!r}")


def check_jit_compile(setting, mdl):
  """train.jit_compile: False, True (XLA for the per-replica loss and gradients) or
  'flow' (XLA for the planar flow's layer loops only); returns it.

  Raises:
    errors.ConfigError: another value, or 'flow' without a planar flow to compile.
  """
  check_jit_compile_value(setting)
  if setting == "flow" and not (mdl.posterior.has_flow and mdl.posterior.kind == "planar"):
    raise errors.ConfigError(
      "train.jit_compile='flow' compiles the planar flow's layer loops, but posterior.kind is "
      f"{mdl.posterior.kind!r} with num_flows={mdl.posterior.num_flows} (use True or False)"
    )
  return setting


def check_update_scheme(scheme, disc_steps):
  """scheme if valid for disc_steps discriminator updates per step, else errors.ConfigError.

  'shared' with a model without discriminators (the VAE) is 'alternating' (one update).
  """
  if scheme not in UPDATE_SCHEMES:
    raise errors.ConfigError(f"train.update_scheme must be one of {UPDATE_SCHEMES}, got {scheme!r}")
  if scheme == "shared" and disc_steps == 0:
    return "alternating"
  if scheme == "shared" and disc_steps != 1:
    raise errors.ConfigError(
      f"train.update_scheme='shared' runs one discriminator update per step; "
      f"train.discriminator_steps is {disc_steps} (use 1, or update_scheme='alternating')"
    )
  return scheme
