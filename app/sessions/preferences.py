"""The load defaults a person keeps in Settings (backend, GPU layers, threads, context), and
the one function every face turns them into `LoadSettings` with: flags win, then Settings.

>>> from app.store import open_default_database  # doctest: +SKIP
>>> load_settings(open_default_database(), n_ctx=8192).threads  # doctest: +SKIP
6
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Any

from app.errors import HearthError
from app.hardware.profile import Backend
from app.planner import LoadSettings
from app.store import Database, open_default_database
from app.store.settings import get_setting, set_setting

#: Settings keys; a missing key or JSON null means "let the planner decide".
SETTING_BACKEND = "load.backend"  # "cuda" | "metal" | "cpu"
SETTING_GPU_LAYERS = "load.gpu_layers"  # 0 = CPU only
SETTING_THREADS = "load.threads"
SETTING_CONTEXT = "load.context"

#: What each number may be (inclusive): beyond these llama.cpp refuses or the value is a typo.
LIMITS = {
    "gpu_layers": (0, 999),
    "threads": (1, 512),
    "n_ctx": (256, 1_048_576),
}
LABELS = {"gpu_layers": "GPU layers", "threads": "Threads", "n_ctx": "Context size"}


class PreferenceError(HearthError):
    """A load default that cannot be used (not a number, or out of range)."""

    default_remedy = "Enter a whole number in range, or leave the field empty for automatic."


@dataclass(frozen=True)
class LoadPreferences:
    """What the person chose in Settings; None everywhere means automatic."""

    backend: Backend | None = None
    gpu_layers: int | None = None
    threads: int | None = None
    n_ctx: int | None = None

    def describe(self) -> str:
        """One line for the status bar or `hearth doctor`: only what is not automatic."""
        parts = []
        if self.backend is not None:
            parts.append(f"backend {self.backend.value}")
        if self.gpu_layers is not None:
            parts.append(f"{self.gpu_layers} GPU layers")
        if self.threads is not None:
            parts.append(f"{self.threads} threads")
        if self.n_ctx is not None:
            parts.append(f"{self.n_ctx:,} tokens of context")
        return ", ".join(parts) or "all automatic"


def parse_backend(text: str | None) -> Backend | None:
    """`"auto"`/empty -> None, `"CUDA"` -> Backend.CUDA; anything else is a PreferenceError."""
    value = (text or "").strip().lower()
    if value in ("", "auto", "automatic"):
        return None
    try:
        return Backend(value)
    except ValueError:
        raise PreferenceError(
            f"'{text}' is not a backend Hearth knows.",
            "Pick auto, cuda, metal or cpu.",
        ) from None


def parse_number(field: str, text: str | int | None) -> int | None:
    """A load default from what was typed: empty or "auto" -> None, else a number in range.

    >>> parse_number("threads", " 8 ")
    8
    >>> parse_number("threads", "auto") is None
    True
    """
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip().replace(",", "").replace("_", "")
        if raw.lower() in ("", "auto", "automatic"):
            return None
        try:
            value = int(raw)
        except ValueError:
            raise PreferenceError(
                f"{LABELS[field]} must be a whole number, not '{text}'."
            ) from None
    low, high = LIMITS[field]
    if not low <= value <= high:
        hint = " (0 runs on the CPU only)" if field == "gpu_layers" else ""
        raise PreferenceError(
            f"{LABELS[field]} must be between {low:,} and {high:,}{hint}; {value:,} is not.",
        )
    return value


def check_preferences(prefs: LoadPreferences) -> LoadPreferences:
    """`prefs` if every value is usable, else the PreferenceError for the first bad one."""
    for field in ("gpu_layers", "threads", "n_ctx"):
        parse_number(field, getattr(prefs, field))
    return prefs


def read_load_preferences(db: Database | None = None) -> LoadPreferences:
    """The stored defaults; a damaged value counts as automatic (Settings shows it so)."""
    if db is None:
        with closing(open_default_database()) as own:
            return read_load_preferences(own)

    def number(key: str, field: str) -> int | None:
        try:
            return parse_number(field, _int_or_none(get_setting(db, key)))
        except PreferenceError:
            return None

    try:
        backend = parse_backend(get_setting(db, SETTING_BACKEND) or None)
    except PreferenceError:
        backend = None
    return LoadPreferences(
        backend=backend,
        gpu_layers=number(SETTING_GPU_LAYERS, "gpu_layers"),
        threads=number(SETTING_THREADS, "threads"),
        n_ctx=number(SETTING_CONTEXT, "n_ctx"),
    )


def save_load_preferences(db: Database, prefs: LoadPreferences) -> LoadPreferences:
    """Check and store `prefs` (all or nothing), and return what is now stored."""
    check_preferences(prefs)
    with db.conn:
        set_setting(db, SETTING_BACKEND, prefs.backend.value if prefs.backend else None)
        set_setting(db, SETTING_GPU_LAYERS, prefs.gpu_layers)
        set_setting(db, SETTING_THREADS, prefs.threads)
        set_setting(db, SETTING_CONTEXT, prefs.n_ctx)
    return read_load_preferences(db)


def load_settings(
    db: Database | None = None,
    *,
    n_ctx: int | None = None,
    gpu_layers: int | None = None,
    threads: int | None = None,
    backend: Backend | str | None = None,
    **rest: Any,
) -> LoadSettings:
    """The LoadSettings a face plans and loads with: each argument given (a command-line
    flag) wins over the stored default, and None leaves it to Settings, then the planner.

    `rest` passes the other LoadSettings fields (kv_type, image_width, ...) through.
    """
    prefs = read_load_preferences(db)
    chosen_backend = parse_backend(backend) if isinstance(backend, str) else backend
    return LoadSettings(
        n_ctx=n_ctx if n_ctx is not None else prefs.n_ctx,
        gpu_layers=gpu_layers if gpu_layers is not None else prefs.gpu_layers,
        threads=threads if threads is not None else prefs.threads,
        backend=chosen_backend if chosen_backend is not None else prefs.backend,
        **rest,
    )


def _int_or_none(value: object) -> int | str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return str(value)
