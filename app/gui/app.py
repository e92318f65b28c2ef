"""Start the Qt application, or explain clearly why there is no screen to show it on."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import HearthError

if TYPE_CHECKING:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow


class NoDisplayError(HearthError):
    default_remedy = (
        "Run Hearth from a desktop session, or use the command line instead "
        "(`hearth --help`: chat, history, doctor, plan, models); on a server, "
        "`xvfb-run hearth` gives it a virtual screen."
    )


def display_problem(
    environ: dict[str, str] | None = None, platform: str = sys.platform
) -> str | None:
    """Why Qt could not open a window here, or None when it can."""
    env = dict(os.environ) if environ is None else environ
    if env.get("QT_QPA_PLATFORM"):
        return None  # the user chose a platform plugin (offscreen, vnc, ...) explicitly
    unix_desktop = platform.startswith(("linux", "freebsd"))
    if unix_desktop and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return (
            "There is no display to open Hearth's window on "
            "(DISPLAY and WAYLAND_DISPLAY are unset)."
        )
    if unix_desktop and env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        missing = missing_xcb_libraries()
        if missing:
            return (
                f"Qt cannot open a window on X11 because {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed "
                f"(on Debian/Ubuntu: sudo apt install {' '.join(missing)})."
            )
    return None


#: Libraries Qt 6.5+'s X11 plugin loads that pip cannot install, with their Debian packages.
XCB_LIBRARIES = {
    "xcb-cursor": "libxcb-cursor0",
    "xcb-icccm": "libxcb-icccm4",
    "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0",
    "xcb-render-util": "libxcb-render-util0",
    "xkbcommon-x11": "libxkbcommon-x11-0",
}


def missing_xcb_libraries() -> list[str]:
    """Debian package names of the X11 libraries Qt needs and this system lacks."""
    from ctypes.util import find_library

    return [pkg for lib, pkg in XCB_LIBRARIES.items() if find_library(lib) is None]


def launch_gui() -> int:
    problem = display_problem()
    if problem:
        raise NoDisplayError(problem)
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:  # a broken install: say so instead of a traceback
        raise HearthError(
            f"Qt (PySide6) could not be loaded ({exc}).",
            "Reinstall with ./scripts/run --rebuild.",
        ) from exc
    from app.gui.taskbar import set_process_app_id

    set_process_app_id()  # Windows: the taskbar groups and pins Hearth as Hearth (taskbar.py)
    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Hearth")
    # The taskbar and window switcher match the installed menu entry (hearth.desktop).
    app.setDesktopFileName("hearth")
    app.setWindowIcon(app_icon())
    open_main_window(app)
    return int(app.exec())


def app_icon() -> QIcon:
    """Hearth's icon (resources/hearth.svg), drawn by Qt's SVG plugin at any size."""
    from importlib import resources

    from PySide6.QtGui import QIcon

    with resources.as_file(resources.files("app.resources").joinpath("hearth.svg")) as svg:
        return QIcon(str(svg))


def open_main_window(app: QApplication) -> MainWindow:
    """Build and show the window in the saved theme (only the page on screen is built),
    then import the other pages' modules in the background and build those pages once they
    are in, and warm the modules the first chat load needs (app/gui/starting.py)."""
    from app.gui.main_window import MainWindow
    from app.gui.starting import WARM_MODULES, warm_modules_later
    from app.gui.theme import apply_theme

    apply_theme(app, saved_theme())
    window = MainWindow()
    if sys.platform == "win32":
        from app.gui.taskbar import set_window_relaunch

        # A pinned taskbar button starts hearthw.exe (no console), not hearth.exe.
        set_window_relaunch(int(window.winId()))
    window.show()
    warmer = warm_modules_later(window, window.page_modules(), then=WARM_MODULES)
    warmer.warmed.connect(window.build_remaining_pages)
    return window


def saved_theme() -> str:
    """The theme chosen in Settings (`gui.theme`), read before the window exists.

    Read here rather than with `app.gui.adapters.settings.read_theme`, whose module brings
    the Hub's and the load settings' modules, which the first page does not need (60 ms of
    CPU before the first paint on a 2-core machine); the chat page imports the store anyway.
    """
    from contextlib import closing

    from app.gui.theme import SETTING_THEME, Theme
    from app.store import open_default_database
    from app.store.settings import get_setting

    try:
        with closing(open_default_database()) as db:
            return str(get_setting(db, SETTING_THEME, Theme.SYSTEM.value))
    except Exception:  # a damaged database is reported by the pages; start in the OS theme
        return Theme.SYSTEM.value


#: How long a screenshot waits for the page's background work (planning, the doctor).
SCREENSHOT_SETTLE_S = 60.0


def take_screenshot(path: Path, page: str, size: tuple[int, int], theme: str | None = None) -> Path:
    """Open the window on this Hearth's data, show `page`, wait until its background work is
    done, and save the window as a PNG at `path` (no display needed: offscreen)."""
    if display_problem():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QElapsedTimer, QEventLoop
    from PySide6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow, page_index
    from app.gui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Hearth")
    apply_theme(app, theme or saved_theme())
    window = MainWindow()
    window.remember_state = False  # a screenshot must not move the person's window
    window.resize(*size)
    index = page_index(window, page)
    if page == "welcome":
        window.show_welcome()
    elif index < 0:
        raise HearthError(
            f"There is no page called '{page}'.",
            f"Pick one of: {', '.join([*window.page_names(), 'welcome'])}.",
        )
    else:
        window.show_page(index)
    window.show()
    clock = QElapsedTimer()
    clock.start()
    settled = 0
    while clock.elapsed() < SCREENSHOT_SETTLE_S * 1000 and settled < 5:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        window.runner.wait(50)
        settled = settled + 1 if window.runner.pool.activeThreadCount() == 0 else 0
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path), "PNG"):
        raise HearthError(
            f"Hearth could not write {path}.", "Check the folder exists and you may write to it."
        )
    window.close()
    return path
