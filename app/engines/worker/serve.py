"""The one serve loop every engine worker process runs: read requests, dispatch, cancel, fail.

An engine's worker subclasses `WorkerServer`, fills `handlers` with its request types and
the methods that answer them, and calls `poll(current)` often while it works. Its
`worker_main(conn)` calls `run_worker`. The rules, the same for every engine:

- Requests are answered in order. A request that arrives while another runs waits in the
  backlog, except what `answer_at_once` takes (the chat worker counts tokens mid-reply).
- `CancelRequest(current)` stops the running work; a cancel for another id is remembered,
  so a generation still queued ends with `Done(id, "cancelled")` when its turn comes
  (`cancelled_while_queued`); `CancelRequest(LOAD_REQUEST_ID)` calls `cancel_load`.
- `UnloadRequest` stops everything (it also cancels a load) and ends the process.
- A closed pipe (`ParentGone`: the parent went away) ends the process quietly.
- An exception in a handler is a bug: it becomes `ErrorEvent(kind="internal")` and the
  worker stays alive.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from app.engines.worker.messages import (
    LOAD_REQUEST_ID,
    CancelRequest,
    Done,
    DoneReason,
    ErrorEvent,
    UnloadRequest,
)

#: Tests only: the name of a request type (e.g. "LoadRequest") on whose arrival the worker
#: crashes natively, as a segfault inside the engine's library would.
SEGFAULT_ENV = "HEARTH_TEST_WORKER_SEGFAULT_ON"

log = logging.getLogger(__name__)


class ParentGone(Exception):
    """The pipe closed: the client process ended. The worker exits quietly."""


class LoadAborted(Exception):
    """A CancelRequest (or UnloadRequest) arrived while loading."""


class WorkerServer:
    """The serve loop of one worker process; each engine subclasses it."""

    #: How the worker calls itself in messages ("chat worker").
    name = "worker"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.backlog: deque[object] = deque()
        self.cancelled_ids: deque[str] = deque(maxlen=64)  # cancels for queued generations
        #: The engine's requests and the methods that answer them.
        self.handlers: dict[type, Callable[[Any], None]] = {}
        self._segfault_on = os.environ.get(SEGFAULT_ENV)

    # --- what an engine may change --------------------------------------------------------

    def cancel_load(self) -> None:
        """A CancelRequest(LOAD_REQUEST_ID) or an UnloadRequest arrived mid-work."""

    def answer_at_once(self, msg: object) -> bool:
        """Answer `msg` now, in the middle of other work; False: it waits its turn."""
        return False

    def shutdown(self) -> None:
        """Free the model as the process ends."""

    # --- the pipe -------------------------------------------------------------------------

    def send(self, event: object) -> None:
        try:
            self.conn.send(event)
        except (OSError, EOFError) as exc:
            raise ParentGone from exc

    def receive(self) -> object:
        if self.backlog:
            return self.backlog.popleft()
        try:
            return self.conn.recv()
        except (OSError, EOFError) as exc:
            raise ParentGone from exc

    def poll(self, current: str | None) -> bool:
        """Read what has arrived without blocking; True if work `current` must stop.

        `current` is the running generation's id, LOAD_REQUEST_ID during a load that
        stops by this answer, or None.
        """
        stop = False
        try:
            while self.conn.poll(0):
                msg = self.conn.recv()
                if isinstance(msg, CancelRequest):
                    if msg.request_id == current:
                        stop = True
                    elif msg.request_id == LOAD_REQUEST_ID:
                        self.cancel_load()
                    else:
                        self.cancelled_ids.append(msg.request_id)
                elif isinstance(msg, UnloadRequest):
                    self.cancel_load()
                    stop = True
                    self.backlog.append(msg)
                elif not self.answer_at_once(msg):
                    self.backlog.append(msg)
        except (OSError, EOFError) as exc:
            raise ParentGone from exc
        return stop

    def send_done(self, request_id: str, reason: DoneReason, work: str) -> None:
        """End generation `request_id`; the log says how, and how much ran (`work`)."""
        log.info("%s: %s ended (%s) after %s", self.name, request_id, reason, work)
        self.send(Done(request_id, reason))

    def cancelled_while_queued(self, request_id: str) -> bool:
        """If `request_id` was cancelled while it waited, end it now; whether it was."""
        if request_id not in self.cancelled_ids:
            return False
        self.cancelled_ids.remove(request_id)
        self.send_done(request_id, "cancelled", "nothing: it was still queued")
        return True

    # --- the loop -------------------------------------------------------------------------

    def serve(self) -> None:
        """Answer requests until an UnloadRequest or until the parent goes away."""
        while True:
            msg: object = None
            try:
                msg = self.receive()
                if isinstance(msg, UnloadRequest):
                    log.info("%s unloading", self.name)
                    return
                self.handle(msg)
            except ParentGone:
                log.info("%s: the parent process went away", self.name)
                return
            except Exception as exc:  # a bug in the worker: say so, and stay alive
                log.exception("%s failed on %s", self.name, type(msg).__name__)
                request_id = getattr(msg, "request_id", None)
                try:
                    self.send(
                        ErrorEvent(request_id, "internal", f"The {self.name} failed: {exc!r}.")
                    )
                except ParentGone:
                    return

    def handle(self, msg: object) -> None:
        # Ids and types only: prompts are never logged.
        rid = getattr(msg, "request_id", None)
        log.info("%s: %s%s", self.name, type(msg).__name__, f" {rid}" if rid else "")
        if self._segfault_on == type(msg).__name__:
            faulthandler._sigsegv()  # type: ignore[attr-defined]  # tests only (SEGFAULT_ENV)
        handler = self.handlers.get(type(msg))
        if handler is not None:
            handler(msg)
        elif isinstance(msg, CancelRequest):
            if msg.request_id != LOAD_REQUEST_ID:
                self.cancelled_ids.append(msg.request_id)  # for a generation still queued
        else:
            self.send(
                ErrorEvent(
                    getattr(msg, "request_id", None),
                    "bad_request",
                    f"The {self.name} does not understand {type(msg).__name__}.",
                )
            )


def run_worker(conn: Connection, make: Callable[[Connection], WorkerServer]) -> None:
    """The body of every worker process: the serve loop, then the model freed."""
    server = make(conn)
    try:
        server.serve()
    finally:
        server.shutdown()
        conn.close()


def exit_when_orphaned(interval_s: float = 1.0) -> None:
    """End this process soon after its parent dies, even in the middle of a long step.

    The closed pipe says so too, but it is read only between steps, and one step of a big
    model on a CPU can take a minute.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="hearth-orphan-watch", daemon=True).start()
