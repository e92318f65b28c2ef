"""Data files shipped with Hearth (catalog, simulated machines, icons), read via importlib.resources."""
