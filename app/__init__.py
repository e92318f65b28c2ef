"""Hearth: local, on-device AI chat and image generation that never phones home."""

__version__ = "0.1.0"
