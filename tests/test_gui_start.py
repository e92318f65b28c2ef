"""How `hearth` opens its window: the window, then the first load's modules warmed in the
background."""

from __future__ import annotations

import subprocess
import sys


def test_the_first_loads_modules_are_warmed_after_start() -> None:
    """In a fresh process: none of them before the window, all of them a moment after."""
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from app.gui.app import open_main_window\n"
        "from app.gui.starting import WARM_MODULES\n"
        "before = [m for m in WARM_MODULES if m in sys.modules]\n"
        "window = open_main_window(app)\n"
        "def check():\n"
        "    if all(m in sys.modules for m in WARM_MODULES):\n"
        "        print('before', before, 'after ok'); window.close(); app.quit()\n"
        "timer = QTimer(); timer.timeout.connect(check); timer.start(50)\n"
        "QTimer.singleShot(60_000, app.quit)\n"
        "app.exec()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "before [] after ok" in done.stdout, done.stdout + done.stderr
