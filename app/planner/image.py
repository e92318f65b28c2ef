"""The image load plan: device, dtype and memory mode for a diffusers pipeline, with a verdict."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from app.hardware.profile import Backend, GpuInfo, HardwareProfile
from app.humanize import GiB, MiB, format_gib
from app.planner.budget import (
    CUDA_CONTEXT_OVERHEAD,
    PROCESS_OVERHEAD,
    FitVerdict,
    JsonPlan,
    LoadSettings,
    gpu_budget,
    ram_budget,
    ram_ceiling,
    ram_verdict,
)
from app.planner.facts import ImageModelFacts
from app.planner.image_size import image_size

#: Peak activation memory per megapixel of output, by family, in fp16 (UNet + VAE decode).
ACTIVATIONS_PER_MP = {"sd15": 1.6 * GiB, "sd2": 1.8 * GiB, "sdxl": 1.2 * GiB}
NATIVE_RESOLUTION = {"sd15": 512, "sd2": 768, "sdxl": 1024, "sd3": 1024}
#: torch + diffusers + transformers in the image worker, on top of the weights.
IMAGE_WORKER_OVERHEAD = PROCESS_OVERHEAD * 8
#: What sequential offload keeps on the GPU at once: the largest layer and its buffers.
SEQUENTIAL_OFFLOAD_RESIDENT = 600 * MiB


class Device(StrEnum):
    """The torch device a pipeline runs on."""

    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"


class Dtype(StrEnum):
    """The torch dtype the weights are loaded in."""

    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"


class ImageMemoryMode(StrEnum):
    FULL = "full"
    ATTENTION_SLICING = "attention_slicing"
    VAE_TILING = "vae_tiling"
    MODEL_CPU_OFFLOAD = "model_cpu_offload"
    SEQUENTIAL_CPU_OFFLOAD = "sequential_cpu_offload"

    @property
    def offloads(self) -> bool:
        """Whether the weights live in RAM and visit the GPU only while they run."""
        return self in (ImageMemoryMode.MODEL_CPU_OFFLOAD, ImageMemoryMode.SEQUENTIAL_CPU_OFFLOAD)


@dataclass(frozen=True)
class ImagePlan(JsonPlan):
    """How to load one diffusers pipeline on one machine, and whether it fits."""

    model: str
    device: Device
    dtype: Dtype
    memory_mode: ImageMemoryMode
    vae_tiling: bool
    verdict: FitVerdict
    weights_bytes: int
    peak_device_bytes: int  # what must be resident on the device at once
    ram_bytes: int
    width: int
    height: int
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Request:
    """The size of the picture asked for, and what it costs in activations."""

    width: int
    height: int
    native: int
    per_mp: float

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def above_native(self) -> bool:
        """Larger than the model's native size (10 % slack): where VAE tiling pays off."""
        return self.megapixels > 1.1 * self.native**2 / 1e6


def plan_image_load(
    hardware: HardwareProfile, model: ImageModelFacts, settings: LoadSettings | None = None
) -> ImagePlan:
    """Decide device, dtype and memory mode for a diffusers pipeline, with a fit verdict.

    Pure, like the chat plan: tested on simulated machines. Raises ImageSizeError for a
    size the model cannot make (`app.planner.image_size`: the rule every face shares).
    """
    settings = settings or LoadSettings()
    hw = hardware
    native = model.native_resolution or NATIVE_RESOLUTION.get(model.family, 512)
    width, height = image_size(settings.image_width, settings.image_height, model.family, native)
    req = _Request(
        width=width,
        height=height,
        native=native,
        per_mp=ACTIVATIONS_PER_MP.get(model.family, 1.6 * GiB),
    )
    warnings: list[str] = []  # llama.cpp build notes do not concern images

    cuda = _first_gpu(hw, Backend.CUDA) if hw.builds.torch_cuda else None
    metal = _first_gpu(hw, Backend.METAL) if hw.builds.torch_mps else None
    if settings.backend == Backend.CPU:
        cuda = metal = None
    if cuda is None and _first_gpu(hw, Backend.CUDA) and hw.builds.torch_cuda is False:
        warnings.append("The NVIDIA GPU is not used: the installed torch has no CUDA support.")

    if cuda is not None:
        plan = _plan_cuda(hw, model, req, cuda)
    elif metal is not None:
        plan = _plan_metal(hw, model, req, metal)
    else:
        plan = _plan_cpu(hw, model, req)
    return replace(plan, warnings=tuple(warnings))


def _first_gpu(hw: HardwareProfile, kind: Backend) -> GpuInfo | None:
    return next((g for g in hw.gpus if g.kind == kind), None)


def _plan_cuda(
    hw: HardwareProfile, model: ImageModelFacts, req: _Request, cuda: GpuInfo
) -> ImagePlan:
    dtype = Dtype.FLOAT16
    weights = model.bytes_as(dtype)
    activations = int(req.per_mp * req.megapixels * (2.0 if model.family == "sdxl" else 1.0) / 2)
    budget = gpu_budget(cuda, hw) - CUDA_CONTEXT_OVERHEAD
    largest = model.largest_component_as(dtype)
    # Each mode, fastest first, with the peak it keeps on the GPU.
    options: list[tuple[ImageMemoryMode, int, str]] = [
        (ImageMemoryMode.FULL, weights + activations, "everything stays on the GPU"),
        (
            ImageMemoryMode.ATTENTION_SLICING,
            weights + activations // 2,
            "attention computed in slices to lower the peak",
        ),
        (
            ImageMemoryMode.MODEL_CPU_OFFLOAD,
            largest + activations // 2,
            "each component moves to the GPU only while it runs",
        ),
        (
            ImageMemoryMode.SEQUENTIAL_CPU_OFFLOAD,
            SEQUENTIAL_OFFLOAD_RESIDENT + activations // 4,
            "weights stream to the GPU layer by layer (slow, but needs little VRAM)",
        ),
    ]
    # The first (fastest) mode whose peak fits; the last one when none does.
    mode, peak, why = next((o for o in options if o[1] <= budget), options[-1])
    ram_need = (weights if mode.offloads else 0) + IMAGE_WORKER_OVERHEAD
    if peak > budget:
        verdict = FitVerdict.WONT_FIT
    elif ram_need > ram_budget(hw):
        verdict = FitVerdict.TIGHT if ram_need <= ram_ceiling(hw) else FitVerdict.WONT_FIT
    elif mode.offloads:
        verdict = FitVerdict.FITS_SPLIT
    else:
        verdict = FitVerdict.FITS_GPU
    reason = (
        f"{cuda.name}, float16, memory mode '{mode.value}': {why} "
        f"(peak {format_gib(peak)} of {format_gib(budget)} usable VRAM)."
    )
    return _image_plan(
        model, req, Device.CUDA, dtype, mode, verdict, weights, peak, ram_need, reason
    )


def _plan_metal(
    hw: HardwareProfile, model: ImageModelFacts, req: _Request, metal: GpuInfo
) -> ImagePlan:
    dtype = Dtype.FLOAT16
    weights = model.bytes_as(dtype)
    activations = int(req.per_mp * req.megapixels)
    budget = gpu_budget(metal, hw)
    need = weights + activations + IMAGE_WORKER_OVERHEAD
    mode = ImageMemoryMode.FULL
    if need > budget:
        mode = ImageMemoryMode.ATTENTION_SLICING
        need = weights + activations // 2 + IMAGE_WORKER_OVERHEAD
    if need <= budget:
        verdict = FitVerdict.FITS_GPU
    elif need <= ram_ceiling(hw):
        verdict = FitVerdict.TIGHT
    else:
        verdict = FitVerdict.WONT_FIT
    reason = f"{metal.name} through MPS, float16, memory mode '{mode.value}'."
    return _image_plan(model, req, Device.MPS, dtype, mode, verdict, weights, need, need, reason)


def _plan_cpu(hw: HardwareProfile, model: ImageModelFacts, req: _Request) -> ImagePlan:
    # float32 is the safe choice; bfloat16 halves memory where the CPU has native bf16.
    bf16 = "avx512_bf16" in hw.cpu.simd or "amx_bf16" in hw.cpu.simd
    dtype = Dtype.BFLOAT16 if bf16 else Dtype.FLOAT32
    weights = model.bytes_as(dtype)
    activations = int(req.per_mp * req.megapixels * (2 if dtype == Dtype.FLOAT32 else 1))
    need = weights + activations + IMAGE_WORKER_OVERHEAD
    mode = ImageMemoryMode.FULL
    notes = []
    if need > ram_budget(hw) and dtype == Dtype.FLOAT32:
        # Half the weights is worth a slower step when RAM is short.
        dtype = Dtype.BFLOAT16
        weights = model.bytes_as(dtype)
        need = weights + activations // 2 + IMAGE_WORKER_OVERHEAD
        notes.append("bfloat16 on the CPU to halve memory (float32 would not fit).")
    if need > ram_budget(hw):
        mode = ImageMemoryMode.ATTENTION_SLICING
    verdict = ram_verdict(hw, need)
    notes.append(f"Runs on the CPU in {dtype} (no usable GPU); expect minutes per image.")
    return _image_plan(model, req, Device.CPU, dtype, mode, verdict, weights, 0, need, *notes)


def _image_plan(
    model: ImageModelFacts,
    req: _Request,
    device: Device,
    dtype: Dtype,
    mode: ImageMemoryMode,
    verdict: FitVerdict,
    weights: int,
    peak: int,
    ram: int,
    *reasons: str,
) -> ImagePlan:
    return ImagePlan(
        model=model.name,
        device=device,
        dtype=dtype,
        memory_mode=mode,
        # Tiling the VAE decode lowers the peak of large pictures; the plan asks for it on
        # CUDA only, where VRAM is the pool that runs out.
        vae_tiling=device == Device.CUDA and req.above_native,
        verdict=verdict,
        weights_bytes=weights,
        peak_device_bytes=peak,
        ram_bytes=ram,
        width=req.width,
        height=req.height,
        reasons=reasons,
    )
