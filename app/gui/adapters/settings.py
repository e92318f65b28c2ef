"""The settings the window edits, read from and written to the store (off the UI thread).

They are the same settings the CLI reads: `hub.offline` and `hub.endpoint` (through
`app.hub.config.hub_config`, where HF_HUB_OFFLINE / HF_ENDPOINT win), and `gui.theme`.
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass

from app.gui.theme import SETTING_THEME, Theme
from app.hub.config import SETTING_ENDPOINT, SETTING_OFFLINE, save_hub_settings
from app.store import open_default_database
from app.store.settings import get_setting, set_setting


@dataclass(frozen=True)
class WindowSettings:
    theme: Theme
    offline: bool
    endpoint: str  # "" means the public Hub
    #: Environment variables that override a setting here, by setting key, with their value.
    overridden: tuple[tuple[str, str], ...] = ()


def read_settings() -> WindowSettings:
    with closing(open_default_database()) as db:
        try:
            theme = Theme(str(get_setting(db, SETTING_THEME, Theme.SYSTEM.value)))
        except ValueError:
            theme = Theme.SYSTEM
        offline = bool(get_setting(db, SETTING_OFFLINE, False))
        endpoint = str(get_setting(db, SETTING_ENDPOINT, "") or "")
    overridden = tuple(
        (key, f"{var}={os.environ[var]}")
        for key, var in ((SETTING_OFFLINE, "HF_HUB_OFFLINE"), (SETTING_ENDPOINT, "HF_ENDPOINT"))
        if os.environ.get(var)
    )
    return WindowSettings(theme, offline, endpoint, overridden)


def save_settings(settings: WindowSettings) -> WindowSettings:
    with closing(open_default_database()) as db:
        save_hub_settings(db, endpoint=settings.endpoint, offline=settings.offline)
        with db.conn:
            set_setting(db, SETTING_THEME, settings.theme.value)
    return read_settings()


def read_theme() -> Theme:
    """The saved theme choice alone (read once at start-up, before the window exists)."""
    try:
        return read_settings().theme
    except Exception:  # a damaged database is reported by the pages; start in the OS theme
        return Theme.SYSTEM
