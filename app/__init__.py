"""Hearth: local, on-device AI chat and image generation that never phones home."""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__version__ = "0.1.0"


class _SqliteUtilsWithoutNumpy(MetaPathFinder):
    """Keep sqlite_utils from importing numpy (and pandas) as it loads.

    sqlite_utils imports them only to map their scalar types to column types; Hearth never
    stores such values, and the import costs every `hearth` command and the window's first
    paint about 0.12 s. Only an import made while `sqlite_utils.db` is itself loading is
    refused; any other code imports numpy as usual, before or after.
    """

    def find_spec(
        self, name: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name in ("numpy", "pandas"):
            loading = sys.modules.get("sqlite_utils.db")
            spec = getattr(loading, "__spec__", None)
            if spec is not None and getattr(spec, "_initializing", False):
                raise ModuleNotFoundError(f"{name} is not needed by sqlite_utils here", name=name)
        return None


if not any(isinstance(f, _SqliteUtilsWithoutNumpy) for f in sys.meta_path):
    sys.meta_path.insert(0, _SqliteUtilsWithoutNumpy())
