"""What starting Hearth imports: nothing heavy that the first screen does not need."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_store_loads_sqlite_utils_without_numpy_and_numpy_still_imports_after() -> None:
    out = _run(
        "import sys, app.store, sqlite_utils.db as d\n"
        "print('numpy' in sys.modules, d.np is None)\n"
        "import numpy\n"
        "print(numpy.zeros(2).tolist())\n"
    )
    assert out.splitlines() == ["False True", "[0.0, 0.0]"]


def test_numpy_imported_first_is_left_alone() -> None:
    out = _run("import numpy, app.store, sqlite_utils.db as d\nprint(d.np is numpy)")
    assert out == "True"


def test_the_window_modules_do_not_bring_httpx_or_numpy() -> None:
    out = _run(
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import app.gui.main_window\n"
        "print(sorted(m for m in ('httpx', 'numpy', 'huggingface_hub') if m in sys.modules))\n"
    )
    assert out == "[]"
