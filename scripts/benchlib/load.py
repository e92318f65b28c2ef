"""`scripts/bench load`: a chat model's load through Hearth's worker, cold and warm.

Peak RSS while loading against the file size and the planner's estimate; load time with
the file dropped from the page cache (cold, as after a reboot) and with it cached (warm).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path
from typing import Any

from benchlib.common import (
    drop_from_page_cache,
    hearth_chat_plan,
    log,
    machine_facts,
    ratio,
    read_into_page_cache,
    run_child,
    spread,
)

LOAD_METRICS = ("load_s", "load_wall_s", "peak_rss_bytes")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("load", help="chat model load: peak RSS vs estimate, cold and warm")
    p.add_argument("--model", type=Path, required=True, help="a .gguf file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--runs", type=int, default=3, help="alternating cold/warm rounds")
    p.set_defaults(func=run)


def resident_fraction(path: Path) -> float | None:
    """Share of the file's pages in the page cache now (mmap + mincore), None where unknown."""
    libc_name = ctypes.util.find_library("c")
    size = path.stat().st_size
    if not libc_name or size == 0:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(addr, size, vec) != 0:
                return None
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec) / pages


def run(args: argparse.Namespace) -> dict[str, Any]:
    model: Path = args.model.resolve()
    if not model.is_file():
        raise SystemExit(f"bench: there is no model file at {model}")
    plan, request = hearth_chat_plan(model)
    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
    for k in range(args.runs):
        for state in ("cold", "warm"):
            if state == "cold":
                drop_from_page_cache(model)
            else:
                read_into_page_cache(model)
            cached = _resident(model)
            log(f"round {k + 1}/{args.runs}: {state} load ({cached} of the file cached)")
            result = run_child("hearth_chat.py", {"mode": "load", "request": request})
            runs[state].append({"run": k + 1, "cached_before": cached, **result})
    loads = {
        state: {m: spread([r[m] for r in results]) for m in LOAD_METRICS}
        for state, results in runs.items()
    }
    file_bytes = model.stat().st_size
    est = plan.estimate
    warm_peak = loads["warm"]["peak_rss_bytes"]
    return {
        "benchmark": "load",
        "model": {"path": str(model), "file_bytes": file_bytes},
        "machine": machine_facts(),
        "settings": {"runs": args.runs, "request": request},
        "planner_estimate_bytes": est.total,
        "planner_estimate_parts": {
            "weights": est.weights,
            "repacked": est.repacked,
            "kv_cache": est.kv_cache,
            "compute": est.compute,
            "overhead": est.overhead,
        },
        "cold": loads["cold"],
        "warm": loads["warm"],
        "peak_rss/file_bytes": ratio(warm_peak, {"median": float(file_bytes)}),
        "peak_rss/planner_estimate": ratio(warm_peak, {"median": float(est.total)}),
        "cold_load_s/warm_load_s": ratio(loads["cold"]["load_s"], loads["warm"]["load_s"]),
        "runs": runs,
    }


def _resident(model: Path) -> float | None:
    try:
        return resident_fraction(model)
    except (OSError, ValueError, TypeError):
        return None


def print_table(report: dict[str, Any]) -> None:
    mib = 1024**2
    print(
        f"{Path(report['model']['path']).name}: file {report['model']['file_bytes'] / mib:.0f} "
        f"MiB, planner estimate {report['planner_estimate_bytes'] / mib:.0f} MiB"
    )
    for state in ("cold", "warm"):
        e = report[state]
        print(
            f"{state}: load {e['load_s']['median']:.2f} s (worker), "
            f"{e['load_wall_s']['median']:.2f} s with process start; peak RSS "
            f"{e['peak_rss_bytes']['median'] / mib:.0f} MiB"
        )
    print(
        f"peak RSS / file {report['peak_rss/file_bytes']:.2f}, / estimate "
        f"{report['peak_rss/planner_estimate']:.2f}; cold / warm load "
        f"{report['cold_load_s/warm_load_s']:.2f}"
    )
