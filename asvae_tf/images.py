"""Image grids and PNG files (TensorBoard summaries, asvae-sample, the projector sprite).

`grid` is the plain tiling (1 image pixel = 1 grid pixel, no gaps: the projector's sprite);
`picture` is the grid for people: tiles scaled up by nearest neighbour (`auto_scale`: the
smallest integer factor that makes the grid at least MIN_WIDTH pixels wide) with SEPARATOR
grey pixels between tiles. `pairs` puts each input beside its output, one tile per pair.
"""

import math

import numpy as np
from PIL import Image

MIN_WIDTH = 600  # px: auto_scale makes a picture at least this wide
SEPARATOR = 2  # px of grey between the tiles of a picture
SEPARATOR_VALUE = 0.5  # the separators' grey, in [0, 1] (128 of 255)


def grid(images, cols, scale=1, sep=0):
  """[n, H, W, C] float in [0, 1] -> uint8 [rows*H*s + (rows-1)*sep, cols*W*s + (cols-1)*sep, C].

  Row-major: image i goes to row i // cols, column i % cols; unused cells are black. Each
  image pixel becomes a `scale` x `scale` block (nearest neighbour, s = scale); `sep`
  pixels of grey (SEPARATOR_VALUE) lie between neighbouring tiles (none at the border).
  Values are clipped to [0, 1] and rounded to 8 bits (x * 255 + 1/2, floored).
  """
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  scale, sep = int(scale), int(sep)
  if scale < 1 or sep < 0:
    raise ValueError(f"grid needs scale >= 1 and sep >= 0, got scale={scale}, sep={sep}")
  rows = int(math.ceil(n / cols))
  th, tw = h * scale, w * scale
  out = np.full((rows * th + (rows - 1) * sep, cols * tw + (cols - 1) * sep, c), SEPARATOR_VALUE,
                np.float32)  # fmt: skip
  for i in range(rows * cols):
    r, q = divmod(i, cols)
    tile = images[i].repeat(scale, axis=0).repeat(scale, axis=1) if i < n else 0.0
    top, left = r * (th + sep), q * (tw + sep)
    out[top : top + th, left : left + tw] = tile
  return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def auto_scale(cols, width, sep=SEPARATOR, min_width=MIN_WIDTH):
  """The smallest integer scale >= 1 that makes `cols` tiles `width` px wide (and their
  separators) at least `min_width` px wide."""
  return max(1, math.ceil((min_width - (cols - 1) * sep) / (cols * width)))


def picture(images, cols, scale=None, sep=SEPARATOR):
  """`grid` for people: tiles scaled by `scale` (None or 0: auto_scale, >= MIN_WIDTH px wide)
  with `sep` px separators; cols is capped at the number of images."""
  images = np.asarray(images, np.float32)
  cols = max(1, min(int(cols), len(images)))
  if not scale:
    scale = auto_scale(cols, images.shape[2], sep)
  return grid(images, cols, scale, sep)


def pairs(inputs, outputs):
  """[n, H, W, C] inputs and outputs -> [n, H, 2W, C]: each input with its output on its
  right (one tile per pair: separators fall between pairs, not inside one)."""
  return np.concatenate([np.asarray(inputs, np.float32), np.asarray(outputs, np.float32)], axis=2)


def write_png(array, path):
  """Writes uint8 [H, W, 1 or 3] as a greyscale or RGB PNG."""
  if array.shape[-1] == 1:
    Image.fromarray(array[..., 0], mode="L").save(path)
  elif array.shape[-1] == 3:
    Image.fromarray(array, mode="RGB").save(path)
  else:
    raise ValueError(f"PNG needs 1 or 3 channels, got {array.shape[-1]}")
