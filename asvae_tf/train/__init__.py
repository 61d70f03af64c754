"""Training: strategy, checkpoints, the per-step trainer and the outer-loop controller.

run.py         `train` (gin `train`): settings, build, resume, then the controller
controller.py  Controller: step chunks between action boundaries, guard, rollback, save
trainer.py     Trainer: tf.function -> strategy.run -> strategy.reduce, finite guard
actions.py     summaries, image grids, validation + early stopping
keeper.py      the run's checkpoints (save points, restore, best weights)
checkpoints.py resolve / restore a checkpoint for evaluation and export
strategy.py    make_strategy, chief / worker write dirs
hooks.py       Hooks: test-harness callbacks (kill points, loss scaling); no-ops by default
(asvae_tf/precision.py: train.dtype_policy / serving.dtype_policy, the loss scales)
"""

from asvae_tf.errors import CheckpointMismatchError, TrainingDivergedError  # noqa: F401
from asvae_tf.train.actions import EARLY_STOPPING_METRICS, make_validation_fn  # noqa: F401
from asvae_tf.train.hooks import Hooks  # noqa: F401
from asvae_tf.train.run import train  # noqa: F401
from asvae_tf.train.strategy import STRATEGIES, is_chief, make_strategy  # noqa: F401
from asvae_tf.train.trainer import Trainer, adversarial_weight  # noqa: F401
