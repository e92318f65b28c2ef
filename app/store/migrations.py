"""The database schema as a list of small named migrations, each applied once and recorded."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.db import ForeignKey

from app.store.errors import NewerDatabaseError

Migration = Callable[[Database], None]

MIGRATIONS_TABLE = "_migrations"

# Every schema change, oldest first. Add one with `@migration`; never edit, rename or
# reorder one that has shipped: the name is what a database records as applied.
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next schema change; its `__name__` is recorded once applied.

    A migration runs inside a transaction with foreign keys switched off (so
    `Table.transform()` can rebuild a table without cascading deletes); it must not commit.
    A migration that rebuilds `messages` must call `enable_fts(..., replace=True)` again.
    """
    if any(existing.__name__ == fn.__name__ for existing in MIGRATIONS):
        raise ValueError(f"A migration named {fn.__name__!r} is already registered.")
    MIGRATIONS.append(fn)
    return fn


@dataclass(frozen=True)
class SchemaState:
    """What a database says about its own schema."""

    user_version: int  # PRAGMA user_version: how many migrations had been applied
    applied: tuple[str, ...]  # names recorded in `_migrations`, in the order applied

    def unknown(self, migrations: Sequence[Migration]) -> tuple[str, ...]:
        """Recorded migrations that are not in `migrations` (written by a newer Hearth)."""
        known = {fn.__name__ for fn in migrations}
        return tuple(name for name in self.applied if name not in known)

    def pending(self, migrations: Sequence[Migration]) -> tuple[Migration, ...]:
        """The migrations in `migrations` that this database has not recorded yet."""
        done = set(self.applied)
        return tuple(fn for fn in migrations if fn.__name__ not in done)


def schema_state(conn: sqlite3.Connection) -> SchemaState:
    """Read the schema state without writing anything (works on a read-only connection)."""
    user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    applied: tuple[str, ...] = ()
    if has_table:
        rows = conn.execute(f"SELECT name FROM [{MIGRATIONS_TABLE}] ORDER BY rowid").fetchall()
        applied = tuple(str(row[0]) for row in rows)
    return SchemaState(user_version=user_version, applied=applied)


def check_not_newer(
    conn: sqlite3.Connection, path: Path | str, migrations: Sequence[Migration] | None = None
) -> SchemaState:
    """Raise `NewerDatabaseError` if the database is ahead of `migrations`; else its state."""
    registry = MIGRATIONS if migrations is None else migrations
    state = schema_state(conn)
    known = len(registry)
    if state.unknown(registry) or state.user_version > known:
        schema = max(state.user_version, len(state.applied))
        raise NewerDatabaseError(path, schema, known)
    return state


def migrate(db: Database, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply the pending migrations in order, one transaction each; return the names applied.

    Each migration is recorded in `_migrations` (name, applied_at) and `PRAGMA user_version`
    is set to the number applied, in the same transaction as the change itself. A database
    that is already current is not written to. Raises `NewerDatabaseError`, before writing
    anything, if the database records migrations that `migrations` does not contain.
    """
    registry = list(MIGRATIONS if migrations is None else migrations)
    path = _main_file(db)
    pending = check_not_newer(db.conn, path, registry).pending(registry)
    if not pending:
        return []
    if db.conn.in_transaction:
        raise RuntimeError("migrate() must be called outside of a transaction.")
    foreign_keys_were_on = bool(db.execute("PRAGMA foreign_keys").fetchone()[0])
    # PRAGMA foreign_keys is ignored inside a transaction, so switch it off first; the
    # integrity of every migration is checked with foreign_key_check before it commits.
    db.execute("PRAGMA foreign_keys = OFF")
    applied: list[str] = []
    try:
        for fn in pending:
            if _apply(db, fn, path, registry):
                applied.append(fn.__name__)
    finally:
        if foreign_keys_were_on:
            db.execute("PRAGMA foreign_keys = ON")
    return applied


def _apply(db: Database, fn: Migration, path: str, registry: Sequence[Migration]) -> bool:
    """Apply one migration in its own write transaction unless it is already recorded."""
    db.conn.execute("BEGIN IMMEDIATE")  # take the write lock before re-reading the state
    try:
        # Re-read inside the lock: another Hearth process may have migrated meanwhile.
        state = check_not_newer(db.conn, path, registry)
        if fn.__name__ in state.applied:
            db.conn.execute("ROLLBACK")
            return False
        if not db.table(MIGRATIONS_TABLE).exists():
            db.table(MIGRATIONS_TABLE).create({"name": str, "applied_at": str}, pk="name")
        fn(db)
        if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
            raise sqlite3.IntegrityError(f"Migration {fn.__name__} broke a foreign key.")
        db.table(MIGRATIONS_TABLE).insert(
            {
                "name": fn.__name__,
                "applied_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            }
        )
        db.execute(f"PRAGMA user_version = {len(state.applied) + 1}")
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    return True


def _main_file(db: Database) -> str:
    """The file behind the connection's main database ('' for an in-memory one)."""
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main":
            return str(row[2])
    return ""


# --- The migrations. Append new ones at the end. -------------------------------------------


@migration
def m001_initial(db: Database) -> None:
    """Settings, models, conversations, messages (with full-text search), images, downloads."""
    db.table("settings").create({"key": str, "value": str}, pk="key")  # value: JSON

    db.table("models").create(
        {
            "id": int,
            "name": str,
            "kind": str,  # 'chat' | 'image'
            "path": str,
            "source": str,  # 'hub' | 'import' | 'starter' | 'link'
            "repo": str,
            "revision": str,
            "filename": str,
            "size_bytes": int,
            "sha256": str,
            "license": str,
            "architecture": str,
            "quantization": str,
            "parameters": int,
            "context_length": int,
            "added_at": str,
            "last_used_at": str,
            "extra": str,  # JSON
        },
        pk="id",
        not_null=["name", "kind", "path", "source"],
    )
    db.table("models").create_index(["name"], unique=True)

    db.table("conversations").create(
        {
            "id": str,  # uuid4().hex
            "title": str,
            "model": str,
            "system_prompt": str,
            "settings": str,  # JSON
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
    )
    db.table("conversations").create_index(["updated_at"])

    db.table("messages").create(
        {
            "id": str,
            "conversation_id": str,
            "parent_id": str,  # NULL for the first message of a branch
            "role": str,  # 'system' | 'user' | 'assistant'
            "content": str,
            "reasoning": str,
            "state": str,  # a MessageState value
            "error": str,
            "metrics": str,  # JSON
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null=["conversation_id", "role", "state"],
        defaults={"content": "", "state": "complete"},
        foreign_keys=[
            ForeignKey("messages", "conversation_id", "conversations", "id", on_delete="CASCADE")
        ],
    )
    db.table("messages").create_index(["conversation_id"])
    db.table("messages").enable_fts(["content"], create_triggers=True)

    db.table("images").create(
        {
            "id": str,
            "path": str,
            "prompt": str,
            "negative_prompt": str,
            "seed": int,
            "steps": int,
            "guidance": float,
            "width": int,
            "height": int,
            "scheduler": str,
            "model": str,
            "params": str,  # JSON
            "created_at": str,
        },
        pk="id",
    )
    db.table("images").create_index(["created_at"])

    db.table("downloads").create(
        {
            "id": str,
            "repo": str,
            "revision": str,
            "filename": str,
            "dest": str,
            "size_bytes": int,
            "sha256": str,
            "bytes_done": int,
            "state": str,  # 'queued' | 'running' | 'paused' | 'complete' | 'failed' | 'cancelled'
            "error": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null=["state"],
        defaults={"bytes_done": 0, "state": "queued"},
    )


@migration
def m002_conversation_branches(db: Database) -> None:
    """Remember which branch of a conversation is shown (edits and regenerations fork it)."""
    db.table("conversations").add_column("leaf_id", str)


@migration
def m003_remote_providers(db: Database) -> None:
    """Remote OpenAI-compatible providers, and which provider and model wrote each message."""
    db.table("providers").create(
        {
            "name": str,
            "base_url": str,  # normalised to the API root (`.../v1`)
            "headers": str,  # JSON object: extra headers sent with every request
            "verify_tls": int,
            "ca_bundle": str,  # a PEM file to trust, or NULL for the system's CAs
            "connect_timeout_s": float,
            "read_timeout_s": float,
            "write_timeout_s": float,
            "pool_timeout_s": float,
            "context_window": int,  # set by hand; NULL: detected per model
            "capabilities": str,  # JSON list, set by hand
            "token_param": str,  # 'max_tokens' | 'max_completion_tokens' | NULL
            "models": str,  # JSON list of {"id", "context_window"}, detected
            "added_at": str,
            "updated_at": str,
        },
        pk="name",
        not_null=["base_url"],
    )
    db.table("messages").add_column("provider", str)  # NULL: this machine's llama.cpp
    db.table("messages").add_column("model", str)


@migration
def m004_bench_results(db: Database) -> None:
    """`hearth bench` results, kept so a model's speed on this machine has a history."""
    db.table("bench_results").create(
        {
            "id": str,
            "kind": str,  # 'chat' | 'image'
            "model": str,
            "created_at": str,
            "result": str,  # JSON: the ChatBench or ImageBench as a dict
        },
        pk="id",
        not_null=["kind", "model", "created_at", "result"],
    )
    db.table("bench_results").create_index(["model", "created_at"])
