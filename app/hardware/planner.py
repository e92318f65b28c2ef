"""The load planner: a pure function from (hardware, model facts, settings) to a load plan.

Every number is an estimate of *resident* memory: weights + KV cache + compute buffers +
fixed overhead, checked against *free* memory minus a reserve. The constants below were
calibrated against peak RSS measured with llama-cpp-python on real models (see
docs/benchmarks.md and scripts/measure_memory.py); tests keep the estimate within 15 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from app.hardware.facts import ChatModelFacts, ImageModelFacts
from app.hardware.profile import Backend, GpuInfo, HardwareProfile

MiB = 1024**2
GiB = 1024**3

# --- calibration constants (see module docstring) ---------------------------------------
#: Python + llama-cpp-python + ggml code, thread pools and heap around a loaded model
#: (measured: 41 MiB after import, ~44 MiB more once a model and context exist).
PROCESS_OVERHEAD = 85 * MiB
#: Activation scratch one micro-batch touches, per token per embedding unit (measured).
ACTIVATION_BYTES_PER_EMBD = 96
#: CUDA context, cuBLAS workspace and kernels, held on the GPU once CUDA is initialised.
CUDA_CONTEXT_OVERHEAD = 400 * MiB
#: Metal's command buffers and pipeline state.
METAL_OVERHEAD = 160 * MiB
#: Free memory we leave to the OS and other apps: max(floor, fraction of total).
RAM_RESERVE_FLOOR, RAM_RESERVE_FRACTION = 512 * MiB, 0.05
VRAM_RESERVE_FLOOR, VRAM_RESERVE_FRACTION = 256 * MiB, 0.05
#: Context sizes tried when the user does not choose one, largest first.
AUTO_CONTEXTS = (8192, 4096, 2048)
KV_ELEMENT_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


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


class ImageMemoryMode(StrEnum):
    FULL = "full"
    ATTENTION_SLICING = "attention_slicing"
    VAE_TILING = "vae_tiling"
    MODEL_CPU_OFFLOAD = "model_cpu_offload"
    SEQUENTIAL_CPU_OFFLOAD = "sequential_cpu_offload"


@dataclass(frozen=True)
class LoadSettings:
    """What the user chose; None means "let the planner decide"."""

    n_ctx: int | None = None
    kv_type: str = "f16"
    gpu_layers: int | None = None  # 0 forces CPU
    threads: int | None = None
    n_batch: int = 512
    n_ubatch: int = 512
    backend: Backend | None = None
    image_width: int | None = None
    image_height: int | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated resident bytes by part, and where they live."""

    weights: int  # the model file (memory-mapped)
    kv_cache: int
    compute: int
    overhead: int
    repacked: int = 0  # llama.cpp's CPU copy of Q4 weights in a faster layout
    gpu_bytes: int = 0
    cpu_bytes: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.repacked + self.kv_cache + self.compute + self.overhead

    @property
    def cpu_need(self) -> int:
        """RAM that must really be free: the file pages llama.cpp repacked stay resident
        (and count in RSS) but are clean page cache the OS drops under pressure."""
        return self.cpu_bytes - self.repacked


@dataclass(frozen=True)
class LoadPlan:
    """How to load one chat model on one machine, and whether it fits."""

    model: str
    backend: Backend
    gpu_layers: int  # for llama.cpp's n_gpu_layers (block_count + 1 means "all")
    gpu_layers_mode: str  # "all" | "some" | "none"
    total_layers: int
    threads: int
    n_ctx: int
    kv_type: str
    flash_attn: bool
    use_mmap: bool
    verdict: FitVerdict
    estimate: MemoryEstimate
    ram_budget: int
    gpu_budget: int
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backend"] = self.backend.value
        d["verdict"] = self.verdict.value
        d["estimate"]["total"] = self.estimate.total
        return d


@dataclass(frozen=True)
class ImagePlan:
    """How to load one diffusers pipeline on one machine, and whether it fits."""

    model: str
    device: str  # "cuda" | "mps" | "cpu"
    dtype: str  # "float16" | "bfloat16" | "float32"
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["memory_mode"] = self.memory_mode.value
        d["verdict"] = self.verdict.value
        return d


# --- shared helpers -----------------------------------------------------------------------


def ram_budget(hw: HardwareProfile) -> int:
    reserve = max(RAM_RESERVE_FLOOR, int(hw.ram_total * RAM_RESERVE_FRACTION))
    return max(hw.ram_available - reserve, 0)


def _ram_ceiling(hw: HardwareProfile) -> int:
    """What could be free if the user closed other apps: the bar for "tight"."""
    return int(hw.ram_total * 0.85)


def gpu_budget(gpu: GpuInfo, hw: HardwareProfile) -> int:
    if gpu.unified:
        # Apple Silicon: the GPU may use up to its working set, out of free RAM.
        limit = min(gpu.recommended_working_set or gpu.vram_total, hw.ram_available)
        return max(limit - max(RAM_RESERVE_FLOOR, int(hw.ram_total * RAM_RESERVE_FRACTION)), 0)
    reserve = max(VRAM_RESERVE_FLOOR, int(gpu.vram_total * VRAM_RESERVE_FRACTION))
    return max(gpu.vram_free - reserve, 0)


def pick_gpu(hw: HardwareProfile, settings: LoadSettings | None = None) -> GpuInfo | None:
    """The GPU llama.cpp can use on this machine (most free memory first), or None."""
    if settings is not None and settings.backend == Backend.CPU:
        return None
    usable = []
    for gpu in hw.gpus:
        backends = hw.builds.llama_backends
        if backends is not None and gpu.kind not in backends:
            continue
        usable.append(gpu)
    if settings is not None and settings.backend is not None:
        usable = [g for g in usable if g.kind == settings.backend.value]
    return max(usable, key=lambda g: g.vram_free, default=None)


def cpu_threads(hw: HardwareProfile, settings: LoadSettings | None = None) -> int:
    """Physical cores: decoding is memory-bound, and hyper-threads only add contention."""
    if settings is not None and settings.threads:
        return settings.threads
    return max(hw.cpu.physical_cores or hw.cpu.logical_cores, 1)


def _hardware_warnings(hw: HardwareProfile) -> list[str]:
    warnings = []
    simd = set(hw.cpu.simd)
    if hw.cpu.arch == "x86_64" and simd and "avx2" not in simd:
        warnings.append(
            "This CPU lacks AVX2: llama.cpp will run, but several times slower than on a "
            "CPU that has it."
        )
    backends = hw.builds.llama_backends
    for gpu in hw.gpus:
        if backends is not None and gpu.kind not in backends:
            fix = "-DGGML_CUDA=on" if gpu.kind == "cuda" else "-DGGML_METAL=on"
            warnings.append(
                f"{gpu.name} is not used: the installed llama.cpp was built without "
                f'{gpu.kind.upper()}. Rebuild it with CMAKE_ARGS="{fix}" ./scripts/run --rebuild.'
            )
    return warnings


# --- chat models ----------------------------------------------------------------------------


def kv_cache_bytes(
    model: ChatModelFacts,
    n_ctx: int,
    kv_type: str = "f16",
    n_ubatch: int = 512,
    swa_full: bool = True,
) -> int:
    """K and V for `n_ctx` tokens.

    llama-cpp-python keeps a full-size cache even for sliding-window blocks (swa_full), so
    that earlier turns can be reused; with `swa_full=False` those blocks keep their window.
    """
    elem = KV_ELEMENT_BYTES.get(kv_type, 2.0)
    per_layer_token = model.head_count_kv * (model.key_length + model.value_length) * elem
    swa_layers = 0 if swa_full else model.swa_layers
    full_layers = model.block_count - swa_layers
    swa_cells = n_ctx
    if swa_layers and model.sliding_window:
        swa_cells = min(n_ctx, _pad(model.sliding_window + n_ubatch, 256))
    return int(per_layer_token * (full_layers * n_ctx + swa_layers * swa_cells))


def compute_buffer_bytes(model: ChatModelFacts, n_ubatch: int = 512, on_gpu: bool = False) -> int:
    """llama.cpp's graph scratch for one micro-batch.

    On the CPU the buffer is reserved for the worst case (logits for every token of a
    micro-batch) but a chat prompt only touches the activations, so resident memory is
    ~96 bytes per token per embedding unit. A GPU buffer is allocated whole, logits
    included, so it counts in full there.
    """
    activations = n_ubatch * model.embedding_length * ACTIVATION_BYTES_PER_EMBD
    if not on_gpu:
        return activations
    return activations + (model.vocab_size or 128_256) * 4 * n_ubatch


def cpu_repacks(hw: HardwareProfile) -> bool:
    """Whether llama.cpp's CPU backend keeps a repacked copy of Q4 weights on this CPU."""
    simd = set(hw.cpu.simd)
    return "avx2" in simd or ("neon" in simd and "dotprod" in simd)


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def plan_load(
    hardware: HardwareProfile, model: ChatModelFacts, settings: LoadSettings | None = None
) -> LoadPlan:
    """Decide backend, GPU layers, threads and context for a chat model, with a fit verdict.

    Pure: the same inputs always give the same plan, so it is tested on simulated machines.

    >>> plan = plan_load(hw, facts, LoadSettings(n_ctx=4096))  # doctest: +SKIP
    >>> plan.verdict, plan.backend, plan.gpu_layers_mode
    (<FitVerdict.FITS_RAM: 'fits in RAM'>, <Backend.CPU: 'cpu'>, 'none')
    """
    settings = settings or LoadSettings()
    if settings.n_ctx:
        return _plan_for_ctx(hardware, model, settings, settings.n_ctx, [])

    candidates = sorted({min(c, model.context_length) for c in AUTO_CONTEXTS}, reverse=True)
    plans = [_plan_for_ctx(hardware, model, settings, n, []) for n in candidates]
    best_rank = min(p.verdict.rank for p in plans)
    chosen = next(p for p in plans if p.verdict.rank == best_rank)
    if chosen.n_ctx < candidates[0]:
        note = (
            f"Context set to {chosen.n_ctx} tokens: {candidates[0]} would be "
            f"'{plans[0].verdict.value}' on this machine."
        )
        chosen = replace(chosen, reasons=(note, *chosen.reasons))
    else:
        chosen = replace(
            chosen,
            reasons=(
                f"Context {chosen.n_ctx} tokens (model maximum {model.context_length:,}; "
                "pass --ctx for more).",
                *chosen.reasons,
            ),
        )
    return chosen


def _plan_for_ctx(
    hw: HardwareProfile,
    model: ChatModelFacts,
    settings: LoadSettings,
    n_ctx: int,
    reasons: list[str],
) -> LoadPlan:
    warnings = _hardware_warnings(hw)
    if n_ctx > model.context_length:
        warnings.append(
            f"{n_ctx} tokens is more context than the model was trained on "
            f"({model.context_length:,}); answers past that point degrade."
        )
    threads = cpu_threads(hw, settings)
    kv_type = settings.kv_type
    kv_total = kv_cache_bytes(model, n_ctx, kv_type, settings.n_ubatch)
    cpu_compute = compute_buffer_bytes(model, settings.n_ubatch, on_gpu=False)
    gpu_compute = compute_buffer_bytes(model, settings.n_ubatch, on_gpu=True)
    n_blocks = model.block_count
    all_layers = n_blocks + 1  # the output head counts as one more layer in llama.cpp
    repack_per_block = model.repackable_bytes() / max(n_blocks, 1) if cpu_repacks(hw) else 0.0
    rbudget = ram_budget(hw)
    gpu = pick_gpu(hw, settings) if settings.gpu_layers != 0 else None
    flash_attn = kv_type not in ("f16", "f32")  # quantised V cache needs flash attention
    # What every outcome below shares; each branch adds backend, layers, verdict and memory.
    finish = partial(
        _chat_plan,
        model=model,
        total_layers=all_layers,
        threads=threads,
        n_ctx=n_ctx,
        kv_type=kv_type,
        flash_attn=flash_attn,
        rbudget=rbudget,
        reasons=reasons,
        warnings=warnings,
    )

    if gpu is None:
        repacked = int(repack_per_block * n_blocks)
        est = MemoryEstimate(
            weights=model.file_size,
            kv_cache=kv_total,
            compute=cpu_compute,
            overhead=PROCESS_OVERHEAD,
            repacked=repacked,
            cpu_bytes=model.file_size + repacked + kv_total + cpu_compute + PROCESS_OVERHEAD,
        )
        verdict = _ram_verdict(hw, est.cpu_need)
        why = "no usable GPU" if settings.gpu_layers != 0 else "GPU offload turned off"
        if hw.gpus and settings.gpu_layers != 0 and pick_gpu(hw) is None:
            why = "the GPU cannot be used by this llama.cpp build"
        reasons.append(f"Runs on the CPU with {threads} threads ({why}).")
        return finish(Backend.CPU, 0, "none", verdict, est, 0)

    backend = Backend(gpu.kind)
    gbudget = gpu_budget(gpu, hw)
    fixed_gpu = CUDA_CONTEXT_OVERHEAD if backend == Backend.CUDA else METAL_OVERHEAD
    block = model.block_bytes()
    kv_per_block = kv_total / max(n_blocks, 1)
    outside = model.outside_blocks_bytes()
    output = min(model.output_bytes or outside, outside)

    if gpu.unified:
        # Unified memory: everything lives in one pool, and splitting buys nothing.
        gpu_bytes = model.file_size + kv_total + gpu_compute + fixed_gpu
        need = gpu_bytes + PROCESS_OVERHEAD
        est = MemoryEstimate(
            model.file_size,
            kv_total,
            gpu_compute,
            fixed_gpu + PROCESS_OVERHEAD,
            gpu_bytes=gpu_bytes,
            cpu_bytes=PROCESS_OVERHEAD,
        )
        if need <= gbudget:
            verdict = FitVerdict.FITS_GPU
            reasons.append(f"All {all_layers} layers on {gpu.name} (Metal, unified memory).")
        elif need <= _ram_ceiling(hw):
            verdict = FitVerdict.TIGHT
            reasons.append(
                f"Needs {_gib(need)} but only {_gib(gbudget)} of unified memory is free for the "
                "GPU now: close other apps, or pick a smaller quant or context."
            )
        else:
            verdict = FitVerdict.WONT_FIT
            reasons.append(
                f"Needs {_gib(need)}, more than this Mac's {_gib(hw.ram_total)} can give."
            )
        return finish(backend, all_layers, "all", verdict, est, gbudget)

    # Discrete GPU: put as many blocks as fit, then the output head; the rest stays on CPU.
    if settings.gpu_layers is not None:
        n_gpu = max(0, min(settings.gpu_layers, all_layers))
    else:
        room = gbudget - fixed_gpu - gpu_compute
        n_gpu = int(room // (block + kv_per_block)) if room > 0 else 0
        n_gpu = max(0, min(n_gpu, n_blocks))
        if n_gpu == n_blocks and room - n_blocks * (block + kv_per_block) >= output:
            n_gpu = all_layers
    gpu_blocks = min(n_gpu, n_blocks)
    cpu_blocks = n_blocks - gpu_blocks
    gpu_weights = int(gpu_blocks * block + (output if n_gpu == all_layers else 0))
    gpu_kv = int(gpu_blocks * kv_per_block)
    cpu_repack = int(repack_per_block * cpu_blocks)
    cpu_act = cpu_compute if cpu_blocks else 0
    if n_gpu == 0:
        gpu_bytes = 0
        fixed_gpu = gpu_compute = 0
    else:
        gpu_bytes = gpu_weights + gpu_kv + gpu_compute + fixed_gpu
    cpu_bytes = (model.file_size - gpu_weights) + cpu_repack + (kv_total - gpu_kv) + cpu_act
    cpu_bytes += PROCESS_OVERHEAD
    est = MemoryEstimate(
        weights=model.file_size,
        repacked=cpu_repack,
        kv_cache=kv_total,
        compute=gpu_compute + cpu_act,
        overhead=PROCESS_OVERHEAD + fixed_gpu,
        gpu_bytes=gpu_bytes,
        cpu_bytes=cpu_bytes,
    )

    if n_gpu == all_layers:
        mode = "all"
        verdict = FitVerdict.FITS_GPU if gpu_bytes <= gbudget else FitVerdict.TIGHT
        reasons.append(
            f"All {all_layers} layers on {gpu.name} ({_gib(gpu_bytes)} of {_gib(gbudget)} "
            "usable VRAM)."
        )
    elif n_gpu == 0:
        mode = "none"
        verdict = _ram_verdict(hw, est.cpu_need)
        backend = Backend.CPU
        reasons.append(
            f"Not even one layer fits in {gpu.name}'s {_gib(gbudget)} usable VRAM: runs on the "
            f"CPU with {threads} threads."
        )
    else:
        mode = "some"
        ram_verdict = _ram_verdict(hw, est.cpu_need)
        verdict = FitVerdict.FITS_SPLIT if ram_verdict == FitVerdict.FITS_RAM else ram_verdict
        reasons.append(
            f"{n_gpu} of {all_layers} layers on {gpu.name} ({_gib(gpu_bytes)}), the rest in "
            f"RAM ({_gib(cpu_bytes)}): slower than all on the GPU."
            + (" A smaller context would fit entirely." if model.file_size < gbudget else "")
        )
    return finish(backend, n_gpu, mode, verdict, est, gbudget)


def _ram_verdict(hw: HardwareProfile, need: int) -> FitVerdict:
    if need <= ram_budget(hw):
        return FitVerdict.FITS_RAM
    if need <= _ram_ceiling(hw):
        return FitVerdict.TIGHT
    return FitVerdict.WONT_FIT


def _chat_plan(
    backend: Backend,
    gpu_layers: int,
    mode: str,
    verdict: FitVerdict,
    est: MemoryEstimate,
    gbudget: int,
    *,
    model: ChatModelFacts,
    total_layers: int,
    threads: int,
    n_ctx: int,
    kv_type: str,
    flash_attn: bool,
    rbudget: int,
    reasons: list[str],
    warnings: list[str],
) -> LoadPlan:
    if verdict == FitVerdict.TIGHT and backend == Backend.CPU:
        reasons.append(
            f"Needs {_gib(est.cpu_need)} of RAM and {_gib(rbudget)} is free after a reserve: "
            "close other apps first, or pick a smaller quant or context."
        )
    elif verdict == FitVerdict.WONT_FIT:
        reasons.append(
            f"Needs about {_gib(est.total)} in all, more than this machine has: pick a smaller "
            "model or quant."
        )
    return LoadPlan(
        model=model.name,
        backend=backend,
        gpu_layers=gpu_layers,
        gpu_layers_mode=mode,
        total_layers=total_layers,
        threads=threads,
        n_ctx=n_ctx,
        kv_type=kv_type,
        flash_attn=flash_attn,
        use_mmap=True,
        verdict=verdict,
        estimate=est,
        ram_budget=rbudget,
        gpu_budget=gbudget,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )


# --- image models ---------------------------------------------------------------------------

#: Peak activation memory per megapixel of output, by family, in fp16 (UNet + VAE decode).
_ACTIVATIONS_PER_MP = {"sd15": 1.6 * GiB, "sd2": 1.8 * GiB, "sdxl": 1.2 * GiB}
_NATIVE = {"sd15": 512, "sd2": 768, "sdxl": 1024, "sd3": 1024}


def plan_image_load(
    hardware: HardwareProfile, model: ImageModelFacts, settings: LoadSettings | None = None
) -> ImagePlan:
    """Decide device, dtype and memory mode for a diffusers pipeline, with a fit verdict."""
    settings = settings or LoadSettings()
    hw = hardware
    native = model.native_resolution or _NATIVE.get(model.family, 512)
    width = settings.image_width or native
    height = settings.image_height or native
    megapixels = width * height / 1e6
    per_mp = _ACTIVATIONS_PER_MP.get(model.family, 1.6 * GiB)
    warnings: list[str] = []  # llama.cpp build notes do not concern images
    reasons: list[str] = []

    cuda = next((g for g in hw.gpus if g.kind == "cuda"), None) if hw.builds.torch_cuda else None
    metal = next((g for g in hw.gpus if g.kind == "metal"), None) if hw.builds.torch_mps else None
    if settings.backend == Backend.CPU:
        cuda = metal = None
    if cuda is None and any(g.kind == "cuda" for g in hw.gpus) and hw.builds.torch_cuda is False:
        warnings.append("The NVIDIA GPU is not used: the installed torch has no CUDA support.")

    if cuda is not None:
        dtype = "float16"
        weights = model.bytes_as(dtype)
        activations = int(per_mp * megapixels * (2.0 if model.family == "sdxl" else 1.0) / 2)
        budget = gpu_budget(cuda, hw) - CUDA_CONTEXT_OVERHEAD
        largest = model.largest_component_as(dtype)
        # Try each mode, cheapest in speed first; the first whose peak fits wins.
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
                600 * MiB + activations // 4,
                "weights stream to the GPU layer by layer (slow, but needs little VRAM)",
            ),
        ]
        # The first (fastest) mode whose peak fits; the last one when none does.
        mode, peak, why = next((o for o in options if o[1] <= budget), options[-1])
        ram_need = (
            weights
            if mode in (ImageMemoryMode.MODEL_CPU_OFFLOAD, ImageMemoryMode.SEQUENTIAL_CPU_OFFLOAD)
            else 0
        )
        ram_need += PROCESS_OVERHEAD * 8  # torch + diffusers + transformers in the worker
        if peak > budget:
            verdict = FitVerdict.WONT_FIT
        elif ram_need > ram_budget(hw):
            verdict = FitVerdict.TIGHT if ram_need <= _ram_ceiling(hw) else FitVerdict.WONT_FIT
        elif mode in (ImageMemoryMode.MODEL_CPU_OFFLOAD, ImageMemoryMode.SEQUENTIAL_CPU_OFFLOAD):
            verdict = FitVerdict.FITS_SPLIT
        else:
            verdict = FitVerdict.FITS_GPU
        reasons.append(
            f"{cuda.name}, float16, memory mode '{mode.value}': {why} "
            f"(peak {_gib(peak)} of {_gib(budget)} usable VRAM)."
        )
        return ImagePlan(
            model.name,
            "cuda",
            dtype,
            mode,
            megapixels > 1.1 * native**2 / 1e6,
            verdict,
            weights,
            peak,
            ram_need,
            width,
            height,
            tuple(reasons),
            tuple(warnings),
        )

    if metal is not None:
        dtype = "float16"
        weights = model.bytes_as(dtype)
        activations = int(per_mp * megapixels)
        budget = gpu_budget(metal, hw)
        need = weights + activations + PROCESS_OVERHEAD * 8
        mode = ImageMemoryMode.FULL
        if need > budget:
            mode = ImageMemoryMode.ATTENTION_SLICING
            need = weights + activations // 2 + PROCESS_OVERHEAD * 8
        if need <= budget:
            verdict = FitVerdict.FITS_GPU
        elif need <= _ram_ceiling(hw):
            verdict = FitVerdict.TIGHT
        else:
            verdict = FitVerdict.WONT_FIT
        reasons.append(f"{metal.name} through MPS, float16, memory mode '{mode.value}'.")
        return ImagePlan(
            model.name,
            "mps",
            dtype,
            mode,
            False,
            verdict,
            weights,
            need,
            need,
            width,
            height,
            tuple(reasons),
            tuple(warnings),
        )

    # CPU: float32 is the safe choice; bfloat16 halves memory where the CPU has native bf16.
    bf16 = "avx512_bf16" in hw.cpu.simd or "amx_bf16" in hw.cpu.simd
    dtype = "bfloat16" if bf16 else "float32"
    weights = model.bytes_as(dtype)
    activations = int(per_mp * megapixels * (2 if dtype == "float32" else 1))
    need = weights + activations + PROCESS_OVERHEAD * 8
    mode = ImageMemoryMode.FULL
    if need > ram_budget(hw) and dtype == "float32":
        # Half the weights is worth a slower step when RAM is short.
        dtype = "bfloat16"
        weights = model.bytes_as(dtype)
        need = weights + activations // 2 + PROCESS_OVERHEAD * 8
        reasons.append("bfloat16 on the CPU to halve memory (float32 would not fit).")
    if need > ram_budget(hw):
        mode = ImageMemoryMode.ATTENTION_SLICING
    verdict = _ram_verdict(hw, need)
    reasons.append(f"Runs on the CPU in {dtype} (no usable GPU); expect minutes per image.")
    return ImagePlan(
        model.name,
        "cpu",
        dtype,
        mode,
        False,
        verdict,
        weights,
        0,
        need,
        width,
        height,
        tuple(reasons),
        tuple(warnings),
    )


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"
