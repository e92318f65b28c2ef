"""Open Hearth's database: check it without writing, switch on WAL, then bring it up to date."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database

from app.errors import HearthError
from app.store.errors import CorruptDatabaseError
from app.store.migrations import check_not_newer, migrate

BUSY_TIMEOUT_S = 5.0

# Primary SQLite result codes that mean the file itself is damaged or not SQLite at all.
_DAMAGED_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# ... and those that mean another connection holds a lock just now.
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def open_database(path: Path) -> Database:
    """Open (or create) the database at `path`, ready to use and fully migrated.

    An existing, non-empty file is first checked through a read-only connection, so a
    damaged file (`CorruptDatabaseError`) or one from a newer Hearth (`NewerDatabaseError`)
    is reported without a single byte of it changing. Then WAL, foreign keys and a 5 s busy
    timeout are switched on and pending migrations applied. Several threads or processes may
    open the same brand-new file at once: one switches it to WAL and migrates it, the others
    wait for it (up to the busy timeout each step) and find it done.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:  # an empty file is a new database
        _check_untouched(path)
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise _unusable(path, error) from error
    db = Database(conn)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        _switch_on_wal(db, path)
        migrate(db)  # each migration takes the write lock with BEGIN IMMEDIATE: it waits
    except sqlite3.DatabaseError as error:
        db.close()
        if _is_damage(error):
            raise CorruptDatabaseError(path, str(error)) from error
        raise
    except BaseException:
        db.close()
        raise
    return db


def _switch_on_wal(db: Database, path: Path) -> None:
    """Put the file in WAL mode, waiting up to the busy timeout for another opener to finish.

    SQLite does not wait out the busy timeout for a journal-mode switch: while another
    connection holds the write lock of a still rollback-mode file (another thread or process
    switching the same new database, or running its first migration), it answers "database
    is locked" at once. So the switch is tried again, with a short growing pause, until it
    succeeds, finds the file already in WAL mode, or the busy timeout has run out.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause_s = 0.005
    while True:
        try:
            db.enable_wal()  # a no-op once the file is in WAL mode
            return
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
            if time.monotonic() >= deadline:
                raise _unusable(path, error) from error
        _pause(pause_s)
        pause_s = min(pause_s * 2, 0.1)


def _pause(seconds: float) -> None:
    """Wait before trying the WAL switch again (a seam: tests see each retry here)."""
    time.sleep(seconds)


def _check_untouched(path: Path) -> None:
    """Run the damage and newer-schema checks on a read-only connection to `path`.

    Even read-only, SQLite creates `-wal` and `-shm` files beside a WAL database, so a file
    that was refused would not be left as it was found. With no `-wal` file there is nothing
    but the main file to read, and `immutable=1` reads it without creating either; with
    one (a Hearth that crashed), its pages are needed and the sidecars exist already.
    """
    wal = path.with_name(path.name + "-wal")
    uri = path.resolve().as_uri() + ("?mode=ro" if wal.exists() else "?mode=ro&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise _unusable(path, error) from error
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            reason = "; ".join(" ".join(p.split()) for p in problems[:3]) or "no check result"
            raise CorruptDatabaseError(path, reason)
        check_not_newer(conn, path)
    except sqlite3.DatabaseError as error:
        if _is_damage(error):
            raise CorruptDatabaseError(path, str(error)) from error
        raise _unusable(path, error) from error
    finally:
        conn.close()


def _is_damage(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _DAMAGED_CODES


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _BUSY_CODES


def _unusable(path: Path, error: sqlite3.Error) -> HearthError:
    return HearthError(
        f"Hearth could not open the database at {path} ({error}).",
        "Check that you can read and write that folder and that no other program is "
        "holding the file, then start Hearth again.",
    )
