"""The model library: naming models, registering an inspected file, resolving what users type."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from app.models.gguf import ModelNotFoundError
from app.planner.facts import ChatModelFacts, ImageModelFacts
from app.store.library import LibraryModel, ModelKind, ModelSource, find_model, upsert_model

#: The starter assistant's library name (app.models.starter installs it under this name).
STARTER_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
#: Names users may type instead of the starter model's full name.
STARTER_ALIASES = ("starter", "default")


def model_name_for(filename: str) -> str:
    """A short library name from a file name: `Qwen2.5-1.5B-Q4_K_M.gguf` → `qwen2.5-1.5b-q4_k_m`."""
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", Path(filename).stem)
    return stem.lower()


def library_name(name: str) -> str:
    """`name` with the starter's aliases (`starter`, `default`) turned into its real name."""
    return STARTER_NAME if name in STARTER_ALIASES else name


def register_model(
    db: Database,
    name: str,
    path: Path,
    facts: ChatModelFacts | ImageModelFacts,
    *,
    source: ModelSource,
    sha256: str | None,
    size_bytes: int | None = None,
    repo: str | None = None,
    revision: str | None = None,
    license: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> LibraryModel:
    """Add (or update) an inspected model in the library and return it as stored.

    The facts say the kind: a GGUF chat or embedding model (`path` its first file; an
    embedding model is one whose facts name a pooling) records its architecture,
    quantization, parameters and context; a diffusers image model (`path`
    its folder) records its pipeline family as architecture and the stored dtype of its
    weights as quantization. `size_bytes` defaults to the model's size on disk.
    """
    columns: dict[str, Any]
    if isinstance(facts, ChatModelFacts):
        columns = {
            "kind": ModelKind.EMBEDDING if facts.is_embedding else ModelKind.CHAT,
            "size_bytes": size_bytes if size_bytes is not None else facts.file_size,
            "architecture": facts.arch,
            "quantization": facts.quantization,
            "parameters": facts.parameters,
            "context_length": facts.context_length,
        }
    else:
        columns = {
            "kind": ModelKind.IMAGE,
            "size_bytes": size_bytes if size_bytes is not None else facts.total_bytes,
            "architecture": facts.family,
            "quantization": facts.stored_dtype,
        }
    model = LibraryModel(
        name=name,
        path=path,
        source=ModelSource(source),
        repo=repo,
        revision=revision,
        filename=path.name,
        sha256=sha256,
        license=license,
        extra=dict(extra or {}),
        **columns,
    )
    return upsert_model(db, model)


def find_library_model(db: Database, name: str) -> LibraryModel:
    """The library model `name` (or the starter, for its aliases), or a ModelNotFoundError."""
    model = find_model(db, library_name(name))
    if model is None:
        raise ModelNotFoundError(
            f"No model named '{name}' is in the library.",
            "Run `hearth models list` to see the names.",
        )
    return model


def resolve_model_path(db: Database, name_or_path: str) -> tuple[Path, str]:
    """Turn what a user typed (library name, alias, or a path) into (file path, display name)."""
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate, candidate.name
    name = library_name(name_or_path)
    model = find_model(db, name)
    if model is None:
        if name_or_path.endswith(".gguf") or "/" in name_or_path:
            raise ModelNotFoundError(f"There is no file at {candidate}.")
        hint = " Install it with `hearth models starter`." if name == STARTER_NAME else ""
        raise ModelNotFoundError(
            f"No model named '{name_or_path}' is in the library.{hint}",
            "Run `hearth models list` to see the names, or give a path to a .gguf file.",
        )
    if not model.path.exists():
        raise ModelNotFoundError(
            f"The library lists '{name}' at {model.path}, but the file is gone.",
            "Reconnect the drive it was on, or import or download the model again.",
        )
    return model.path, name
