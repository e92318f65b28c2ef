"""The image worker process: a diffusers pipeline behind a pipe, loaded component by component.

`worker_main(conn)` is what the image worker process runs (the client names this module;
`app.engines.worker.process` starts it in a fresh "spawn" process). It is the only place
in Hearth that imports `torch`, `diffusers` and `transformers`, and it does so inside the
worker, so importing this module (as tests do) loads nothing heavy.

Loading reads `model_index.json`, refuses anything but safetensors weights and the known
pipeline and component classes (never `trust_remote_code`), and then loads the components
one at a time, in a loader thread, in the order a generation needs them: scheduler,
tokenizer(s), text encoder(s), UNet, VAE. The main thread meanwhile keeps reading the pipe,
so that:

- a cancel ends the load at once (a component still being built is dropped when done);
- progress is reported in bytes: a reader thread reads each component's files alongside
  its build, so the disk and the CPU work at the same time;
- a generate request that arrives during the load has its prompt encoded as soon as the
  text encoders are in, while the UNet is still loading;
- its denoising starts as soon as the UNet is in, while the VAE is still loading (the last
  step waits for the VAE, which is needed only to decode) on a GPU; on the CPU, where
  the two would share the cores, once the VAE is in (`ImageLoadRequest.overlap_vae`).

The pipeline is assembled from the components as they arrive (`register_modules`), and
generation goes through the pipeline's own `__call__` with the prompt embeddings computed
beforehand. Requests, cancels, unloading and failures follow the serve loop of every
engine worker (`app.engines.worker.serve`); a watchdog thread also ends the worker if the
parent dies in the middle of a long step.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from app.engines.image_diffusers.protocol import (
    ErrorEvent,
    ImageGenerateRequest,
    ImageLoaded,
    ImageLoadProgress,
    ImageLoadRequest,
    ImageMetrics,
    ImageResult,
    Preview,
    PromptEncoded,
    StepProgress,
    check_generate_request,
)
from app.engines.worker.serve import (
    LoadAborted,
    ParentGone,
    WorkerServer,
    exit_when_orphaned,
    run_worker,
)
from app.planner.image import Device, Dtype, ImageMemoryMode

#: Pipelines Hearth runs, by `_class_name` in model_index.json. SD-Turbo and SDXL-Turbo use
#: these same classes; LCM-distilled SD models run in the plain SD pipeline.
PIPELINES = {
    "StableDiffusionPipeline": "StableDiffusionPipeline",
    "LatentConsistencyModelPipeline": "StableDiffusionPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLPipeline",
}
#: The component classes a model_index.json may name: nothing else is ever instantiated.
ALLOWED_CLASSES = {
    "tokenizer": ("transformers", {"CLIPTokenizer", "CLIPTokenizerFast"}),
    "text_encoder": ("transformers", {"CLIPTextModel", "CLIPTextModelWithProjection"}),
    "unet": ("diffusers", {"UNet2DConditionModel"}),
    "vae": ("diffusers", {"AutoencoderKL"}),
    "scheduler": (
        "diffusers",
        {
            "DDIMScheduler",
            "DDPMScheduler",
            "DPMSolverMultistepScheduler",
            "EulerAncestralDiscreteScheduler",
            "EulerDiscreteScheduler",
            "HeunDiscreteScheduler",
            "LCMScheduler",
            "LMSDiscreteScheduler",
            "PNDMScheduler",
            "UniPCMultistepScheduler",
        },
    ),
}
#: The order components load in: what the first denoising step needs comes first.
LOAD_ORDER = (
    "scheduler",
    "tokenizer",
    "tokenizer_2",
    "text_encoder",
    "text_encoder_2",
    "unet",
    "vae",
)
TEXT_SIDE = ("scheduler", "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
#: Components a text-to-image run does not use (the safety checker is the user's choice).
SKIPPED = ("safety_checker", "feature_extractor", "image_encoder")

#: Schedulers by the names people know them by: (class, settings over the model's config).
SCHEDULER_CHOICES: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
_SCHEDULER_NAMES = {cls: name for name, (cls, _) in SCHEDULER_CHOICES.items()} | {
    "PNDMScheduler": "PNDM",
    "LMSDiscreteScheduler": "LMS",
    "UniPCMultistepScheduler": "UniPC",
    "DDPMScheduler": "DDPM",
    "HeunDiscreteScheduler": "Heun",
}

#: Latent → RGB by a linear map: a preview for the price of a matrix product (the factors
#: the community fitted for SD 1.x/2.x and SDXL latents, as in ComfyUI's previews).
LATENT_RGB = {
    "sd": (
        ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721)),
        (-0.2120, -0.2616, -0.7177),
        (0.0, 0.0, 0.0),
    ),
    "sdxl": (
        ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362)),
        (-0.3165, -0.2492, -0.2188),
        (0.1084, -0.0175, -0.0011),
    ),
}

#: Bytes read per step while reading a weight file ahead of building its component (small
#: enough to stay in the CPU cache: reading 1.7 GB already cached costs 0.16 s, not 0.3 s).
READ_CHUNK = 1024 * 1024
PROGRESS_INTERVAL_S = 0.1
#: Set to "1" (tests only) to make every read-ahead chunk take this long, so that a load
#: lasts long enough to be cancelled or raced on a fast machine.
SLOW_LOAD_ENV = "HEARTH_TEST_SLOW_IMAGE_LOAD_S"


class _LoadFailed(Exception):
    """The load cannot go on; the message is the sentence the user sees."""


class _Cancelled(Exception):
    """The running generation was cancelled."""


def worker_main(conn: Connection) -> None:
    """Serve image requests on `conn` until an UnloadRequest or until the parent goes away."""
    # Never reach for the network, and keep the libraries' chatter off the user's terminal.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    exit_when_orphaned()
    run_worker(conn, _ImageWorker)


@dataclass
class _Component:
    """One pipeline component to load: where its files are and how to build it."""

    name: str
    library: str
    class_name: str
    files: list[Path]
    size: int
    variant: str | None = None
    cls: Any = None  # the class, looked up (imported) in the main thread


@dataclass
class _Loading:
    """A load in progress: the loader thread, what it has delivered, and its progress."""

    req: ImageLoadRequest
    t0: float
    components: list[_Component]
    total_bytes: int
    events: queue.Queue[tuple[Any, ...]] = field(default_factory=queue.Queue)
    abort: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    ready: set[str] = field(default_factory=set)
    ready_bytes: int = 0
    last_fraction: float = 0.0
    finished: bool = False

    def pending(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.name not in self.ready)


@dataclass
class _Run:
    """Timing of the generation in progress."""

    req: ImageGenerateRequest
    received_at: float
    image_index: int = 0
    image_started_at: float | None = None  # the first UNet call of this image
    first_step_at: float | None = None  # the first UNet call of the request
    step_seconds: float = 0.0  # denoising time of finished steps, all images
    steps_done: int = 0  # the steps of finished images
    steps_run: int = 0  # every step that ran, finished image or not


class _ImageWorker(WorkerServer):
    name = "image worker"

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.handlers = {ImageLoadRequest: self._load, ImageGenerateRequest: self._generate}
        # The only imports of torch, diffusers and transformers in Hearth.
        import diffusers
        import torch
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        self.torch: Any = torch
        self.diffusers: Any = diffusers
        self.transformers: Any = transformers
        self.loading: _Loading | None = None
        self.pipe: Any = None
        self.parts: dict[str, Any] = {}
        self.default_scheduler: Any = None
        self.req: ImageLoadRequest | None = None
        self.family = "sd15"
        self.pipeline_name = ""
        self.time_cond_proj_dim: int | None = None
        self.native_size = 512
        self.applied_mode = "full"
        self.notes: list[str] = []
        self.loaded: ImageLoaded | None = None
        # request id → (embeddings, seconds to encode); None: encoding ahead failed
        self.encoded: dict[str, tuple[Any, float] | None] = {}
        self.run: _Run | None = None
        self.orphans: list[threading.Thread] = []  # loader threads of abandoned loads

    def cancel_load(self) -> None:
        self.abort_loading()

    def shutdown(self) -> None:
        self.abort_loading()
        self.unload_model()

    # --- loading ------------------------------------------------------------------------

    def abort_loading(self) -> None:
        loading = self.loading
        if loading is not None:
            loading.abort.set()

    def unload_model(self) -> None:
        loading, self.loading = self.loading, None
        if loading is not None:
            self._orphan(loading)
        self.pipe = None
        self.parts = {}
        self.default_scheduler = None
        self.loaded = None
        self.encoded.clear()
        gc.collect()
        torch = self.torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _load(self, req: ImageLoadRequest) -> None:
        self.unload_model()
        # A cancelled load's last component may still be building: let it finish (and be
        # dropped) first, so two copies of a model are never in memory at once.
        while self.orphans:
            self.orphans.pop().join()
        t0 = time.perf_counter()
        try:
            components = self._plan_components(req)
        except _LoadFailed as exc:
            self.send(ErrorEvent(None, "load_failed", str(exc)))
            return
        self.req = req
        self.notes = []
        self.applied_mode = req.memory_mode
        loading = _Loading(req, t0, components, sum(c.size for c in components) or 1)
        loading.thread = threading.Thread(
            target=self._loader, args=(loading,), name="hearth-image-loader", daemon=True
        )
        self.loading = loading
        loading.thread.start()
        try:
            while True:
                self.poll(None)
                if not loading.finished:
                    self._pump(loading, timeout=0.02)
                waiting = self._next_queued_generate() if self.pipe is not None else None
                if waiting is None:
                    if loading.finished:
                        break
                    continue
                if waiting.request_id not in self.encoded:
                    self._encode_ahead(waiting, loading)
                if self.pipe.unet is not None and (
                    loading.finished or self._may_start_before_vae(req)
                ):
                    # The request that waited on this load runs now, as part of it (its
                    # metrics count from the load's start); later ones go through serve().
                    self.backlog.remove(waiting)
                    self._generate(waiting)
                    if loading.finished:
                        break
        except LoadAborted:
            self._discard_load(loading)
            self.send(ErrorEvent(None, "load_cancelled", "The image model load was cancelled."))
        except _LoadFailed as exc:
            self._discard_load(loading)
            self.send(ErrorEvent(None, "load_failed", str(exc)))
        else:
            self.loading = None

    def _orphan(self, loading: _Loading) -> None:
        """Stop a load without waiting: the component being built is dropped when done."""
        loading.abort.set()
        if loading.thread is not None and loading.thread.is_alive():
            self.orphans.append(loading.thread)

    def _discard_load(self, loading: _Loading) -> None:
        self._orphan(loading)
        self.loading = None
        self.unload_model()

    def _plan_components(self, req: ImageLoadRequest) -> list[_Component]:
        """Check the folder and list what to load, in order; _LoadFailed says why not."""
        from app.errors import HearthError
        from app.models.diffusers_folder import read_diffusers_facts

        folder = Path(req.folder)
        try:
            facts = read_diffusers_facts(folder)
        except HearthError as exc:
            raise _LoadFailed(str(exc)) from exc
        index = json.loads((folder / "model_index.json").read_text())
        class_name = str(index.get("_class_name", ""))
        if class_name not in PIPELINES:
            raise _LoadFailed(
                f"{folder.name} is a {class_name or 'custom'} model; Hearth runs Stable "
                "Diffusion 1.x/2.x, SDXL and their Turbo and LCM variants."
            )
        self.pipeline_name = PIPELINES[class_name]
        self.family = facts.family if facts.family in ("sd15", "sd2", "sdxl") else "sd15"
        self.native_size = facts.native_resolution
        unet_config = _read_json(folder / "unet" / "config.json")
        self.time_cond_proj_dim = unet_config.get("time_cond_proj_dim")
        components = []
        for name in LOAD_ORDER:
            spec = index.get(name)
            if not spec or spec[0] is None or spec[1] is None:
                continue
            library, cls = str(spec[0]), str(spec[1])
            allowed_library, allowed = ALLOWED_CLASSES[name.removesuffix("_2")]
            if library != allowed_library or cls not in allowed:
                raise _LoadFailed(
                    f"The '{name}' component of {folder.name} is a {library}.{cls}, which "
                    "Hearth does not load (it runs only the standard Stable Diffusion parts)."
                )
            sub = folder / name
            if not sub.is_dir():
                raise _LoadFailed(f"The pipeline lists a '{name}' component but {sub} is missing.")
            variant = None
            if name in ("text_encoder", "text_encoder_2", "unet", "vae"):
                files, variant = _weight_files(sub, req.dtype)
            else:
                files = sorted(p for p in sub.iterdir() if p.is_file())
            components.append(
                _Component(name, library, cls, files, sum(p.stat().st_size for p in files), variant)
            )
        names = {c.name for c in components}
        for needed in ("scheduler", "tokenizer", "text_encoder", "unet", "vae"):
            if needed not in names:
                raise _LoadFailed(
                    f"{folder.name} has no '{needed}' component, which a text-to-image "
                    "pipeline needs."
                )
        try:
            self._import_classes(components)
        except (AttributeError, ImportError, RuntimeError) as exc:
            raise _LoadFailed(
                f"The installed diffusers/transformers cannot load {folder.name}: {exc}"
            ) from exc
        return components

    def _import_classes(self, components: list[_Component]) -> None:
        """Look up every class the load and the first run need, before the loader starts.

        diffusers and transformers import their classes lazily, on first use; two threads
        doing that at once can see half-imported modules, so it all happens here, in order.
        """
        for component in components:
            library = self.diffusers if component.library == "diffusers" else self.transformers
            component.cls = getattr(library, component.class_name)
        getattr(self.diffusers, self.pipeline_name)
        for class_name, _settings in SCHEDULER_CHOICES.values():
            getattr(self.diffusers, class_name)
        import diffusers.image_processor  # noqa: F401 - used when the pipeline is assembled
        import PIL.Image  # noqa: F401 - previews and results

    def _loader(self, loading: _Loading) -> None:
        """The loader thread: build each component in turn while a reader reports bytes."""
        current = ""
        try:
            for component in loading.components:
                current = component.name
                if loading.abort.is_set():
                    raise LoadAborted
                built = self._build_with_progress(component, loading)
                if loading.abort.is_set():
                    raise LoadAborted
                loading.events.put(("ready", component.name, built))
        except LoadAborted:
            loading.events.put(("aborted", current))
        except BaseException as exc:
            loading.events.put(("failed", current, exc))

    def _build_with_progress(self, component: _Component, loading: _Loading) -> Any:
        """Build a component while a reader thread reads its files ahead, reporting bytes.

        The reader runs alongside the build, not before it, so the disk and the CPU work
        at once: reading first and building after made a cold load of a 1.7 GB UNet slower
        than diffusers' own loading. The bytes it reads are what the build's memory-mapped
        reads then find in the OS cache, so its count is the load's real progress.
        """
        import psutil

        stop = threading.Event()
        reader = None
        if component.size < psutil.virtual_memory().available // 2:  # else it would not stay
            reader = threading.Thread(
                target=self._read_ahead,
                args=(component, loading, stop),
                name=f"hearth-image-read-{component.name}",
                daemon=True,
            )
            reader.start()
        try:
            self._test_delay(component, loading)
            return self._build(component, loading.req)
        finally:
            stop.set()
            if reader is not None:
                reader.join()

    def _read_ahead(self, component: _Component, loading: _Loading, stop: threading.Event) -> None:
        done = 0
        last = 0.0
        view = memoryview(bytearray(READ_CHUNK))
        try:
            for path in component.files:
                with path.open("rb", buffering=0) as fh:
                    while not (stop.is_set() or loading.abort.is_set()):
                        n = fh.readinto(view)
                        if not n:
                            break
                        done += n
                        now = time.perf_counter()
                        if now - last >= PROGRESS_INTERVAL_S:
                            last = now
                            loading.events.put(("progress", component.name, done))
        except OSError:
            return  # the build reads the same files and reports the problem
        if done:
            loading.events.put(("progress", component.name, done))

    def _test_delay(self, component: _Component, loading: _Loading) -> None:
        """Tests only (SLOW_LOAD_ENV): a slow disk, seconds per file, cancellable."""
        slow = float(os.environ.get(SLOW_LOAD_ENV, "0") or 0)
        for _ in component.files if slow else ():
            deadline = time.perf_counter() + slow
            while time.perf_counter() < deadline:
                if loading.abort.is_set():
                    raise LoadAborted
                time.sleep(0.01)

    def _build(self, component: _Component, req: ImageLoadRequest) -> Any:
        """Build one component from its subfolder (safetensors only, local files only)."""
        torch = self.torch
        cls = component.cls
        folder = Path(req.folder)
        sub = folder / component.name
        if component.name.startswith("tokenizer"):
            return cls.from_pretrained(str(sub), local_files_only=True)
        if component.name == "scheduler":
            return cls.from_pretrained(str(folder), subfolder="scheduler", local_files_only=True)
        dtype = _torch_dtype(torch, req.dtype)
        common: dict[str, Any] = {
            "local_files_only": True,
            "use_safetensors": True,
            "dtype": dtype,
        }
        if component.variant:
            common["variant"] = component.variant
        if component.library == "diffusers":
            model = cls.from_pretrained(str(folder), subfolder=component.name, **common)
        else:
            model = cls.from_pretrained(str(sub), **common)
        model.eval()
        offload = req.memory_mode in ("model_cpu_offload", "sequential_cpu_offload")
        # With offload, the UNet and VAE stay in RAM until the offload hooks take over; the
        # text encoders go to the device at once so the prompt can be encoded early.
        if not offload or component.name.startswith("text_encoder"):
            model.to(req.device)
        return model

    def _pump(self, loading: _Loading, timeout: float) -> None:
        """Take what the loader thread delivered: report progress, install components.

        Returns after installing a component, so the caller can use it at once (encode a
        waiting prompt the moment the text encoder is in). An abort is reported at once,
        without waiting for the component being built (its result is dropped).
        """
        if loading.abort.is_set() and not loading.finished:
            raise LoadAborted
        try:
            item = loading.events.get(timeout=timeout) if timeout else loading.events.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, name = item[0], item[1]
            component = next(c for c in loading.components if c.name == name) if name else None
            if kind == "progress" and component is not None:
                done = min(int(item[2]), component.size)
                self._send_progress(loading, component, done, ready=False)
            elif kind == "ready" and component is not None:
                self._install(loading, component, item[2])
                return
            elif kind == "aborted":
                raise LoadAborted
            elif kind == "failed":
                raise _LoadFailed(self._load_failure(name, item[2], loading.req))
            try:
                item = loading.events.get_nowait()
            except queue.Empty:
                return

    def _send_progress(
        self, loading: _Loading, component: _Component, done: int, *, ready: bool
    ) -> None:
        # Reading counts for 90 % of a component's share, building it the rest; a ready
        # component is already in `ready_bytes`.
        share = 0 if ready else int(0.9 * done)
        fraction = min((loading.ready_bytes + share) / loading.total_bytes, 1.0)
        loading.last_fraction = fraction = max(fraction, loading.last_fraction)
        self.send(
            ImageLoadProgress(
                component=component.name,
                bytes_done=done,
                bytes_total=component.size,
                fraction=fraction,
                elapsed_s=time.perf_counter() - loading.t0,
                ready=ready,
            )
        )

    def _install(self, loading: _Loading, component: _Component, built: Any) -> None:
        """Put a loaded component in place; the pipeline grows as its parts arrive."""
        name = component.name
        self.parts[name] = built
        loading.ready.add(name)
        loading.ready_bytes += component.size
        if name == "scheduler":
            self.default_scheduler = built
        if self.pipe is None and all(
            c.name in loading.ready for c in loading.components if c.name in TEXT_SIDE
        ):
            self._assemble_text_side(loading)
        elif self.pipe is not None and name == "unet":
            self.pipe.register_modules(unet=built)
            built.register_forward_pre_hook(self._on_unet_call)
            if self.applied_mode == "attention_slicing":
                self.pipe.enable_attention_slicing()
        elif self.pipe is not None and name == "vae":
            self.pipe.register_modules(vae=built)
            if loading.req.vae_tiling or self.applied_mode == "vae_tiling":
                built.enable_tiling()
            if self.applied_mode == "vae_tiling":
                built.enable_slicing()
        self._send_progress(loading, component, component.size, ready=True)
        if len(loading.ready) == len(loading.components):
            self._finish_load(loading)

    def _assemble_text_side(self, loading: _Loading) -> None:
        """The pipeline object with its text side in place; UNet and VAE come later."""
        cls = getattr(self.diffusers, self.pipeline_name)
        parts = self.parts
        if self.pipeline_name == "StableDiffusionXLPipeline":
            self.pipe = cls(
                vae=None,
                text_encoder=parts.get("text_encoder"),
                text_encoder_2=parts.get("text_encoder_2"),
                tokenizer=parts.get("tokenizer"),
                tokenizer_2=parts.get("tokenizer_2"),
                unet=None,
                scheduler=parts["scheduler"],
                add_watermarker=False,
            )
        else:
            self.pipe = cls(
                vae=None,
                text_encoder=parts["text_encoder"],
                tokenizer=parts["tokenizer"],
                unet=None,
                scheduler=parts["scheduler"],
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        # Without a VAE the pipeline assumes 8; take the real factor from the VAE's config.
        vae_config = _read_json(Path(loading.req.folder) / "vae" / "config.json")
        factor = 2 ** (len(vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1)
        if factor != self.pipe.vae_scale_factor:
            from diffusers.image_processor import VaeImageProcessor

            self.pipe.vae_scale_factor = factor
            self.pipe.image_processor = VaeImageProcessor(vae_scale_factor=factor)
        self.pipe.set_progress_bar_config(disable=True)

    def _finish_load(self, loading: _Loading) -> None:
        req = loading.req
        mode = req.memory_mode
        if mode in (ImageMemoryMode.MODEL_CPU_OFFLOAD, ImageMemoryMode.SEQUENTIAL_CPU_OFFLOAD):
            if req.device == Device.CPU:
                self.notes.append(
                    f"'{mode}' does not apply on the CPU (the weights are already in system "
                    "RAM): running in 'full' mode."
                )
                mode = "full"
            else:
                try:
                    import accelerate  # noqa: F401 - the offload hooks come from accelerate
                except ImportError:
                    self.notes.append(
                        f"'{mode}' needs the accelerate package, which is missing: running "
                        "in 'full' mode."
                    )
                    mode = "full"
                    self.pipe.to(req.device)
                else:
                    for name in ("text_encoder", "text_encoder_2"):
                        if self.parts.get(name) is not None:
                            self.parts[name].to("cpu")
                    if mode == "model_cpu_offload":
                        self.pipe.enable_model_cpu_offload(device=req.device)
                    else:
                        self.pipe.enable_sequential_cpu_offload(device=req.device)
        self.applied_mode = mode
        loading.finished = True
        self.loaded = ImageLoaded(
            load_s=time.perf_counter() - loading.t0,
            device=req.device,
            dtype=req.dtype,
            memory_mode=mode,
            vae_tiling=req.vae_tiling or mode == "vae_tiling",
            pipeline=self.pipeline_name,
            family=self.family,
            native_size=self.native_size,
            default_scheduler=_scheduler_name(self.default_scheduler),
            note=" ".join(self.notes) or None,
        )
        self.send(self.loaded)

    def _may_start_before_vae(self, req: ImageLoadRequest) -> bool:
        """Whether denoising may start while the VAE still loads (see `overlap_vae`).

        Offload hooks need the whole pipeline, so with offload the first step waits. On
        the CPU the VAE's load would compete with the first steps for the same cores (it
        took 3-13 s instead of 0.2 s on 2 cores, docs/benchmarks.md), so it waits there
        too unless asked.
        """
        offload = req.memory_mode in ("model_cpu_offload", "sequential_cpu_offload")
        if offload and req.device != "cpu":
            return False
        if req.overlap_vae is not None:
            return req.overlap_vae
        return req.device != "cpu"

    def _wait_for_vae(self, rid: str) -> None:
        """Called before the last step's decode: let the VAE finish loading (or cancel)."""
        loading = self.loading
        while loading is not None and "vae" not in loading.ready:
            if self.poll(rid):
                raise _Cancelled
            self._pump(loading, timeout=0.02)

    def _load_failure(self, component: str, exc: BaseException, req: ImageLoadRequest) -> str:
        name = Path(req.folder).name
        if _is_out_of_memory(self.torch, exc):
            where = "GPU memory" if req.device != "cpu" else "memory"
            return (
                f"Loading the {component} of {name} ran out of {where}; choose a lower-memory "
                "mode or a smaller model."
            )
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"Could not load the {component} of {name}: {reason[:400]}"

    # --- generation ---------------------------------------------------------------------

    def _next_queued_generate(self) -> ImageGenerateRequest | None:
        for msg in self.backlog:
            if isinstance(msg, ImageGenerateRequest) and msg.request_id not in self.cancelled_ids:
                return msg
        return None

    def _encode_ahead(self, req: ImageGenerateRequest, loading: _Loading) -> None:
        """Encode a queued request's prompt now, while the rest of the pipeline loads."""
        if check_generate_request(req, self.family) is not None:
            return  # refused when it runs, with the reason
        torch = self.torch
        threads = torch.get_num_threads()
        # The loader thread is busy building the UNet: share the cores with it rather than
        # oversubscribe them (two thread pools spinning on the same cores slow both).
        torch.set_num_threads(max(threads // 2, 1))
        t = time.perf_counter()
        try:
            embeddings = self._encode(req)
        except Exception:
            self.encoded[req.request_id] = None  # it runs later and reports its own error
            return
        finally:
            torch.set_num_threads(threads)
        encode_s = time.perf_counter() - t
        self.encoded[req.request_id] = (embeddings, encode_s)
        self.send(PromptEncoded(req.request_id, encode_s, loading.pending()))

    def _do_cfg(self, req: ImageGenerateRequest) -> bool:
        """Classifier-free guidance, decided the way the pipeline decides it."""
        return req.guidance > 1 and self.time_cond_proj_dim is None

    def _encode(self, req: ImageGenerateRequest) -> dict[str, Any]:
        """The prompt embeddings `pipe(...)` takes, from the pipeline's own encode_prompt."""
        pipe = self.pipe
        device = self.torch.device(self.req.device if self.req else "cpu")
        negative = req.negative_prompt or None
        with self.torch.inference_mode():
            if self.pipeline_name == "StableDiffusionXLPipeline":
                pe, npe, ppe, nppe = pipe.encode_prompt(
                    prompt=req.prompt,
                    device=device,
                    num_images_per_prompt=1,
                    do_classifier_free_guidance=self._do_cfg(req),
                    negative_prompt=negative,
                )
                return {
                    "prompt_embeds": pe,
                    "negative_prompt_embeds": npe,
                    "pooled_prompt_embeds": ppe,
                    "negative_pooled_prompt_embeds": nppe,
                }
            pe, npe = pipe.encode_prompt(
                req.prompt, device, 1, self._do_cfg(req), negative_prompt=negative
            )
            return {"prompt_embeds": pe, "negative_prompt_embeds": npe}

    def _scheduler_for(self, name: str | None) -> tuple[Any, str]:
        """A fresh scheduler (they keep state) configured from the model's own."""
        default = self.default_scheduler
        if name is None:
            return type(default).from_config(default.config), _scheduler_name(default)
        class_name, settings = SCHEDULER_CHOICES[name]
        cls = getattr(self.diffusers, class_name)
        return cls.from_config(default.config, **settings), name

    def _refusal(self, req: ImageGenerateRequest) -> str | None:
        problem = check_generate_request(req, self.family)
        if problem:
            return problem
        lcm_model = (
            type(self.default_scheduler).__name__ == "LCMScheduler"
            or self.time_cond_proj_dim is not None
        )
        if req.scheduler == "LCM" and not lcm_model:
            return (
                "The LCM scheduler works only with LCM-distilled models; choose Euler, "
                "Euler a, DPM++ 2M or DDIM for this one."
            )
        return None

    def _generate(self, req: ImageGenerateRequest) -> None:
        rid = req.request_id
        received = time.perf_counter()
        if self.cancelled_while_queued(rid):
            self.encoded.pop(rid, None)
            return
        if self.pipe is None or self.pipe.unet is None:
            self.send(ErrorEvent(rid, "not_loaded", "No image model is loaded."))
            return
        problem = self._refusal(req)
        if problem:
            self.encoded.pop(rid, None)
            self.send(ErrorEvent(rid, "bad_request", problem))
            return
        loading = self.loading
        self.run = run = _Run(req, received)
        done_images = 0
        reason = "complete"
        encode_s = 0.0
        try:
            ahead = self.encoded.pop(rid, None)
            if ahead is not None:
                embeddings, encode_s = ahead
            else:
                t = time.perf_counter()
                embeddings = self._encode(req)
                encode_s = time.perf_counter() - t
                self.send(PromptEncoded(rid, encode_s, loading.pending() if loading else ()))
            seed = req.seed if req.seed is not None else secrets.randbelow(2**32)
            for index in range(req.n_images):
                run.image_index, run.image_started_at = index, None
                self._make_image(req, index, seed + index, embeddings)
                done_images += 1
        except _Cancelled:
            reason = "cancelled"
        except (LoadAborted, _LoadFailed):
            # The VAE this image waited for will not come: end the generation, then let
            # the load report why.
            self.send_done(rid, "cancelled", f"{run.steps_run} steps: the load stopped")
            raise
        except ParentGone:
            raise
        except Exception as exc:
            self.send(ErrorEvent(rid, "generate_failed", self._generate_failure(exc, req)))
            return
        finally:
            self.run = None
        steps_done = max(run.steps_done, 1)
        self.send(
            ImageMetrics(
                request_id=rid,
                images=done_images,
                steps=req.steps,
                s_per_step=run.step_seconds / steps_done,
                first_step_s=(run.first_step_at - received) if run.first_step_at else 0.0,
                total_s=time.perf_counter() - received,
                encode_s=encode_s,
                device=self.req.device if self.req else "cpu",
                dtype=self.req.dtype if self.req else "float32",
                memory_mode=self.applied_mode,
                load_to_first_step_s=(
                    run.first_step_at - loading.t0 if loading and run.first_step_at else None
                ),
            )
        )
        self.send_done(
            rid, "cancelled" if reason == "cancelled" else "complete", f"{run.steps_run} steps"
        )

    def _make_image(
        self, req: ImageGenerateRequest, index: int, seed: int, embeddings: dict[str, Any]
    ) -> None:
        torch = self.torch
        pipe = self.pipe
        scheduler, scheduler_name = self._scheduler_for(req.scheduler)
        pipe.scheduler = scheduler
        # A CPU generator: the same seed gives the same starting noise on every device.
        generator = torch.Generator("cpu").manual_seed(seed)
        with torch.inference_mode():
            output = pipe(
                **embeddings,
                num_inference_steps=req.steps,
                guidance_scale=req.guidance,
                callback_on_step_end=self._step_callback(req, index),
                width=req.width,
                height=req.height,
                generator=generator,
                output_type="pil",
            )
        image = output.images[0]
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        self.send(
            ImageResult(
                request_id=req.request_id,
                image_index=index,
                seed=seed,
                png=buf.getvalue(),
                width=image.width,
                height=image.height,
                scheduler=scheduler_name,
            )
        )

    def _on_unet_call(self, _module: Any, _args: Any) -> None:
        run = self.run
        if run is not None and run.image_started_at is None:
            run.image_started_at = time.perf_counter()
            if run.first_step_at is None:
                run.first_step_at = run.image_started_at

    def _step_callback(
        self, req: ImageGenerateRequest, index: int
    ) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
        rid = req.request_id

        def on_step_end(_pipe: Any, i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            run = self.run
            assert run is not None
            now = time.perf_counter()
            step = i + 1
            run.steps_run += 1
            started = run.image_started_at or now
            s_per_step = (now - started) / step
            if step == req.steps:
                run.step_seconds += now - started
                run.steps_done += req.steps
            left = (req.steps - step) + (req.n_images - index - 1) * req.steps
            eta = s_per_step * left
            self.send(StepProgress(rid, index, req.n_images, step, req.steps, s_per_step, eta))
            if req.preview_every and step % req.preview_every == 0 and step < req.steps:
                self._send_preview(rid, index, step, tensors.get("latents"))
            if self.loading is not None:
                self._pump(self.loading, timeout=0)
            if self.poll(rid):
                raise _Cancelled
            if step == req.steps:
                self._wait_for_vae(rid)
            return tensors

        return on_step_end

    def _send_preview(self, rid: str, index: int, step: int, latents: Any) -> None:
        if latents is None or latents.ndim != 4 or latents.shape[1] != 4:
            return
        from PIL import Image

        torch = self.torch
        rows, last, bias = LATENT_RGB["sdxl" if self.family == "sdxl" else "sd"]
        factors = torch.tensor((*rows, last), dtype=torch.float32)  # 4 latent channels x RGB
        latent = latents[0].detach().to("cpu", torch.float32)
        rgb = torch.einsum("chw,cr->hwr", latent, factors) + torch.tensor(bias)
        pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        image = Image.fromarray(pixels, "RGB")
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        self.send(Preview(rid, index, step, buf.getvalue(), image.width, image.height))

    def _generate_failure(self, exc: Exception, req: ImageGenerateRequest) -> str:
        if _is_out_of_memory(self.torch, exc):
            return (
                f"Making a {req.width}x{req.height} image ran out of memory; choose a smaller "
                "size or a lower-memory mode."
            )
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"The image could not be made: {reason[:400]}"


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def _weight_files(sub: Path, dtype: str) -> tuple[list[Path], str | None]:
    """The safetensors files from_pretrained will read, and the variant that selects them."""
    files = sorted(sub.glob("*.safetensors"))
    fp16 = [p for p in files if ".fp16." in p.name]
    plain = [p for p in files if p not in fp16]
    if dtype == Dtype.FLOAT16 and fp16:
        return fp16, "fp16"
    if plain:
        return plain, None
    return fp16, "fp16"


def _torch_dtype(torch: Any, name: str) -> Any:
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(name, torch.float32)


def _scheduler_name(scheduler: Any) -> str:
    class_name = type(scheduler).__name__
    return _SCHEDULER_NAMES.get(class_name, class_name.removesuffix("Scheduler"))


def _is_out_of_memory(torch: Any, exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return bool(oom and isinstance(exc, oom)) or "out of memory" in str(exc).lower()
