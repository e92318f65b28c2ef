"""The download queue for the window: one DownloadQueue, its jobs as a Qt table model, and
Hub search and listing off the UI thread.

The queue's worker threads report each job through `DownloadService.job_changed`, a Qt
signal, so the table updates on the UI thread. Downloads an earlier Hearth left unfinished
resume when the service starts (the queue requeues them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from enum import IntEnum

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor

from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import colours
from app.hardware.profile import HardwareProfile
from app.hub.downloads import DownloadJob, DownloadQueue
from app.hub.quants import GgufVariant
from app.humanize import format_duration, format_rate, format_size
from app.store.downloads import DownloadState

AnyIndex = QModelIndex | QPersistentModelIndex
JOB_ROLE = Qt.ItemDataRole.UserRole + 1


class DownloadColumn(IntEnum):
    MODEL = 0
    STATE = 1
    PROGRESS = 2
    SPEED = 3
    ETA = 4
    NOTE = 5


HEADERS = {
    DownloadColumn.MODEL: "Model",
    DownloadColumn.STATE: "State",
    DownloadColumn.PROGRESS: "Progress",
    DownloadColumn.SPEED: "Speed",
    DownloadColumn.ETA: "Time left",
    DownloadColumn.NOTE: "Note",
}


class DownloadsModel(QAbstractTableModel):
    """The jobs, newest last, updated in place as snapshots arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[DownloadJob] = []

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.jobs)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(DownloadColumn)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[DownloadColumn(section)]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        job = self.jobs[index.row()]
        column = DownloadColumn(index.column())
        if role == JOB_ROLE:
            return job
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(job, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return job.error or job.note or f"{job.repo} at {job.revision[:12]}"
        if column == DownloadColumn.STATE and role == Qt.ItemDataRole.ForegroundRole:
            meaning = {
                DownloadState.COMPLETE: colours().good,
                DownloadState.FAILED: colours().bad,
                DownloadState.RUNNING: colours().info,
            }.get(job.state)
            return QColor(meaning) if meaning else None
        return None

    def update(self, job: DownloadJob) -> None:
        for row, known in enumerate(self.jobs):
            if known.id == job.id:
                self.jobs[row] = job
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(DownloadColumn) - 1))
                return
        self.beginInsertRows(QModelIndex(), len(self.jobs), len(self.jobs))
        self.jobs.append(job)
        self.endInsertRows()

    def set_jobs(self, jobs: list[DownloadJob]) -> None:
        self.beginResetModel()
        self.jobs = list(jobs)
        self.endResetModel()


def _text(job: DownloadJob, column: DownloadColumn) -> str:
    moving = job.state == DownloadState.RUNNING
    if column == DownloadColumn.MODEL:
        return job.name
    if column == DownloadColumn.STATE:
        return job.state.value
    if column == DownloadColumn.PROGRESS:
        return f"{job.fraction:.0%} of {format_size(job.size, digits=1)}"
    if column == DownloadColumn.SPEED:
        return format_rate(job.speed) if moving and job.speed else ""
    if column == DownloadColumn.ETA:
        return format_duration(job.eta_s) if moving and job.eta_s is not None else ""
    return job.error or job.note or ""


class DownloadService(QObject):
    """Owns the window's DownloadQueue (made and started off the UI thread)."""

    job_changed = Signal(object)  # a DownloadJob snapshot, from any thread
    started = Signal(object)  # the list of jobs when the queue is ready
    failed = Signal(str)

    def __init__(self, runner: BackgroundRunner) -> None:
        super().__init__()
        self.runner = runner
        self.queue: DownloadQueue | None = None
        self._starting = False
        self._wanted = False  # a start was asked for while a conditional one ran
        self._closed = False

    def start(self, *, only_if_unfinished: bool = False) -> None:
        """Make and start the queue (once); with `only_if_unfinished`, only when an earlier
        Hearth left downloads to resume: a window that never downloads runs no threads."""
        if self.queue is not None or self._closed:
            return
        if self._starting:  # one is on its way; make sure it is not a conditional one
            self._wanted = self._wanted or not only_if_unfinished
            return
        self._starting = True

        def make() -> list[DownloadJob] | None:
            if only_if_unfinished and not _unfinished_downloads():
                return None
            queue = DownloadQueue(on_progress=self._relay, max_parallel=2)
            try:
                if self._closed:  # the window closed while this was on its way
                    queue.close(timeout=3)
                    return None
                queue.start()  # resumes what an earlier Hearth left unfinished
                self.queue = queue
                return queue.jobs()
            finally:
                queue.release_thread_database()  # a pool thread: do not keep its connection

        job = self.runner.submit(make)
        job.done.connect(self._made)
        job.failed.connect(self._failed_to_start)

    def _made(self, jobs: list[DownloadJob] | None) -> None:
        self._starting = False
        if jobs is not None:
            self.started.emit(jobs)
        elif self._wanted:
            self._wanted = False
            self.start()

    def _failed_to_start(self, message: str) -> None:
        self._starting = False
        self.failed.emit(message)

    def _relay(self, job: DownloadJob) -> None:
        """The queue's listener (its threads): hand the snapshot to the UI thread."""
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the window is being torn down
            self.job_changed.emit(job)

    def _act(self, work: Callable[[], DownloadJob]) -> None:
        queue = self.queue

        def run() -> DownloadJob:
            try:
                return work()
            finally:
                if queue is not None:
                    queue.release_thread_database()

        job = self.runner.submit(run)
        job.done.connect(self.job_changed)  # signal to signal: dropped if the service goes
        job.failed.connect(self.failed)

    def enqueue(self, variant: GgufVariant) -> None:
        queue = self.queue
        if queue is None:
            self.start()
            self.failed.emit("The download queue is starting; press Download again in a moment.")
            return

        def go() -> DownloadJob:
            job = queue.enqueue(variant)
            queue.start()
            return job

        self._act(go)

    def pause(self, job_id: str) -> None:
        if self.queue is not None:
            queue = self.queue
            self._act(lambda: queue.pause(job_id))

    def resume(self, job_id: str) -> None:
        if self.queue is not None:
            queue = self.queue

            def go() -> DownloadJob:
                job = queue.resume(job_id)
                queue.start()
                return job

            self._act(go)

    def cancel(self, job_id: str) -> None:
        if self.queue is not None:
            queue = self.queue
            self._act(lambda: queue.cancel(job_id))

    def close(self) -> None:
        self._closed = True
        if self.queue is not None:
            self.queue.close(timeout=3)  # running downloads are queued again for next time


def _unfinished_downloads() -> bool:
    from contextlib import closing

    from app.store import open_default_database
    from app.store.downloads import rows_in_state

    with closing(open_default_database()) as db:
        return any(
            rows_in_state(db, state) for state in (DownloadState.QUEUED, DownloadState.RUNNING)
        )


def search_hub(query: str, hardware: HardwareProfile | None) -> list[object]:
    """Hub search (with `HF_ENDPOINT` and offline mode honoured), slow: off the UI thread."""
    from app.hub.search import search_models

    return list(search_models(query, limit=30, hardware=hardware))


def repo_variants(repo: str, hardware: HardwareProfile | None) -> list[GgufVariant]:
    from app.hub.search import list_gguf_files

    return list_gguf_files(repo, hardware=hardware)
