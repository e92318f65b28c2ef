"""The download queue: Hub models into the library, one or two at a time, resumable, atomic.

A job is one model (a split GGUF has several files); each file is one row of the downloads
table (app.store.downloads) and one transfer (app.hub.transfer) into a staging file under
`paths.download_staging`. A model reaches the library only when every file is complete and
verified: then the files are moved with `os.replace` into `paths.models/<publisher>/<repo>/`
and registered, so a killed download never leaves a half-model in the list.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import sqlite_utils

from app.errors import HearthError
from app.hub.config import HubConfig, hub_api, hub_config, within_deadline
from app.hub.errors import HubError
from app.hub.quants import GgufVariant, parse_quant
from app.hub.transfer import (
    CHUNK_SIZE,
    FileRequest,
    FileTransfer,
    RetryPolicy,
    StopReason,
    TransferHooks,
    TransferStopped,
    fetch_with_retries,
    partial_size,
)
from app.humanize import MiB
from app.models import library
from app.models.files import (
    DiskFullError,
    atomic_move,
    check_free_space,
    disk_full_error,
    is_disk_full,
)
from app.paths import HearthPaths, hearth_paths
from app.store import downloads as table
from app.store import open_database
from app.store.downloads import DownloadRow, DownloadState, file_row_id
from app.store.library import ModelSource, find_model, find_model_at

log = logging.getLogger(__name__)

#: Free space kept on top of the file sizes, so a download never fills the disk to the brim.
DISK_MARGIN = 256 * MiB
PROGRESS_INTERVAL_S = 0.25  # at most this often per job to listeners
PERSIST_INTERVAL_S = 1.0  # bytes_done written to the database at most this often
SPEED_WINDOW_S = 5.0

#: The states in which a job has stopped moving (`wait` returns).
TERMINAL = frozenset(
    {DownloadState.COMPLETE, DownloadState.FAILED, DownloadState.CANCELLED, DownloadState.PAUSED}
)
_ACTIVE = (DownloadState.QUEUED, DownloadState.RUNNING)
_STOPPED = (DownloadState.PAUSED, DownloadState.FAILED)


class DownloadNotFound(HearthError):
    default_remedy = "See the downloads with `hearth models downloads`."


@dataclass(frozen=True)
class FileStatus:
    """One file of a download job."""

    id: str
    filename: str  # path in the repo
    dest: str  # where it goes in the library
    size: int
    bytes_done: int
    state: DownloadState
    sha256: str | None  # the Hub's value while downloading; the verified one once complete
    error: str | None


@dataclass(frozen=True)
class DownloadJob:
    """One model being downloaded: its files, where it stands, and how fast it goes."""

    id: str
    repo: str
    revision: str
    name: str  # its name in the library (once complete) or the name it will get
    files: tuple[FileStatus, ...]
    state: DownloadState
    bytes_done: int
    size: int
    speed: float  # bytes per second over the last few seconds; 0 when not moving
    eta_s: float | None
    error: str | None
    note: str | None = None  # what is happening now: "verifying sha256", "retrying in 4 s"

    @property
    def model_path(self) -> Path:
        return Path(self.files[0].dest)

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.size if self.size else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["files"] = [{**asdict(f), "state": f.state.value} for f in self.files]
        return d


ProgressListener = Callable[[DownloadJob], None]


def job_id_for(repo: str, revision: str, name: str) -> str:
    """The job id of a model at a commit: the same pull always finds the same rows."""
    return hashlib.sha1(f"{repo}@{revision}:{name}".encode()).hexdigest()[:12]


class _Speed:
    """Bytes moved per second over a sliding window."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()
        self.moved = 0

    def add(self, n: int) -> None:
        now = time.monotonic()
        self.moved += n
        self.samples.append((now, self.moved))
        while self.samples and now - self.samples[0][0] > SPEED_WINDOW_S:
            self.samples.popleft()

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        if time.monotonic() - t1 > 2.0:  # nothing arrived lately: stalled
            return 0.0
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass(frozen=True)
class _JobInfo:
    """What registering the model needs beyond the rows (known at enqueue time)."""

    license: str | None
    hub_sha256: dict[str, str | None]  # repo path -> the Hub's sha256 (None: it gave none)


class DownloadQueue:
    """Download models from the Hub one or two at a time in worker threads.

    Rows left `running` by a Hearth that was killed are resumed (queued again) when a queue
    is created; `start()` then runs them. Pause keeps the partial file, resume continues it
    with a Range request, cancel deletes it. Listeners get a `DownloadJob` snapshot from the
    worker thread at most every 0.25 s per job (a GUI re-emits it as a Qt signal).

    >>> queue = DownloadQueue(on_progress=print)  # doctest: +SKIP
    >>> job = queue.enqueue(variant)  # a GgufVariant from hub.search.list_gguf_files
    >>> queue.start(); queue.wait(job.id).state
    <DownloadState.COMPLETE: 'complete'>
    """

    def __init__(
        self,
        paths: HearthPaths | None = None,
        *,
        max_parallel: int = 1,
        on_progress: ProgressListener | None = None,
        config: HubConfig | None = None,
        retries: int = 5,
        retry_base_s: float = 1.0,
        retry_max_s: float = 30.0,
        chunk_size: int = CHUNK_SIZE,
        disk_margin: int = DISK_MARGIN,
    ) -> None:
        self.paths = (paths or hearth_paths()).ensure()
        self.staging = self.paths.download_staging
        self.staging.mkdir(parents=True, exist_ok=True)
        self.max_parallel = max(1, min(max_parallel, 4))
        self.retry = RetryPolicy(retries=retries, base_s=retry_base_s, max_s=retry_max_s)
        self.chunk_size = chunk_size
        self.disk_margin = disk_margin
        self._config = config
        self._listeners: list[ProgressListener] = [on_progress] if on_progress else []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._local = threading.local()
        self._transfers: dict[str, FileTransfer] = {}
        self._busy_elsewhere: dict[str, float] = {}
        self._finalize_lock = threading.Lock()
        self._speeds: dict[str, _Speed] = {}
        self._last_emit: dict[str, float] = {}
        self._dirty: set[str] = set()  # jobs with progress not yet reported (throttled)
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        self._info: dict[str, _JobInfo] = {}
        self._threads: list[threading.Thread] = []
        self._only: set[str] | None = None
        self._closing = False
        #: Failures the database could not take (its disk is full): row id -> message. The
        #: snapshots show them, so waiting ends and the person reads why; they are written
        #: when the database takes writes again.
        self._unsaved_failures: dict[str, str] = {}
        self._recover_interrupted()

    # --- public API -----------------------------------------------------------------------

    def add_listener(self, listener: ProgressListener) -> None:
        self._listeners.append(listener)

    def enqueue(self, variant: GgufVariant) -> DownloadJob:
        """Queue every file of `variant` (or find its existing job) and return the job.

        A model already downloaded and in the library is not fetched again. Raises
        NotEnoughDiskError, before anything is written, when the disk lacks room.
        """
        if not variant.complete:
            raise HubError(
                f"{variant.repo} lists only some parts of {variant.name}.",
                "Pick another quant with `hearth models files`, or ask the publisher to "
                "upload the missing parts.",
            )
        publisher, repo_name = variant.repo.split("/", 1)
        job_id = job_id_for(variant.repo, variant.revision, variant.name)
        folder = self.paths.model_folder(publisher, repo_name)
        dests = [folder / _safe_repo_path(f.path) for f in variant.files]
        with self._lock:
            db = self._db()
            existing = {r.id: r for r in table.job_files(db, job_id)}
            if existing and self._in_library(db, dests[0]) and all(d.is_file() for d in dests):
                return self.job(job_id)
            wanted = []
            for i, (f, dest) in enumerate(zip(variant.files, dests, strict=True)):
                row = existing.get(file_row_id(job_id, i))
                if row and row.state == DownloadState.COMPLETE and self._file_present(row):
                    continue
                wanted.append(
                    DownloadRow(
                        id=file_row_id(job_id, i),
                        repo=variant.repo,
                        revision=variant.revision,
                        filename=f.path,
                        dest=str(dest),
                        size_bytes=f.size,
                        sha256=f.sha256,
                        bytes_done=partial_size(self._partial_path(job_id, f.path)),
                    )
                )
            self.check_disk(
                sum(max(r.size_bytes - r.bytes_done, 0) for r in wanted), what=variant.name
            )
            table.enqueue_files(db, wanted)
            self._info[job_id] = _JobInfo(
                license=variant.license, hub_sha256={f.path: f.sha256 for f in variant.files}
            )
            self._changed.notify_all()
        job = self.job(job_id)
        self._emit(job_id, force=True)
        return job

    def start(self, only: Iterable[str] | None = None) -> None:
        """Start the worker threads; `only` limits them to these job ids (the CLI's pull)."""
        with self._lock:
            self._closing = False
            self._only = set(only) if only is not None else None
            self._threads = [t for t in self._threads if t.is_alive()]
            missing = self.max_parallel - len(self._threads)
            for n in range(missing):
                thread = threading.Thread(
                    target=self._worker, name=f"hearth-download-{n + 1}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            if self._listeners and (self._ticker is None or not self._ticker.is_alive()):
                self._ticker_stop.clear()
                self._ticker = threading.Thread(
                    target=self._tick, name="hearth-download-progress", daemon=True
                )
                self._ticker.start()
        # Jobs whose files all arrived before a crash, but which never reached the library.
        for job in self.jobs():
            if job.state != DownloadState.COMPLETE and all(
                f.state == DownloadState.COMPLETE for f in job.files
            ):
                self._finalize_safely(job.id)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers. Transfers in flight stop and stay queued, to resume next time."""
        with self._lock:
            self._closing = True
            for transfer in self._transfers.values():
                transfer.stop(StopReason.CLOSE)
            self._changed.notify_all()
            threads = list(self._threads)
            if self._ticker is not None:
                threads.append(self._ticker)
        self._ticker_stop.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]

    def pause(self, job_id: str) -> DownloadJob:
        """Stop a job, keeping what has arrived; `resume` continues from there."""
        return self._move_job(job_id, DownloadState.PAUSED, _ACTIVE, StopReason.PAUSE)

    def resume(self, job_id: str) -> DownloadJob:
        """Queue a paused or failed job again (it continues from the partial files)."""
        return self._move_job(job_id, DownloadState.QUEUED, _STOPPED)

    def cancel(self, job_id: str) -> DownloadJob:
        """Stop a job and delete its partial files. A model already in the library stays."""
        self._require(job_id)
        with self._lock:
            self._save_unsaved_failures()
            db = self._db()
            table.set_job_state(db, job_id, DownloadState.CANCELLED, (*_ACTIVE, *_STOPPED))
            if self.job(job_id).state != DownloadState.COMPLETE:
                # Parts that finished are useless without the rest: forget them too.
                table.set_job_state(db, job_id, DownloadState.CANCELLED, (DownloadState.COMPLETE,))
            running = {t.row_id for t in self._transfers_of(job_id)}
            for transfer in self._transfers_of(job_id):
                transfer.stop(StopReason.CANCEL)
            for row in table.job_files(db, job_id):
                if row.id not in running and row.state == DownloadState.CANCELLED:
                    self._delete_staged(job_id, row.filename)
            self._changed.notify_all()
        self._emit(job_id, force=True)
        return self.job(job_id)

    def jobs(self) -> list[DownloadJob]:
        """Every job in the table, oldest first."""
        return [self.job(job_id) for job_id in table.job_ids(self._db())]

    def job(self, job_id: str) -> DownloadJob:
        rows = table.job_files(self._db(), job_id)
        if not rows:
            raise DownloadNotFound(f"There is no download with the id '{job_id}'.")
        return self._snapshot(job_id, rows)

    def find(self, prefix: str) -> DownloadJob:
        """The job whose id starts with `prefix` (as typed from `hearth models downloads`)."""
        matches = [j for j in self.jobs() if j.id.startswith(prefix)]
        if len(matches) != 1:
            what = "no download" if not matches else f"{len(matches)} downloads"
            raise DownloadNotFound(f"There is {what} whose id starts with '{prefix}'.")
        return matches[0]

    def wait(self, job_id: str, timeout: float | None = None) -> DownloadJob:
        """Block until the job stops (complete, failed, cancelled, paused) or `timeout` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self.job(job_id)
                if job.state in TERMINAL and not self._transfers_of(job_id):
                    return job
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job
                self._changed.wait(0.5 if left is None else min(left, 0.5))

    def check_disk(self, need: int, *, what: str = "The download") -> None:
        """Raise NotEnoughDiskError unless staging and the models folder have `need` + margin."""
        if need <= 0:
            return
        self.paths.models.mkdir(parents=True, exist_ok=True)
        for folder in dict.fromkeys((self.staging, self.paths.models)):
            check_free_space(folder, need + self.disk_margin, what)

    # --- the worker -------------------------------------------------------------------------

    def _worker(self) -> None:
        try:
            while True:
                with self._lock:
                    claimed = None
                    while not self._closing:
                        claimed = self._claim()
                        if claimed is not None:
                            break
                        self._changed.wait(1.0)
                    if self._closing or claimed is None:
                        return
                try:
                    self._run(*claimed)
                except Exception:  # never let one bad download end the worker
                    log.exception("download worker: %s failed unexpectedly", claimed[0].id)
        finally:
            self._close_thread_db()

    def _claim(self) -> tuple[DownloadRow, FileTransfer] | None:
        """Take the oldest queued row (called with the lock held)."""
        db = self._db()
        for row in table.rows_in_state(db, DownloadState.QUEUED):
            if row.id in self._transfers:
                continue  # its previous transfer is still winding down
            if time.monotonic() - self._busy_elsewhere.get(row.id, -60.0) < 10.0:
                continue  # another Hearth process holds it; look again later
            if self._only is not None and row.job_id not in self._only:
                continue
            if table.claim_file(db, row.id):
                transfer = FileTransfer(row.id, row.job_id, self._request(row))
                self._transfers[row.id] = transfer
                return row, transfer
        return None

    def _request(self, row: DownloadRow) -> FileRequest:
        job, name = row.job_id, row.filename
        partial, staged = self._partial_path(job, name), self._staged_path(job, name)
        size, sha256 = row.size_bytes, row.sha256
        return FileRequest(row.repo, row.revision, name, size, sha256, partial, staged)

    def _run(self, row: DownloadRow, transfer: FileTransfer) -> None:
        job_id = row.job_id
        self._emit(job_id, force=True)
        lock = self._file_lock(job_id, row.filename)
        try:
            lock.acquire(timeout=0)
        except Exception:  # another Hearth process is downloading this very file
            with self._lock:
                self._transfers.pop(row.id, None)
                self._busy_elsewhere[row.id] = time.monotonic()
                self._set_row_state(row.id, DownloadState.QUEUED, (DownloadState.RUNNING,))
            return
        try:
            fetched = fetch_with_retries(
                transfer,
                self._hub,
                self._hooks(transfer),
                policy=self.retry,
                chunk_size=self.chunk_size,
            )
            with self._lock:
                table.mark_complete(self._db(), row.id, fetched.size, fetched.sha256)
                self._changed.notify_all()
        except TransferStopped as stop:
            self._stopped(row, stop.reason)
        except DiskFullError as exc:  # name the download cache, not the job's own folder
            self._fail(row, str(self._disk_full(exc.__cause__ or OSError(errno.ENOSPC, ""))))
        except HearthError as exc:
            self._fail(row, str(exc))
        except Exception as exc:  # a bug or an unexpected library error: say so, keep data
            if is_disk_full(exc):  # the database's disk (the file's is mapped in transfer)
                self._fail(row, str(self._disk_full(exc)))
            else:
                log.exception("download %s failed unexpectedly", row.id)
                self._fail(row, f"The download stopped unexpectedly ({type(exc).__name__}: {exc}).")
        else:
            self._finalize_safely(job_id)
        finally:
            lock.release()
            self._tidy(job_id, row.filename)
            with self._lock:
                self._transfers.pop(row.id, None)
                self._changed.notify_all()
            self._emit(job_id, force=True)

    def _hooks(self, transfer: FileTransfer) -> TransferHooks:
        """How a transfer reports to this queue: disk checks, saved progress, listeners."""
        last_persist = [0.0]

        def persist(done: int, size: int) -> None:
            # Progress in the table is a hint (the partial file is the truth): a database
            # on a full disk must not stop the download.
            try:
                table.record_progress(self._db(), transfer.row_id, done, size)
            except Exception as exc:
                if not is_disk_full(exc):
                    raise

        def sized(done: int, size: int) -> None:
            persist(done, size)

        def advanced(n: int, done: int, size: int) -> None:
            with self._lock:
                self._speeds.setdefault(transfer.job_id, _Speed()).add(n)
            now = time.monotonic()
            if now - last_persist[0] >= PERSIST_INTERVAL_S:
                last_persist[0] = now
                persist(done, size)
            self._emit(transfer.job_id)

        return TransferHooks(
            reserve=lambda need, what: self.check_disk(need, what=what),
            sized=sized,
            advanced=advanced,
            noted=lambda: self._emit(transfer.job_id, force=True),
        )

    def _stopped(self, row: DownloadRow, reason: StopReason) -> None:
        job_id, filename = row.job_id, row.filename
        with self._lock:
            db = self._db()
            with contextlib.suppress(Exception):  # a hint only; the partial file is the truth
                table.record_progress(
                    db, row.id, partial_size(self._partial_path(job_id, filename))
                )
            if reason is StopReason.CANCEL:
                self._delete_staged(job_id, filename)
                self._set_row_state(row.id, DownloadState.CANCELLED, None)
            elif reason is StopReason.PAUSE:
                self._set_row_state(
                    row.id, DownloadState.PAUSED, (DownloadState.RUNNING, DownloadState.PAUSED)
                )
            else:  # the queue is closing: resume next time Hearth starts
                self._set_row_state(row.id, DownloadState.QUEUED, (DownloadState.RUNNING,))

    def _fail(self, row: DownloadRow, message: str) -> None:
        log.info("download of %s from %s failed: %s", row.filename, row.repo, message)
        with self._lock:
            try:
                table.mark_failed(
                    self._db(),
                    row.id,
                    message,
                    bytes_done=partial_size(self._partial_path(row.job_id, row.filename)),
                    only_from=(DownloadState.RUNNING, DownloadState.PAUSED),
                )
            except Exception as exc:  # the failure path must survive a full disk too
                if is_disk_full(exc) and not isinstance(exc, OSError):
                    message = _also_full(message, self._disk_full(exc))
                log.warning("could not record the failure of %s: %s", row.id, exc)
                self._unsaved_failures[row.id] = message
            self._changed.notify_all()

    def _disk_full(self, exc: BaseException) -> HearthError:
        """The sentence for a full disk under the database (OSError: under staging)."""
        folder = self.staging if isinstance(exc, OSError) else self.paths.data
        return disk_full_error(
            folder,
            "Free some space and run the same command again: the download resumes where it "
            "stopped.",
        )

    def _save_unsaved_failures(self) -> None:
        """Write the failures the database refused earlier (called with the lock held)."""
        for row_id, message in list(self._unsaved_failures.items()):
            table.mark_failed(self._db(), row_id, message)
            del self._unsaved_failures[row_id]

    # --- into the library -------------------------------------------------------------------

    def _finalize_safely(self, job_id: str) -> None:
        try:
            self._finalize(job_id)
        except Exception as exc:  # e.g. the database is locked or the disk went away
            log.exception("adding download %s to the library failed", job_id)
            for row in table.job_files(self._db(), job_id):
                # Back to staging: the models folder only holds what the library lists.
                dest, staged = Path(row.dest), self._staged_path(job_id, row.filename)
                if dest.is_file() and not staged.exists():
                    with contextlib.suppress(OSError):
                        atomic_move(dest, staged)
                self._mark_failed(
                    row.id,
                    f"The files arrived but adding the model to the library failed ({exc}). "
                    "Run the same pull again to retry; the files are kept.",
                )

    def _finalize(self, job_id: str) -> None:
        """Once every file of a job is verified: validate, move into the library, register."""
        from app.models.gguf import read_gguf_facts

        with self._finalize_lock:
            db = self._db()
            rows = table.job_files(db, job_id)
            if not rows or any(r.state != DownloadState.COMPLETE for r in rows):
                return
            dests = [Path(r.dest) for r in rows]
            staged = [self._staged_path(job_id, r.filename) for r in rows]
            if self._in_library(db, dests[0]) and all(d.is_file() for d in dests):
                return
            missing = [
                r
                for r, s, d in zip(rows, staged, dests, strict=True)
                if not s.is_file() and not d.is_file()
            ]
            if missing:
                for r in missing:
                    self._mark_failed(
                        r.id, "The downloaded file disappeared before it reached the library."
                    )
                return
            try:
                first = staged[0] if all(s.is_file() for s in staged) else None
                facts = read_gguf_facts(first) if first else None
                for source, dest in zip(staged, dests, strict=True):
                    if source.is_file():
                        atomic_move(source, dest)
                if facts is None:  # finishing a move a crash interrupted
                    facts = read_gguf_facts(dests[0])
            except HearthError as exc:
                for source, dest in zip(staged, dests, strict=True):
                    source.unlink(missing_ok=True)
                    dest.unlink(missing_ok=True)
                for r in rows:
                    self._mark_failed(
                        r.id, f"{exc.cause} Hearth deleted it; it is not in the library."
                    )
                return
            info = self._info.get(job_id) or self._lookup_info(rows[0])
            name = self._library_name(
                db, library.model_name_for(dests[0].name), rows[0].repo, dests[0]
            )
            # True: every file matched the sha256 the Hub published; None: unknown (offline).
            verified: bool | None = None
            if info.hub_sha256:
                verified = all(info.hub_sha256.get(r.filename) == r.sha256 for r in rows)
            library.register_model(
                db,
                name,
                dests[0],
                facts,
                source=ModelSource.HUB,
                sha256=rows[0].sha256,
                repo=rows[0].repo,
                revision=rows[0].revision,
                license=info.license,
                extra={
                    "quant": parse_quant(rows[0].filename),
                    "download_id": job_id,
                    "sha256_verified": verified,
                    "files": [
                        {"path": str(d), "size": r.size_bytes, "sha256": r.sha256}
                        for r, d in zip(rows, dests, strict=True)
                    ],
                },
            )
            for row in rows:
                self._lock_path(job_id, row.filename).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                (self.staging / job_id).rmdir()
        with self._lock:
            self._changed.notify_all()
        log.info("%s from %s is in the library at %s", name, rows[0].repo, dests[0])

    def _library_name(self, db: sqlite_utils.Database, name: str, repo: str, path: Path) -> str:
        """`name`, or `publisher-name` when another model already uses that name."""
        candidates = [name, f"{repo.split('/')[0].lower()}-{name}"]
        candidates += [f"{candidates[1]}-{n}" for n in range(2, 100)]
        for candidate in candidates:
            known = find_model(db, candidate)
            if known is None or known.path == path:
                return candidate
        return candidates[-1]

    def _lookup_info(self, row: DownloadRow) -> _JobInfo:
        """License and the Hub's sha256 values after a restart (best effort, may be offline)."""
        try:
            config = self._hub()
            config.require_online()
            api = hub_api(config)
            info = within_deadline(
                lambda: api.model_info(
                    row.repo, revision=row.revision, files_metadata=True, timeout=10
                ),
                config,
            )
        except Exception:
            return _JobInfo(license=None, hub_sha256={})
        card = info.card_data
        shas = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
        license_ = getattr(card, "license", None) if card is not None else None
        return _JobInfo(license=str(license_) if license_ else None, hub_sha256=shas)

    # --- helpers ----------------------------------------------------------------------------

    def _hub(self) -> HubConfig:
        # Resolved per attempt: a token saved or a mirror set mid-way is used at the next try.
        return self._config or hub_config(self._db())

    def _db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self.paths.database)
            self._local.db = db
        return db

    def release_thread_database(self) -> None:
        """Close the calling thread's connection to the database (the queue opens one per
        thread that calls it; a thread pool that calls it from a passing thread closes it)."""
        self._close_thread_db()

    def _close_thread_db(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    def _require(self, job_id: str) -> None:
        if not table.job_files(self._db(), job_id):
            raise DownloadNotFound(f"There is no download with the id '{job_id}'.")

    def _move_job(
        self,
        job_id: str,
        state: DownloadState,
        only_from: tuple[DownloadState, ...],
        stop: StopReason | None = None,
    ) -> DownloadJob:
        """Put a job's files that are in `only_from` into `state`, stopping its transfers."""
        self._require(job_id)
        with self._lock:
            self._save_unsaved_failures()
            table.set_job_state(self._db(), job_id, state, only_from)
            if stop is not None:
                for transfer in self._transfers_of(job_id):
                    transfer.stop(stop)
            self._changed.notify_all()
        self._emit(job_id, force=True)
        return self.job(job_id)

    def _transfers_of(self, job_id: str) -> list[FileTransfer]:
        with self._lock:
            return [t for t in self._transfers.values() if t.job_id == job_id]

    def _set_row_state(
        self, row_id: str, state: DownloadState, only_from: tuple[DownloadState, ...] | None
    ) -> None:
        with self._lock:
            table.set_file_state(self._db(), row_id, state, only_from)
            self._changed.notify_all()

    def _mark_failed(self, row_id: str, message: str) -> None:
        with self._lock:
            try:
                table.mark_failed(self._db(), row_id, message)
            except Exception as exc:
                log.warning("could not record the failure of %s: %s", row_id, exc)
                self._unsaved_failures[row_id] = message
            self._changed.notify_all()

    def _recover_interrupted(self) -> None:
        """Rows a killed Hearth left `running` go back to `queued`, unless another live
        Hearth process is still downloading them (it holds the file's lock)."""
        with self._lock:
            for row in table.rows_in_state(self._db(), DownloadState.RUNNING):
                lock = self._file_lock(row.job_id, row.filename)
                try:
                    lock.acquire(timeout=0)
                except Exception:
                    continue
                lock.release()
                self._set_row_state(row.id, DownloadState.QUEUED, (DownloadState.RUNNING,))

    def _file_lock(self, job_id: str, filename: str) -> Any:
        from filelock import FileLock

        path = self._lock_path(job_id, filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path), thread_local=False)

    def _partial_path(self, job_id: str, filename: str) -> Path:
        return self.staging / job_id / f"{PurePosixPath(filename).name}.incomplete"

    def _staged_path(self, job_id: str, filename: str) -> Path:
        return self.staging / job_id / PurePosixPath(filename).name

    def _lock_path(self, job_id: str, filename: str) -> Path:
        return self._partial_path(job_id, filename).with_suffix(".lock")

    def _file_present(self, row: DownloadRow) -> bool:
        return Path(row.dest).is_file() or self._staged_path(row.job_id, row.filename).is_file()

    def _delete_staged(self, job_id: str, filename: str) -> None:
        for path in (self._partial_path(job_id, filename), self._staged_path(job_id, filename)):
            path.unlink(missing_ok=True)
        self._tidy(job_id, filename)

    def _tidy(self, job_id: str, filename: str) -> None:
        """Remove the lock file (and the job's folder) once nothing of the file is staged."""
        if self._partial_path(job_id, filename).exists():
            return
        if self._staged_path(job_id, filename).exists():
            return
        self._lock_path(job_id, filename).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.staging / job_id).rmdir()

    @staticmethod
    def _in_library(db: sqlite_utils.Database, path: Path) -> bool:
        return find_model_at(db, path) is not None

    def _snapshot(self, job_id: str, rows: list[DownloadRow]) -> DownloadJob:
        transfers = {t.row_id: t for t in self._transfers_of(job_id)}
        files = []
        for r in rows:
            live = transfers.get(r.id)
            if live is not None:
                done = live.done
            elif r.state == DownloadState.COMPLETE:
                done = r.size_bytes
            else:  # the file on disk is the truth (the table lags by up to a second)
                done = partial_size(self._partial_path(job_id, r.filename))
            state, error = r.state, r.error
            if r.id in self._unsaved_failures:
                state, error = DownloadState.FAILED, self._unsaved_failures[r.id]
            status = (r.id, r.filename, r.dest, r.size_bytes, done, state, r.sha256, error)
            files.append(FileStatus(*status))
        state = self._job_state(files, bool(transfers))
        size = sum(f.size for f in files)
        done = sum(f.size if f.state == DownloadState.COMPLETE else f.bytes_done for f in files)
        speed = self._speeds[job_id].rate() if job_id in self._speeds and transfers else 0.0
        eta = (size - done) / speed if speed > 0 else None
        error = next((f.error for f in files if f.error), None)
        note = next((t.note for t in transfers.values() if t.note), None)
        registered = find_model_at(self._db(), Path(files[0].dest))
        name = (
            registered.name
            if registered
            else library.model_name_for(PurePosixPath(files[0].filename).name)
        )
        return DownloadJob(
            id=job_id,
            repo=rows[0].repo,
            revision=rows[0].revision,
            name=name,
            files=tuple(files),
            state=state,
            bytes_done=done,
            size=size,
            speed=speed,
            eta_s=eta,
            error=error,
            note=note,
        )

    def _job_state(self, files: list[FileStatus], moving: bool) -> DownloadState:
        """One state for a job from the states of its files."""
        states = {f.state for f in files}
        if DownloadState.RUNNING in states or moving:
            state = DownloadState.RUNNING
        elif states == {DownloadState.COMPLETE}:
            in_library = self._in_library(self._db(), Path(files[0].dest))
            state = DownloadState.COMPLETE if in_library else DownloadState.RUNNING
        elif DownloadState.QUEUED in states:
            state = DownloadState.QUEUED
        elif DownloadState.FAILED in states:
            state = DownloadState.FAILED
        elif DownloadState.CANCELLED in states:
            state = DownloadState.CANCELLED
        else:
            state = DownloadState.PAUSED
        if DownloadState.FAILED in states and state == DownloadState.RUNNING and not moving:
            state = DownloadState.FAILED
        return state

    def _tick(self) -> None:
        """Report progress held back by the throttle, so a stalled transfer still shows its
        latest byte count rather than the one from up to 0.25 s before the stall."""
        try:
            while not self._ticker_stop.wait(PROGRESS_INTERVAL_S):
                with self._lock:
                    dirty, self._dirty = self._dirty, set()
                for job_id in dirty:
                    self._emit(job_id, force=True)
        finally:
            self._close_thread_db()

    def _emit(self, job_id: str, *, force: bool = False) -> None:
        if not self._listeners:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_emit.get(job_id, 0.0) < PROGRESS_INTERVAL_S:
                self._dirty.add(job_id)
                return
            self._last_emit[job_id] = now
            self._dirty.discard(job_id)
        try:
            job = self.job(job_id)
        except DownloadNotFound:
            return
        for listener in list(self._listeners):
            try:
                listener(job)
            except Exception:  # a broken listener must not break the download
                log.exception("download progress listener failed")


def _safe_repo_path(path: str) -> Path:
    """A repo file path as a relative local path; a hostile listing cannot climb out."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or any(p in ("..", "") for p in parts):
        raise HubError(
            f"The Hub listed a file with an unsafe name ({path!r}).",
            "Hearth refused to download it; report the repo to its publisher.",
        )
    return Path(*parts)


def _also_full(message: str, full: HearthError) -> str:
    """`message`, unless it is about something else than the full disk: then both."""
    return message if "is full" in message else f"{full} ({message})"
