"""Scale-out readiness (issue 14 item 6): the global batch split over replicas,
`train.per_replica_batch_size` and `train.deterministic`, on 4 logical CPUs.

The 4-device runs are processes (tests/harness.py --logical_cpus=4): the logical device
configuration must happen before TensorFlow initialises its devices, and this test
process already has conftest's 2 logical CPUs.
"""

import os
import subprocess
import sys
import types

import pytest

from asvae_tf.errors import ConfigError
from asvae_tf.train import strategy as strategy_lib
from conftest import ROOT, TINY_MODEL

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
HARNESS_PY = os.path.join(ROOT, "tests", "harness.py")
RUN = TINY_MODEL + [
  "model.objective = 'vae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.strategy = 'mirrored'",
  "train.checkpoint_every = 0",
  "train.summary_every = 1",
  "train.validate_every = 0",
  "train.image_every = 0",
]


def _replicas(n):
  return types.SimpleNamespace(num_replicas_in_sync=n)


@pytest.mark.parametrize(
  "batch, per_replica, replicas, expected",
  [
    (100, None, 1, 100),
    (100, None, 2, 100),
    (104, None, 4, 104),
    (None, 2, 4, 8),
    (8, 2, 4, 8),
    (100, 32, 4, 128),
  ],  # per_replica wins over the gin files' batch_size (a warning says so)
)
def test_global_batch_from_either_binding(batch, per_replica, replicas, expected):
  assert strategy_lib.global_batch_size(batch, per_replica, _replicas(replicas)) == expected


@pytest.mark.parametrize(
  "batch, per_replica, replicas, needles",
  [
    (100, None, 4, ["train.batch_size=100", "4 replicas", ": 96, 104 ", "per_replica_batch_size"]),
    (100, None, 8, ["nearest valid global batch sizes: 96, 112 (multiples of 16)"]),
    (6, None, 4, ["nearest valid global batch sizes: 8 (multiples of 8)"]),
    (102, None, 2, ["sizes: 100, 104 (multiples of 4)"]),  # divisible, but odd per replica
    (None, None, 4, ["set train.batch_size (global) or train.per_replica_batch_size"]),
    (None, 3, 4, ["per_replica_batch_size=3 must be even"]),
    (None, 0, 4, ["per_replica_batch_size must be a positive int"]),
    (None, True, 4, ["per_replica_batch_size must be a positive int"]),
    (8.0, None, 4, ["train.batch_size must be a positive int, got 8.0"]),
  ],
)
def test_bad_batch_is_one_line_naming_the_fix(batch, per_replica, replicas, needles):
  with pytest.raises(ConfigError) as info:
    strategy_lib.global_batch_size(batch, per_replica, _replicas(replicas))
  message = str(info.value)
  assert "\n" not in message
  for needle in needles:
    assert needle in message, message


def _harness(tmp_path, bindings):
  args = [sys.executable, HARNESS_PY, "--logical_cpus=4", f"--gin_file={MNIST_GIN}"]
  args += [f"--model_dir={tmp_path / 'm'}"] + [f"--gin_param={b}" for b in RUN + bindings]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
  return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_four_replicas_reject_an_uneven_global_batch_before_writing(tmp_path):
  r = _harness(tmp_path, ["train.batch_size = 100"])
  assert r.returncode == 2, r.stderr[-3000:]
  errors = [line for line in r.stderr.splitlines() if line.startswith("asvae_tf: error:")]
  assert len(errors) == 1 and "over 4 replicas" in errors[0], r.stderr[-3000:]
  assert "nearest valid global batch sizes: 96, 104" in errors[0]
  assert "Traceback" not in r.stderr and not os.path.exists(tmp_path / "m")


@pytest.mark.slow(17)
def test_four_replicas_train_with_per_replica_batch_and_op_determinism(tmp_path):
  r = _harness(
    tmp_path,
    [
      "train.batch_size = None",
      "train.per_replica_batch_size = 2",
      "train.deterministic = True",
    ],
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert "with 4 replica(s); global batch 8" in r.stderr, r.stderr[-3000:]
  assert "op determinism enabled" in r.stderr
  operative = (tmp_path / "m" / "operative_config.gin").read_text()
  assert "train.per_replica_batch_size = 2" in operative
  assert "train.deterministic = True" in operative
  assert os.path.isfile(tmp_path / "m" / "checkpoints" / "ckpt-2.index")


def test_deterministic_must_be_a_bool(tmp_path):
  from asvae_tf.train import run  # pylint: disable=g-import-not-at-top

  with pytest.raises(ConfigError, match="train.deterministic must be True or False"):
    run._set_determinism("yes")  # pylint: disable=protected-access
