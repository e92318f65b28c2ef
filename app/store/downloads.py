"""The downloads table: one typed row per file of a Hub download, and every query on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from sqlite_utils import Database

from app.store import utc_now

TABLE = "downloads"


class DownloadState(StrEnum):
    """Where one file (or a whole job) is; stored as text in `downloads.state`."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"  # downloaded and verified (for a job: in the library)
    FAILED = "failed"  # see `error`; the partial file is kept unless its bytes were wrong
    CANCELLED = "cancelled"  # the partial file was deleted


@dataclass(frozen=True)
class DownloadRow:
    """One file of a download job as the table holds it.

    The files of one model share a job id, the prefix of their row ids (`<job>-00001`...),
    so a split GGUF is one job with several rows.
    """

    id: str
    repo: str
    revision: str
    filename: str  # path in the repo
    dest: str  # where it goes in the library
    size_bytes: int
    sha256: str | None  # the Hub's value while downloading; the verified one once complete
    bytes_done: int = 0
    state: DownloadState = DownloadState.QUEUED
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""

    @property
    def job_id(self) -> str:
        return self.id.rsplit("-", 1)[0]


def file_row_id(job_id: str, index: int) -> str:
    """The row id of a job's file number `index` (from 0): `<job>-00001`, `<job>-00002`..."""
    return f"{job_id}-{index + 1:05d}"


# --- reading ------------------------------------------------------------------------------


def job_files(db: Database, job_id: str) -> list[DownloadRow]:
    """The rows of one job, in file order (empty when there is no such job)."""
    return _select(db, "id LIKE ? ORDER BY id", [f"{job_id}-%"])


def job_ids(db: Database) -> list[str]:
    """Every job id in the table, oldest first."""
    seen: dict[str, None] = {}
    for (row_id,) in db.execute(f"SELECT id FROM [{TABLE}] ORDER BY created_at, id").fetchall():
        seen.setdefault(str(row_id).rsplit("-", 1)[0], None)
    return list(seen)


def rows_in_state(db: Database, state: DownloadState) -> list[DownloadRow]:
    """Every row in `state`, oldest first (the order the queue works in)."""
    return _select(db, "state = ? ORDER BY created_at, id", [state.value])


# --- writing (each function is one committed transaction) ---------------------------------


def enqueue_files(db: Database, rows: Sequence[DownloadRow]) -> None:
    """Insert new rows as queued; a row that exists goes back to queued (unless running)
    with its new destination and, when the listing gives one, its sha256."""
    now = utc_now()
    with db.conn:
        for row in rows:
            db.execute(
                f"INSERT INTO [{TABLE}] (id, repo, revision, filename, dest, size_bytes, sha256,"
                " bytes_done, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state, error = NULL,"
                " dest = excluded.dest, sha256 = COALESCE(excluded.sha256, sha256),"
                " updated_at = excluded.updated_at"
                " WHERE state != ?",
                [
                    row.id,
                    row.repo,
                    row.revision,
                    row.filename,
                    row.dest,
                    row.size_bytes,
                    row.sha256,
                    row.bytes_done,
                    DownloadState.QUEUED.value,
                    now,
                    now,
                    DownloadState.RUNNING.value,
                ],
            )


def claim_file(db: Database, row_id: str) -> bool:
    """Move a queued row to running; False when another worker (or process) took it first."""
    with db.conn:
        cursor = db.execute(
            f"UPDATE [{TABLE}] SET state = ?, error = NULL, updated_at = ? "
            "WHERE id = ? AND state = ?",
            [DownloadState.RUNNING.value, utc_now(), row_id, DownloadState.QUEUED.value],
        )
    return cursor.rowcount == 1


def set_file_state(
    db: Database,
    row_id: str,
    state: DownloadState,
    only_from: Iterable[DownloadState] | None = None,
) -> None:
    """Set one row's state (only if it is in one of `only_from`, when given)."""
    _update(db, "id = ?", [row_id], {"state": state.value}, only_from)


def set_job_state(
    db: Database, job_id: str, state: DownloadState, only_from: Iterable[DownloadState]
) -> None:
    """Set the state of every row of a job that is in one of `only_from`."""
    _update(db, "id LIKE ?", [f"{job_id}-%"], {"state": state.value}, only_from)


def record_progress(
    db: Database, row_id: str, bytes_done: int, size_bytes: int | None = None
) -> None:
    """Save how far a file is (and its size, once the Hub has confirmed it)."""
    values: dict[str, Any] = {"bytes_done": bytes_done}
    if size_bytes is not None:
        values["size_bytes"] = size_bytes
    _update(db, "id = ?", [row_id], values, None)


def mark_complete(db: Database, row_id: str, size_bytes: int, sha256: str) -> None:
    """A file arrived whole and its sha256 (the one recorded) was checked."""
    values = {
        "state": DownloadState.COMPLETE.value,
        "bytes_done": size_bytes,
        "size_bytes": size_bytes,
        "sha256": sha256,
        "error": None,
    }
    _update(db, "id = ?", [row_id], values, None)


def mark_failed(
    db: Database,
    row_id: str,
    message: str,
    *,
    bytes_done: int | None = None,
    only_from: Iterable[DownloadState] | None = None,
) -> None:
    """A file stopped for good (until resumed): keep the sentence that says why."""
    values: dict[str, Any] = {"state": DownloadState.FAILED.value, "error": message}
    if bytes_done is not None:
        values["bytes_done"] = bytes_done
    _update(db, "id = ?", [row_id], values, only_from)


# --- rows ---------------------------------------------------------------------------------


def _update(
    db: Database,
    where: str,
    args: list[Any],
    values: Mapping[str, Any],
    only_from: Iterable[DownloadState] | None,
) -> None:
    sets = ", ".join(f"{column} = ?" for column in values)
    params = [*values.values(), utc_now(), *args]
    if only_from is not None:
        states = [s.value for s in only_from]
        where += f" AND state IN ({', '.join('?' for _ in states)})"
        params += states
    with db.conn:
        db.execute(f"UPDATE [{TABLE}] SET {sets}, updated_at = ? WHERE {where}", params)


def _select(db: Database, where: str, args: list[Any]) -> list[DownloadRow]:
    cursor = db.execute(f"SELECT * FROM [{TABLE}] WHERE {where}", args)
    columns = [c[0] for c in cursor.description]
    return [_from_row(dict(zip(columns, values, strict=True))) for values in cursor.fetchall()]


def _from_row(row: Mapping[str, Any]) -> DownloadRow:
    data = {f.name: row[f.name] for f in fields(DownloadRow)}
    for column in ("size_bytes", "bytes_done"):
        data[column] = int(data[column] or 0)
    for column in ("created_at", "updated_at"):
        data[column] = data[column] or ""
    data["state"] = DownloadState(data["state"])
    return DownloadRow(**data)
