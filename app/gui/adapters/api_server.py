"""The window's local API server: uvicorn in a background thread, started and stopped off the UI.

`ApiServerController` owns at most one `app.api.server.ApiServer`. Starting (the key is
read or made, the socket bound) and stopping (streams cancelled, the model unloaded) both
run in a plain thread; the results come back as signals, so the window never waits.
fastapi and uvicorn are imported only when the server is first turned on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.errors import HearthError

log = logging.getLogger(__name__)


class ApiServerController(QObject):
    """Start/stop the API; `started(url, key, where)`, `stopped()`, `failed(message)`."""

    started = Signal(str, str, str)
    stopped = Signal()
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._server: Any = None
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str | None:
        return str(self._server.url) if self._server is not None else None

    def models_in_use(self) -> list[str]:
        """The library names the API has loaded now (none while it is off)."""
        server = self._server
        if server is None:
            return []
        return [name for name in server.service.loaded_models() if name]

    def start(self, host: str, port: int) -> None:
        """Start serving on host:port (0: any free port) in the background."""
        self._run(self._start, host, port)

    def stop(self) -> None:
        """Stop serving in the background; `stopped` follows."""
        self._run(self._stop)

    def wait(self, timeout_s: float = 30.0) -> None:
        """Wait for a start or stop in progress (closing the window)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, target: Any, *args: Any) -> None:
        self.wait()
        self._thread = threading.Thread(target=target, args=args, name="api-control", daemon=True)
        self._thread.start()

    def _start(self, host: str, port: int) -> None:
        with self._busy:
            if self._server is not None:
                self.started.emit(self._server.url, self._server.key, self._server.key_where)
                return
            try:
                from app.api.server import ApiServer, ServeConfig

                server = ApiServer(ServeConfig(host=host, port=port))
                server.start()
            except HearthError as exc:
                self.failed.emit(str(exc))
                return
            except Exception as exc:  # a bug: say so, keep the window
                log.exception("the API server failed to start")
                self.failed.emit(f"The API server could not start ({type(exc).__name__}).")
                return
            self._server = server
            log.info("API server on %s", server.url)
            self.started.emit(server.url, server.key, server.key_where)

    def _stop(self) -> None:
        with self._busy:
            server, self._server = self._server, None
            if server is not None:
                try:
                    server.stop()
                except Exception:
                    log.exception("the API server did not stop cleanly")
            self.stopped.emit()
