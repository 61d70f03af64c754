#!/usr/bin/env python
"""Thin wrapper of `asvae-reproduce` (asvae_tf/commands/reproduce.py, which documents the flags)."""

from asvae_tf.commands.reproduce import run

if __name__ == "__main__":
  run()
