"""Compatibility alias for one release: the old `asvae_tf.config` module.

Its contents moved: `parse` -> `asvae_tf.registry.parse` (registers the configurables,
then `asvae_tf.gin_config.parse`); `write_operative_config` -> `asvae_tf.gin_config`;
`FusedAdam`, `make_optimizer` (gin `optimizer`) -> `asvae_tf.optimizers`;
`ConfigError` -> `asvae_tf.errors`.
"""

# pylint: disable=unused-import
from asvae_tf.errors import ConfigError  # noqa: F401
from asvae_tf.gin_config import write_operative_config  # noqa: F401
from asvae_tf.optimizers import FusedAdam, make_optimizer  # noqa: F401
from asvae_tf.registry import parse  # noqa: F401
