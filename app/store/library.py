"""The library's table: each model on this machine as a typed `LibraryModel` row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from app.store import utc_now

TABLE = "models"


class ModelKind(StrEnum):
    """What a library model does; stored as text in `models.kind`.

    It lives with the table (the lowest room that stores it); `app.models.kinds` holds
    what each kind means (how to inspect and plan it).
    """

    CHAT = "chat"  # a GGUF file (or split set) run by llama.cpp
    IMAGE = "image"  # a diffusers pipeline folder
    EMBEDDING = "embedding"  # a GGUF file llama.cpp turns text into vectors with

    @property
    def is_gguf(self) -> bool:
        """Whether the model is a GGUF file (or split set), not a folder."""
        return self is not ModelKind.IMAGE


class ModelSource(StrEnum):
    """Where a library model came from; stored as text in `models.source`."""

    STARTER = "starter"  # assembled from the starter assistant's package parts
    HUB = "hub"  # downloaded from the Hugging Face Hub (or a mirror)
    IMPORT = "import"  # copied in from a file, folder or export
    LINK = "link"  # recorded where it is: Hearth never moves or deletes its files


@dataclass(frozen=True)
class RecordedFile:
    """One file of a model as the library recorded it (`extra.files`)."""

    path: str  # inside the model's folder (imports) or absolute (downloads)
    size: int
    sha256: str | None


@dataclass(frozen=True)
class LibraryModel:
    """One row of the `models` table.

    `extra` is the free-form JSON column (files with their sha256, quant, where an import
    came from, ...); the properties below read the keys Hearth itself writes.
    """

    name: str
    kind: ModelKind
    path: Path
    source: ModelSource
    repo: str | None = None
    revision: str | None = None
    filename: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    license: str | None = None
    architecture: str | None = None  # chat: GGUF architecture; image: pipeline family
    quantization: str | None = None  # chat: quant type; image: stored dtype
    parameters: int | None = None
    context_length: int | None = None
    added_at: str = ""  # set by `upsert_model` on first insert
    last_used_at: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None  # None until stored

    @property
    def files(self) -> tuple[RecordedFile, ...]:
        """The files recorded in `extra.files` (empty when none were recorded)."""
        out = []
        for f in self.extra.get("files") or []:
            if isinstance(f, dict) and f.get("path"):
                sha = f.get("sha256")
                out.append(
                    RecordedFile(
                        str(f["path"]),
                        int(f.get("size") or 0),
                        sha if isinstance(sha, str) else None,
                    )
                )
        return tuple(out)

    @property
    def sha256_verified(self) -> bool | None:
        """Downloads: True when every file matched the sha256 the Hub published."""
        value = self.extra.get("sha256_verified")
        return value if isinstance(value, bool) else None

    @property
    def imported_from(self) -> str | None:
        """Imports: the path the model was imported (or linked) from."""
        value = self.extra.get("imported_from")
        return str(value) if value else None

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data, columns in table order, `extra` decoded.

        This is what `hearth models list/show --json` prints for a model.
        """
        out: dict[str, Any] = {"id": self.id}
        for f in fields(self):
            if f.name == "id":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, StrEnum):
                value = value.value
            elif f.name == "extra":
                value = dict(value)
            out[f.name] = value
        return out


# --- reading ------------------------------------------------------------------------------


def find_model(db: Database, name: str) -> LibraryModel | None:
    """The library model called `name`, or None."""
    return _first(db, "name = ?", [name])


def find_model_at(db: Database, path: Path) -> LibraryModel | None:
    """The library model recorded at exactly `path`, or None."""
    return _first(db, "path = ?", [str(path)])


def list_models(db: Database, kind: ModelKind | None = None) -> list[LibraryModel]:
    """Every library model (or those of one kind), by name."""
    if kind is None:
        rows = db[TABLE].rows_where(order_by="name")
    else:
        rows = db[TABLE].rows_where("kind = ?", [kind.value], order_by="name")
    return [_from_row(r) for r in rows]


def newest_model(db: Database, kind: ModelKind) -> LibraryModel | None:
    """The model of `kind` added to the library most recently, or None."""
    rows = list(db[TABLE].rows_where("kind = ?", [kind.value], order_by="added_at desc", limit=1))
    return _from_row(rows[0]) if rows else None


# --- writing ------------------------------------------------------------------------------


def upsert_model(db: Database, model: LibraryModel) -> LibraryModel:
    """Add `model`, or replace the row of the same name; return it as stored.

    Replacing keeps the row's id, `added_at` and `last_used_at`: a model downloaded or
    imported again is the same library entry.
    """
    existing = find_model(db, model.name)
    row = model.to_dict()
    del row["id"], row["last_used_at"]
    row["extra"] = json.dumps(row["extra"])
    row["added_at"] = existing.added_at if existing else (model.added_at or utc_now())
    table = db.table(TABLE)
    if existing is not None and existing.id is not None:
        table.update(existing.id, row)
    else:
        table.insert(row)
    stored = find_model(db, model.name)
    assert stored is not None
    return stored


def mark_model_used(db: Database, name: str) -> None:
    """Record that `name` was just loaded (`last_used_at`); nothing if it is not listed."""
    db.execute(f"UPDATE [{TABLE}] SET last_used_at = ? WHERE name = ?", [utc_now(), name])
    db.conn.commit()


def delete_model(db: Database, name: str) -> None:
    """Forget a model (its files are the caller's business)."""
    db.execute(f"DELETE FROM [{TABLE}] WHERE name = ?", [name])
    db.conn.commit()


# --- rows ---------------------------------------------------------------------------------


def _first(db: Database, where: str, args: list[Any]) -> LibraryModel | None:
    rows = list(db[TABLE].rows_where(where, args, limit=1))
    return _from_row(rows[0]) if rows else None


def _from_row(row: Mapping[str, Any]) -> LibraryModel:
    return LibraryModel(
        id=row["id"],
        name=row["name"],
        kind=ModelKind(row["kind"]),
        path=Path(row["path"]),
        source=ModelSource(row["source"]),
        repo=row["repo"],
        revision=row["revision"],
        filename=row["filename"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        license=row["license"],
        architecture=row["architecture"],
        quantization=row["quantization"],
        parameters=row["parameters"],
        context_length=row["context_length"],
        added_at=row["added_at"] or "",
        last_used_at=row["last_used_at"],
        extra=_decode_extra(row["extra"]),
    )


def _decode_extra(text: str | None) -> dict[str, Any]:
    """The `extra` JSON ({} when absent or unreadable: a damaged column must not hide a model)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = [
    "LibraryModel",
    "ModelKind",
    "ModelSource",
    "RecordedFile",
    "delete_model",
    "find_model",
    "find_model_at",
    "list_models",
    "mark_model_used",
    "newest_model",
    "upsert_model",
]
