"""The argument validators of asvae_tf.data (one set, shared by every module)."""

import numpy as np

from asvae_tf.errors import DataError

INT64_MAX = 2**63 - 1


def is_int(value, minimum, maximum=INT64_MAX) -> bool:
  """True for a Python or NumPy integer (not a bool) in [minimum, maximum]."""
  return (
    not isinstance(value, bool)
    and isinstance(value, (int, np.integer))
    and minimum <= value <= maximum
  )


def check_int(value, what, minimum, maximum=INT64_MAX) -> int:
  """int(value) if `is_int(value, minimum, maximum)`, else DataError naming `what`."""
  if not is_int(value, minimum, maximum):
    raise DataError(f"{what} must be an int in [{minimum}, {maximum}], got {value!r}")
  return int(value)


def check_images(images, what="images") -> np.ndarray:
  """np.asarray(images), checked to be uint8 [N, H, W, C]."""
  array = np.asarray(images)
  if array.dtype != np.uint8 or array.ndim != 4:
    raise DataError(f"{what} must be uint8 [N, H, W, C], got {array.dtype} {array.shape}")
  return array


def check_uint8(images, caller) -> np.ndarray:
  """np.asarray(images), checked to be uint8 (any shape); DataError naming `caller`."""
  array = np.asarray(images)
  if array.dtype != np.uint8:
    raise DataError(f"{caller} expects uint8 images, got {array.dtype}")
  return array
