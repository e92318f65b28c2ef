"""Remove a model: refuse while a process has it loaded, delete only the files Hearth owns."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
import sqlite_utils

from app.errors import HearthError
from app.models.gguf import ModelNotFoundError, split_parts
from app.models.library import find_library_model
from app.paths import HearthPaths
from app.store.library import LibraryModel, ModelKind, ModelSource, delete_model


class ModelInUseError(HearthError):
    default_remedy = (
        "Unload it first (close the chat using it, or quit Hearth), then remove it again."
    )


@dataclass(frozen=True)
class ModelUser:
    """A process that has a model's file open or memory-mapped."""

    pid: int
    name: str
    is_chat_worker: bool

    def describe(self) -> str:
        what = "a Hearth chat worker" if self.is_chat_worker else self.name
        return f"{what} (pid {self.pid})"


@dataclass(frozen=True)
class RemovedModel:
    name: str
    source: ModelSource
    deleted: tuple[Path, ...]  # files and folders removed from disk
    kept: tuple[Path, ...]  # files left where they are (linked models, files outside the library)
    freed_bytes: int


def model_paths(model: LibraryModel) -> list[Path]:
    """The files (chat: every part) or the folder (image) a library model is made of."""
    path = model.path
    if model.kind is ModelKind.IMAGE:
        return [path]
    try:
        return split_parts(path)
    except ModelNotFoundError:
        return [path]  # a part is missing: what is left is still the model's


def processes_using(targets: Iterable[Path]) -> list[ModelUser]:
    """Processes (other than this one) with any of `targets` open or memory-mapped.

    llama.cpp memory-maps the model, so a loaded chat worker shows the file in its maps
    even after it closed the descriptor. A folder target matches any file inside it.
    Processes of other users are skipped: the OS would not let us look at them anyway.
    """
    files: set[str] = set()
    folders: list[str] = []
    for t in targets:
        real = os.path.realpath(t)
        if os.path.isdir(real):
            folders.append(real.rstrip(os.sep) + os.sep)
        else:
            files.add(real)

    def hit(path: str) -> bool:
        return path in files or any(path.startswith(f) for f in folders)

    me = os.getpid()
    try:
        user = psutil.Process(me).username()
    except psutil.Error:
        user = None
    users = []
    for proc in psutil.process_iter(["pid", "name", "username"]):
        info = proc.info
        if proc.pid == me or (user is not None and info.get("username") != user):
            continue
        try:
            found = any(hit(f.path) for f in proc.open_files())
            if not found:
                found = any(hit(m.path) for m in proc.memory_maps(grouped=True))
            if not found:
                continue
            cmdline = " ".join(proc.cmdline())
        except (psutil.Error, OSError):
            continue  # gone, a zombie, or not ours to inspect
        worker = "multiprocessing" in cmdline and "spawn_main" in cmdline
        users.append(ModelUser(proc.pid, str(info.get("name") or "?"), worker))
    return users


def remove_model(db: sqlite_utils.Database, paths: HearthPaths, name: str) -> RemovedModel:
    """Forget `name` and delete its files when they are Hearth's own copies.

    A model imported with `--link` (or any file outside the models folder) stays on disk:
    only its library entry goes. Refuses with ModelInUseError while a process has it loaded.
    """
    model = find_library_model(db, name)
    targets = model_paths(model)
    users = processes_using(t for t in targets if t.exists())
    if users:
        who = ", ".join(u.describe() for u in users)
        raise ModelInUseError(f"{model.name} is loaded by {who}.")

    models_root = paths.models.resolve()
    owned = model.source is not ModelSource.LINK and all(
        _is_inside(t, models_root) for t in targets
    )
    deleted: list[Path] = []
    kept: list[Path] = []
    freed = 0
    for t in targets:
        if not owned:
            kept.append(t)
            continue
        if t.is_dir():
            freed += sum(p.stat().st_size for p in t.rglob("*") if p.is_file())
            shutil.rmtree(t)
            deleted.append(t)
        elif t.exists():
            freed += t.stat().st_size
            t.unlink()
            deleted.append(t)
    if owned:
        for t in targets:
            _prune_empty_parents(t.parent, models_root)
    delete_model(db, model.name)
    return RemovedModel(model.name, model.source, tuple(deleted), tuple(kept), freed)


def _is_inside(path: Path, root: Path) -> bool:
    try:
        resolved = path.resolve()
        resolved.relative_to(root)
    except (ValueError, OSError):
        return False
    return resolved != root


def _prune_empty_parents(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents while they are empty, stopping at the models root."""
    current = folder
    while _is_inside(current, root):
        try:
            current.rmdir()  # only succeeds when empty
        except OSError:
            return
        current = current.parent
