"""Run a callable off the UI thread and hand its result or error back as Qt signals."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, SignalInstance, Slot

from app.errors import HearthError
from app.startup import unexpected_error

log = logging.getLogger(__name__)


class Job(QObject):
    """One piece of background work; `done` and `failed` arrive on the UI thread.

    The job lives on the thread that submitted it, so the worker thread only emits the
    private `_finished`/`_raised` signals; Qt queues them, and the job re-emits them as
    `done`/`failed` in the UI thread. Callers may connect after `submit` returns: nothing
    is delivered before control goes back to the event loop.
    """

    done = Signal(object)  # the callable's return value
    failed = Signal(str)  # one sentence of cause (and remedy, for a HearthError)
    _finished = Signal(object)
    _raised = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._finished.connect(self._deliver_result)
        self._raised.connect(self._deliver_error)

    @Slot(object)
    def _deliver_result(self, result: object) -> None:
        self.done.emit(result)
        self.deleteLater()

    @Slot(str)
    def _deliver_error(self, message: str) -> None:
        self.failed.emit(message)
        self.deleteLater()


class _Task(QRunnable):
    def __init__(self, job: Job, work: Callable[[], object]) -> None:
        super().__init__()
        self.job = job
        self.work = work

    def run(self) -> None:
        try:
            result = self.work()
        except HearthError as exc:
            self._emit(self.job._raised, str(exc))
        except Exception as exc:  # a bug or a damaged file: say so in the window, log the trace
            log.exception("background job failed")
            self._emit(self.job._raised, str(unexpected_error(exc)))
        else:
            self._emit(self.job._finished, result)

    @staticmethod
    def _emit(signal: SignalInstance, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the page that asked was closed meanwhile: nobody is listening
            log.debug("background job finished after its page closed")


class BackgroundRunner(QObject):
    """A small thread pool for a page's work: database reads, planning, hardware checks."""

    def __init__(self, parent: QObject | None = None, *, max_threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)

    def submit(self, work: Callable[[], object]) -> Job:
        """Start `work()` on a pool thread; connect to the returned job's `done`/`failed`."""
        job = Job(self)
        self.pool.start(_Task(job, work))
        return job

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait for every submitted job to end (before the window closes); False on timeout."""
        return bool(self.pool.waitForDone(timeout_ms))
