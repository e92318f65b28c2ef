"""Every location Hearth uses on disk; HEARTH_HOME puts all of them under one folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, overload

import platformdirs

APP_NAME = "Hearth"

Folder = Literal["data", "models", "cache", "logs", "config"]


class _Below:
    """A path at a fixed name inside one of HearthPaths' folders, read like an attribute."""

    def __init__(self, folder: Folder, name: str) -> None:
        self.folder = folder
        self.name = name

    @overload
    def __get__(self, paths: None, owner: type[HearthPaths]) -> _Below: ...

    @overload
    def __get__(self, paths: HearthPaths, owner: type[HearthPaths]) -> Path: ...

    def __get__(self, paths: HearthPaths | None, owner: type[HearthPaths]) -> Path | _Below:
        if paths is None:
            return self
        folder: Path = getattr(paths, self.folder)
        return folder / self.name


@dataclass(frozen=True)
class HearthPaths:
    """The folders Hearth reads and writes. Create them with `ensure()`."""

    data: Path  # the database and generated images
    models: Path  # model files users can see and copy
    cache: Path  # partial downloads, scratch space
    logs: Path
    config: Path  # tokens and settings that are not in the database

    # Files and folders at fixed names inside the five above.
    #: The SQLite database.
    database = _Below("data", "hearth.db")
    #: Generated pictures (the gallery).
    images = _Below("data", "images")
    #: Hub downloads in progress: one folder per job, moved into `models` when verified.
    download_staging = _Below("cache", "downloads")
    #: The starter model's downloaded parts, kept so a cut download resumes.
    starter_parts = _Below("cache", "starter-parts")
    #: The last llama.cpp / torch build checks, reused while the builds are unchanged.
    build_check_cache = _Below("cache", "build-probe.json")
    #: The hub token when there is no usable keyring (mode 0600).
    token_file = _Below("config", "hub-token")
    #: Named secrets (the API key, remote providers' keys) when there is no usable keyring:
    #: one JSON object, mode 0600.
    secrets_file = _Below("config", "secrets.json")
    #: The models folder chosen in Settings (one line; HEARTH_MODELS wins over it).
    models_folder_file = _Below("config", "models-folder")

    def model_folder(self, publisher: str, repo: str) -> Path:
        """Where a model from `publisher/repo` lives (callers pass names safe for a path)."""
        return self.models / publisher / repo

    def log_file(self, process: str) -> Path:
        """The rotating log of `process` ("hearth", "chat-worker", ...)."""
        return self.logs / f"{process}.log"

    def crash_file(self, process: str) -> Path:
        """Where a native crash of `process` leaves its faulthandler trace."""
        return self.logs / f"{process}-crash.log"

    def ensure(self) -> HearthPaths:
        for folder in (self.data, self.models, self.cache, self.logs, self.config):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def hearth_paths(environ: os._Environ[str] | dict[str, str] | None = None) -> HearthPaths:
    """Resolve Hearth's folders.

    `HEARTH_HOME=/media/usb/hearth` puts everything under one folder (portable mode,
    tests); `HEARTH_MODELS=/big/disk/models` moves only the model files, and so does the
    models folder chosen in Settings (`save_models_folder`) when HEARTH_MODELS is unset.

    >>> hearth_paths({"HEARTH_HOME": "/tmp/h"}).models
    PosixPath('/tmp/h/models')
    """
    env = os.environ if environ is None else environ
    paths = _default_paths(env)
    models_override = env.get("HEARTH_MODELS")
    if models_override:
        paths = replace(paths, models=Path(models_override).expanduser().resolve())
    else:
        chosen = chosen_models_folder(paths)
        if chosen is not None:
            paths = replace(paths, models=chosen)
    return paths


def default_models_folder(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Where models go when neither HEARTH_MODELS nor Settings names a folder."""
    return _default_paths(os.environ if environ is None else environ).models


def _default_paths(env: os._Environ[str] | dict[str, str]) -> HearthPaths:
    home = env.get("HEARTH_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        paths = HearthPaths(
            data=root / "data",
            models=root / "models",
            cache=root / "cache",
            logs=root / "logs",
            config=root / "config",
        )
    else:
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        data = Path(dirs.user_data_dir)
        paths = HearthPaths(
            data=data,
            models=data / "models",
            cache=Path(dirs.user_cache_dir),
            logs=Path(dirs.user_log_dir),
            config=Path(dirs.user_config_dir),
        )
    return paths


def chosen_models_folder(paths: HearthPaths) -> Path | None:
    """The models folder picked in Settings, or None for the default.

    Kept in a one-line file in the config folder rather than the database: every location
    must be known before anything (the database included) is opened.
    """
    try:
        text = paths.models_folder_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text).expanduser().resolve() if text else None


def save_models_folder(folder: Path | None, paths: HearthPaths | None = None) -> None:
    """Make `folder` where new downloads, imports and the starter model go (None: the default).

    Models already in the library stay where they are: the library records each one's path.
    """
    paths = paths or hearth_paths()
    target = paths.models_folder_file
    if folder is None:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(str(Path(folder).expanduser().resolve()) + "\n", encoding="utf-8")
    os.replace(tmp, target)
