"""Start the Qt application, or explain clearly why there is no screen to show it on."""

from __future__ import annotations

import os
import sys

from app.errors import HearthError


class NoDisplayError(HearthError):
    default_remedy = (
        "Run Hearth from a desktop session, or use the command line instead "
        "(`hearth --help`: doctor, plan, models); on a server, `xvfb-run hearth` gives it a "
        "virtual screen."
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
    return None


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
    from app.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Hearth")
    window = MainWindow()
    window.show()
    return int(app.exec())
