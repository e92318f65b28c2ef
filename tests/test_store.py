"""Tests for the storage room: opening, checking and migrating real SQLite files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlite_utils import Database

from app.errors import HearthError
from app.store import (
    CorruptDatabaseError,
    MessageState,
    NewerDatabaseError,
    open_database,
    utc_now,
)
from app.store import migrations as migrations_module
from app.store.migrations import MIGRATIONS, migrate, migration, schema_state
from app.store.settings import get_setting, set_setting

TABLES = {"settings", "models", "conversations", "messages", "images", "downloads"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir() if p.name != path.name}


def add_conversation(db: Database, title: str = "Chat") -> str:
    conversation_id = uuid.uuid4().hex
    now = utc_now()
    db.table("conversations").insert(
        {"id": conversation_id, "title": title, "created_at": now, "updated_at": now}
    )
    return conversation_id


def add_message(db: Database, conversation_id: str, content: str) -> str:
    message_id = uuid.uuid4().hex
    now = utc_now()
    db.table("messages").insert(
        {
            "id": message_id,
            "conversation_id": conversation_id,
            "role": "user",
            "content": content,
            "state": MessageState.COMPLETE,
            "created_at": now,
            "updated_at": now,
        }
    )
    return message_id


def make_database(path: Path, registry: list[migrations_module.Migration]) -> None:
    """A real database file migrated with exactly `registry`, closed (checkpointed) after."""
    db = Database(path)
    migrate(db, registry)
    db.close()


def fake_later_migration(db: Database) -> None:
    db.table("models").add_column("favourite", int)
    db.table("bookmarks").create({"id": str, "message_id": str}, pk="id")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hearth.db"


def test_fresh_database_has_every_table_and_wal(db_path: Path) -> None:
    db = open_database(db_path)
    try:
        assert db_path.is_file()
        assert set(db.table_names()) >= TABLES | {"_migrations", "messages_fts"}
        assert db.journal_mode == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        names = [row["name"] for row in db.table("_migrations").rows]
        assert names == [fn.__name__ for fn in MIGRATIONS]
        assert names[0] == "m001_initial"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.table("models").columns_dict["parameters"] is int
        assert db.table("images").columns_dict["guidance"] is float
    finally:
        db.close()


def test_empty_file_is_treated_as_new(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"")
    db = open_database(db_path)
    try:
        assert set(db.table_names()) >= TABLES
    finally:
        db.close()


def test_database_left_mid_wal_by_a_crash_opens_with_its_data(db_path: Path) -> None:
    open_database(db_path).close()
    crash = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "conn.execute(\"INSERT INTO settings VALUES ('crashed', 'true')\")\n"
        "conn.commit()\n"
        "os._exit(0)  # no checkpoint: the row lives only in the -wal file\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(db_path)], check=True)
    assert (db_path.parent / "hearth.db-wal").stat().st_size > 0
    db = open_database(db_path)
    try:
        assert get_setting(db, "crashed") is True
    finally:
        db.close()


def test_migrating_twice_is_a_no_op(db_path: Path) -> None:
    open_database(db_path).close()
    before = digest(db_path)
    db = open_database(db_path)
    try:
        changes_before = db.conn.total_changes
        assert migrate(db) == []
        assert db.conn.total_changes == changes_before
        assert db.table("_migrations").count == len(MIGRATIONS)
    finally:
        db.close()
    assert digest(db_path) == before


def test_old_database_gets_later_migrations_and_keeps_its_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path.parent.mkdir(parents=True)
    make_database(db_path, MIGRATIONS[:1])
    db = open_database(db_path)  # an "old" Hearth: migration 1 only
    conversation_id = add_conversation(db, "Kept")
    add_message(db, conversation_id, "an heirloom sentence")
    set_setting(db, "theme", "dark")
    db.close()

    registry = list(MIGRATIONS)
    monkeypatch.setattr(migrations_module, "MIGRATIONS", registry)
    later = migration(fake_later_migration)  # registers on the copy only
    assert registry[-1] is later
    assert MIGRATIONS[-1] is not later

    db = open_database(db_path)
    try:
        assert [row["name"] for row in db.table("_migrations").rows][-1] == "fake_later_migration"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(registry)
        assert "favourite" in db.table("models").columns_dict
        assert db.table("bookmarks").exists()
        assert db.table("conversations").get(conversation_id)["title"] == "Kept"
        assert get_setting(db, "theme") == "dark"
        assert [r["content"] for r in db.table("messages").search("heirloom")] == [
            "an heirloom sentence"
        ]
    finally:
        db.close()


def test_later_migration_can_rebuild_a_referenced_table_without_losing_rows(
    db_path: Path,
) -> None:
    db = open_database(db_path)
    conversation_id = add_conversation(db, "Old title")
    add_message(db, conversation_id, "still here after the rebuild")
    db.close()

    def m002_rename_title(db: Database) -> None:
        # transform() drops and recreates `conversations`: with foreign keys on, that
        # would cascade-delete every message.
        db.table("conversations").transform(rename={"title": "name"})

    db = open_database(db_path)
    try:
        assert migrate(db, [*MIGRATIONS, m002_rename_title]) == ["m002_rename_title"]
        assert db.table("conversations").get(conversation_id)["name"] == "Old title"
        assert db.table("messages").count == 1
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        db.close()


def test_failed_migration_rolls_back_and_is_not_recorded(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    make_database(db_path, list(MIGRATIONS))

    def m999_breaks_halfway(db: Database) -> None:
        db.table("half_done").create({"id": int}, pk="id")
        raise RuntimeError("boom")

    db = Database(db_path)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            migrate(db, [*MIGRATIONS, m999_breaks_halfway])
        assert not db.table("half_done").exists()
        assert schema_state(db.conn).applied == tuple(fn.__name__ for fn in MIGRATIONS)
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        db.close()


def test_registering_a_duplicate_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations_module, "MIGRATIONS", list(MIGRATIONS))

    def m001_initial(db: Database) -> None:
        pass

    with pytest.raises(ValueError, match="m001_initial"):
        migration(m001_initial)


def test_random_bytes_raise_corrupt_and_file_is_unchanged(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(os.urandom(8192))
    before = digest(db_path)
    with pytest.raises(CorruptDatabaseError) as caught:
        open_database(db_path)
    assert str(db_path) in str(caught.value)
    assert "damaged" in caught.value.cause
    assert "untouched" in caught.value.remedy
    assert isinstance(caught.value, HearthError)
    assert digest(db_path) == before
    assert sidecars(db_path) == set()  # no -wal / -shm / -journal left behind


def test_truncated_database_raises_corrupt_and_file_is_unchanged(db_path: Path) -> None:
    db = open_database(db_path)
    conversation_id = add_conversation(db)
    for i in range(400):
        add_message(db, conversation_id, f"message number {i} " + "padding " * 40)
    db.close()
    data = db_path.read_bytes()
    assert len(data) > 64 * 1024
    db_path.write_bytes(data[: len(data) // 2])
    before = digest(db_path)
    with pytest.raises(CorruptDatabaseError):
        open_database(db_path)
    assert digest(db_path) == before


def test_damaged_pages_raise_corrupt_before_anything_is_written(db_path: Path) -> None:
    # Page 1 is intact, so SQLite would happily open this and switch it to WAL (rewriting
    # the header); only quick_check on a read-only connection stops that.
    db = open_database(db_path)
    conversation_id = add_conversation(db)
    for i in range(400):
        add_message(db, conversation_id, f"message number {i} " + "padding " * 40)
    db.execute("PRAGMA journal_mode = delete")  # fold the WAL into the file
    db.close()
    data = bytearray(db_path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + 3 * page] = os.urandom(3 * page)
    db_path.write_bytes(bytes(data))
    before = digest(db_path)
    with pytest.raises(CorruptDatabaseError):
        open_database(db_path)
    assert digest(db_path) == before
    assert sidecars(db_path) == set()


def test_unknown_future_migration_raises_newer_and_file_is_unchanged(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    make_database(db_path, [*MIGRATIONS, fake_later_migration])  # by a "newer Hearth"
    before = digest(db_path)
    with pytest.raises(NewerDatabaseError) as caught:
        open_database(db_path)
    known = len(MIGRATIONS)
    assert f"schema {known + 1}, this version knows {known}" in caught.value.cause
    assert "HEARTH_HOME" in caught.value.remedy
    assert digest(db_path) == before
    assert sidecars(db_path) == set()


def test_larger_user_version_raises_newer_and_file_is_unchanged(db_path: Path) -> None:
    open_database(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.execute("PRAGMA journal_mode = delete")  # fold the WAL into the file
    conn.close()
    before = digest(db_path)
    with pytest.raises(NewerDatabaseError, match=f"schema {len(MIGRATIONS) + 5}"):
        open_database(db_path)
    assert digest(db_path) == before


def test_a_refused_wal_database_gets_no_new_wal_or_shm_files(db_path: Path) -> None:
    """As a newer Hearth leaves it: WAL mode, closed cleanly, a schema this one lacks."""
    open_database(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    assert sidecars(db_path) == set()
    assert db_path.read_bytes()[18:20] == b"\x02\x02"  # the header says WAL mode
    before = digest(db_path)
    with pytest.raises(NewerDatabaseError):
        open_database(db_path)
    assert digest(db_path) == before
    assert sidecars(db_path) == set()


def test_migrate_itself_refuses_a_newer_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    make_database(db_path, [*MIGRATIONS, fake_later_migration])
    db = Database(db_path)
    try:
        with pytest.raises(NewerDatabaseError):
            migrate(db)
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    finally:
        db.close()


def test_settings_round_trip(db_path: Path) -> None:
    db = open_database(db_path)
    try:
        assert get_setting(db, "missing") is None
        assert get_setting(db, "missing", 42) == 42
        value = {"temperature": 0.7, "stop": ["</s>"], "name": "Ünïcode"}
        set_setting(db, "chat.defaults", value)
        set_setting(db, "gpu_layers", 12)
        set_setting(db, "gpu_layers", 20)  # replaces
        assert db.table("settings").count == 2
    finally:
        db.close()
    db = open_database(db_path)
    try:
        assert get_setting(db, "chat.defaults") == value
        assert get_setting(db, "gpu_layers") == 20
    finally:
        db.close()


def test_full_text_search_finds_a_message_by_a_word(db_path: Path) -> None:
    db = open_database(db_path)
    try:
        conversation_id = add_conversation(db)
        wanted = add_message(db, conversation_id, "How do I bake sourdough bread?")
        add_message(db, conversation_id, "Tell me about volcanoes.")
        assert [row["id"] for row in db.table("messages").search("sourdough")] == [wanted]
        db.table("messages").update(wanted, {"content": "How do I bake rye bread?"})
        assert list(db.table("messages").search("sourdough")) == []
        assert [row["id"] for row in db.table("messages").search("rye")] == [wanted]
    finally:
        db.close()


def test_deleting_a_conversation_deletes_its_messages(db_path: Path) -> None:
    db = open_database(db_path)
    try:
        doomed = add_conversation(db, "Doomed")
        kept = add_conversation(db, "Kept")
        add_message(db, doomed, "first")
        add_message(db, doomed, "second")
        survivor = add_message(db, kept, "survivor")
        db.table("conversations").delete(doomed)
        remaining = [row["id"] for row in db.table("messages").rows]
        assert remaining == [survivor]
        assert list(db.table("messages").search("first")) == []
    finally:
        db.close()


def test_message_state_values() -> None:
    assert [s.value for s in MessageState] == [
        "streaming",
        "complete",
        "stopped",
        "interrupted",
        "failed",
    ]
    assert MessageState("stopped") is MessageState.STOPPED


def test_utc_now_is_sortable_iso_utc() -> None:
    stamp = utc_now()
    assert stamp.endswith("+00:00")
    assert len(stamp) == len("2024-01-01T00:00:00.000000+00:00")


def test_library_model_round_trips_through_the_file_with_its_enums(db_path: Path) -> None:
    from dataclasses import replace

    from app.store.library import (
        LibraryModel,
        ModelKind,
        ModelSource,
        delete_model,
        find_model,
        find_model_at,
        list_models,
        mark_model_used,
        newest_model,
        upsert_model,
    )

    painter = LibraryModel(
        name="painter",
        kind=ModelKind.IMAGE,
        path=db_path.parent / "models" / "painter",
        source=ModelSource.LINK,
        size_bytes=1234,
        sha256="ab" * 32,
        architecture="sd15",
        quantization="float16",
        extra={"files": [{"path": "unet/w.safetensors", "size": 1234, "sha256": "cd" * 32}]},
    )
    chatty = replace(painter, name="chatty", kind=ModelKind.CHAT, path=db_path.parent / "c.gguf")
    db = open_database(db_path)
    try:
        stored = upsert_model(db, painter)
        upsert_model(db, chatty)
        mark_model_used(db, "painter")
    finally:
        db.close()

    db = open_database(db_path)  # a fresh connection: only what the file holds
    try:
        back = find_model(db, "painter")
        assert back is not None and back.kind is ModelKind.IMAGE
        assert back.source is ModelSource.LINK and back.path == painter.path
        assert db.execute("SELECT kind, source FROM models WHERE name = 'painter'").fetchone() == (
            "image",
            "link",
        )
        assert back.files[0].sha256 == "cd" * 32 and back.last_used_at is not None
        assert replace(back, id=None, added_at="", last_used_at=None) == painter
        assert find_model_at(db, painter.path) == back
        assert [m.name for m in list_models(db)] == ["chatty", "painter"]
        assert [m.name for m in list_models(db, ModelKind.CHAT)] == ["chatty"]
        assert newest_model(db, ModelKind.IMAGE) == back

        # Registering the same name again updates the entry and keeps when it was added.
        again = upsert_model(db, replace(painter, size_bytes=99))
        assert (again.id, again.added_at, again.size_bytes) == (stored.id, stored.added_at, 99)
        assert again.last_used_at == back.last_used_at
        assert again.to_dict()["kind"] == "image" and again.to_dict()["path"] == str(painter.path)

        delete_model(db, "painter")
        assert find_model(db, "painter") is None and newest_model(db, ModelKind.IMAGE) is None
    finally:
        db.close()
