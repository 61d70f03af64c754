"""Compatibility alias for one release: the old `asvae_tf.train_lib` module.

Training moved to the package `asvae_tf.train` (run.py: `train`; trainer.py: `Trainer`,
`adversarial_weight`; strategy.py: `make_strategy`). The former test-only kill variable and
NaN-injection bindings are gone: test harnesses pass `asvae_tf.train.hooks.Hooks` to
`train(model_dir, hooks=...)` (README "Package layout and public names").
"""

from asvae_tf.errors import CheckpointMismatchError, TrainingDivergedError  # noqa: F401
from asvae_tf.train import Trainer, adversarial_weight, make_strategy, train  # noqa: F401
