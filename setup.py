"""asvae_tf: Adversarial Symmetric VAE (Pu et al., NIPS 2017) for TensorFlow 2 / Keras 3.

install_requires holds compatible ranges (what the code needs, docs/install.md); the
exact tested set is constraints.txt, which tools/setup_env.sh installs with:
  pip install -c constraints.txt .
"""

import os
import re

from setuptools import find_packages, setup

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "asvae_tf", "__init__.py")) as f:
  _VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

# Floors tested together (TF 2.20.0, Keras 3.10.0, TFP 0.24.0, TFDS 4.9.4, NumPy 1.26.4,
# SciPy 1.11.4, Pillow 10.0.1, absl-py 1.0.0), as is constraints.txt. TF 2.16-2.19 cap
# protobuf below 6, and the tensorflow-metadata pip then picks for TFDS needs protobuf >= 6.31:
# `import tensorflow_datasets` fails there. Ceilings: the next TF / TFP releases are untested.
_REQUIRES = [
  "tensorflow>=2.20,<2.22",
  "keras>=3.10,<4",
  "tensorflow-probability[tf]>=0.24,<0.26",
  "tensorflow-datasets>=4.9.4,<5",
  "tensorboard>=2.20,<2.22",
  "gin-config>=0.5,<0.6",
  "absl-py>=1.0",
  "numpy>=1.26,<3",
  "scipy>=1.11",
  "pillow>=10.0",
  # tensorflow-datasets imports importlib_resources but declares it for Python < 3.9 only.
  "importlib_resources>=5.0",
]

# Console scripts: one module of asvae_tf/commands per program (tools/*.py wrap the same).
_SCRIPTS = ["train", "evaluate", "export", "sample", "reproduce"]

setup(
  name="asvae_tf",
  version=_VERSION,
  description="Adversarial Symmetric VAE (AS-VAE) in TensorFlow 2 / Keras 3 with TFP flows",
  # The paper's gin configs (gin/) ship as package data asvae_tf/configs/*.gin:
  # `--gin_file=mnist.gin` finds them by bare name once installed (gin_config.find_gin_file).
  packages=find_packages(include=["asvae_tf", "asvae_tf.*"]) + ["asvae_tf.configs"],
  package_dir={"asvae_tf.configs": "gin"},
  package_data={"asvae_tf.configs": ["*.gin"]},
  # The tested set (constraints.txt) needs 3.11 (NumPy 2.4, SciPy 1.17, Pillow 13, Keras
  # 3.15); TensorFlow < 2.22 has no wheels for 3.14.
  python_requires=">=3.11,<3.14",
  install_requires=_REQUIRES,
  extras_require={"test": ["pytest"]},
  entry_points={
    "console_scripts": [f"asvae-{name} = asvae_tf.commands.{name}:run" for name in _SCRIPTS]
  },
)
