"""Run the API on uvicorn: in the foreground (`hearth serve`) or in a background thread (GUI).

server = ApiServer(ServeConfig(port=0))  # 0: any free port (tests)
server.start()          # returns once it listens
print(server.url)       # http://127.0.0.1:53411
server.stop()           # ends streams, unloads the models
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from sqlite_utils import Database

from app.api.app import create_app
from app.api.security import DEFAULT_MAX_BODY_BYTES, GateSettings, api_key
from app.errors import HearthError
from app.sessions.serving import DEFAULT_MAX_QUEUE, CompletionService

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4567
#: Streams still open at shutdown get this long to finish before they are cut.
GRACEFUL_SHUTDOWN_S = 3


class ServerStartError(HearthError):
    default_remedy = "Choose another port with --port, or stop the program that uses it."


@dataclass(frozen=True)
class ServeConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_queue: int = DEFAULT_MAX_QUEUE
    max_tokens_cap: int = 4096
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    key: str | None = None  # None: the saved key (made on first start)
    new_key: bool = False


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ApiServer:
    """One uvicorn server over one CompletionService; start and stop from any thread."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        service: CompletionService | None = None,
        open_db: Callable[[], Database] | None = None,
    ) -> None:
        from app.store import open_default_database

        self.config = config
        self.service = service or CompletionService(
            open_db or open_default_database,
            max_queue=config.max_queue,
            max_tokens_cap=config.max_tokens_cap,
        )
        if config.key is not None:
            self.key, self.key_where = config.key, "given by the caller"
        else:
            self.key, self.key_where = api_key(new=config.new_key)
        gate = GateSettings.for_bind(
            self.key,
            config.host,
            extra_hosts=config.allowed_hosts,
            origins=config.allowed_origins,
            max_body_bytes=config.max_body_bytes,
        )
        self._socket = _bind(config.host, config.port)
        self.port = int(self._socket.getsockname()[1])
        uv_config = uvicorn.Config(
            create_app(self.service, gate),
            log_config=None,  # Hearth's own logging (no prompts in it)
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            server_header=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(uv_config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C (uvicorn's handler) or `stop()`; then unload."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._close()

    def start(self, timeout_s: float = 30.0) -> None:
        """Serve in a background thread; return once it listens."""
        self._thread = threading.Thread(target=self.serve_forever, name="hearth-api", daemon=True)
        self._thread.start()
        # uvicorn has no "listening" callback; its `started` flag flips once it serves.
        tick = threading.Event()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            tick.wait(0.01)
        if not self._server.started:
            raise ServerStartError(f"The API server did not start on {self.url}.")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop serving (open streams are cancelled) and unload the models."""
        self._server.should_exit = True
        self.service.cancel_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        else:
            self._close()

    def _close(self) -> None:
        try:
            self.service.close()
        finally:
            self._socket.close()

    @property
    def running(self) -> bool:
        return bool(self._server.started) and not self._server.should_exit


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ServerStartError(f"Hearth could not listen on {host}:{port} ({reason}).") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock
