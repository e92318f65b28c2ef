"""The download queue: Hub files into the library, resumable, verified by sha256, atomic.

Transfers use huggingface_hub's own functions: `hf_hub_url` and `get_hf_file_metadata` find
the file (size, sha256, where the bytes are), and `http_get(resume_size=N)` fetches it with a
`Range` request into a staging file under `paths.cache/downloads/`. (`hf_hub_download` is not
used: since 2.x it writes to a per-call temporary file and deletes it on any failure, so it
cannot resume after a pause, a crash or a restart.)

Each file is one row of the `downloads` table; the files of one model (a split GGUF has
several) share a job id, the prefix of their row ids (`<job>-00001`...). A model reaches the
library only when every file is complete and verified: then the files are moved with
`os.replace` into `paths.models/<publisher>/<repo>/` and registered, so a killed download
never leaves a half-model in the list.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import sqlite_utils

from app.errors import HearthError
from app.models.hub import (
    READ_TIMEOUT_S,
    GgufVariant,
    HubConfig,
    HubError,
    HubUnreachableError,
    OfflineError,
    hub_config,
    hub_error,
    parse_quant,
)
from app.models.starter import NotEnoughDiskError
from app.paths import HearthPaths, hearth_paths
from app.store import open_database, utc_now

log = logging.getLogger(__name__)

MiB = 1024**2
GiB = 1024**3
#: Free space kept on top of the file sizes, so a download never fills the disk to the brim.
DISK_MARGIN = 256 * MiB
#: Bytes per read from the network. huggingface_hub's default (10 MiB) makes progress and
#: pause jump in 10 MiB steps and loses up to 10 MiB on a dropped connection.
CHUNK_SIZE = 1 * MiB
PROGRESS_INTERVAL_S = 0.25  # at most this often per job to listeners
PERSIST_INTERVAL_S = 1.0  # bytes_done written to the database at most this often
SPEED_WINDOW_S = 5.0


class DownloadState(StrEnum):
    """Where one file (or a whole job) is; stored as text in `downloads.state`."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"  # downloaded and verified (for a job: in the library)
    FAILED = "failed"  # see `error`; the partial file is kept unless its bytes were wrong
    CANCELLED = "cancelled"  # the partial file was deleted


TERMINAL = frozenset(
    {DownloadState.COMPLETE, DownloadState.FAILED, DownloadState.CANCELLED, DownloadState.PAUSED}
)


class DownloadIntegrityError(HearthError):
    default_remedy = (
        "Run the same pull again to download it afresh; if it fails twice, the mirror or a "
        "proxy on the way is serving damaged files."
    )


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


class _Stopped(Exception):
    """Raised inside a transfer (from the progress hook) to stop it; not a network error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "pause" | "cancel" | "close"


class _Transfer:
    """The live state of one file being fetched by a worker thread."""

    def __init__(self, row_id: str, job_id: str) -> None:
        self.row_id = row_id
        self.job_id = job_id
        self.stop_event = threading.Event()
        self.reason = ""
        self.done = 0
        self.note: str | None = None
        self.last_persist = 0.0

    def stop(self, reason: str) -> None:
        # A cancel outranks a pause or a close requested earlier.
        if self.reason != "cancel":
            self.reason = reason
        self.stop_event.set()

    def check(self) -> None:
        if self.stop_event.is_set():
            raise _Stopped(self.reason)


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
    >>> job = queue.enqueue(variant)  # a GgufVariant from hub.list_gguf_files
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
        self.staging = self.paths.cache / "downloads"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.max_parallel = max(1, min(max_parallel, 4))
        self.retries = retries
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.chunk_size = chunk_size
        self.disk_margin = disk_margin
        self._config = config
        self._listeners: list[ProgressListener] = [on_progress] if on_progress else []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._local = threading.local()
        self._transfers: dict[str, _Transfer] = {}
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
        folder = self.paths.models / publisher / repo_name
        dests = [folder / _safe_repo_path(f.path) for f in variant.files]
        with self._lock:
            db = self._db()
            existing = {r["id"]: r for r in self._rows(job_id)}
            if existing and self._in_library(db, dests[0]) and all(d.is_file() for d in dests):
                return self.job(job_id)
            need = 0
            for i, f in enumerate(variant.files):
                row = existing.get(_row_id(job_id, i))
                if row and row["state"] == DownloadState.COMPLETE and self._file_present(row):
                    continue
                need += max(f.size - self._partial_size(job_id, f.path), 0)
            self.check_disk(need, what=variant.name)
            now = utc_now()
            with db.conn:
                for i, (f, dest) in enumerate(zip(variant.files, dests, strict=True)):
                    row_id = _row_id(job_id, i)
                    row = existing.get(row_id)
                    if row is None:
                        db.execute(
                            "INSERT INTO downloads (id, repo, revision, filename, dest, size_bytes,"
                            " sha256, bytes_done, state, created_at, updated_at)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [
                                row_id,
                                variant.repo,
                                variant.revision,
                                f.path,
                                str(dest),
                                f.size,
                                f.sha256,
                                self._partial_size(job_id, f.path),
                                DownloadState.QUEUED.value,
                                now,
                                now,
                            ],
                        )
                        continue
                    state = DownloadState(row["state"])
                    if state == DownloadState.COMPLETE and self._file_present(row):
                        continue
                    if state != DownloadState.RUNNING:
                        db.execute(
                            "UPDATE downloads SET state = ?, error = NULL, dest = ?, "
                            "sha256 = COALESCE(?, sha256), updated_at = ? WHERE id = ?",
                            [DownloadState.QUEUED.value, str(dest), f.sha256, now, row_id],
                        )
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
                transfer.stop("close")
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
        self._require(job_id)
        with self._lock:
            self._set_states(
                job_id, DownloadState.PAUSED, (DownloadState.QUEUED, DownloadState.RUNNING)
            )
            for transfer in self._transfers_of(job_id):
                transfer.stop("pause")
            self._changed.notify_all()
        self._emit(job_id, force=True)
        return self.job(job_id)

    def resume(self, job_id: str) -> DownloadJob:
        """Queue a paused or failed job again (it continues from the partial files)."""
        self._require(job_id)
        with self._lock:
            self._set_states(
                job_id, DownloadState.QUEUED, (DownloadState.PAUSED, DownloadState.FAILED)
            )
            self._changed.notify_all()
        self._emit(job_id, force=True)
        return self.job(job_id)

    def cancel(self, job_id: str) -> DownloadJob:
        """Stop a job and delete its partial files. A model already in the library stays."""
        self._require(job_id)
        with self._lock:
            self._set_states(
                job_id,
                DownloadState.CANCELLED,
                (
                    DownloadState.QUEUED,
                    DownloadState.RUNNING,
                    DownloadState.PAUSED,
                    DownloadState.FAILED,
                ),
            )
            if self.job(job_id).state != DownloadState.COMPLETE:
                # Parts that finished are useless without the rest: forget them too.
                self._set_states(job_id, DownloadState.CANCELLED, (DownloadState.COMPLETE,))
            running = {t.row_id for t in self._transfers_of(job_id)}
            for transfer in self._transfers_of(job_id):
                transfer.stop("cancel")
            for row in self._rows(job_id):
                if row["id"] not in running and row["state"] == DownloadState.CANCELLED:
                    self._delete_staged(job_id, row["filename"])
            self._changed.notify_all()
        self._emit(job_id, force=True)
        return self.job(job_id)

    def jobs(self) -> list[DownloadJob]:
        """Every job in the table, oldest first."""
        rows = self._db().execute("SELECT id FROM downloads ORDER BY created_at, id").fetchall()
        seen: dict[str, None] = {}
        for (row_id,) in rows:
            seen.setdefault(_job_of(str(row_id)), None)
        return [self.job(job_id) for job_id in seen]

    def job(self, job_id: str) -> DownloadJob:
        rows = self._rows(job_id)
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
        wanted = need + self.disk_margin
        self.paths.models.mkdir(parents=True, exist_ok=True)
        for folder in dict.fromkeys((self.staging, self.paths.models)):
            free = shutil.disk_usage(folder).free
            if free < wanted:
                raise NotEnoughDiskError(
                    f"{what} needs {_size(wanted)} free in {folder} (its size plus a "
                    f"{_size(self.disk_margin)} margin), but only {_size(free)} is free."
                )

    # --- the worker -------------------------------------------------------------------------

    def _worker(self) -> None:
        try:
            while True:
                with self._lock:
                    row = None
                    while not self._closing:
                        row = self._claim()
                        if row is not None:
                            break
                        self._changed.wait(1.0)
                    if self._closing or row is None:
                        return
                try:
                    self._run(row)
                except Exception:  # never let one bad download end the worker
                    log.exception("download worker: %s failed unexpectedly", row["id"])
        finally:
            self._close_thread_db()

    def _claim(self) -> dict[str, Any] | None:
        """Take the oldest queued row (called with the lock held)."""
        db = self._db()
        rows = db.execute(
            "SELECT * FROM downloads WHERE state = ? ORDER BY created_at, id",
            [DownloadState.QUEUED.value],
        ).fetchall()
        columns = [c[0] for c in db.execute("SELECT * FROM downloads LIMIT 0").description]
        for values in rows:
            row = dict(zip(columns, values, strict=True))
            if row["id"] in self._transfers:
                continue  # its previous transfer is still winding down
            if time.monotonic() - self._busy_elsewhere.get(row["id"], -60.0) < 10.0:
                continue  # another Hearth process holds it; look again later
            if self._only is not None and _job_of(row["id"]) not in self._only:
                continue
            with db.conn:
                cursor = db.execute(
                    "UPDATE downloads SET state = ?, error = NULL, updated_at = ? "
                    "WHERE id = ? AND state = ?",
                    [DownloadState.RUNNING.value, utc_now(), row["id"], DownloadState.QUEUED.value],
                )
            if cursor.rowcount == 1:
                transfer = _Transfer(row["id"], _job_of(row["id"]))
                transfer.done = self._partial_size(transfer.job_id, row["filename"])
                self._transfers[row["id"]] = transfer
                return row
        return None

    def _run(self, row: dict[str, Any]) -> None:
        job_id = _job_of(row["id"])
        transfer = self._transfers[row["id"]]
        self._emit(job_id, force=True)
        lock = self._file_lock(job_id, row["filename"])
        try:
            lock.acquire(timeout=0)
        except Exception:  # another Hearth process is downloading this very file
            with self._lock:
                self._transfers.pop(row["id"], None)
                self._busy_elsewhere[row["id"]] = time.monotonic()
                self._set_row_state(row["id"], DownloadState.QUEUED, (DownloadState.RUNNING,))
            return
        try:
            self._fetch_with_retries(row, transfer)
        except _Stopped as stop:
            self._stopped(row, stop.reason)
        except HearthError as exc:
            self._fail(row, str(exc))
        except Exception as exc:  # a bug or an unexpected library error: say so, keep data
            log.exception("download %s failed unexpectedly", row["id"])
            self._fail(row, f"The download stopped unexpectedly ({type(exc).__name__}: {exc}).")
        else:
            self._finalize_safely(job_id)
        finally:
            lock.release()
            self._tidy(job_id, row["filename"])
            with self._lock:
                self._transfers.pop(row["id"], None)
                self._changed.notify_all()
            self._emit(job_id, force=True)

    def _fetch_with_retries(self, row: dict[str, Any], transfer: _Transfer) -> None:
        attempt = 0
        while True:
            before = self._partial_size(transfer.job_id, row["filename"])
            try:
                self._fetch(row, transfer)
                return
            except (_Stopped, HearthError):
                raise
            except Exception as exc:
                config = self._hub()
                if not _retryable(exc):
                    raise hub_error(
                        exc,
                        config,
                        repo=row["repo"],
                        revision=row["revision"],
                        filename=row["filename"],
                    ) from exc
                if self._partial_size(transfer.job_id, row["filename"]) > before:
                    attempt = 0  # it was moving: a fresh drop, not the same failure again
                if attempt >= self.retries:
                    raise _gave_up(exc, config, row, self.retries) from exc
                delay = min(self.retry_base_s * 2**attempt, self.retry_max_s)
                attempt += 1
                transfer.note = (
                    f"connection lost ({_short(exc)}); retrying in {delay:.0f} s "
                    f"(attempt {attempt} of {self.retries})"
                )
                log.info("%s: %s", row["filename"], transfer.note)
                self._emit(transfer.job_id, force=True)
                if transfer.stop_event.wait(delay):
                    transfer.check()
                transfer.note = None

    def _fetch(self, row: dict[str, Any], transfer: _Transfer) -> None:
        """One attempt: ask the Hub where the file is, fetch what is missing, verify it."""
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        from app import __version__

        config = self._hub()
        config.require_online()
        job_id, filename = transfer.job_id, row["filename"]
        url = hf_hub_url(row["repo"], filename, revision=row["revision"], endpoint=config.endpoint)
        meta = get_hf_file_metadata(
            url,
            token=config.token,
            timeout=READ_TIMEOUT_S,
            library_name="hearth",
            library_version=__version__,
        )
        size = int(meta.size if meta.size is not None else row["size_bytes"] or 0)
        expected = row["sha256"] or _sha256_or_none(meta.etag)
        partial = self._partial_path(job_id, filename)
        partial.parent.mkdir(parents=True, exist_ok=True)
        staged = self._staged_path(job_id, filename)
        if staged.exists() and not partial.exists():
            os.replace(staged, partial)  # complete but never registered: verify it again
        done = partial.stat().st_size if partial.exists() else 0
        if size and done > size:
            partial.unlink()
            done = 0
        self.check_disk(size - done, what=PurePosixPath(filename).name)
        transfer.done = done
        self._persist(row["id"], done, size)
        if not size or done < size:
            headers = build_hf_headers(
                token=config.token, library_name="hearth", library_version=__version__
            )
            if _origin(meta.location) != _origin(url):
                headers.pop("authorization", None)  # never send the token to a CDN
            # Smaller reads than the library's 10 MiB default: see CHUNK_SIZE.
            constants.DOWNLOAD_CHUNK_SIZE = self.chunk_size
            with partial.open("ab") as fh:
                http_get(
                    meta.location,
                    fh,
                    resume_size=done,
                    headers=headers,
                    expected_size=size or None,
                    displayed_filename=PurePosixPath(filename).name,
                    tqdm_class=self._progress_class(transfer, row["id"], size),
                )
        transfer.note = "verifying sha256"
        self._emit(job_id, force=True)
        actual = _sha256_file(partial, transfer)
        transfer.note = None
        if expected and actual != expected:
            partial.unlink(missing_ok=True)
            raise DownloadIntegrityError(
                f"{PurePosixPath(filename).name} from {row['repo']} does not match the sha256 "
                f"the Hub gives (got {actual[:12]}…, expected {expected[:12]}…); Hearth "
                "deleted the damaged file."
            )
        transfer.check()  # a cancel that arrived while verifying still wins
        final = self._staged_path(job_id, filename)
        os.replace(partial, final)
        with self._lock:
            db = self._db()
            with db.conn:
                db.execute(
                    "UPDATE downloads SET state = ?, bytes_done = ?, size_bytes = ?, sha256 = ?,"
                    " error = NULL, updated_at = ? WHERE id = ?",
                    [DownloadState.COMPLETE.value, size, size, actual, utc_now(), row["id"]],
                )
            self._changed.notify_all()

    def _progress_class(self, transfer: _Transfer, row_id: str, size: int) -> Any:
        """A tqdm class for http_get that reports progress and stops the transfer on request."""
        from huggingface_hub.utils import tqdm as hf_tqdm

        queue = self

        class _Progress(hf_tqdm):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True  # no terminal bar: Hearth draws its own
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                # Called before each chunk is written: stopping here keeps the file a
                # clean prefix of the real one.
                transfer.check()
                queue._advance(transfer, row_id, int(n or 0), size)
                return None

        return _Progress

    def _advance(self, transfer: _Transfer, row_id: str, n: int, size: int) -> None:
        transfer.done += n
        with self._lock:
            self._speeds.setdefault(transfer.job_id, _Speed()).add(n)
        now = time.monotonic()
        if now - transfer.last_persist >= PERSIST_INTERVAL_S:
            transfer.last_persist = now
            self._persist(row_id, transfer.done, size)
        self._emit(transfer.job_id)

    def _persist(self, row_id: str, done: int, size: int) -> None:
        db = self._db()
        with db.conn:
            db.execute(
                "UPDATE downloads SET bytes_done = ?, size_bytes = ?, updated_at = ? WHERE id = ?",
                [done, size, utc_now(), row_id],
            )

    def _stopped(self, row: dict[str, Any], reason: str) -> None:
        job_id, filename = _job_of(row["id"]), row["filename"]
        done = self._partial_size(job_id, filename)
        with self._lock:
            db = self._db()
            with db.conn:
                db.execute(
                    "UPDATE downloads SET bytes_done = ?, updated_at = ? WHERE id = ?",
                    [done, utc_now(), row["id"]],
                )
            if reason == "cancel":
                self._delete_staged(job_id, filename)
                self._set_row_state(row["id"], DownloadState.CANCELLED, None)
            elif reason == "pause":
                self._set_row_state(
                    row["id"], DownloadState.PAUSED, (DownloadState.RUNNING, DownloadState.PAUSED)
                )
            else:  # the queue is closing: resume next time Hearth starts
                self._set_row_state(row["id"], DownloadState.QUEUED, (DownloadState.RUNNING,))

    def _fail(self, row: dict[str, Any], message: str) -> None:
        log.info("download of %s from %s failed: %s", row["filename"], row["repo"], message)
        job_id = _job_of(row["id"])
        with self._lock:
            db = self._db()
            with db.conn:
                db.execute(
                    "UPDATE downloads SET state = ?, error = ?, bytes_done = ?, updated_at = ?"
                    " WHERE id = ? AND state IN (?, ?)",
                    [
                        DownloadState.FAILED.value,
                        message,
                        self._partial_size(job_id, row["filename"]),
                        utc_now(),
                        row["id"],
                        DownloadState.RUNNING.value,
                        DownloadState.PAUSED.value,
                    ],
                )
            self._changed.notify_all()

    # --- into the library -------------------------------------------------------------------

    def _finalize_safely(self, job_id: str) -> None:
        try:
            self._finalize(job_id)
        except Exception as exc:  # e.g. the database is locked or the disk went away
            log.exception("adding download %s to the library failed", job_id)
            for row in self._rows(job_id):
                # Back to staging: the models folder only holds what the library lists.
                dest, staged = Path(row["dest"]), self._staged_path(job_id, row["filename"])
                if dest.is_file() and not staged.exists():
                    with contextlib.suppress(OSError):
                        _move_into_place(dest, staged)
                self._mark_failed(
                    row["id"],
                    f"The files arrived but adding the model to the library failed ({exc}). "
                    "Run the same pull again to retry; the files are kept.",
                )

    def _finalize(self, job_id: str) -> None:
        """Once every file of a job is verified: validate, move into the library, register."""
        from app.models.gguf_info import read_gguf_facts
        from app.models.library import model_name_for, register_chat_model

        with self._finalize_lock:
            rows = self._rows(job_id)
            if not rows or any(r["state"] != DownloadState.COMPLETE for r in rows):
                return
            db = self._db()
            dests = [Path(r["dest"]) for r in rows]
            staged = [self._staged_path(job_id, r["filename"]) for r in rows]
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
                        r["id"], "The downloaded file disappeared before it reached the library."
                    )
                return
            try:
                first = staged[0] if all(s.is_file() for s in staged) else None
                facts = read_gguf_facts(first) if first else None
                for source, dest in zip(staged, dests, strict=True):
                    if source.is_file():
                        _move_into_place(source, dest)
                if facts is None:  # finishing a move a crash interrupted
                    facts = read_gguf_facts(dests[0])
            except HearthError as exc:
                for source, dest in zip(staged, dests, strict=True):
                    source.unlink(missing_ok=True)
                    dest.unlink(missing_ok=True)
                for r in rows:
                    self._mark_failed(
                        r["id"], f"{exc.cause} Hearth deleted it; it is not in the library."
                    )
                return
            info = self._info.get(job_id) or self._lookup_info(rows)
            name = self._library_name(db, model_name_for(dests[0].name), rows[0]["repo"], dests[0])
            # True: every file matched the sha256 the Hub published; None: unknown (offline).
            verified: bool | None = None
            if info.hub_sha256:
                verified = all(info.hub_sha256.get(r["filename"]) == r["sha256"] for r in rows)
            register_chat_model(
                db,
                name,
                dests[0],
                facts,
                source="hub",
                sha256=rows[0]["sha256"],
                repo=rows[0]["repo"],
                revision=rows[0]["revision"],
                license=info.license,
                extra={
                    "quant": parse_quant(rows[0]["filename"]),
                    "download_id": job_id,
                    "sha256_verified": verified,
                    "files": [
                        {"path": str(d), "size": r["size_bytes"], "sha256": r["sha256"]}
                        for r, d in zip(rows, dests, strict=True)
                    ],
                },
            )
            for row in rows:
                self._partial_path(job_id, row["filename"]).with_suffix(".lock").unlink(
                    missing_ok=True
                )
            with contextlib.suppress(OSError):
                (self.staging / job_id).rmdir()
        with self._lock:
            self._changed.notify_all()
        log.info("%s from %s is in the library at %s", name, rows[0]["repo"], dests[0])

    def _library_name(self, db: sqlite_utils.Database, name: str, repo: str, path: Path) -> str:
        """`name`, or `publisher-name` when another model already uses that name."""
        from app.models.library import find_model

        candidates = [name, f"{repo.split('/')[0].lower()}-{name}"]
        candidates += [f"{candidates[1]}-{n}" for n in range(2, 100)]
        for candidate in candidates:
            row = find_model(db, candidate)
            if row is None or Path(row["path"]) == path:
                return candidate
        return candidates[-1]

    def _lookup_info(self, rows: list[dict[str, Any]]) -> _JobInfo:
        """License and the Hub's sha256 values after a restart (best effort, may be offline)."""
        try:
            from huggingface_hub import HfApi

            config = self._hub()
            config.require_online()
            info = HfApi(endpoint=config.endpoint, token=config.token).model_info(
                rows[0]["repo"], revision=rows[0]["revision"], files_metadata=True, timeout=10
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

    def _close_thread_db(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    def _rows(self, job_id: str) -> list[dict[str, Any]]:
        db = self._db()
        cursor = db.execute("SELECT * FROM downloads WHERE id LIKE ? ORDER BY id", [f"{job_id}-%"])
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]

    def _require(self, job_id: str) -> None:
        if not self._rows(job_id):
            raise DownloadNotFound(f"There is no download with the id '{job_id}'.")

    def _transfers_of(self, job_id: str) -> list[_Transfer]:
        with self._lock:
            return [t for t in self._transfers.values() if t.job_id == job_id]

    def _set_states(
        self, job_id: str, state: DownloadState, from_states: tuple[DownloadState, ...]
    ) -> None:
        db = self._db()
        marks = ", ".join("?" for _ in from_states)
        with db.conn:
            db.execute(
                "UPDATE downloads SET state = ?, updated_at = ? "
                f"WHERE id LIKE ? AND state IN ({marks})",
                [state.value, utc_now(), f"{job_id}-%", *(s.value for s in from_states)],
            )

    def _set_row_state(
        self, row_id: str, state: DownloadState, from_states: tuple[DownloadState, ...] | None
    ) -> None:
        db = self._db()
        with self._lock, db.conn:
            if from_states is None:
                db.execute(
                    "UPDATE downloads SET state = ?, updated_at = ? WHERE id = ?",
                    [state.value, utc_now(), row_id],
                )
            else:
                marks = ", ".join("?" for _ in from_states)
                db.execute(
                    "UPDATE downloads SET state = ?, updated_at = ? "
                    f"WHERE id = ? AND state IN ({marks})",
                    [state.value, utc_now(), row_id, *(s.value for s in from_states)],
                )
            self._changed.notify_all()

    def _mark_failed(self, row_id: str, message: str) -> None:
        db = self._db()
        with self._lock, db.conn:
            db.execute(
                "UPDATE downloads SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                [DownloadState.FAILED.value, message, utc_now(), row_id],
            )

    def _recover_interrupted(self) -> None:
        """Rows a killed Hearth left `running` go back to `queued`, unless another live
        Hearth process is still downloading them (it holds the file's lock)."""
        with self._lock:
            db = self._db()
            rows = db.execute(
                "SELECT id, filename FROM downloads WHERE state = ?", [DownloadState.RUNNING.value]
            ).fetchall()
            for row_id, filename in rows:
                lock = self._file_lock(_job_of(row_id), filename)
                try:
                    lock.acquire(timeout=0)
                except Exception:
                    continue
                lock.release()
                self._set_row_state(row_id, DownloadState.QUEUED, (DownloadState.RUNNING,))

    def _file_lock(self, job_id: str, filename: str) -> Any:
        from filelock import FileLock

        path = self._partial_path(job_id, filename).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path), thread_local=False)

    def _partial_path(self, job_id: str, filename: str) -> Path:
        return self.staging / job_id / f"{PurePosixPath(filename).name}.incomplete"

    def _staged_path(self, job_id: str, filename: str) -> Path:
        return self.staging / job_id / PurePosixPath(filename).name

    def _partial_size(self, job_id: str, filename: str) -> int:
        try:
            return self._partial_path(job_id, filename).stat().st_size
        except OSError:
            return 0

    def _file_present(self, row: dict[str, Any]) -> bool:
        return (
            Path(row["dest"]).is_file()
            or self._staged_path(_job_of(row["id"]), row["filename"]).is_file()
        )

    def _delete_staged(self, job_id: str, filename: str) -> None:
        for path in (self._partial_path(job_id, filename), self._staged_path(job_id, filename)):
            path.unlink(missing_ok=True)
        self._partial_path(job_id, filename).with_suffix(".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.staging / job_id).rmdir()

    def _tidy(self, job_id: str, filename: str) -> None:
        """Remove the lock file (and the job's folder) once nothing of the file is staged."""
        if self._partial_path(job_id, filename).exists():
            return
        if self._staged_path(job_id, filename).exists():
            return
        self._partial_path(job_id, filename).with_suffix(".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.staging / job_id).rmdir()

    @staticmethod
    def _in_library(db: sqlite_utils.Database, path: Path) -> bool:
        row = db.execute("SELECT 1 FROM models WHERE path = ? LIMIT 1", [str(path)]).fetchone()
        return row is not None

    def _snapshot(self, job_id: str, rows: list[dict[str, Any]]) -> DownloadJob:
        from app.models.library import model_name_for

        transfers = {t.row_id: t for t in self._transfers_of(job_id)}
        files = []
        for r in rows:
            live = transfers.get(r["id"])
            if live is not None:
                done = live.done
            elif r["state"] == DownloadState.COMPLETE:
                done = int(r["size_bytes"] or 0)
            else:  # the file on disk is the truth (the table lags by up to a second)
                done = self._partial_size(job_id, r["filename"])
            files.append(
                FileStatus(
                    id=r["id"],
                    filename=r["filename"],
                    dest=r["dest"],
                    size=int(r["size_bytes"] or 0),
                    bytes_done=done,
                    state=DownloadState(r["state"]),
                    sha256=r["sha256"],
                    error=r["error"],
                )
            )
        states = {f.state for f in files}
        if DownloadState.RUNNING in states or transfers:
            state = DownloadState.RUNNING
        elif states == {DownloadState.COMPLETE}:
            db = self._db()
            in_library = self._in_library(db, Path(files[0].dest))
            state = DownloadState.COMPLETE if in_library else DownloadState.RUNNING
        elif DownloadState.QUEUED in states:
            state = DownloadState.QUEUED
        elif DownloadState.FAILED in states:
            state = DownloadState.FAILED
        elif DownloadState.CANCELLED in states:
            state = DownloadState.CANCELLED
        else:
            state = DownloadState.PAUSED
        if DownloadState.FAILED in states and state == DownloadState.RUNNING and not transfers:
            state = DownloadState.FAILED
        size = sum(f.size for f in files)
        done = sum(f.size if f.state == DownloadState.COMPLETE else f.bytes_done for f in files)
        speed = self._speeds[job_id].rate() if job_id in self._speeds and transfers else 0.0
        eta = (size - done) / speed if speed > 0 else None
        error = next((f.error for f in files if f.error), None)
        note = next((t.note for t in transfers.values() if t.note), None)
        name = self._registered_name(Path(files[0].dest)) or model_name_for(
            PurePosixPath(files[0].filename).name
        )
        return DownloadJob(
            id=job_id,
            repo=rows[0]["repo"],
            revision=rows[0]["revision"],
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

    def _registered_name(self, path: Path) -> str | None:
        row = self._db().execute("SELECT name FROM models WHERE path = ?", [str(path)]).fetchone()
        return str(row[0]) if row else None

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


# --- module helpers -----------------------------------------------------------------------


def _row_id(job_id: str, index: int) -> str:
    return f"{job_id}-{index + 1:05d}"


def _job_of(row_id: str) -> str:
    return row_id.rsplit("-", 1)[0]


def _safe_repo_path(path: str) -> Path:
    """A repo file path as a relative local path; a hostile listing cannot climb out."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or any(p in ("..", "") for p in parts):
        raise HubError(
            f"The Hub listed a file with an unsafe name ({path!r}).",
            "Hearth refused to download it; report the repo to its publisher.",
        )
    return Path(*parts)


def _move_into_place(source: Path, dest: Path) -> None:
    """Move atomically (os.replace); across drives, copy next to `dest` first, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    temporary = dest.with_name(f".{dest.name}.partial")
    with source.open("rb") as src, temporary.open("wb") as out:
        shutil.copyfileobj(src, out, 4 * MiB)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, dest)
    source.unlink()


def _sha256_file(path: Path, transfer: _Transfer) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 * MiB):
            digest.update(block)
            transfer.check()
    return digest.hexdigest()


def _sha256_or_none(etag: str | None) -> str | None:
    if etag and len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
        return etag
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _retryable(exc: BaseException) -> bool:
    """Network trouble worth another try (with backoff), as opposed to a clear refusal."""
    import httpx2
    from huggingface_hub import errors as hf

    if isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status in (408, 429, 500, 502, 503, 504)
    # http_get's "Consistency check failed": the server sent fewer bytes than announced.
    return isinstance(exc, OSError) and "Consistency check failed" in str(exc)


def _gave_up(
    exc: BaseException, config: HubConfig, row: dict[str, Any], retries: int
) -> HearthError:
    error = hub_error(exc, config, repo=row["repo"], filename=row["filename"])
    cause = error.cause.rstrip(".")
    if isinstance(error, OfflineError | HubUnreachableError) or not isinstance(error, HubError):
        cause = f"The connection to {config.endpoint} kept failing ({_short(exc)})"
    return HubError(
        f"{cause}; Hearth gave up after {retries} retries and kept what had arrived.",
        "Run the same pull again (or press Resume) when the network is back; it continues "
        "where it stopped.",
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:100]


def _size(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"
