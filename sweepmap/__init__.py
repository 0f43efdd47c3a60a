"""Shared pieces of sweepmap: the run config, metric keys and the training loop."""
