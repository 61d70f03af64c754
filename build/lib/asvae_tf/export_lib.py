"""Compatibility alias for ONE release: the old `asvae_tf.export_lib` module.

Its contents moved to `asvae_tf.export` (AsvaeServing, export, export_checkpoint,
read_metadata, ...); `resolve_checkpoint` and `restore_model` moved to
`asvae_tf.checkpoints`. The README's `export_lib.read_metadata(E)` keeps working
until the alias is removed; new code imports `asvae_tf.export`.
"""

# pylint: disable=unused-import,g-importing-member
from asvae_tf.export import CONFIG_FILE  # noqa: F401
from asvae_tf.export import IWAE_CHUNK_SIZE  # noqa: F401
from asvae_tf.export import METADATA_FILE  # noqa: F401
from asvae_tf.export import SIGNATURES  # noqa: F401
from asvae_tf.export import AsvaeServing  # noqa: F401
from asvae_tf.export import export  # noqa: F401
from asvae_tf.export import export_checkpoint  # noqa: F401
from asvae_tf.export import image_shape_from_gin  # noqa: F401
from asvae_tf.export import metadata  # noqa: F401
from asvae_tf.export import read_metadata  # noqa: F401
from asvae_tf.checkpoints import resolve_checkpoint  # noqa: F401
from asvae_tf.checkpoints import restore_model  # noqa: F401
