"""The command-line programs: one module per console script (setup.py entry points).

asvae-train, asvae-evaluate, asvae-export, asvae-sample, asvae-reproduce; tools/*.py are
thin wrappers that run the same `run()`. Each module defines its absl flags when imported,
so a process imports one of them.
"""
