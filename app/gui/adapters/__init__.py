"""Qt item models over the store and engines, and runners that keep work off the UI thread."""
