"""The model library: which models are on this machine, where, and what they are."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import sqlite_utils

from app.hardware.facts import ChatModelFacts, ImageModelFacts
from app.models.gguf_info import ModelNotFoundError
from app.store import utc_now

#: Names users may type instead of the starter model's full name.
STARTER_ALIASES = ("starter", "default")


def model_name_for(filename: str) -> str:
    """A short library name from a file name: `Qwen2.5-1.5B-Q4_K_M.gguf` → `qwen2.5-1.5b-q4_k_m`."""
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", Path(filename).stem)
    return stem.lower()


def register_chat_model(
    db: sqlite_utils.Database,
    name: str,
    path: Path,
    facts: ChatModelFacts,
    *,
    source: str,
    sha256: str | None,
    repo: str | None = None,
    revision: str | None = None,
    license: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add (or update) a GGUF chat model in the library and return its row."""
    existing = find_model(db, name)
    row = {
        "name": name,
        "kind": "chat",
        "path": str(path),
        "source": source,
        "repo": repo,
        "revision": revision,
        "filename": path.name,
        "size_bytes": facts.file_size,
        "sha256": sha256,
        "license": license,
        "architecture": facts.arch,
        "quantization": facts.quantization,
        "parameters": facts.parameters,
        "context_length": facts.context_length,
        "added_at": existing["added_at"] if existing else utc_now(),
        "extra": json.dumps(extra or {}),
    }
    table = db.table("models")
    if existing:
        table.update(existing["id"], row)
    else:
        table.insert(row)
    found = find_model(db, name)
    assert found is not None
    return found


def register_image_model(
    db: sqlite_utils.Database,
    name: str,
    folder: Path,
    facts: ImageModelFacts,
    *,
    source: str,
    sha256: str | None,
    size_bytes: int | None = None,
    repo: str | None = None,
    revision: str | None = None,
    license: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add (or update) a diffusers image model folder in the library and return its row.

    `architecture` records the pipeline family (sd15, sdxl, ...) and `quantization` the
    stored dtype of its weights; `size_bytes` defaults to the weights' size.
    """
    existing = find_model(db, name)
    row = {
        "name": name,
        "kind": "image",
        "path": str(folder),
        "source": source,
        "repo": repo,
        "revision": revision,
        "filename": folder.name,
        "size_bytes": size_bytes if size_bytes is not None else facts.total_bytes,
        "sha256": sha256,
        "license": license,
        "architecture": facts.family,
        "quantization": facts.stored_dtype,
        "parameters": None,
        "context_length": None,
        "added_at": existing["added_at"] if existing else utc_now(),
        "extra": json.dumps(extra or {}),
    }
    table = db.table("models")
    if existing:
        table.update(existing["id"], row)
    else:
        table.insert(row)
    found = find_model(db, name)
    assert found is not None
    return found


def find_model(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    rows = list(db["models"].rows_where("name = ?", [name], limit=1))
    return dict(rows[0]) if rows else None


def remove_model_row(db: sqlite_utils.Database, name: str) -> None:
    """Forget a model (its files are the caller's business)."""
    db.execute("DELETE FROM models WHERE name = ?", [name])
    db.conn.commit()


def model_extra(row: dict[str, Any]) -> dict[str, Any]:
    """The decoded `extra` JSON of a library row ({} when absent or unreadable)."""
    try:
        value = json.loads(row.get("extra") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def list_models(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [dict(r) for r in db["models"].rows_where(order_by="name")]


def resolve_model_path(db: sqlite_utils.Database, name_or_path: str) -> tuple[Path, str]:
    """Turn what a user typed (library name, alias, or a path) into (file path, display name)."""
    from app.models.starter import STARTER

    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate, candidate.name
    name = STARTER.name if name_or_path in STARTER_ALIASES else name_or_path
    row = find_model(db, name)
    if row is None:
        if name_or_path.endswith(".gguf") or "/" in name_or_path:
            raise ModelNotFoundError(f"There is no file at {candidate}.")
        hint = " Install it with `hearth models starter`." if name == STARTER.name else ""
        raise ModelNotFoundError(
            f"No model named '{name_or_path}' is in the library.{hint}",
            "Run `hearth models list` to see the names, or give a path to a .gguf file.",
        )
    path = Path(row["path"])
    if not path.exists():
        raise ModelNotFoundError(
            f"The library lists '{name}' at {path}, but the file is gone.",
            "Reconnect the drive it was on, or import or download the model again.",
        )
    return path, name
