"""What the window does once it is up: import, in the background, the modules the first
chat load needs.

The first model load used to import the session, template and engine modules on the chat
thread while the person watched the progress bar; those imports hold the GIL, and the UI
thread stalled for 0.2 s and more. Warming them a moment after start moves that off the
person's path (scripts/bench_gui.py measures it).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time

from PySide6.QtCore import QEvent, QObject, QTimer

log = logging.getLogger(__name__)

#: Imported in the background after start: what the first chat load would import.
WARM_MODULES = (
    "app.sessions.chat",
    "app.engines.chat_llama.client",
    "app.prompts.choice",
    "app.prompts.sandbox",
)
WARM_AFTER_MS = 300


def warm_modules_later(parent: QObject, delay_ms: int = WARM_AFTER_MS) -> None:
    """Import WARM_MODULES on a thread of their own, `delay_ms` after the window is up."""

    def warm() -> None:
        started = time.monotonic()
        for name in WARM_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # the first load reports a broken install properly
                log.exception("warming %s failed", name)
                return
        log.info("modules for the first load warmed in %.2f s", time.monotonic() - started)

    def start() -> None:
        threading.Thread(target=warm, name="warm-imports", daemon=True).start()

    QTimer.singleShot(delay_ms, parent, start)


class FirstPaint(QObject):
    """Records when a widget tree was first painted (scripts/bench_gui.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.at is None and event.type() == QEvent.Type.Paint:
            self.at = time.time()
        return False
