"""Hearth's storage room: the SQLite database, its migrations, and small helpers around it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlite_utils import Database

from app.store.db import CorruptDatabaseError, open_database
from app.store.migrations import NewerDatabaseError, migrate

__all__ = [
    "CorruptDatabaseError",
    "Database",
    "MessageState",
    "NewerDatabaseError",
    "get_setting",
    "migrate",
    "open_database",
    "open_default_database",
    "set_setting",
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


def get_setting(db: Database, key: str, default: Any = None) -> Any:
    """The JSON-decoded value stored for `key`, or `default` if unset or unreadable."""
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    if row is None or row[0] is None:
        return default
    try:
        return json.loads(row[0])
    except ValueError:
        return default


def set_setting(db: Database, key: str, value: Any) -> None:
    """Store `value` (anything `json.dumps` accepts) under `key`, replacing any old value."""
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, json.dumps(value)],
    )
