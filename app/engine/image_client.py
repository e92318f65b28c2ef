"""The image engine client: runs the image worker process and speaks its protocol.

The image twin of `app.engine.client.ChatEngineClient`, built on the same process layer
(`app.engine.process`): the parent never imports torch or diffusers; the worker
(`app.engine.image_worker.worker_main`) starts on demand in a fresh "spawn" process; a
reader thread routes events by request id; `cancel` works from any thread or a signal
handler; a worker that dies is reported as `WorkerCrashedError` naming the cause, and the
next request starts a fresh one; `unload` ends the process.

Two ways to use it:

    client = ImageEngineClient()
    client.load(ImageLoadRequest.from_plan(folder, plan), on_progress=show)
    for event in client.generate(ImageGenerateRequest("r1", "a lighthouse at dusk")):
        ...  # PromptEncoded, StepProgress..., Preview..., ImageResult, ImageMetrics, Done

or in one stream, so the worker encodes the prompt while the UNet is still loading and
starts denoising as soon as it can (the load is skipped when it is already loaded):

    for event in client.generate(request, load=ImageLoadRequest.from_plan(folder, plan)):
        ...  # ImageLoadProgress..., PromptEncoded, ImageLoaded, StepProgress..., Done
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from types import TracebackType

from app.engine.image_protocol import (
    LOAD_REQUEST_ID,
    CancelRequest,
    Done,
    ErrorEvent,
    ImageEvent,
    ImageGenerateRequest,
    ImageLoaded,
    ImageLoadProgress,
    ImageLoadRequest,
    UnloadRequest,
    check_generate_request,
)
from app.engine.image_worker import worker_main
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
from app.hardware.facts import ImageModelFacts

__all__ = [
    "ImageEngineClient",
    "ImageGenerationError",
    "ImageLoadError",
    "InvalidImageRequestError",
    "LoadCancelledError",
    "NotLoadedError",
    "WorkerCrashedError",
]

IMAGE_CRASH_REMEDY = (
    "Hearth starts a fresh image worker for the next image. If it keeps happening, choose a "
    "smaller image size, a lower-memory mode or a smaller model."
)


class ImageLoadError(EngineError):
    default_remedy = (
        "Check that the folder is a complete diffusers model with .safetensors weights (copy "
        "or download it again if in doubt); if memory is short, choose a smaller model."
    )


class InvalidImageRequestError(EngineError):
    default_remedy = "Change that setting and try again."


class ImageGenerationError(EngineError):
    default_remedy = "Try a smaller image size or a lower-memory mode; `hearth doctor` helps."


def _route(event: object) -> Key:
    if isinstance(event, ImageLoadProgress | ImageLoaded):
        return LOAD_KEY
    return getattr(event, "request_id", None)  # None: a load's ErrorEvent


def _crash(exitcode: int | None) -> WorkerCrashedError:
    return WorkerCrashedError(
        describe_exit(exitcode, "image worker", "torch"), IMAGE_CRASH_REMEDY, exitcode=exitcode
    )


def _error_for(event: ErrorEvent) -> EngineError:
    if event.kind == "load_failed":
        return ImageLoadError(event.message, "")
    if event.kind == "load_cancelled":
        return LoadCancelledError(event.message)
    if event.kind == "not_loaded":
        return NotLoadedError(event.message)
    if event.kind == "bad_request":
        return InvalidImageRequestError(event.message)
    if event.kind == "generate_failed":
        return ImageGenerationError(event.message)
    return EngineError(event.message)


def check_model_folder(folder: str) -> ImageModelFacts:
    """Read a diffusers folder's facts, refusing pickle weights and missing components.

    Runs in the parent (no torch), before any worker starts: raises `PickleWeightsError`,
    `IncompletePipelineError` or `ModelNotFoundError`, each with what to do.
    """
    from app.models.diffusers_info import read_diffusers_facts

    return read_diffusers_facts(folder)


class ImageEngineClient:
    """Runs one image worker process on demand; thread-safe."""

    def __init__(self) -> None:
        self._mp = multiprocessing.get_context("spawn")
        self._worker: WorkerProcess | None = None
        self._last_process: BaseProcess | None = None
        self._start_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loaded: ImageLoaded | None = None
        self._loaded_request: ImageLoadRequest | None = None
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
    def loaded(self) -> ImageLoaded | None:
        """What the worker reported for the loaded pipeline, or None."""
        worker = self._worker
        return self._loaded if worker is not None and not worker.dead else None

    def is_alive(self) -> bool:
        worker = self._worker
        return worker is not None and not worker.dead and worker.process.is_alive()

    def is_loaded(self, req: ImageLoadRequest) -> bool:
        """Whether the worker holds exactly this pipeline, loaded this way."""
        return self.is_alive() and self._loaded is not None and self._loaded_request == req

    def _ensure_worker(self) -> WorkerProcess:
        with self._start_lock:
            worker = self._worker
            if worker is not None and not worker.dead:
                return worker
            if worker is not None:
                worker.stop(timeout=1)
            self._loaded = None
            self._loaded_request = None
            self._worker = WorkerProcess.start(
                self._mp,
                worker_main,
                name="hearth-image-worker",
                route=_route,
                crash_error=_crash,
                unload_message=UnloadRequest(),
            )
            self._last_process = self._worker.process
            return self._worker

    def _running_worker(self) -> WorkerProcess:
        with self._start_lock:
            worker = self._worker
            if worker is None:
                raise NotLoadedError("No image model is loaded.")
            if worker.dead:
                crash, reported = worker.crash, worker.crash_reported
                worker.crash_reported = True
                if crash is not None and not reported:
                    raise crash
                raise NotLoadedError("No image model is loaded: the image worker has stopped.")
            return worker

    def unload(self, timeout: float = 10.0) -> None:
        """Free the pipeline by ending the worker process (memory really returns)."""
        with self._start_lock:
            worker, self._worker = self._worker, None
            self._loaded = None
            self._loaded_request = None
        if worker is not None:
            worker.stop(timeout)

    close = unload

    def __enter__(self) -> ImageEngineClient:
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
        req: ImageLoadRequest,
        on_progress: Callable[[ImageLoadProgress], None] | None = None,
        cancel_event: threading.Event | None = None,
    ) -> ImageLoaded:
        """Load a pipeline (starting a worker if none runs), reporting progress; block until in.

        The folder is checked here first (pickle weights and missing components are refused
        before any worker starts). `on_progress` is called in this thread. Setting
        `cancel_event` aborts the load at once (LoadCancelledError). Raises
        ImageLoadError, LoadCancelledError, WorkerCrashedError, and the folder's errors.
        """
        check_model_folder(req.folder)
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
                    if isinstance(event, ImageLoadProgress):
                        if on_progress is not None:
                            on_progress(event)
                    elif isinstance(event, ImageLoaded):
                        done = True
                        self._loaded, self._loaded_request = event, req
                        return event
                    elif isinstance(event, ErrorEvent):
                        done = True
                        self._loaded = self._loaded_request = None
                        raise _error_for(event)
                    elif isinstance(event, Gone):
                        done = True
                        if event.error is not None:
                            raise event.error
                        raise LoadCancelledError("The image worker was stopped during the load.")
            finally:
                if not done:  # on_progress raised, or KeyboardInterrupt: stop the load too
                    worker.send(CancelRequest(LOAD_REQUEST_ID))
                worker.close(LOAD_KEY)

    def generate(
        self, req: ImageGenerateRequest, *, load: ImageLoadRequest | None = None
    ) -> Iterator[ImageEvent]:
        """Stream one generate request's events; `Done` is always last.

        With `load`, the pipeline is loaded first unless it already is, in the same stream
        (ImageLoadProgress..., ImageLoaded): the worker encodes the prompt as soon as the
        text encoder is in and starts denoising as soon as the pipeline allows. The request is
        checked (size for the model family, steps, scheduler name...) before anything is
        sent. `cancel(req.request_id)` from any thread ends it (and a load it waits on)
        with Done(reason="cancelled"); leaving the loop early cancels it too. Raises
        InvalidImageRequestError, NotLoadedError, ImageLoadError, WorkerCrashedError.
        """
        rid = req.request_id
        with_load = load is not None and not self.is_loaded(load)
        if load is not None:
            family = check_model_folder(load.folder).family
        elif self._loaded is not None:
            family = self._loaded.family
        else:
            family = "sd15"
        problem = check_generate_request(req, family)
        if problem:
            raise InvalidImageRequestError(problem)

        if with_load:
            assert load is not None
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
                if isinstance(event, ImageLoaded):
                    self._loaded, self._loaded_request = event, load
                    self._waiting_on_load.discard(rid)
                    yield event
                elif isinstance(event, ErrorEvent) and event.request_id is None:
                    self._loaded = self._loaded_request = None
                    self._waiting_on_load.discard(rid)
                    if event.kind == "load_cancelled" and rid in self._cancels:
                        continue  # we cancelled both: the generation's Done follows
                    finished = True
                    raise _error_for(event)
                elif isinstance(event, ErrorEvent):
                    finished = True
                    raise _error_for(event)
                elif isinstance(event, Done):
                    finished = True
                    yield event
                    return
                elif isinstance(event, Gone):
                    finished = True
                    if event.error is not None:
                        raise event.error
                    raise NotLoadedError("The image model was unloaded while it was working.")
                else:
                    yield event  # type: ignore[misc]
        finally:
            if not finished and not self._cancels.get(rid):
                self._send_cancel(worker, rid, worker.send)
            worker.close(rid)
            if with_load:
                worker.close(LOAD_KEY)
            self._waiting_on_load.discard(rid)
            self._cancels.pop(rid, None)

    def _send_cancel(self, worker: WorkerProcess, rid: str, send: Callable[[object], bool]) -> bool:
        """Cancel `rid`, and the load it waits on if it came with one."""
        sent = send(CancelRequest(rid))
        if sent and rid in self._waiting_on_load:
            send(CancelRequest(LOAD_REQUEST_ID))
        return sent

    def cancel(self, request_id: str) -> None:
        """Stop generation `request_id` between steps; safe from any thread or signal handler."""
        if self._cancels.get(request_id):
            return
        self._cancels[request_id] = False
        worker = self._worker
        if worker is not None and self._send_cancel(worker, request_id, worker.try_send):
            self._cancels[request_id] = True
