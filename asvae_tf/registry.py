"""Imports every module that registers gin configurables (import for side effects)."""

# pylint: disable=unused-import
from asvae_tf import config
from asvae_tf import data
from asvae_tf import flows
from asvae_tf import heads
from asvae_tf import model
from asvae_tf import networks
from asvae_tf import train_lib
from asvae_tf import evaluation
