"""This machine: CPU, memory, GPUs, what the inference builds can do, and the doctor report."""
