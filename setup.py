"""asvae_tf: Adversarial Symmetric VAE (Pu et al., NIPS 2017) for TensorFlow 2 / Keras 3."""

import os
import re

from setuptools import find_packages, setup

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "asvae_tf", "__init__.py")) as f:
  _VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)
with open(os.path.join(_HERE, "requirements.txt")) as f:
  # Test and lint tools are not runtime dependencies.
  _REQUIRES = [
    line.strip() for line in f if line.strip() and not line.startswith(("#", "pytest", "ruff"))
  ]

setup(
  name="asvae_tf",
  version=_VERSION,
  description="Adversarial Symmetric VAE (AS-VAE) in TensorFlow 2 / Keras 3 with TFP flows",
  # The paper's gin configs (gin/) ship as package data asvae_tf/configs/*.gin:
  # `--gin_file=mnist.gin` finds them by bare name once installed (gin_config.find_gin_file).
  packages=find_packages(include=["asvae_tf", "asvae_tf.*"]) + ["asvae_tf.configs"],
  package_dir={"asvae_tf.configs": "gin"},
  package_data={"asvae_tf.configs": ["*.gin"]},
  python_requires=">=3.10",
  install_requires=_REQUIRES,
  extras_require={"test": ["pytest"]},
)
