"""The chat load plan: backend, GPU layers, threads and context for a GGUF model, with a verdict.

Every number is an estimate of *resident* memory: weights + KV cache + compute buffers +
fixed overhead, checked against *free* memory minus a reserve (see app/planner/budget.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from app.hardware.profile import Backend, HardwareProfile
from app.humanize import format_gib
from app.planner.budget import (
    CUDA_CONTEXT_OVERHEAD,
    METAL_OVERHEAD,
    PROCESS_OVERHEAD,
    FitVerdict,
    JsonPlan,
    LoadSettings,
    cpu_threads,
    gpu_budget,
    hardware_warnings,
    pick_gpu,
    ram_budget,
    ram_ceiling,
    ram_verdict,
)
from app.planner.facts import ChatModelFacts

#: Activation scratch one micro-batch touches, per token per embedding unit (measured).
ACTIVATION_BYTES_PER_EMBD = 96
#: Context sizes tried when the user does not choose one, largest first.
AUTO_CONTEXTS = (8192, 4096, 2048)
#: The longest input an embedding model reads, in tokens (its context and its batch):
#: llama.cpp encodes a whole input in one micro-batch, and the attention scratch of a
#: micro-batch grows with the square of its length.
EMBEDDING_MAX_CTX = 2048
KV_ELEMENT_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


class GpuLayers(StrEnum):
    """How much of the model llama.cpp offloads to the GPU."""

    ALL = "all"
    SOME = "some"
    NONE = "none"


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
class LoadPlan(JsonPlan):
    """How to load one chat model on one machine, and whether it fits."""

    model: str
    backend: Backend
    gpu_layers: int  # for llama.cpp's n_gpu_layers (block_count + 1 means "all")
    gpu_layers_mode: GpuLayers
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
    #: Prompt tokens per llama.cpp call, and per step of a call (what the compute buffer
    #: is sized for).
    n_batch: int = 512
    n_ubatch: int = 512

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["estimate"]["total"] = self.estimate.total  # a property: asdict leaves it out
        return d


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
    (<FitVerdict.FITS_RAM: 'fits in RAM'>, <Backend.CPU: 'cpu'>, <GpuLayers.NONE: 'none'>)
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


def plan_embedding_load(
    hardware: HardwareProfile, model: ChatModelFacts, settings: LoadSettings | None = None
) -> LoadPlan:
    """Plan an embedding model: its context (the longest input it takes) is also its batch.

    The context is the model's own, up to EMBEDDING_MAX_CTX tokens; `settings.n_ctx` is
    the chat model's and is not used. Backend, GPU layers and threads are planned as for chat.

    >>> plan_embedding_load(hw, minilm_facts).n_ctx  # doctest: +SKIP
    512
    """
    n_ctx = min(model.context_length, EMBEDDING_MAX_CTX)
    settings = replace(settings or LoadSettings(), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx)
    plan = _plan_for_ctx(hardware, model, settings, n_ctx, [])
    note = f"Embeds inputs of up to {n_ctx:,} tokens (model maximum {model.context_length:,})."
    return replace(plan, reasons=(note, *plan.reasons))


def _plan_for_ctx(
    hw: HardwareProfile,
    model: ChatModelFacts,
    settings: LoadSettings,
    n_ctx: int,
    reasons: list[str],
) -> LoadPlan:
    warnings = hardware_warnings(hw)
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
    # What every outcome below shares; each branch adds backend, layers, verdict and memory.
    finish = partial(
        _chat_plan,
        n_batch=min(settings.n_batch, n_ctx),
        n_ubatch=min(settings.n_ubatch, settings.n_batch, n_ctx),
        model=model,
        total_layers=all_layers,
        threads=threads,
        n_ctx=n_ctx,
        kv_type=kv_type,
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
        verdict = ram_verdict(hw, est.cpu_need)
        why = "no usable GPU" if settings.gpu_layers != 0 else "GPU offload turned off"
        if hw.gpus and settings.gpu_layers != 0 and pick_gpu(hw) is None:
            why = "the GPU cannot be used by this llama.cpp build"
        reasons.append(f"Runs on the CPU with {threads} threads ({why}).")
        return finish(Backend.CPU, 0, GpuLayers.NONE, verdict, est, 0)

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
        elif need <= ram_ceiling(hw):
            verdict = FitVerdict.TIGHT
            reasons.append(
                f"Needs {format_gib(need)} but only {format_gib(gbudget)} of unified memory is "
                "free for the GPU now: close other apps, or pick a smaller quant or context."
            )
        else:
            verdict = FitVerdict.WONT_FIT
            reasons.append(
                f"Needs {format_gib(need)}, more than this Mac's "
                f"{format_gib(hw.ram_total)} can give."
            )
        return finish(backend, all_layers, GpuLayers.ALL, verdict, est, gbudget)

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
        mode = GpuLayers.ALL
        verdict = FitVerdict.FITS_GPU if gpu_bytes <= gbudget else FitVerdict.TIGHT
        reasons.append(
            f"All {all_layers} layers on {gpu.name} ({format_gib(gpu_bytes)} of "
            f"{format_gib(gbudget)} usable VRAM)."
        )
    elif n_gpu == 0:
        mode = GpuLayers.NONE
        verdict = ram_verdict(hw, est.cpu_need)
        backend = Backend.CPU
        reasons.append(
            f"Not even one layer fits in {gpu.name}'s {format_gib(gbudget)} usable VRAM: runs "
            f"on the CPU with {threads} threads."
        )
    else:
        mode = GpuLayers.SOME
        in_ram = ram_verdict(hw, est.cpu_need)
        verdict = FitVerdict.FITS_SPLIT if in_ram == FitVerdict.FITS_RAM else in_ram
        reasons.append(
            f"{n_gpu} of {all_layers} layers on {gpu.name} ({format_gib(gpu_bytes)}), the rest in "
            f"RAM ({format_gib(cpu_bytes)}): slower than all on the GPU."
            + (" A smaller context would fit entirely." if model.file_size < gbudget else "")
        )
    return finish(backend, n_gpu, mode, verdict, est, gbudget)


def _chat_plan(
    backend: Backend,
    gpu_layers: int,
    mode: GpuLayers,
    verdict: FitVerdict,
    est: MemoryEstimate,
    gbudget: int,
    *,
    model: ChatModelFacts,
    total_layers: int,
    threads: int,
    n_ctx: int,
    kv_type: str,
    rbudget: int,
    reasons: list[str],
    warnings: list[str],
    n_batch: int,
    n_ubatch: int,
) -> LoadPlan:
    if verdict == FitVerdict.TIGHT and backend == Backend.CPU:
        reasons.append(
            f"Needs {format_gib(est.cpu_need)} of RAM and {format_gib(rbudget)} is free after a "
            "reserve: close other apps first, or pick a smaller quant or context."
        )
    elif verdict == FitVerdict.WONT_FIT:
        reasons.append(
            f"Needs about {format_gib(est.total)} in all, more than this machine has: pick a "
            "smaller model or quant."
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
        flash_attn=kv_type not in ("f16", "f32"),  # quantised V cache needs flash attention
        use_mmap=True,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        verdict=verdict,
        estimate=est,
        ram_budget=rbudget,
        gpu_budget=gbudget,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
    )
