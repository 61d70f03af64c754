"""Shared pytest setup: quiet TF logs, repo root on sys.path, real-MNIST location."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# Real MNIST test-set files live beside the project root (never copied into it).
MNIST_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

# Two logical CPU devices so MirroredStrategy tests have 2 replicas. Must happen
# before anything initialises the TF runtime.
_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)
