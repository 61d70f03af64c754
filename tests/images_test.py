"""images.py: nearest-neighbour scaling, separators, the pair layout, the automatic scale."""

import numpy as np
import pytest

from asvae_tf import images

G = 128  # the separators' grey: round(0.5 * 255)


def test_plain_grid_is_the_unscaled_tiling():
  x = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2, 1) / 11.0
  out = images.grid(x, 2)
  assert out.shape == (4, 4, 1) and out.dtype == np.uint8
  expected = (x * 255 + 0.5).astype(np.uint8)
  np.testing.assert_array_equal(out[:2, :2], expected[0])
  np.testing.assert_array_equal(out[:2, 2:], expected[1])
  np.testing.assert_array_equal(out[2:, :2], expected[2])
  np.testing.assert_array_equal(out[2:, 2:], 0)  # the unused cell is black


def test_scaled_grid_with_separators_pixel_exact():
  # Two 1x2 tiles, values 0 / 1 and 1 / 0: scale 2, 1 px separator, 2 columns + 1 empty cell.
  x = np.array([[[[0.0], [1.0]]], [[[1.0], [0.0]]], [[[1.0], [1.0]]]], np.float32)
  out = images.grid(x, 2, scale=2, sep=1)[..., 0]
  W, B = 255, 0
  expected = np.array(
    [
      [B, B, W, W, G, W, W, B, B],
      [B, B, W, W, G, W, W, B, B],
      [G, G, G, G, G, G, G, G, G],
      [W, W, W, W, G, B, B, B, B],
      [W, W, W, W, G, B, B, B, B],
    ],
    np.uint8,
  )
  np.testing.assert_array_equal(out, expected)


def test_rgb_tiles_scale_every_channel():
  x = np.zeros((2, 1, 1, 3), np.float32)
  x[0, 0, 0] = [1.0, 0.0, 0.5]
  out = images.grid(x, 2, scale=3, sep=2)
  assert out.shape == (3, 8, 3)
  np.testing.assert_array_equal(out[:, :3], np.broadcast_to([255, 0, 128], (3, 3, 3)))
  np.testing.assert_array_equal(out[:, 3:5], G)
  np.testing.assert_array_equal(out[:, 5:], 0)


def test_pairs_put_each_output_right_of_its_input():
  inputs = np.full((3, 2, 2, 1), 0.0, np.float32)
  outputs = np.full((3, 2, 2, 1), 1.0, np.float32)
  p = images.pairs(inputs, outputs)
  assert p.shape == (3, 2, 4, 1)
  out = images.picture(p, 2, scale=1, sep=1)[..., 0]
  # 2 pairs a row: [in in out out | in in out out], no separator inside a pair.
  assert out.shape == (2 * 2 + 1, 2 * 4 + 1)
  row = [0, 0, 255, 255, G, 0, 0, 255, 255]
  np.testing.assert_array_equal(out[0], row)
  np.testing.assert_array_equal(out[1], row)
  np.testing.assert_array_equal(out[2], G)
  np.testing.assert_array_equal(out[3], [0, 0, 255, 255, G, 0, 0, 0, 0])


def test_auto_scale_makes_pictures_at_least_600_px_wide():
  assert images.auto_scale(8, 28) == 3  # 8 * 84 + 7 * 2 = 686 px
  assert images.auto_scale(8, 28, sep=0, min_width=224) == 1
  assert images.auto_scale(1, 1000) == 1
  for n, cols, size in ((64, 8, 28), (30, 10, 28), (6, 3, 32), (64, 8, 64), (1, 1, 28)):
    pic = images.picture(np.zeros((n, size, size, 1)), cols)
    assert pic.shape[1] >= images.MIN_WIDTH, (n, cols, size, pic.shape)
    assert pic.shape[1] - min(cols, n) * size < images.MIN_WIDTH  # the smallest such scale
  # 32 MNIST pairs, 4 a row (TensorBoard's reconstructions): 4 * 168 + 6 = 678 x 8 rows.
  pic = images.picture(images.pairs(np.zeros((32, 28, 28, 1)), np.ones((32, 28, 28, 1))), 4)
  assert pic.shape == (8 * 84 + 7 * 2, 4 * 168 + 3 * 2, 1)


def test_bad_scale_or_separator_is_refused():
  with pytest.raises(ValueError, match="scale"):
    images.grid(np.zeros((1, 2, 2, 1)), 1, scale=0)
  with pytest.raises(ValueError, match="sep"):
    images.grid(np.zeros((1, 2, 2, 1)), 1, sep=-1)
