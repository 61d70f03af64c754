"""Image grids and PNG files (TensorBoard summaries, tools/sample.py)."""

import math

import numpy as np
from PIL import Image


def grid(images, cols):
  """[n, H, W, C] float in [0, 1] -> uint8 [rows*H, cols*W, C], rows = ceil(n / cols).

  Row-major: image i goes to row i // cols, column i % cols; unused cells are black.
  Values are clipped to [0, 1] and rounded to 8 bits (x * 255 + 1/2, floored).
  """
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  rows = int(math.ceil(n / cols))
  out = np.zeros((rows * h, cols * w, c), np.float32)
  for i in range(n):
    r, q = divmod(i, cols)
    out[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i]
  return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(array, path):
  """Writes uint8 [H, W, 1 or 3] as a greyscale or RGB PNG."""
  if array.shape[-1] == 1:
    Image.fromarray(array[..., 0], mode="L").save(path)
  elif array.shape[-1] == 3:
    Image.fromarray(array, mode="RGB").save(path)
  else:
    raise ValueError(f"PNG needs 1 or 3 channels, got {array.shape[-1]}")
