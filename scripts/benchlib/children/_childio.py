"""What the child scripts share (stdlib only: the GPT4All child runs in its own venv)."""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Sequence
from typing import Any


def payload() -> dict[str, Any]:
    """The JSON argument the harness passed."""
    return dict(json.loads(sys.argv[1]))


def emit(result: dict[str, Any]) -> None:
    """The child's one result line (the harness reads the last line starting with '{')."""
    print(json.dumps(result), flush=True)


def peak_rss_self() -> int:
    """This process's peak resident set size in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def vm_hwm(pid: int) -> int | None:
    """Peak resident set size of a running process, from /proc (Linux), in bytes."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def stream_numbers(t_send: float, stamps: Sequence[float], prompt_tokens: int) -> dict[str, Any]:
    """ttft_s, prompt_tps and decode_tps from the caller's side, the same for every engine.

    ttft_s: request sent → first streamed piece. prompt_tps: prompt tokens / ttft_s (the
    prompt's evaluation plus one decode step). decode_tps: (pieces - 1) / (last - first).
    """
    n = len(stamps)
    ttft = stamps[0] - t_send if n else None
    decode = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else None
    return {
        "ttft_s": ttft,
        "prompt_tps": prompt_tokens / ttft if ttft else None,
        "decode_tps": decode,
        "generated_tokens": n,
    }


def guarded(main: Callable[[], dict[str, Any]]) -> None:
    """Run `main` and emit its result; an exception becomes {"error": ...} and status 1."""
    try:
        emit(main())
    except Exception as exc:  # the harness reports the reason, it never crashes on one engine
        emit({"error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from exc
