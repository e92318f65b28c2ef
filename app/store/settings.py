"""Settings: small JSON values under a key, in the `settings` table."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database


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
