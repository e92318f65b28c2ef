"""What the window does once it is up: import, in the background, the modules the first
chat load needs and those of the pages not built yet.

The first model load used to import the session, template and engine modules on the chat
thread while the person watched the progress bar; those imports hold the GIL, and the UI
thread stalled for 0.2 s and more. Warming them a moment after start moves that off the
person's path (scripts/bench_gui.py measures it). The window builds only the page on screen
before its first paint; the other pages' modules are warmed the same way, and the window
builds those pages once they are in (`MainWindow.build_remaining_pages`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Sequence
from types import ModuleType

from PySide6.QtCore import QEvent, QObject, QTimer, Signal

log = logging.getLogger(__name__)

#: Imported in the background after start: what the first chat load would import.
WARM_MODULES = (
    "app.sessions.chat",
    "app.engines.chat_llama.client",
    "app.prompts.choice",
    "app.prompts.sandbox",
)
WARM_AFTER_MS = 100

#: Held while the warming thread or the window imports one of these modules: two threads
#: importing the same modules in different orders can each get the other's half-made one.
IMPORTS = threading.Lock()


def import_module(name: str) -> ModuleType:
    """`name` imported (the window's pages, the warmed modules), one import at a time."""
    with IMPORTS:
        return importlib.import_module(name)


class Warmer(QObject):
    """Imports `modules`, then `then`, on a thread of its own; `warmed` comes on the UI
    thread once `modules` are all in (never when one failed: the page that needs it reports
    a broken install)."""

    warmed = Signal()

    def __init__(self, parent: QObject, modules: Sequence[str], then: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.modules = tuple(modules)
        self.then = tuple(then)

    def start(self) -> None:
        threading.Thread(target=self._warm, name="warm-imports", daemon=True).start()

    def _warm(self) -> None:
        if _import_all(self.modules):
            with contextlib.suppress(RuntimeError):  # the window was closed and deleted
                self.warmed.emit()
        _import_all(self.then)


def _import_all(modules: Sequence[str]) -> bool:
    started = time.monotonic()
    for name in modules:
        try:
            import_module(name)
        except Exception:
            log.exception("warming %s failed", name)
            return False
    log.info("%d modules warmed in %.2f s", len(modules), time.monotonic() - started)
    return True


def warm_modules_later(
    parent: QObject,
    modules: Sequence[str] = WARM_MODULES,
    then: Sequence[str] = (),
    delay_ms: int = WARM_AFTER_MS,
) -> Warmer:
    """Import `modules`, then `then`, on a thread of their own, `delay_ms` after the window
    is up."""
    warmer = Warmer(parent, modules, then)
    QTimer.singleShot(delay_ms, warmer, warmer.start)
    return warmer


class FirstPaint(QObject):
    """Records when a widget tree was first painted, and the UI thread's CPU time by then
    (scripts/bench_gui.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None
        self.ui_cpu_s: float | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.at is None and event.type() == QEvent.Type.Paint:
            self.at = time.time()
            self.ui_cpu_s = time.thread_time()
        return False
