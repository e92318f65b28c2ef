"""Inference worker processes and the clients that talk to them."""
