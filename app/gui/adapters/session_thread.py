"""What the chat and image threads share: a worker QObject that owns a session and its
database connection in its own QThread, and how that thread is ended."""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtCore import QThread, SignalInstance

#: How long closing the window waits for a session thread to unload and finish.
SHUTDOWN_WAIT_MS = 15_000


class SessionWorker(Protocol):
    session: Any  # a Session (stop, unload), or None before first use
    db: Any  # its sqlite_utils Database, or None


def end_session(worker: SessionWorker) -> None:
    """In the worker's thread: end the engine (its memory goes back), close the database on
    the thread that opened it (as SQLite requires), then let the thread finish."""
    try:
        if worker.session is not None:
            worker.session.unload()
            worker.session = None
        if worker.db is not None:
            worker.db.close()
            worker.db = None
    finally:
        thread = QThread.currentThread()
        if thread is not None:
            thread.quit()


def close_session_thread(
    thread: QThread, worker: SessionWorker, request_shutdown: SignalInstance
) -> None:
    """From the UI thread, after the current work was stopped: ask the thread to end its
    session; if it is stuck in a native call, end the engine process from here."""
    if not thread.isRunning():
        return
    request_shutdown.emit()  # queued after the current work, which has just been stopped
    if not thread.wait(SHUTDOWN_WAIT_MS):
        session = worker.session
        if session is not None:
            session.unload()
        thread.quit()
        thread.wait(SHUTDOWN_WAIT_MS)
