"""Hearth's developer benchmark harness (`scripts/bench`): chat, image and load benchmarks."""
