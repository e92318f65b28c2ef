"""The settings the window edits, read from and written to the store (off the UI thread).

They are the same settings the CLI reads: `hub.offline` and `hub.endpoint` (through
`app.hub.config.hub_config`, where HF_HUB_OFFLINE / HF_ENDPOINT win), the load defaults
(`app.sessions.preferences`: backend, GPU layers, threads, context, which `hearth chat`,
`hearth plan` and `hearth serve` use when no flag is given), the models folder
(`app.paths`, where HEARTH_MODELS wins), the Hub token (the keyring, through
`app.hub.credentials`; HF_TOKEN wins) and `gui.theme`.
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import HearthError
from app.gui.theme import SETTING_THEME, Theme
from app.hub.config import SETTING_ENDPOINT, SETTING_OFFLINE, hub_config, save_hub_settings
from app.paths import (
    chosen_models_folder,
    default_models_folder,
    hearth_paths,
    save_models_folder,
)
from app.sessions.preferences import (
    LoadPreferences,
    check_preferences,
    read_load_preferences,
    save_load_preferences,
)
from app.store import open_default_database
from app.store.settings import get_setting, set_setting

#: What the models-folder setting changes, and what it does not.
MODELS_FOLDER_NOTE = (
    "New downloads, imports and the starter model go here; models already in the library "
    "stay where they are (nothing is moved)."
)


@dataclass(frozen=True)
class TokenState:
    """The saved Hub token, never the token itself."""

    masked: str | None  # "hf_…wxyz", or None when no token is saved
    from_env: bool = False  # HF_TOKEN is set and wins over the saved one


@dataclass(frozen=True)
class WindowSettings:
    theme: Theme
    offline: bool
    endpoint: str  # "" means the public Hub
    #: Environment variables that override a setting here, by setting key, with their value.
    overridden: tuple[tuple[str, str], ...] = ()
    load: LoadPreferences = field(default_factory=LoadPreferences)
    models_folder: str = ""  # "" means the default one below
    models_default: str = ""  # where models go when nothing is chosen
    models_in_use: str = ""  # where new models go now (HEARTH_MODELS, the choice, the default)
    token: TokenState = field(default_factory=lambda: TokenState(None))
    #: Offline as every Hub call sees it (the setting, or HF_HUB_OFFLINE), with why.
    offline_now: bool = False
    offline_reason: str = ""


@dataclass(frozen=True)
class TokenChange:
    """What Save does to the Hub token: keep it, replace it, or forget it."""

    new: str | None = None  # a token to save (replacing the old one)
    forget: bool = False


def read_settings() -> WindowSettings:
    from app.hub.credentials import load_token, mask_token

    with closing(open_default_database()) as db:
        try:
            theme = Theme(str(get_setting(db, SETTING_THEME, Theme.SYSTEM.value)))
        except ValueError:
            theme = Theme.SYSTEM
        offline = bool(get_setting(db, SETTING_OFFLINE, False))
        endpoint = str(get_setting(db, SETTING_ENDPOINT, "") or "")
        load = read_load_preferences(db)
        config = hub_config(db)
    overridden = tuple(
        (key, f"{var}={os.environ[var]}")
        for key, var in (
            (SETTING_OFFLINE, "HF_HUB_OFFLINE"),
            (SETTING_ENDPOINT, "HF_ENDPOINT"),
            ("paths.models", "HEARTH_MODELS"),
            ("hub.token", "HF_TOKEN"),
        )
        if os.environ.get(var)
    )
    paths = hearth_paths()
    chosen = chosen_models_folder(paths)
    saved = load_token()
    return WindowSettings(
        theme=theme,
        offline=offline,
        endpoint=endpoint,
        overridden=overridden,
        load=load,
        models_folder=str(chosen) if chosen else "",
        models_default=str(default_models_folder()),
        models_in_use=str(paths.models),
        token=TokenState(mask_token(saved) if saved else None, bool(os.environ.get("HF_TOKEN"))),
        offline_now=config.offline,
        offline_reason=config.offline_reason,
    )


def save_settings(settings: WindowSettings, token: TokenChange | None = None) -> WindowSettings:
    """Store everything; every value is checked first, so a bad one saves nothing."""
    from app.hub.credentials import delete_token, save_token

    folder = _usable_models_folder(settings.models_folder)
    check_preferences(settings.load)
    if token is not None and token.forget:
        delete_token()
    elif token is not None and token.new:
        save_token(token.new)  # a malformed token is refused here, before anything is saved
    with closing(open_default_database()) as db:
        save_load_preferences(db, settings.load)
        save_hub_settings(db, endpoint=settings.endpoint, offline=settings.offline)
        with db.conn:
            set_setting(db, SETTING_THEME, settings.theme.value)
    save_models_folder(folder)
    return read_settings()


class ModelsFolderError(HearthError):
    default_remedy = "Pick a folder you can write to (or leave the field empty for the default)."


def _usable_models_folder(text: str) -> Path | None:
    """The folder to save (None: the default), made if needed; a ModelsFolderError if unusable."""
    if not text.strip():
        return None
    folder = Path(text.strip()).expanduser()
    if not folder.is_absolute():
        raise ModelsFolderError(f"The models folder must be a full path, not '{text.strip()}'.")
    if folder.resolve() == default_models_folder().resolve():
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelsFolderError(
            f"Hearth cannot use {folder} for models ({exc.strerror or exc})."
        ) from exc
    if not os.access(folder, os.W_OK):
        raise ModelsFolderError(f"Hearth may not write to {folder}.")
    return folder


def read_theme() -> Theme:
    """The saved theme choice alone (read once at start-up, before the window exists)."""
    try:
        with closing(open_default_database()) as db:
            return Theme(str(get_setting(db, SETTING_THEME, Theme.SYSTEM.value)))
    except Exception:  # a damaged database is reported by the pages; start in the OS theme
        return Theme.SYSTEM
