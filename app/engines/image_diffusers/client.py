"""The image engine client: runs the diffusers image worker process and speaks its protocol.

The parent never imports torch, diffusers nor the worker module
(`app.engines.image_diffusers.worker`): it starts on demand in a fresh process, and
starting, crashes, cancels and unloading follow the rules of every engine worker
(`app.engines.worker.client.WorkerClient`). What is the image engine's own: the model
folder is checked here before any worker starts, and a request is checked against the
model family before it is sent.

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

from collections.abc import Iterator
from typing import cast

from app.engines.errors import EngineError
from app.engines.image_diffusers.protocol import (
    ImageEvent,
    ImageGenerateRequest,
    ImageLoaded,
    ImageLoadProgress,
    ImageLoadRequest,
    check_generate_request,
)
from app.engines.worker.client import WorkerClient, WorkerSpec
from app.planner.facts import ImageModelFacts

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


def _load_error(message: str) -> EngineError:
    return ImageLoadError(message, "")  # the worker's sentence already says what to do


IMAGE_WORKER = WorkerSpec(
    kind="image",
    log_name="image-worker",
    library="torch",
    module="app.engines.image_diffusers.worker",
    errors={
        "load_failed": _load_error,
        "bad_request": InvalidImageRequestError,
        "generate_failed": ImageGenerationError,
    },
    crash_remedy=IMAGE_CRASH_REMEDY,
)


def check_model_folder(folder: str) -> ImageModelFacts:
    """Read a diffusers folder's facts, refusing pickle weights and missing components.

    Runs in the parent (no torch), before any worker starts: raises `PickleWeightsError`,
    `IncompletePipelineError` or `ModelNotFoundError`, each with what to do.
    """
    from app.models.diffusers_folder import read_diffusers_facts

    return read_diffusers_facts(folder)


class ImageEngineClient(WorkerClient[ImageLoadRequest, ImageLoaded, ImageLoadProgress]):
    """Runs one image worker process on demand; thread-safe."""

    def __init__(self) -> None:
        super().__init__(IMAGE_WORKER)

    def check_load(self, req: ImageLoadRequest) -> None:
        """Refuse pickle weights and missing components before any worker starts."""
        check_model_folder(req.folder)

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
        if load is not None:
            family = check_model_folder(load.folder).family
        elif self._loaded is not None:
            family = self._loaded.family
        else:
            family = "sd15"
        problem = check_generate_request(req, family)
        if problem:
            raise InvalidImageRequestError(problem)
        events = self.stream(
            req,
            req.request_id,
            load=load,
            unloaded="The image model was unloaded while it was working.",
        )
        yield from cast(Iterator[ImageEvent], events)
