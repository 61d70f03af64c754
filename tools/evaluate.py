#!/usr/bin/env python
"""Thin wrapper of `asvae-evaluate` (asvae_tf/commands/evaluate.py, which documents the flags)."""

from asvae_tf.commands.evaluate import run

if __name__ == "__main__":
  run()
