#!/usr/bin/env python
"""Thin wrapper of `asvae-train` (asvae_tf/commands/train.py, which documents the flags)."""

from asvae_tf.commands.train import run

if __name__ == "__main__":
  run()
