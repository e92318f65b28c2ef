"""Import, export and delete library models off the UI thread, with progress, time left and
cancel: the Models page starts a `LibraryTask` and observes its signals.

The work itself is the library's (`app.models.portable`, `app.models.removal`), the same
calls `hearth models import|export|rm` make. Cancel works through the library's progress
callback: the next block raises `TaskCancelled`, and the library removes its `.partial`
copy on the way out, so a cancelled copy never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.errors import HearthError
from app.gui.adapters.runner import BackgroundRunner
from app.humanize import format_duration, format_rate, format_size
from app.models.files import ProgressFn
from app.models.portable import ExportResult, ImportedModel, export_models, import_model
from app.models.removal import RemovedModel, remove_model
from app.paths import hearth_paths
from app.store import open_default_database
from app.store.library import LibraryModel, ModelSource

#: At most this often a task reports progress to the window (the library reports per 4 MiB).
PROGRESS_INTERVAL_S = 0.1


class TaskCancelled(Exception):
    """Raised inside the work, from the progress callback, once cancel was asked for."""


class ModelBusyError(HearthError):
    default_remedy = (
        "Unload it first (pick another model in Chat or Images, or stop the local API on the "
        "Server page), then delete it again."
    )


@dataclass(frozen=True)
class TaskProgress:
    """How far a task is: bytes done of total in its current step, speed and time left."""

    done: int
    total: int
    what: str  # the library's step: "copying x.gguf", "verifying x.gguf"
    rate: float | None  # bytes per second in this step, None until measured
    eta_s: float | None

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 100

    def text(self) -> str:
        """One line for the page: step, bytes, speed, time left."""
        line = f"{self.what}: {format_size(self.done, digits=1)} of {format_size(self.total)}"
        if self.rate:
            line += f", {format_rate(self.rate)}, {format_duration(self.eta_s)} left"
        return line


@dataclass(frozen=True)
class ImportReport:
    """What an import of one or more paths did: the models now in the library (new or
    already there), and each path that was refused with its one-sentence reason."""

    imported: tuple[ImportedModel, ...]
    refused: tuple[tuple[Path, str], ...]


#: The result of a task whose work was cancelled.
CANCELLED = object()


class LibraryTask(QObject):
    """One long library operation on the page's runner; `cancel()` from the UI thread.

    `progress` is emitted from the worker thread (Qt queues it to the UI thread for slots
    of objects living there); `finished`, `failed` and `cancelled` arrive on the UI thread.
    """

    progress = Signal(object)  # TaskProgress
    finished = Signal(object)  # the work's result (ImportReport, ExportResult, RemovedModel)
    failed = Signal(str)  # one sentence of cause and one of what to do
    cancelled = Signal()

    def __init__(self, title: str, work: Callable[[ProgressFn], object]) -> None:
        super().__init__()
        self.title = title  # "Importing tiny.gguf", for the progress line
        self._work = work
        self._cancel = threading.Event()
        self._step: tuple[int, float] = (0, 0.0)  # (total, start) of the current step
        self._last = (0, 0.0)  # (done, time) of the last report
        self.running = False

    def start(self, runner: BackgroundRunner) -> None:
        self.running = True
        job = runner.submit(self._run)
        job.done.connect(self._done)
        job.failed.connect(self._failed)

    def cancel(self) -> None:
        """Ask the work to stop at its next block (safe from any thread)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _run(self) -> object:
        try:
            return self._work(self.report)
        except TaskCancelled:
            return CANCELLED

    def report(self, done: int, total: int, what: str) -> None:
        """The library's ProgressFn (worker thread): raise once cancelled, else report."""
        if self._cancel.is_set():
            raise TaskCancelled
        now = time.monotonic()
        last_done, last_time = self._last
        if total != self._step[0] or done < last_done:  # the library began another step
            self._step = (total, now)
            last_time = 0.0
        if done < total and last_time and now - last_time < PROGRESS_INTERVAL_S:
            return
        self._last = (done, now)
        elapsed = now - self._step[1]
        rate = done / elapsed if elapsed > 0.2 and done else None
        eta = (total - done) / rate if rate else None
        with contextlib.suppress(RuntimeError):  # the page closed while the copy ran
            self.progress.emit(TaskProgress(done, total, what, rate, eta))

    def _done(self, result: object) -> None:
        self.running = False
        if result is CANCELLED:
            self.cancelled.emit()
        else:
            self.finished.emit(result)

    def _failed(self, message: str) -> None:
        self.running = False
        self.failed.emit(message)


# --- the work: the same library calls the CLI makes ------------------------------------------


def import_task(paths: Sequence[Path]) -> LibraryTask:
    """Import each of `paths` (.gguf, split part, diffusers folder, export folder) in turn;
    a refused path is reported with its reason and the others still go in."""
    paths = list(paths)

    def work(progress: ProgressFn) -> ImportReport:
        imported: list[ImportedModel] = []
        refused: list[tuple[Path, str]] = []
        with closing(open_default_database()) as db:
            for path in paths:
                try:
                    imported += import_model(path, progress=progress, db=db)
                except HearthError as exc:
                    refused.append((path, str(exc)))
        return ImportReport(tuple(imported), tuple(refused))

    what = paths[0].name if len(paths) == 1 else f"{len(paths)} items"
    return LibraryTask(f"Importing {what}", work)


def export_task(names: Sequence[str], dest: Path) -> LibraryTask:
    """Export library models and their manifest into `dest`; a cancel removes what this
    export had created there, so the folder is left as it was."""
    names = list(names)

    def work(progress: ProgressFn) -> ExportResult:
        before = _entries(dest)
        existed = dest.exists()
        try:
            with closing(open_default_database()) as db:
                return export_models(names, dest, progress, db=db)
        except TaskCancelled:
            _remove_new_entries(dest, before, existed)
            raise

    what = names[0] if len(names) == 1 else f"{len(names)} models"
    return LibraryTask(f"Exporting {what} to {dest}", work)


def delete_task(name: str) -> LibraryTask:
    """Remove `name` like `hearth models rm --yes` (refused while a process maps its file)."""

    def work(_progress: ProgressFn) -> RemovedModel:
        with closing(open_default_database()) as db:
            return remove_model(db, hearth_paths(), name)

    return LibraryTask(f"Deleting {name}", work)


def check_not_in_use(model: LibraryModel, in_use: Iterable[str]) -> None:
    """Raise ModelBusyError when the window has `model` loaded (chat, images or the API)."""
    if model.name in set(in_use):
        raise ModelBusyError(f"{model.name} is loaded right now (in Chat, Images or the API).")


def delete_question(model: LibraryModel) -> str:
    """The confirmation for deleting `model`, naming what goes and the space freed (as
    `hearth models rm` asks it)."""
    if model.source is ModelSource.LINK:
        return f"Forget {model.name}? Its files at {model.path} stay where they are."
    return (
        f"Delete {model.name} and its files? This frees {format_size(model.size_bytes or 0)} "
        f"at {model.path}."
    )


def _entries(folder: Path) -> set[str]:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


def _remove_new_entries(folder: Path, before: set[str], existed: bool) -> None:
    for name in _entries(folder) - before:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
