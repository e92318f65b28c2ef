"""`hearth bench`: how fast this machine runs a model, measured the way the app runs it.

A chat bench loads the model through the normal path (library name, the planner's plan for
this machine, the chat worker), makes a prompt of the asked length with the model's own
tokenizer, and after one warm-up runs K greedy generations, each with a prompt that starts
differently (so no run reuses the previous run's KV cache). The numbers are the worker's
own (`Metrics`: time to first token, prompt and decode tokens/s), as medians of the runs.
An image bench plans and loads a pipeline the way `hearth imagine` does and times the
denoising steps the image worker reports; nothing goes to the gallery.

Results are kept in the store (`store/bench.py`) so the System page can show a model's
history. Nothing here imports llama_cpp or torch.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from app.engines.chat_llama.client import ChatEngineClient
from app.engines.chat_llama.protocol import GenerateRequest, Metrics
from app.engines.image_diffusers.protocol import (
    ImageLoaded,
    ImageMetrics,
    StepProgress,
)
from app.errors import HearthError
from app.hardware.profile import HardwareProfile
from app.planner import LoadSettings
from app.sessions.chat import ChatSession
from app.sessions.image import ImageSession, ImageSettings
from app.store import bench as store

#: The text a prompt is made of: plain prose, so any tokenizer splits it ordinarily.
PROSE = (
    "The lighthouse keeper climbed the spiral stairs each evening, counting the steps, "
    "trimming the wick and polishing the great lens until it threw its beam across the "
    "dark water to the ships that passed the reef on their way to the harbour. "
)
CONTINUE = "\nContinue the story:"
IMAGE_PROMPT = "a lighthouse on a rocky coast at dusk, oil painting"

#: What a step of a bench reports: (what is happening, fraction done 0..1).
Progress = Callable[[str, float], None]


class BenchError(HearthError):
    default_remedy = "Try a smaller --prompt-tokens, or load the model with a longer --ctx."


@dataclass(frozen=True)
class Stat:
    """A measured number over the runs."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class ChatBench:
    model: str
    backend: str
    threads: int
    gpu_layers: int
    n_ctx: int
    n_batch: int
    flash_attn: bool
    kv_type: str
    runs: int
    prompt_tokens: int  # as the worker counted them (the run's median)
    gen_tokens: int  # generated in each run (the median)
    load_s: float
    ttft_s: Stat
    prompt_tps: Stat
    decode_tps: Stat
    peak_rss_bytes: int | None  # the worker's peak resident memory; None: not measurable
    cached_tokens: int  # prompt tokens a run found already in the KV cache (the most)
    machine: str
    created_at: str = ""
    kind: str = field(default="chat", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ImageBench:
    model: str
    device: str
    dtype: str
    memory_mode: str
    width: int
    height: int
    steps: int
    runs: int
    load_s: float
    first_step_s: Stat  # from the request to the first denoising step, model loaded
    load_to_first_step_s: float | None  # the first run: from the load's start
    s_per_step: Stat
    total_s: Stat
    peak_rss_bytes: int | None
    machine: str
    created_at: str = ""
    kind: str = field(default="image", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_rss(pid: int | None) -> int | None:
    """A process's peak resident memory so far (Linux VmHWM, Windows peak working set)."""
    if pid is None:
        return None
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    try:
        import psutil

        info = psutil.Process(pid).memory_info()
    except Exception:  # gone, or not ours to read
        return None
    peak = getattr(info, "peak_wset", None)  # Windows only; elsewhere no peak is kept
    return int(peak) if peak else None


def machine_line(hw: HardwareProfile) -> str:
    gpus = ", ".join(g.name for g in hw.gpus) or "no GPU"
    ram = hw.ram_total / 1024**3
    return f"{hw.cpu.name}, {hw.cpu.physical_cores} cores, {ram:.0f} GiB RAM, {gpus}"


def make_prompt(count: Callable[[str], int], tokens: int, run: int) -> str:
    """Prose of about `tokens` tokens (never more), starting with the run's own words."""
    head = f"Story {run}. "
    if count(head + CONTINUE) > tokens:
        raise BenchError(f"A prompt of {tokens} tokens is too short to bench with.")
    words = (PROSE * (tokens // 20 + 2)).split(" ")
    low, high = 0, len(words)
    while count(head + " ".join(words[:high]) + CONTINUE) <= tokens:  # prose long enough
        words += PROSE.split(" ")
        high = len(words)
    while low < high:  # the most words that keep the prompt within `tokens`
        mid = (low + high + 1) // 2
        if count(head + " ".join(words[:mid]) + CONTINUE) <= tokens:
            low = mid
        else:
            high = mid - 1
    return head + " ".join(words[:low]) + CONTINUE


def bench_chat(
    db: Database,
    model: str,
    *,
    prompt_tokens: int = 512,
    gen_tokens: int = 128,
    runs: int = 3,
    settings: LoadSettings | None = None,
    hardware: HardwareProfile | None = None,
    on_progress: Progress | None = None,
    save: bool = True,
) -> ChatBench:
    """Load `model` as the app does and measure K greedy runs after a warm-up."""
    if runs < 1 or prompt_tokens < 8 or gen_tokens < 2:
        raise BenchError(
            "A bench needs at least 1 run, 8 prompt tokens and 2 generated tokens.",
            "Give --runs 1 or more, --prompt-tokens 8 or more and --gen-tokens 2 or more.",
        )
    report = on_progress or (lambda _what, _f: None)
    client = ChatEngineClient()
    session = ChatSession(db, client=client, hardware=hardware)
    try:
        report("loading", 0.0)
        started = time.perf_counter()
        loaded = session.load_model(
            model, settings=settings, on_progress=lambda p: report("loading", p.fraction * 0.2)
        )
        load_s = time.perf_counter() - started
        loaded_model = session.model
        assert loaded_model is not None and loaded_model.plan is not None
        plan = loaded_model.plan
        if prompt_tokens + gen_tokens > loaded.n_ctx:
            raise BenchError(
                f"{prompt_tokens} prompt tokens and {gen_tokens} to generate do not fit the "
                f"context of {loaded.n_ctx} tokens."
            )
        metrics: list[Metrics] = []
        total = runs + 1
        for run in range(total):  # run 0 is the warm-up, not counted
            prompt = make_prompt(client.count_tokens, prompt_tokens, run)
            request = GenerateRequest(
                f"bench-{uuid.uuid4().hex[:8]}",
                prompt,
                max_tokens=gen_tokens if run else min(gen_tokens, 8),
                temperature=0.0,
                top_k=1,
                top_p=1.0,
                min_p=0.0,
                repeat_penalty=1.0,
            )
            got: Metrics | None = None
            for event in client.generate(request):
                if isinstance(event, Metrics):
                    got = event
            if got is None:
                raise BenchError("The chat worker finished a run without its measurements.")
            if run:
                metrics.append(got)
            report(f"run {run} of {runs}" if run else "warm-up", 0.2 + 0.8 * (run + 1) / total)
        decoding = [m for m in metrics if m.generated_tokens > 1]
        if not decoding:
            raise BenchError(
                f"{model} stopped after its first token in every run, so there is no decode "
                "speed to measure.",
                "Try another --prompt-tokens, or a chat model rather than a base model.",
            )
        result = ChatBench(
            model=loaded_model.name,
            backend=loaded.backend_used,
            threads=plan.threads,
            gpu_layers=loaded.gpu_layers_used,
            n_ctx=loaded.n_ctx,
            n_batch=loaded_model.request.n_batch,
            flash_attn=plan.flash_attn,
            kv_type=plan.kv_type,
            runs=runs,
            prompt_tokens=int(statistics.median(m.prompt_tokens for m in metrics)),
            gen_tokens=int(statistics.median(m.generated_tokens for m in metrics)),
            load_s=load_s,
            ttft_s=Stat.of([m.ttft_s for m in metrics]),
            prompt_tps=Stat.of([m.prompt_tps for m in metrics]),
            decode_tps=Stat.of([m.decode_tps for m in decoding]),
            peak_rss_bytes=peak_rss(client.pid),
            cached_tokens=max(m.cached_tokens for m in metrics),
            machine=machine_line(session.hardware),
        )
    finally:
        session.unload()
    if save:
        result = replace(
            result, created_at=store.save_result(db, "chat", result.model, result.to_dict())
        )
    return result


def bench_image(
    db: Database,
    model: str | None,
    *,
    width: int | None = None,
    height: int | None = None,
    steps: int = 4,
    runs: int = 2,
    hardware: HardwareProfile | None = None,
    on_progress: Progress | None = None,
    save: bool = True,
) -> ImageBench:
    """Load an image model as `hearth imagine` does and time `runs` images of `steps`."""
    if runs < 1 or steps < 1:
        raise BenchError(
            "An image bench needs at least 1 run of 1 step.",
            "Give --runs 1 or more and --steps 1 or more.",
        )
    report = on_progress or (lambda _what, _f: None)
    session = ImageSession(db, hardware=hardware)
    try:
        wanted = ImageSettings(IMAGE_PROMPT, width=width, height=height, steps=steps, seed=0)
        job = session.prepare(model, wanted)
        loaded: ImageLoaded | None = None
        done: list[ImageMetrics] = []
        for run in range(runs):
            request = replace(
                job.request,
                request_id=f"bench-{uuid.uuid4().hex[:8]}",
                preview_every=0,
                seed=run,
                n_images=1,
            )
            got: ImageMetrics | None = None
            for event in session.client.generate(request, load=job.load):
                if isinstance(event, ImageLoaded):
                    loaded = event
                elif isinstance(event, StepProgress):
                    report(f"run {run + 1} of {runs}", (run + event.step / event.steps) / runs)
                elif isinstance(event, ImageMetrics):
                    got = event
            if got is None:
                raise BenchError("The image worker finished a run without its measurements.")
            done.append(got)
        warm = done[1:] or done
        first = done[0]
        result = ImageBench(
            model=job.model,
            device=first.device,
            dtype=first.dtype,
            memory_mode=first.memory_mode,
            width=job.request.width,
            height=job.request.height,
            steps=job.request.steps,
            runs=runs,
            load_s=loaded.load_s if loaded else 0.0,
            first_step_s=Stat.of([m.first_step_s for m in warm]),
            load_to_first_step_s=first.load_to_first_step_s,
            s_per_step=Stat.of([m.s_per_step for m in done]),
            total_s=Stat.of([m.total_s for m in warm]),
            peak_rss_bytes=peak_rss(getattr(session.client, "pid", None)),
            machine=machine_line(session.hardware),
        )
    finally:
        session.unload()
    if save:
        result = replace(
            result, created_at=store.save_result(db, "image", result.model, result.to_dict())
        )
    return result
