"""Torch utilities shared by ops, training and metrics: misc helpers, persistence, training stats,
distributed launch and snapshots."""
