"""Losses, metrics, learning-rate schedule and the training loop."""
