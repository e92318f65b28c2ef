"""The one client base of every engine worker: start on demand, load, stream, cancel, unload.

An engine's client (`ChatEngineClient`, `ImageEngineClient`) is this class with its
`WorkerSpec` and its typed request methods. The rules live here, once:

- **Start**: the worker (`spec.module`) starts on demand in a fresh "spawn" process; the
  parent names it by its module, so it never imports it nor the engine's library, and a
  PyInstaller build works (its entry point calls `multiprocessing.freeze_support()`).
- **Load**: `load` sends the load request and blocks, calling `on_progress` in the
  caller's thread; setting `cancel_event`, or leaving by an exception (a raising
  `on_progress`, KeyboardInterrupt), sends `CancelRequest(LOAD_REQUEST_ID)`.
- **Stream**: `stream` sends a generate request (optionally with the load it waits on)
  and yields its events until `Done`, always last; an `ErrorEvent` is raised as the
  engine's error. Leaving the loop early cancels the generation in the worker.
- **Cancel**: `cancel(request_id)` works from any thread or a signal handler (it never
  blocks on the pipe; a cancel it could not send is sent by the streaming loop).
- **Crash**: a worker that dies unasked is reported once, to whoever waits, as
  `WorkerCrashedError` naming the cause and the log file to read; the next load starts a
  fresh worker.
- **Unload**: ends the worker process, so the memory really returns to the system.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Generic, Self, TypeVar, cast

from app.engines.errors import EngineError, LoadCancelledError, NotLoadedError
from app.engines.worker.messages import (
    LOAD_REQUEST_ID,
    CancelRequest,
    Done,
    ErrorEvent,
    LoadedEvent,
    LoadProgressEvent,
    UnloadRequest,
)
from app.engines.worker.process import (
    LOAD_KEY,
    POLL_S,
    Gone,
    Key,
    WorkerCrashedError,
    WorkerProcess,
    describe_exit,
    trace_size,
    where_to_look,
)

LoadT = TypeVar("LoadT")
LoadedT = TypeVar("LoadedT", bound=LoadedEvent)
ProgressT = TypeVar("ProgressT", bound=LoadProgressEvent)


@dataclass(frozen=True)
class WorkerSpec:
    """What sets one engine's worker apart from another's.

    `errors` maps the engine's own `ErrorEvent.kind`s to its error classes (the kinds
    "load_cancelled" and "not_loaded" mean the same for every engine).
    """

    kind: str  # "chat", "image": messages say "the chat worker", "no chat model"
    log_name: str  # the worker's log and crash files (app.startup), e.g. "chat-worker"
    library: str  # what a native crash happens inside, e.g. "llama.cpp"
    module: str  # the worker module, whose worker_main(conn) the process runs
    errors: Mapping[str, Callable[[str], EngineError]] = field(default_factory=dict)
    crash_remedy: str | None = None  # None: WorkerCrashedError's default

    @property
    def name(self) -> str:
        return f"{self.kind} worker"


def _route(event: object) -> Key:
    if isinstance(event, LoadProgressEvent | LoadedEvent):
        return LOAD_KEY
    return getattr(event, "request_id", None)  # None: a load's ErrorEvent


class WorkerClient(Generic[LoadT, LoadedT, ProgressT]):
    """Runs one worker process on demand and speaks its protocol; thread-safe."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._mp = multiprocessing.get_context("spawn")
        self._worker: WorkerProcess | None = None
        self._last_process: BaseProcess | None = None
        self._start_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loaded: LoadedT | None = None
        self._loaded_request: LoadT | None = None
        self._cancels: dict[str, bool] = {}  # request id → CancelRequest already sent
        self._waiting_on_load: set[str] = set()  # generations sent along with their load

    # --- the process --------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The worker's process id, or None when no worker runs."""
        worker = self._worker
        return worker.process.pid if worker is not None and not worker.dead else None

    @property
    def exitcode(self) -> int | None:
        """Exit status of the latest worker process; None while it runs (or if none ran)."""
        return self._last_process.exitcode if self._last_process is not None else None

    @property
    def loaded(self) -> LoadedT | None:
        """What the worker reported for the loaded model, or None."""
        worker = self._worker
        return self._loaded if worker is not None and not worker.dead else None

    def is_alive(self) -> bool:
        worker = self._worker
        return worker is not None and not worker.dead and worker.process.is_alive()

    def is_loaded(self, req: LoadT) -> bool:
        """Whether the worker holds exactly this model, loaded this way."""
        return self.is_alive() and self._loaded is not None and self._loaded_request == req

    def _crash_error(self, trace_size_at_start: int) -> Callable[[int | None], WorkerCrashedError]:
        spec = self.spec

        def crash_error(exitcode: int | None) -> WorkerCrashedError:
            cause = describe_exit(exitcode, spec.name, spec.library)
            logs = where_to_look(spec.log_name, trace_size_at_start)
            return WorkerCrashedError(f"{cause} {logs}", spec.crash_remedy, exitcode=exitcode)

        return crash_error

    def _ensure_worker(self) -> WorkerProcess:
        with self._start_lock:
            worker = self._worker
            if worker is not None and not worker.dead:
                return worker
            if worker is not None:
                worker.stop(timeout=1)
            self._loaded = self._loaded_request = None
            self._worker = WorkerProcess.start(
                self._mp,
                self.spec.module,
                self.spec.log_name,
                route=_route,
                crash_error=self._crash_error(trace_size(self.spec.log_name)),
                unload_message=UnloadRequest(),
            )
            self._last_process = self._worker.process
            return self._worker

    def _running_worker(self) -> WorkerProcess:
        """The worker that holds (or is loading) the model, for requests that need one."""
        kind = self.spec.kind
        with self._start_lock:
            worker = self._worker
            if worker is None:
                raise NotLoadedError(f"No {kind} model is loaded.")
            if worker.dead:
                crash, reported = worker.crash, worker.crash_reported
                worker.crash_reported = True
                if crash is not None and not reported:
                    raise crash
                raise NotLoadedError(f"No {kind} model is loaded: the {kind} worker has stopped.")
            return worker

    def unload(self, timeout: float = 10.0) -> None:
        """Free the model by ending the worker process (memory really returns)."""
        with self._start_lock:
            worker, self._worker = self._worker, None
            self._loaded = self._loaded_request = None
        if worker is not None:
            worker.stop(timeout)

    close = unload

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unload()

    # --- requests -----------------------------------------------------------------------

    def _error_for(self, event: ErrorEvent) -> EngineError:
        if event.kind == "load_cancelled":
            return LoadCancelledError(event.message)
        if event.kind == "not_loaded":
            return NotLoadedError(event.message)
        make = self.spec.errors.get(event.kind, EngineError)
        return make(event.message)

    def _gone(self, event: Gone, unloaded: str) -> EngineError:
        """The error for a worker that ended under a waiting call: its crash, or `unloaded`."""
        if event.error is not None:
            return event.error
        return NotLoadedError(unloaded)

    def check_load(self, req: LoadT) -> None:
        """Refuse `req` before any worker starts (raise the error); by default, accept it."""

    def load(
        self,
        req: LoadT,
        on_progress: Callable[[ProgressT], None] | None = None,
        cancel_event: threading.Event | None = None,
    ) -> LoadedT:
        """Load a model (starting a worker if none runs), reporting progress; block until ready.

        `check_load(req)` runs first. `on_progress` is called in this thread. Setting
        `cancel_event` aborts the load (LoadCancelledError). Raises the engine's load
        error, LoadCancelledError, WorkerCrashedError.
        """
        self.check_load(req)
        with self._load_lock:
            worker = self._ensure_worker()
            q = worker.open(LOAD_KEY)
            done = False
            try:
                worker.send(req)
                cancel_sent = False
                while True:
                    if cancel_event is not None and cancel_event.is_set() and not cancel_sent:
                        cancel_sent = worker.send(CancelRequest(LOAD_REQUEST_ID))
                    try:
                        event = q.get(timeout=POLL_S)
                    except queue.Empty:
                        continue
                    if isinstance(event, LoadProgressEvent):
                        if on_progress is not None:
                            on_progress(cast(ProgressT, event))
                    elif isinstance(event, LoadedEvent):
                        done = True
                        self._loaded, self._loaded_request = cast(LoadedT, event), req
                        return self._loaded
                    elif isinstance(event, ErrorEvent):
                        done = True
                        self._loaded = self._loaded_request = None
                        raise self._error_for(event)
                    elif isinstance(event, Gone):
                        done = True
                        if event.error is not None:
                            raise event.error
                        raise LoadCancelledError(
                            f"The {self.spec.name} was stopped during the load."
                        )
            finally:
                if not done:  # on_progress raised, or KeyboardInterrupt: stop the load too
                    worker.send(CancelRequest(LOAD_REQUEST_ID))
                worker.close(LOAD_KEY)

    def stream(
        self, req: object, request_id: str, *, load: LoadT | None = None, unloaded: str
    ) -> Iterator[object]:
        """Send generate request `req` and yield its events; `Done` is always last.

        With `load` (not yet loaded), the load is sent first and its events come in the
        same stream; the worker runs the request as soon as the model allows. `unloaded`
        is the message of the NotLoadedError raised if the model is unloaded meanwhile.
        """
        rid = request_id
        with_load = load is not None and not self.is_loaded(load)
        if with_load:
            with self._load_lock:
                worker = self._ensure_worker()
                q = worker.open(rid)
                worker.open(LOAD_KEY, q)
                self._waiting_on_load.add(rid)
                worker.send(load)
                worker.send(req)
        else:
            worker = self._running_worker()
            q = worker.open(rid)
            worker.send(req)
        finished = False
        try:
            while True:
                if self._cancels.get(rid) is False:
                    self._cancels[rid] = self._send_cancel(worker, rid, worker.send)
                try:
                    event = q.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if isinstance(event, LoadedEvent):
                    self._loaded, self._loaded_request = cast(LoadedT, event), load
                    self._waiting_on_load.discard(rid)
                    yield event
                elif isinstance(event, ErrorEvent) and event.request_id is None:
                    self._loaded = self._loaded_request = None
                    self._waiting_on_load.discard(rid)
                    if event.kind == "load_cancelled" and rid in self._cancels:
                        continue  # we cancelled both: the generation's Done follows
                    finished = True
                    raise self._error_for(event)
                elif isinstance(event, ErrorEvent):
                    finished = True
                    raise self._error_for(event)
                elif isinstance(event, Done):
                    finished = True
                    yield event
                    return
                elif isinstance(event, Gone):
                    finished = True
                    raise self._gone(event, unloaded)
                else:
                    yield event
        finally:
            if not finished and not self._cancels.get(rid):
                self._send_cancel(worker, rid, worker.send)
            worker.close(rid)
            if with_load:
                worker.close(LOAD_KEY)
            self._waiting_on_load.discard(rid)
            self._cancels.pop(rid, None)

    def ask(self, make: Callable[[str], object], unloaded: str) -> object:
        """Send `make(request_id)`, a request answered by one event, and return that event."""
        worker = self._running_worker()
        rid = f"ask-{uuid.uuid4().hex}"
        q = worker.open(rid)
        try:
            worker.send(make(rid))
            event = q.get()
            if isinstance(event, ErrorEvent):
                raise self._error_for(event)
            if isinstance(event, Gone):
                raise self._gone(event, unloaded)
            return event
        finally:
            worker.close(rid)

    def _send_cancel(self, worker: WorkerProcess, rid: str, send: Callable[[object], bool]) -> bool:
        """Cancel `rid`, and the load it waits on if it came with one."""
        sent = send(CancelRequest(rid))
        if sent and rid in self._waiting_on_load:
            send(CancelRequest(LOAD_REQUEST_ID))
        return sent

    def cancel(self, request_id: str) -> None:
        """Stop generation `request_id` soon; safe from any thread or a signal handler."""
        if self._cancels.get(request_id):
            return
        self._cancels[request_id] = False
        worker = self._worker
        if worker is not None and self._send_cancel(worker, request_id, worker.try_send):
            self._cancels[request_id] = True
