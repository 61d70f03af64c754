"""bench/mnist10k_lib.py: the MNIST-10k protocol bindings, seed statistics, run stamping."""

import numpy as np
import pytest
from scipy import stats

from bench import mnist10k_lib as lib


def test_mean_and_standard_error_match_scipy():
  values = [109.6, 110.4, 108.9]
  mean, se = lib.mean_se(values)
  np.testing.assert_allclose(mean, np.mean(values), rtol=1e-12)
  np.testing.assert_allclose(se, stats.sem(values), rtol=1e-12)
  assert lib.mean_se([3.0]) == (3.0, 0.0)


def test_protocol_bindings_are_the_budget():
  b = lib.protocol_bindings("/d", 7000, 20, 2, 1e-3)
  assert "train.num_steps = 1400" in b and "train.seed = 2" in b
  assert "train.batch_size = 100" in b and "dataset.local_dir = '/d'" in b
  assert "generator/optimizer.learning_rate = 0.001" in b


def test_a_work_dir_refuses_runs_with_other_settings(tmp_path):
  lib.stamp_work_dir(str(tmp_path), {"k": 1000})
  lib.stamp_work_dir(str(tmp_path), {"k": 1000})  # same settings: fine
  with pytest.raises(ValueError, match="other settings"):
    lib.stamp_work_dir(str(tmp_path), {"k": 50})
