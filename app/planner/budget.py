"""What a machine can give a model: memory budgets with reserves, threads, the fit verdict.

Shared by the chat and the image plans. The constants were calibrated against peak RSS
measured with llama-cpp-python on real models (see docs/benchmarks.md and
scripts/measure_memory.py); tests keep the chat estimate within 15 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum, StrEnum
from typing import Any

from app.hardware.profile import (
    AVX2_WARNING,
    Backend,
    GpuInfo,
    HardwareProfile,
    llama_rebuild_warning,
)
from app.humanize import MiB

#: Python + llama-cpp-python + ggml code, thread pools and heap around a loaded model
#: (measured: 41 MiB after import, ~44 MiB more once a model and context exist).
PROCESS_OVERHEAD = 85 * MiB
#: CUDA context, cuBLAS workspace and kernels, held on the GPU once CUDA is initialised.
CUDA_CONTEXT_OVERHEAD = 400 * MiB
#: Metal's command buffers and pipeline state.
METAL_OVERHEAD = 160 * MiB
#: Free memory we leave to the OS and other apps: max(floor, fraction of total).
RAM_RESERVE_FLOOR, RAM_RESERVE_FRACTION = 512 * MiB, 0.05
VRAM_RESERVE_FLOOR, VRAM_RESERVE_FRACTION = 256 * MiB, 0.05
#: The share of RAM that could be free if the user closed other apps: the bar for "tight".
RAM_CEILING_FRACTION = 0.85


class FitVerdict(StrEnum):
    FITS_GPU = "fits on GPU"
    FITS_SPLIT = "fits split GPU+CPU"
    FITS_RAM = "fits in RAM"
    TIGHT = "tight"
    WONT_FIT = "won't fit"

    @property
    def rank(self) -> int:
        """Lower is better; split and RAM are both 'runs, not at full speed'."""
        return {"fits on GPU": 0, "fits split GPU+CPU": 1, "fits in RAM": 1, "tight": 2}.get(
            self.value, 3
        )


@dataclass(frozen=True)
class LoadSettings:
    """What the user chose; None means "let the planner decide"."""

    n_ctx: int | None = None
    kv_type: str = "f16"
    gpu_layers: int | None = None  # 0 forces CPU
    threads: int | None = None
    #: Prompt tokens llama.cpp takes per call, evaluated n_ubatch at a time (the compute
    #: buffer follows n_ubatch). 2048 per call measured no faster than 512 on a 2048-token
    #: prompt once rerun (docs/benchmarks.md, "Settings around Hearth's plan").
    n_batch: int = 512
    n_ubatch: int = 512
    backend: Backend | None = None
    image_width: int | None = None
    image_height: int | None = None


def ram_reserve(hw: HardwareProfile) -> int:
    """RAM left to the OS and other apps: a floor, or a share of the total on big machines."""
    return max(RAM_RESERVE_FLOOR, int(hw.ram_total * RAM_RESERVE_FRACTION))


def ram_budget(hw: HardwareProfile) -> int:
    """RAM a model may use now: what is free, less the reserve."""
    return max(hw.ram_available - ram_reserve(hw), 0)


def ram_ceiling(hw: HardwareProfile) -> int:
    """What could be free if the user closed other apps: the bar for "tight"."""
    return int(hw.ram_total * RAM_CEILING_FRACTION)


def gpu_budget(gpu: GpuInfo, hw: HardwareProfile) -> int:
    """Memory a model may use on `gpu` now, less the reserve."""
    if gpu.unified:
        # Apple Silicon: the GPU may use up to its working set, out of free RAM.
        limit = min(gpu.recommended_working_set or gpu.vram_total, hw.ram_available)
        return max(limit - ram_reserve(hw), 0)
    reserve = max(VRAM_RESERVE_FLOOR, int(gpu.vram_total * VRAM_RESERVE_FRACTION))
    return max(gpu.vram_free - reserve, 0)


def pick_gpu(hw: HardwareProfile, settings: LoadSettings | None = None) -> GpuInfo | None:
    """The GPU llama.cpp can use on this machine (most free memory first), or None."""
    if settings is not None and settings.backend == Backend.CPU:
        return None
    unusable = hw.gpus_llama_cannot_use()
    usable = [g for g in hw.gpus if g not in unusable]
    if settings is not None and settings.backend is not None:
        usable = [g for g in usable if g.kind == settings.backend.value]
    return max(usable, key=lambda g: g.vram_free, default=None)


def cpu_threads(hw: HardwareProfile, settings: LoadSettings | None = None) -> int:
    """Physical cores: decoding is memory-bound, and hyper-threads only add contention."""
    if settings is not None and settings.threads:
        return settings.threads
    return max(hw.cpu.physical_cores or hw.cpu.logical_cores, 1)


def hardware_warnings(hw: HardwareProfile) -> list[str]:
    """What on this machine makes llama.cpp slower than it could be, one sentence each."""
    warnings = [AVX2_WARNING] if hw.lacks_avx2 else []
    warnings.extend(llama_rebuild_warning(gpu) for gpu in hw.gpus_llama_cannot_use())
    return warnings


def ram_verdict(hw: HardwareProfile, need: int) -> FitVerdict:
    """The verdict for `need` bytes of RAM: fits now, fits once apps close, or never."""
    if need <= ram_budget(hw):
        return FitVerdict.FITS_RAM
    return FitVerdict.TIGHT if need <= ram_ceiling(hw) else FitVerdict.WONT_FIT


class JsonPlan:
    """What every plan dataclass shares: its JSON-ready form (enum members as their words)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self, dict_factory=_plain_items)  # type: ignore[call-overload]


def _plain_items(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v.value if isinstance(v, Enum) else v for k, v in items}
