"""The typed messages between the image engine client (parent) and its worker process.

`CancelRequest`, `UnloadRequest`, `ErrorEvent` and `Done`, and their rules, are those of
every engine (`app.engines.worker.messages`); the requests and events here are the image
engine's own. Each is a frozen dataclass of plain data (PNG images travel as bytes), so
it pickles across the pipe.

Requests (client → worker) and what the worker answers:

- `ImageLoadRequest` → `ImageLoadProgress` per component (text encoders first, then the
  UNet, then the VAE), then `ImageLoaded`; or `ErrorEvent(request_id=None)`.
- `ImageGenerateRequest` → `PromptEncoded`, then per image `StepProgress` each step,
  `Preview` every few steps and `ImageResult`; then `ImageMetrics` and `Done`; or
  `ErrorEvent`. A generate sent while a load is under way waits in the worker: its prompt
  is encoded as soon as the text encoder is in, while the UNet is still loading, and its
  first step runs as soon as the UNet is in (on a GPU, while the VAE finishes loading) or
  the VAE is.
- `CancelRequest(id)` → that generation ends (between steps) with `Done("cancelled")`;
  `CancelRequest(LOAD_REQUEST_ID)` aborts a load at once (and a generation waiting on
  it), which ends with `ErrorEvent(kind="load_cancelled")`.
- `UnloadRequest` → no answer: the worker frees the pipeline and its process exits.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engines.worker.messages import (
    Done,
    ErrorEvent,
    LoadedEvent,
    LoadProgressEvent,
    RequestEvent,
)
from app.planner import ImagePlan
from app.planner.image_size import check_size

__all__ = [
    "SCHEDULERS",
    "Done",
    "ErrorEvent",
    "ImageGenerateRequest",
    "ImageLoadProgress",
    "ImageLoadRequest",
    "ImageLoaded",
    "ImageMetrics",
    "ImageResult",
    "Preview",
    "PromptEncoded",
    "StepProgress",
    "check_generate_request",
]

#: The schedulers a person can choose by name (None: the model's own scheduler).
#: LCM applies only to LCM-distilled models; the worker refuses it elsewhere.
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M", "DDIM", "LCM")

MAX_STEPS = 500
MAX_IMAGES = 16


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLoadRequest:
    """Load the diffusers pipeline in `folder` (replacing any loaded one) this way.

    device "cuda" | "mps" | "cpu"; dtype "float16" | "bfloat16" | "float32"; memory_mode
    one of `ImageMemoryMode`'s values; vae_tiling decodes large images tile by tile.
    overlap_vae: whether a generate that waits on this load may start denoising while
    the VAE still loads; None decides by device (yes on a GPU, where loading and
    denoising use different hardware; no on the CPU, where they would share the cores).
    """

    folder: str
    device: str = "cpu"
    dtype: str = "float32"
    memory_mode: str = "full"
    vae_tiling: bool = False
    overlap_vae: bool | None = None

    @classmethod
    def from_plan(cls, folder: str, plan: ImagePlan) -> ImageLoadRequest:
        """The request that carries out a planner's `ImagePlan`."""
        return cls(
            folder=folder,
            device=plan.device,
            dtype=plan.dtype,
            memory_mode=plan.memory_mode.value,
            vae_tiling=plan.vae_tiling,
        )


@dataclass(frozen=True)
class ImageGenerateRequest:
    """Make `n_images` images of `prompt`; image i uses seed `seed + i`.

    seed None: a random seed (reported in each `ImageResult`). scheduler None: the model's
    own. preview_every 0: no previews.
    """

    request_id: str
    prompt: str
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    seed: int | None = None
    scheduler: str | None = None
    n_images: int = 1
    preview_every: int = 5


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLoadProgress(LoadProgressEvent):
    """One component's load progress: bytes read so far; `ready` once it is usable.

    `fraction` is the whole pipeline's progress by bytes, never decreasing.
    """

    component: str  # "text_encoder", "unet", "vae", "tokenizer", "scheduler", ...
    bytes_done: int
    bytes_total: int
    fraction: float
    elapsed_s: float
    ready: bool = False


@dataclass(frozen=True)
class ImageLoaded(LoadedEvent):
    """Every component is in. `memory_mode` is the mode applied; `note` says why it differs."""

    load_s: float
    device: str
    dtype: str
    memory_mode: str
    vae_tiling: bool
    pipeline: str  # "StableDiffusionPipeline" | "StableDiffusionXLPipeline"
    family: str  # "sd15" | "sd2" | "sdxl"
    native_size: int
    default_scheduler: str  # the model's own scheduler, by name
    note: str | None = None


@dataclass(frozen=True)
class PromptEncoded(RequestEvent):
    """The prompt went through the text encoder(s); `loading` lists components not yet in."""

    encode_s: float
    loading: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepProgress(RequestEvent):
    """Denoising step `step` of `steps` of image `image_index` (0-based) is done."""

    image_index: int
    n_images: int
    step: int
    steps: int
    s_per_step: float
    eta_s: float  # for every image still to come, decoding not included


@dataclass(frozen=True)
class Preview(RequestEvent):
    """A rough look at the image so far (latents → RGB by a linear map), as a small PNG."""

    image_index: int
    step: int
    png: bytes
    width: int
    height: int


@dataclass(frozen=True)
class ImageResult(RequestEvent):
    """One finished image, PNG-encoded (no metadata: the gallery adds it)."""

    image_index: int
    seed: int
    png: bytes
    width: int
    height: int
    scheduler: str  # the scheduler used, by name


@dataclass(frozen=True)
class ImageMetrics(RequestEvent):
    """Measured numbers for one generate request, sent just before its `Done`.

    first_step_s: from the worker taking up the request to the first UNet call.
    load_to_first_step_s: for a request that waited on a load, from the load's start.
    """

    images: int  # finished images
    steps: int
    s_per_step: float
    first_step_s: float
    total_s: float
    encode_s: float
    device: str
    dtype: str
    memory_mode: str
    load_to_first_step_s: float | None = None


ImageEvent = (
    ImageLoadProgress
    | ImageLoaded
    | PromptEncoded
    | StepProgress
    | Preview
    | ImageResult
    | ImageMetrics
    | ErrorEvent
    | Done
)


# --- validation (pure, shared by the client and the worker) --------------------------------


def check_generate_request(req: ImageGenerateRequest, family: str) -> str | None:
    """Why `req` cannot run on a model of `family` (one sentence), or None."""
    size = check_size(req.width, req.height, family)
    if size:
        return size
    if not req.prompt.strip():
        return "The prompt is empty: describe the image you want."
    if not 1 <= req.steps <= MAX_STEPS:
        return f"Steps must be between 1 and {MAX_STEPS} (got {req.steps})."
    if not 0 <= req.guidance <= 50:
        return f"Guidance must be between 0 and 50 (got {req.guidance:g})."
    if not 1 <= req.n_images <= MAX_IMAGES:
        return f"The number of images must be between 1 and {MAX_IMAGES} (got {req.n_images})."
    if req.scheduler is not None and req.scheduler not in SCHEDULERS:
        return (
            f"There is no scheduler called '{req.scheduler}': choose one of "
            f"{', '.join(SCHEDULERS)}."
        )
    if req.seed is not None and not 0 <= req.seed <= 2**63 - req.n_images:
        return f"The seed must be a whole number from 0 to 2^63 - {req.n_images} (got {req.seed})."
    if req.preview_every < 0:
        return "preview_every must be 0 (no previews) or more."
    return None
