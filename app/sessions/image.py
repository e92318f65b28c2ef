"""Making images end to end: model → plan → image worker → gallery, for the CLI and the GUI.

    session = ImageSession(db)
    job = session.prepare("sd-turbo", ImageSettings(prompt="a lighthouse at dusk"))
    result = session.run(job, on_event=show)  # ImageLoadProgress, StepProgress, Preview...
    result.images  # GalleryImage entries, saved as each image finished

Only finished images reach the gallery: a cancel or a crashed worker leaves nothing
half-written, and the images finished before it are kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from app.edition import NotInThisEdition, images_available
from app.engines.base import ImageEngine
from app.engines.image_diffusers.client import ImageEngineClient, check_model_folder
from app.engines.image_diffusers.protocol import (
    Done,
    ImageGenerateRequest,
    ImageLoaded,
    ImageLoadRequest,
    ImageMetrics,
    ImageResult,
)
from app.errors import HearthError
from app.models.gguf import ModelNotFoundError
from app.planner import ImagePlan, LoadSettings, plan_image_load
from app.planner.facts import ImageModelFacts
from app.planner.image_size import image_size
from app.sessions.base import Session
from app.store.gallery import GalleryImage, ImageParams, save_image
from app.store.library import ModelKind, find_model, newest_model


class ImageModelWontFitError(HearthError):
    default_remedy = (
        "Choose a smaller model (SD 1.5 or SD-Turbo need the least), a smaller image, or "
        "close other programs."
    )


@dataclass(frozen=True)
class ImageSettings:
    """What the person asked for; None means "the model's default"."""

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    scheduler: str | None = None
    n_images: int = 1
    preview_every: int = 5

    @classmethod
    def from_params(cls, params: ImageParams) -> ImageSettings:
        """ "Use these settings again": the settings an image was made with."""
        # An image records every setting by the same name, all but how many were made at once.
        made_with = {
            f.name: getattr(params, f.name) for f in fields(cls) if hasattr(params, f.name)
        }
        return cls(**made_with | {"scheduler": params.scheduler or None})


@dataclass(frozen=True)
class ImageJob:
    """One planned run: which model, loaded how, asked what."""

    model: str  # the library name, or the folder's name
    model_ref: str  # what `--model` takes to find it again: the library name or the folder
    folder: Path
    facts: ImageModelFacts
    plan: ImagePlan
    load: ImageLoadRequest
    request: ImageGenerateRequest


@dataclass
class ImagineResult:
    images: list[GalleryImage] = field(default_factory=list)
    reason: str = "complete"  # "complete" | "cancelled"
    loaded: ImageLoaded | None = None
    metrics: ImageMetrics | None = None


def is_turbo(name: str) -> bool:
    """SD-Turbo and SDXL-Turbo: one step and no guidance make an image."""
    return "turbo" in name.lower()


def model_defaults(name: str, facts: ImageModelFacts) -> tuple[int, float]:
    """(steps, guidance) a model of this kind is made for."""
    if is_turbo(name):
        return 1, 0.0
    if "lcm" in name.lower() or facts.pipeline_class == "LatentConsistencyModelPipeline":
        return 4, 1.0
    return 25, 7.0


def resolve_image_model(db: Database, name_or_path: str | None) -> tuple[Path, str]:
    """(folder, display name) for a library name (kind image) or a diffusers folder path.

    With no name, the image model added to the library most recently.
    """
    if name_or_path is None:
        newest = newest_model(db, ModelKind.IMAGE)
        if newest is None:
            raise ModelNotFoundError(
                "There is no image model in the library yet.",
                "Import a diffusers model folder with `hearth models import FOLDER`, or pass "
                "one with `--model FOLDER` (see docs/images.md for which to get).",
            )
        return newest.path, newest.name
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return candidate, candidate.name
    model = find_model(db, name_or_path)
    if model is None:
        if candidate.exists():
            raise ModelNotFoundError(
                f"{candidate} is a file; an image model is a diffusers folder "
                "(one with model_index.json)."
            )
        raise ModelNotFoundError(
            f"No image model named '{name_or_path}' is in the library, and there is no "
            f"folder at {candidate}.",
            "Run `hearth models list` to see the names, or give the path to a diffusers folder.",
        )
    if model.kind is not ModelKind.IMAGE:
        raise ModelNotFoundError(
            f"'{name_or_path}' is a {model.kind} model, not an image model.",
            "Pick an image model from `hearth models list`.",
        )
    folder = model.path
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"The library lists '{name_or_path}' at {folder}, but the folder is gone.",
            "Reconnect the drive it was on, or import the model again.",
        )
    return folder, model.name


class ImageSession(Session[ImageEngine]):
    """The image engine plus the gallery; one run at a time."""

    _current: str | None = None  # the request being made, for `stop`

    def default_client(self) -> ImageEngine:
        return ImageEngineClient()

    def prepare(self, model: str | None, settings: ImageSettings) -> ImageJob:
        """Resolve the model, check its folder, plan the load and fill in the defaults.

        Raises the folder's errors (pickle weights, missing components), ModelNotFoundError,
        ImageModelWontFitError, NotInThisEdition (the chat-only build); the request itself
        is checked when it runs.
        """
        if not images_available():
            raise NotInThisEdition()
        folder, name = resolve_image_model(self.db, model)
        from_library = model is None or not Path(model).expanduser().is_dir()
        model_ref = name if from_library else str(folder.resolve())
        facts = check_model_folder(str(folder))
        width, height = image_size(
            settings.width, settings.height, facts.family, facts.native_resolution
        )
        plan = plan_image_load(
            self.hardware, facts, LoadSettings(image_width=width, image_height=height)
        )
        if plan.verdict.value == "won't fit":
            raise ImageModelWontFitError(
                f"{name} at {width}x{height} needs more memory than this machine has "
                f"({plan.reasons[0] if plan.reasons else plan.verdict.value})"
            )
        steps, guidance = model_defaults(name, facts)
        # ImageSettings is the request less its id, with None where the model decides.
        filled = replace(
            settings,
            steps=settings.steps if settings.steps is not None else steps,
            guidance=settings.guidance if settings.guidance is not None else guidance,
            width=width,
            height=height,
        )
        request = ImageGenerateRequest(request_id=f"img-{uuid.uuid4().hex[:12]}", **asdict(filled))
        load = ImageLoadRequest.from_plan(str(folder), plan)
        return ImageJob(name, model_ref, folder, facts, plan, load, request)

    def run(self, job: ImageJob, on_event: Callable[[object], None] | None = None) -> ImagineResult:
        """Load if needed and generate, saving each finished image to the gallery.

        `on_event` sees every engine event and, after each save, the `GalleryImage`.
        Raises the engine's errors (WorkerCrashedError...) after keeping what finished.
        """
        from app import __version__

        result = ImagineResult()
        req = job.request
        self._current = req.request_id
        try:
            for event in self.client.generate(req, load=job.load):
                if on_event is not None:
                    on_event(event)
                if isinstance(event, ImageLoaded):
                    result.loaded = event
                elif isinstance(event, ImageMetrics):
                    result.metrics = event
                elif isinstance(event, ImageResult):
                    loaded = result.loaded or self.client.loaded
                    params = ImageParams(
                        prompt=req.prompt,
                        negative_prompt=req.negative_prompt,
                        seed=event.seed,
                        steps=req.steps,
                        guidance=req.guidance,
                        width=event.width,
                        height=event.height,
                        scheduler=event.scheduler,
                        model=job.model,
                        app_version=__version__,
                        extra={**_extra(loaded), "model_ref": job.model_ref},
                    )
                    image = save_image(self.db, event.png, params)
                    result.images.append(image)
                    if on_event is not None:
                        on_event(image)
                elif isinstance(event, Done):
                    result.reason = event.reason
        finally:
            self._current = None
        return result

    def stop(self) -> None:
        """Cancel the run in progress (between steps, or its load); safe from a signal handler."""
        current = self._current
        if current is not None:
            self.client.cancel(current)

    def unload(self) -> None:
        self.client.unload()


def _extra(loaded: ImageLoaded | None) -> dict[str, Any]:
    if loaded is None:
        return {}
    return {"device": loaded.device, "dtype": loaded.dtype, "memory_mode": loaded.memory_mode}
