"""The chat engine client: runs the chat worker process and speaks its protocol.

Used by the CLI and the GUI in the parent process, which never imports `llama_cpp`: the
worker (`app.engine.chat_worker.worker_main`) is started on demand in a fresh "spawn"
process, so the same code works in a PyInstaller build (whose entry point must call
`multiprocessing.freeze_support()`).

A reader thread receives the worker's events and hands each to the call waiting for it
(by request id), so `count_tokens` answers while a reply is being generated, `cancel` may
be called from any thread or a signal handler, and a worker that dies (segfault, the
out-of-memory killer) is noticed at once and reported as `WorkerCrashedError`. The next
`load` starts a fresh worker.

    client = ChatEngineClient()
    client.load(LoadRequest.from_plan(path, plan), on_progress=show)
    for event in client.generate(GenerateRequest(request_id="r1", prompt=text)):
        ...  # TokenEvent..., Metrics, Done
    client.unload()  # the process ends, its memory goes back to the system
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from types import TracebackType

from app.engine.chat_worker import worker_main
from app.engine.process import (
    LOAD_KEY,
    POLL_S,
    EngineError,
    Gone,
    Key,
    LoadCancelledError,
    NotLoadedError,
    WorkerCrashedError,
    WorkerProcess,
    describe_exit,
)
from app.engine.protocol import (
    LOAD_REQUEST_ID,
    CancelRequest,
    Done,
    ErrorEvent,
    GenerateRequest,
    Loaded,
    LoadProgress,
    LoadRequest,
    Metrics,
    TokenEvent,
    TokenizeRequest,
    TokensEvent,
    UnloadRequest,
)

__all__ = [
    "ChatEngineClient",
    "ContextOverflowError",
    "EngineError",
    "LoadCancelledError",
    "ModelLoadError",
    "NotLoadedError",
    "WorkerCrashedError",
    "describe_exit",
]


class ModelLoadError(EngineError):
    default_remedy = (
        "Check that the file is a complete GGUF chat model (download it again if it may be "
        "cut short or damaged); if memory is short, choose a smaller quantization, a "
        "shorter context or fewer GPU layers."
    )


class ContextOverflowError(EngineError):
    default_remedy = (
        "Start a new chat, shorten the message, or load the model with a larger context."
    )


def _route(event: object) -> Key:
    if isinstance(event, LoadProgress | Loaded):
        return LOAD_KEY
    return getattr(event, "request_id", None)  # None: a load's ErrorEvent


def _crash(exitcode: int | None) -> WorkerCrashedError:
    return WorkerCrashedError(describe_exit(exitcode), exitcode=exitcode)


def _error_for(event: ErrorEvent) -> EngineError:
    if event.kind == "load_failed":
        return ModelLoadError(event.message)
    if event.kind == "load_cancelled":
        return LoadCancelledError(event.message)
    if event.kind == "context_overflow":
        return ContextOverflowError(event.message)
    if event.kind == "not_loaded":
        return NotLoadedError(event.message)
    return EngineError(event.message)


class ChatEngineClient:
    """Runs one chat worker process on demand; thread-safe."""

    def __init__(self) -> None:
        self._mp = multiprocessing.get_context("spawn")
        self._worker: WorkerProcess | None = None
        self._last_process: BaseProcess | None = None
        self._start_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._cancels: dict[str, bool] = {}  # request id → CancelRequest already sent

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
    def loaded(self) -> Loaded | None:
        """What the worker reported for the loaded model, or None."""
        worker = self._worker
        return self._loaded if worker is not None and not worker.dead else None

    def is_alive(self) -> bool:
        worker = self._worker
        return worker is not None and not worker.dead and worker.process.is_alive()

    def _ensure_worker(self) -> WorkerProcess:
        with self._start_lock:
            worker = self._worker
            if worker is not None and not worker.dead:
                return worker
            if worker is not None:
                worker.stop(timeout=1)
            self._loaded = None
            self._worker = WorkerProcess.start(
                self._mp,
                worker_main,
                name="hearth-chat-worker",
                route=_route,
                crash_error=_crash,
                unload_message=UnloadRequest(),
            )
            self._last_process = self._worker.process
            return self._worker

    def _running_worker(self) -> WorkerProcess:
        """The worker that holds (or is loading) the model, for generate and count_tokens."""
        with self._start_lock:
            worker = self._worker
            if worker is None:
                raise NotLoadedError("No chat model is loaded.")
            if worker.dead:
                crash, reported = worker.crash, worker.crash_reported
                worker.crash_reported = True
                if crash is not None and not reported:
                    raise crash
                raise NotLoadedError("No chat model is loaded: the chat worker has stopped.")
            return worker

    def unload(self, timeout: float = 10.0) -> None:
        """Free the model by ending the worker process (memory really returns)."""
        with self._start_lock:
            worker, self._worker = self._worker, None
            self._loaded = None
        if worker is not None:
            worker.stop(timeout)

    close = unload

    def __enter__(self) -> ChatEngineClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unload()

    # --- requests -----------------------------------------------------------------------

    def load(
        self,
        req: LoadRequest,
        on_progress: Callable[[LoadProgress], None] | None = None,
        cancel_event: threading.Event | None = None,
    ) -> Loaded:
        """Load a model (starting a worker if none runs), reporting progress; block until ready.

        `on_progress` is called in this thread. Setting `cancel_event` aborts the load
        (LoadCancelledError). Raises ModelLoadError, LoadCancelledError, WorkerCrashedError.
        """
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
                    if isinstance(event, LoadProgress):
                        if on_progress is not None:
                            on_progress(event)
                    elif isinstance(event, Loaded):
                        done = True
                        self._loaded = event
                        return event
                    elif isinstance(event, ErrorEvent):
                        done = True
                        self._loaded = None
                        raise _error_for(event)
                    elif isinstance(event, Gone):
                        done = True
                        if event.error is not None:
                            raise event.error
                        raise LoadCancelledError("The chat worker was stopped during the load.")
            finally:
                if not done:  # on_progress raised, or KeyboardInterrupt: stop the load too
                    worker.send(CancelRequest(LOAD_REQUEST_ID))
                worker.close(LOAD_KEY)

    def generate(self, req: GenerateRequest) -> Iterator[TokenEvent | Metrics | Done]:
        """Stream a reply: TokenEvents, then Metrics, then Done (always last).

        The request is sent when iteration starts. `cancel(req.request_id)` from any thread
        ends it with Done(reason="cancelled"); leaving the loop early cancels it too.
        Raises NotLoadedError, ContextOverflowError, WorkerCrashedError, EngineError.
        """
        worker = self._running_worker()
        rid = req.request_id
        q = worker.open(rid)
        finished = False
        try:
            worker.send(req)
            while True:
                if self._cancels.get(rid) is False:
                    self._cancels[rid] = worker.send(CancelRequest(rid))
                try:
                    event = q.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if isinstance(event, TokenEvent | Metrics):
                    yield event
                elif isinstance(event, Done):
                    finished = True
                    yield event
                    return
                elif isinstance(event, ErrorEvent):
                    finished = True
                    raise _error_for(event)
                elif isinstance(event, Gone):
                    finished = True
                    if event.error is not None:
                        raise event.error
                    raise NotLoadedError("The model was unloaded while it was answering.")
        finally:
            if not finished and not self._cancels.get(rid):
                worker.send(CancelRequest(rid))
            worker.close(rid)
            self._cancels.pop(rid, None)

    def cancel(self, request_id: str) -> None:
        """Stop generation `request_id` soon (within a token); safe from any thread or signal."""
        if self._cancels.get(request_id):
            return
        self._cancels[request_id] = False
        worker = self._worker
        if worker is not None and worker.try_send(CancelRequest(request_id)):
            self._cancels[request_id] = True

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for the loaded model (special tokens parsed, with BOS)."""
        worker = self._running_worker()
        rid = f"tok-{uuid.uuid4().hex}"
        q = worker.open(rid)
        try:
            worker.send(TokenizeRequest(rid, text))
            while True:
                event = q.get()
                if isinstance(event, TokensEvent):
                    return event.count
                if isinstance(event, ErrorEvent):
                    raise _error_for(event)
                if isinstance(event, Gone):
                    if event.error is not None:
                        raise event.error
                    raise NotLoadedError("The model was unloaded.")
        finally:
            worker.close(rid)
