#!/usr/bin/env python
"""Thin wrapper of `asvae-export` (asvae_tf/commands/export.py, which documents the flags)."""

from asvae_tf.commands.export import run

if __name__ == "__main__":
  run()
