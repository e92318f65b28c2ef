"""How `hearth` opens its window: only the page on screen before the first paint, the first
load's modules and the other pages a moment after; a page asked for before that is built at
once, with its saved splitter sizes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from PySide6.QtWidgets import QSplitter

from app.hardware.profile import load_simulated_machines

if TYPE_CHECKING:
    from app.gui.main_window import MainWindow


def window_script(body: str) -> str:
    """Run `body` in a fresh offscreen Python and return what it printed. `app`, `QTimer`,
    `sys` and `open_main_window` are there; `body` opens the window and quits the app when
    it has seen enough (after 90 s the app quits anyway, and the output says so)."""
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from app.gui.app import open_main_window\n"
        f"{body}"
        "QTimer.singleShot(90_000, app.quit)\n"
        "app.exec()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=150, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_the_first_loads_modules_are_warmed_after_start() -> None:
    """In a fresh process: none of them before the window, all of them a moment after."""
    out = window_script(
        "from app.gui.starting import WARM_MODULES\n"
        "before = [m for m in WARM_MODULES if m in sys.modules]\n"
        "window = open_main_window(app)\n"
        "def check():\n"
        "    if all(m in sys.modules for m in WARM_MODULES):\n"
        "        print('before', before, 'after ok'); window.close(); app.quit()\n"
        "timer = QTimer(); timer.timeout.connect(check); timer.start(50)\n"
    )
    assert "before [] after ok" in out.splitlines(), out


def test_the_first_paint_builds_only_the_page_on_screen_and_the_rest_follow() -> None:
    """In a fresh process: when the window is first shown only Chat is built and no other
    page's module is imported; a moment later every page is built."""
    out = window_script(
        "from app.gui.main_window import PAGE_KEYS, PAGE_MODULES\n"
        "window = open_main_window(app)\n"
        "others = [PAGE_MODULES[k] for k in PAGE_KEYS if k != 'chat']\n"
        "print('built', [k for k in PAGE_KEYS if window.built(k) is not None])\n"
        "print('imported', [m for m in others if m in sys.modules])\n"
        "def check():\n"
        "    if all(window.built(k) is not None for k in PAGE_KEYS):\n"
        "        print('all built', window.pages.currentWidget() is window.chat)\n"
        "        window.close(); app.quit()\n"
        "timer = QTimer(); timer.timeout.connect(check); timer.start(50)\n"
    )
    lines = out.splitlines()
    assert "built ['chat']" in lines, out
    assert "imported []" in lines, out
    assert "all built True" in lines, out


@pytest.fixture
def cpu_window(window_factory: Callable[..., MainWindow]) -> Callable[[], MainWindow]:
    """Windows planning for a simulated CPU-only workstation."""
    cpu = load_simulated_machines()["airgapped-lab-cpu-32gb"]
    return lambda: window_factory(cpu)


def test_a_page_not_built_yet_is_built_when_shown_with_its_saved_splitter_sizes(
    cpu_window: Callable[[], MainWindow],
) -> None:
    from app.gui.main_window import PAGE_KEYS

    downloads = PAGE_KEYS.index("downloads")
    first = cpu_window()
    first.show()
    first.show_page(downloads)
    splitter = first.downloads.findChild(QSplitter)
    assert splitter is not None
    splitter.setSizes([120, 400])
    wanted = splitter.sizes()
    first.show_page(0)
    first.close()  # saves the splitter and Chat as the last page

    second = cpu_window()
    second.show()
    assert second.built("downloads") is None and second.pages.currentWidget() is second.chat
    second.close()  # never built: its saved sizes stay as they were

    third = cpu_window()
    third.show()
    assert third.built("downloads") is None
    third.show_page(downloads)
    page = third.built("downloads")
    assert page is not None and third.pages.currentWidget() is page  # never a blank page
    again = page.findChild(QSplitter)
    assert again is not None and again.sizes() == wanted


def test_the_window_opens_in_the_theme_saved_in_settings_or_the_systems() -> None:
    from contextlib import closing

    from app.gui.app import saved_theme
    from app.gui.theme import SETTING_THEME
    from app.paths import hearth_paths
    from app.store import open_default_database
    from app.store.settings import set_setting

    assert saved_theme() == "system"  # nothing chosen yet
    with closing(open_default_database()) as db:
        set_setting(db, SETTING_THEME, "dark")
    assert saved_theme() == "dark"
    hearth_paths().database.write_bytes(b"not a database" * 100)  # the pages report it
    assert saved_theme() == "system"
