"""Training: strategy, checkpoints, the per-step trainer and the outer-loop controller."""
