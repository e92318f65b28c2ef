"""A load-progress callback that asks the load to stop at its first report."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

P = TypeVar("P")


class CancelAtFirstReport(Generic[P]):
    """Pass it as `on_progress` and its `cancel` event as the load's cancel flag.

    Every report is kept in `seen`, so a test can tell how far the load got before it
    noticed the cancel.
    """

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.seen: list[P] = []

    def __call__(self, progress: P) -> None:
        self.seen.append(progress)
        self.cancel.set()
