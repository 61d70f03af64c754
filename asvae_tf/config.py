"""Gin plumbing: strict parsing, optimizers, operative-config output.

`gin.tf` does not import on current TensorFlow (it needs tf.estimator), so the
Keras optimizers are exposed through `optimizer`, a small gin factory used in
two scopes: `generator/optimizer.*` (theta, phi) and
`discriminator/optimizer.*` (psi1, psi2).
"""

import os

import gin
import keras


class ConfigError(ValueError):
  """A bad configuration value (reported by the CLIs as one line, exit code 2)."""


_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}


@gin.configurable("optimizer")
def make_optimizer(name="adam", learning_rate=1e-4, beta_1=0.9, beta_2=0.999,
                   epsilon=1e-7, clipnorm=None):
  """A Keras 3 optimizer; Adam with learning rate 1e-4 as in section 5.

  beta_1 / beta_2 apply to Adam only (beta_1 is the momentum of SGD, rho of RMSprop
  is left at its default). Call it under `gin.config_scope("generator")` or
  `("discriminator")` and under `strategy.scope()`.
  """
  if name not in _OPTIMIZERS:
    raise ConfigError(f"optimizer.name must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
  kwargs = dict(learning_rate=learning_rate)
  if clipnorm is not None:
    kwargs["clipnorm"] = clipnorm
  if name == "adam":
    kwargs.update(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
  elif name == "sgd":
    kwargs.update(momentum=beta_1)
  return _OPTIMIZERS[name](**kwargs)


def parse(gin_files=(), gin_params=()):
  """Parses gin files then bindings; unknown configurables/parameters are errors.

  Raises:
    FileNotFoundError: a gin file does not exist.
    ValueError: gin reports a bad or unknown binding (never skip_unknown).
  """
  for path in gin_files:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"gin file not found: {path}")
  # Make sure every configurable is registered before parsing.
  from asvae_tf import registry  # pylint: disable=g-import-not-at-top,unused-import
  gin.parse_config_files_and_bindings(list(gin_files), list(gin_params),
                                      skip_unknown=False, finalize_config=False)


def write_operative_config(directory):
  """Writes directory/operative_config.gin (the bindings actually used) and returns its path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "operative_config.gin")
  with open(path, "w") as f:
    f.write(gin.operative_config_str())
  return path
