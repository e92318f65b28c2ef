"""Checks that every engine client (chat, image) must pass: a cancelled load, an unload."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pytest

from app.engines.errors import NotLoadedError
from app.engines.worker.client import WorkerClient

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


def assert_unload_ends_the_worker(
    client: WorkerClient[Any, Any, Any], generate: Callable[[], object]
) -> None:
    """Unload a loaded `client`: its worker exits by itself and is reaped, nothing stays
    loaded, and `generate()` (a request without a load) is refused."""
    pid = client.pid
    assert client.is_alive() and pid is not None
    client.unload()
    assert not client.is_alive() and client.pid is None and client.loaded is None
    assert client.exitcode == 0  # it exited by itself, not terminated
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped
    with pytest.raises(NotLoadedError):
        generate()
