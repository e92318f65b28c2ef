"""Hearth's storage room: opening the SQLite database, and the vocabulary its tables share."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlite_utils import Database

from app.store.db import open_database
from app.store.errors import CorruptDatabaseError, NewerDatabaseError
from app.store.migrations import migrate

__all__ = [
    "CorruptDatabaseError",
    "Database",
    "MessageState",
    "NewerDatabaseError",
    "migrate",
    "open_database",
    "open_default_database",
    "utc_now",
]


def open_default_database() -> Database:
    """Open (creating folders and migrating as needed) the database of this Hearth home."""
    from app.paths import hearth_paths

    return open_database(hearth_paths().ensure().database)


class MessageState(StrEnum):
    """Where a message is in its life; stored as text in `messages.state`."""

    STREAMING = "streaming"  # tokens are still arriving
    COMPLETE = "complete"
    STOPPED = "stopped"  # the person pressed Stop
    INTERRUPTED = "interrupted"  # Hearth quit or crashed mid-reply
    FAILED = "failed"  # generation raised; see `messages.error`


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds, so stored times sort as text.

    >>> utc_now().endswith("+00:00") and len(utc_now()) == 32
    True
    """
    return datetime.now(UTC).isoformat(timespec="microseconds")
