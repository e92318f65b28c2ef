"""What every benchmark shares: child processes, spreads of runs, page-cache control, plans."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHILDREN = Path(__file__).resolve().parent / "children"
#: Ignored folder for what the harness builds (the GPT4All venv, the bandwidth probe).
WORK_DIR = ROOT / ".bench"
#: The five numbers every chat engine reports, each as {median, min, max}.
CHAT_METRICS = ("load_s", "ttft_s", "prompt_tps", "decode_tps", "peak_rss_bytes")


class ChildFailed(RuntimeError):
    """A benchmark child process failed; the message carries the end of its stderr."""


def log(message: str) -> None:
    """Progress for the person watching, on stderr (stdout carries the result)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def spread(values: Sequence[float | int | None]) -> dict[str, float] | None:
    """{median, min, max} of the runs' values (None values dropped); None when none is left."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept)}


def ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> float | None:
    """median(a) / median(b), None when either is missing or b is zero."""
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def run_child(
    script: str,
    payload: dict[str, Any],
    *,
    python: str | Path | None = None,
    timeout: float = 900,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run children/<script> in a fresh process with `payload` as JSON; its last JSON line.

    Raises ChildFailed (with the end of stderr) when it exits non-zero or prints no JSON.
    """
    argv = [str(python or sys.executable), str(CHILDREN / script), json.dumps(payload)]
    child_env = dict(os.environ, **(env or {}))
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=child_env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"{script} ran past {timeout:.0f} s") from exc
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if lines and out.returncode != 0:
        error = json.loads(lines[-1]).get("error")
        if error:
            raise ChildFailed(str(error))
    if out.returncode != 0 or not lines:
        tail = " | ".join(out.stderr.strip().splitlines()[-6:]) or "no output"
        raise ChildFailed(f"{script} exited with status {out.returncode}: {tail}")
    return dict(json.loads(lines[-1]))


def drop_from_page_cache(path: Path) -> None:
    """Evict this file (only it) from the OS page cache, as after a reboot."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_into_page_cache(path: Path) -> None:
    """Read the file once so that every engine loads it from memory, not the disk."""
    with path.open("rb") as fh:
        while fh.read(16 * 1024 * 1024):
            pass


def machine_facts() -> dict[str, Any]:
    """The machine a result came from: CPU, cores, RAM, OS, date."""
    from app.hardware.detect import detect_hardware

    hw = detect_hardware(include_builds=False)
    return {
        "cpu": hw.cpu.name,
        "physical_cores": hw.cpu.physical_cores,
        "logical_cores": hw.cpu.logical_cores,
        "ram_bytes": hw.ram_total,
        "ram_available_bytes": hw.ram_available,
        "gpus": [g.name for g in hw.gpus],
        "os": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def hearth_chat_plan(model: Path, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The LoadPlan Hearth makes for `model` on this machine, as `hearth chat` does, and the
    worker's LoadRequest for it as a dict (threads overridden when given)."""
    from dataclasses import asdict

    from app.engines.chat_llama.protocol import LoadRequest
    from app.hardware.detect import this_machine
    from app.models.gguf import read_gguf_facts
    from app.planner import LoadSettings, plan_load

    settings = LoadSettings(threads=threads) if threads else None
    plan = plan_load(this_machine(), read_gguf_facts(model), settings)
    request = asdict(LoadRequest.from_plan(str(model), plan))
    return plan, request


def llama_kwargs_for(request: dict[str, Any]) -> dict[str, Any]:
    """The llama_cpp.Llama keyword arguments Hearth's chat worker passes for this request.

    Mirrors `app.engines.chat_llama.worker` (`_build`): n_ubatch as planned (n_batch when
    none is), one thread count for prompt and generation, one type for K and V.
    """
    from app.engines.chat_llama.worker import _KV_GGML_TYPES

    kv = _KV_GGML_TYPES[request["kv_type"].lower()]
    return {
        "n_ctx": request["n_ctx"],
        "n_batch": request["n_batch"],
        "n_ubatch": request.get("n_ubatch") or request["n_batch"],
        "n_threads": request["n_threads"],
        "n_threads_batch": request["n_threads"],
        "type_k": kv,
        "type_v": kv,
        "flash_attn": request["flash_attn"],
        "use_mmap": request["use_mmap"],
        "n_gpu_layers": request["n_gpu_layers"],
    }
