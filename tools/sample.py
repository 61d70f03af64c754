#!/usr/bin/env python
"""Thin wrapper of `asvae-sample` (asvae_tf/commands/sample.py, which documents the flags)."""

from asvae_tf.commands.sample import run

if __name__ == "__main__":
  run()
