"""Hearth's PySide6 windows and widgets: views only, never llama_cpp or torch."""
