"""`scripts/bench chat`: Hearth's chat worker against llama-cpp-python and GPT4All, side by side.

Every engine runs each time in a fresh process, on the same GGUF, the same prompt of
exactly N tokens and the same greedy sampling; rounds alternate the engines (and rotate
their order) so drift on a shared machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.engines.chat_llama.cpu_share import FIXED_THREADS_ENV
from benchlib.bandwidth import bytes_per_token, measure_bandwidth
from benchlib.common import (
    CHAT_METRICS,
    ChildFailed,
    hearth_chat_plan,
    llama_kwargs_for,
    log,
    machine_facts,
    ratio,
    read_into_page_cache,
    run_child,
    spread,
)
from benchlib.gpt4all_env import GPT4ALL_REQUIREMENT, gpt4all_python

ENGINES = ("hearth", "llama_cpp_same", "llama_cpp_defaults", "gpt4all")
RATIOS = ("hearth/llama_cpp_same", "hearth/llama_cpp_defaults", "hearth/gpt4all")
TURNS = 5


def add_parser(sub: Any) -> None:
    p = sub.add_parser("chat", help="chat speed: hearth vs llama-cpp-python vs gpt4all")
    p.add_argument("--model", type=Path, required=True, help="a .gguf file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--runs", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated subset of {','.join(ENGINES)} (default: all)",
    )
    p.add_argument("--contention", action="store_true", help="also decode beside one busy process")
    p.add_argument("--turns", action="store_true", help=f"also a {TURNS}-turn chat (KV reuse)")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the memory-bandwidth probe")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    model: Path = args.model.resolve()
    if not model.is_file():
        raise SystemExit(f"bench: there is no model file at {model}")
    selected = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(selected) - set(ENGINES))
    if unknown:
        raise SystemExit(f"bench: unknown engine(s) {', '.join(unknown)}; choose from {ENGINES}")
    plan, request = hearth_chat_plan(model)
    n_prompt, n_gen = args.prompt_tokens, args.gen_tokens
    if n_prompt + n_gen >= request["n_ctx"]:
        raise SystemExit(f"bench: {n_prompt} + {n_gen} tokens do not fit Hearth's context")

    skipped: dict[str, str] = {e: "not selected (--engines)" for e in ENGINES if e not in selected}
    gpt4all_py = None
    if "gpt4all" in selected:
        gpt4all_py, why = gpt4all_python()
        if why:
            skipped["gpt4all"] = why

    log(f"the model into the page cache; prompts of exactly {n_prompt} tokens")
    read_into_page_cache(model)  # the warm-up: every engine loads from memory
    prompts = run_child("prompt.py", {"model": str(model), "tokens": n_prompt, "runs": args.runs})
    texts = prompts["prompts"]

    same_kwargs = llama_kwargs_for(request)
    defaults_kwargs = {"n_ctx": request["n_ctx"]}  # only so the prompt fits, as a user would
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
    order = [e for e in ENGINES if e not in skipped]
    for k in range(args.runs):
        prompt = texts[k]
        rotated = order[k % len(order) :] + order[: k % len(order)] if order else []
        for engine in rotated:
            if engine in skipped:
                continue
            log(f"round {k + 1}/{args.runs}: {engine}")
            try:
                if engine == "hearth":
                    result = run_child(
                        "hearth_chat.py",
                        {
                            "mode": "run",
                            "request": request,
                            "text": prompt["text"],
                            "gen_tokens": n_gen,
                        },
                    )
                elif engine == "gpt4all":
                    result = run_child(
                        "gpt4all_run.py",
                        {
                            "model": str(model),
                            "n_ctx": request["n_ctx"],
                            "text": prompt["text"],
                            "prompt_tokens": n_prompt,
                            "gen_tokens": n_gen,
                        },
                        python=gpt4all_py,
                    )
                else:
                    kwargs = same_kwargs if engine == "llama_cpp_same" else defaults_kwargs
                    result = run_child(
                        "llama_run.py",
                        {
                            "model": str(model),
                            "kwargs": kwargs,
                            "tokens": prompt["tokens"],
                            "gen_tokens": n_gen,
                        },
                    )
            except ChildFailed as exc:
                if engine == "gpt4all":
                    skipped[engine] = f"GPT4All ({GPT4ALL_REQUIREMENT}) could not run it: {exc}"
                    continue
                raise
            runs[engine].append({"run": k + 1, **result})

    engines = {e: _engine_entry(runs[e], skipped.get(e)) for e in ENGINES}
    report: dict[str, Any] = {
        "benchmark": "chat",
        "model": {"path": str(model), "file_bytes": model.stat().st_size},
        "machine": machine_facts(),
        "settings": {
            "runs": args.runs,
            "prompt_tokens": n_prompt,
            "gen_tokens": n_gen,
            "sampling": "greedy (temperature 0, repeat penalty 1)",
            "order": "alternating rounds; the engine order rotates each round",
            "hearth_plan": {
                "threads": plan.threads,
                "n_ctx": plan.n_ctx,
                "backend": str(plan.backend.value),
                "gpu_layers": plan.gpu_layers,
            },
            "llama_cpp_same": same_kwargs,
            "llama_cpp_defaults": defaults_kwargs,
        },
        "prompt_cache": {
            "prompt_start_varies_per_run": True,
            "fresh_process_per_run": True,
            "hearth_cached_tokens": [r.get("cached_tokens") for r in runs["hearth"]],
        },
        "engines": engines,
        "ratios": {
            name: {
                metric: ratio(engines["hearth"][metric], engines[name.split("/")[1]][metric])
                for metric in ("prompt_tps", "decode_tps")
            }
            for name in RATIOS
        },
        "bandwidth": None,
        "contention": None,
        "turns": None,
        "runs": runs,
    }
    if not args.no_bandwidth:
        report["bandwidth"] = _bandwidth(model, request, n_prompt + n_gen, engines["hearth"])
    if args.contention:
        report["contention"] = _contention(model, texts, n_gen, args.runs)
    if args.turns:
        report["turns"] = _turns(request, n_gen)
    return report


def _engine_entry(results: list[dict[str, Any]], skipped: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {m: spread([r.get(m) for r in results]) for m in CHAT_METRICS}
    entry["skipped"] = skipped if not results else None
    entry["settings"] = results[0].get("settings") if results else None
    return entry


def _bandwidth(
    model: Path, request: dict[str, Any], context: int, hearth: dict[str, Any]
) -> dict[str, Any]:
    log("memory read bandwidth")
    bw = measure_bandwidth()
    per_token = bytes_per_token(model, context, request["kv_type"])
    bound = bw["bytes_per_s"] / per_token["total_bytes"]
    decode = hearth["decode_tps"]["median"] if hearth["decode_tps"] else None
    return {
        **bw,
        "bytes_per_token": per_token,
        "bandwidth_bound_tps": bound,
        "hearth_decode_fraction": decode / bound if decode else None,
    }


def _neighbour() -> subprocess.Popen[bytes]:
    """One CPU-bound process: a busy loop, as a laptop's other work."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _contention(model: Path, texts: list[dict[str, Any]], n_gen: int, runs: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    from app.hardware.detect import detect_hardware

    cores = detect_hardware(include_builds=False).cpu.physical_cores or cores
    counts = sorted({max(cores, 1), max(cores - 1, 1), 1}, reverse=True)
    out: dict[str, Any] = {"neighbour": "one busy-loop process (python)", "threads": {}}
    idle_at_cores = None
    for threads in counts:
        _, request = hearth_chat_plan(model, threads=threads)
        idle, busy, fixed, busy_threads = [], [], [], []
        for k in range(runs):
            payload = {
                "mode": "run",
                "request": request,
                "text": texts[k % len(texts)]["text"],
                "gen_tokens": n_gen,
            }
            log(f"contention: {threads} threads, round {k + 1}/{runs}, idle")
            idle.append(run_child("hearth_chat.py", payload)["decode_tps"])
            log(f"contention: {threads} threads, round {k + 1}/{runs}, one busy neighbour")
            neighbour = _neighbour()
            try:
                result = run_child("hearth_chat.py", payload)
                busy.append(result["decode_tps"])
                busy_threads.append(result.get("fewest_threads"))
                if threads > 1:  # the same, with the threads held at the plan (as before)
                    log(f"contention: {threads} threads held fixed, round {k + 1}/{runs}, busy")
                    held = run_child("hearth_chat.py", payload, env={FIXED_THREADS_ENV: "1"})
                    fixed.append(held["decode_tps"])
            finally:
                neighbour.kill()
                neighbour.wait()
        idle_s, busy_s, fixed_s = spread(idle), spread(busy), spread(fixed)
        if threads == counts[0]:
            idle_at_cores = idle_s
        out["threads"][str(threads)] = {
            "idle_decode_tps": idle_s,
            "busy_decode_tps": busy_s,
            "busy_threads_used": busy_threads,
            "busy_fixed_threads_decode_tps": fixed_s,
            "busy/idle": ratio(busy_s, idle_s),
            "busy/idle_at_all_cores": ratio(busy_s, idle_at_cores),
            "busy_fixed/idle": ratio(fixed_s, idle_s),
        }
    return out


def _turns(request: dict[str, Any], n_gen: int) -> dict[str, Any]:
    log(f"a {TURNS}-turn chat through Hearth's worker")
    result = run_child(
        "hearth_chat.py", {"mode": "turns", "request": request, "turns": TURNS, "gen_tokens": n_gen}
    )
    turns = [
        {
            key: t.get(key)
            for key in ("turn", "ttft_s", "prompt_tokens", "cached_tokens", "worker_ttft_s")
        }
        for t in result["turns"]
    ]
    first, last = turns[0]["ttft_s"], turns[-1]["ttft_s"]
    return {
        "turns": turns,
        "ttft_last/first": last / first if first and last else None,
    }


def print_table(report: dict[str, Any]) -> None:
    """The chat report for a person: one row per engine, the ratios, the hardware limit."""
    s = report["settings"]
    print(
        f"{Path(report['model']['path']).name}: {s['prompt_tokens']}-token prompt, "
        f"{s['gen_tokens']} generated, {s['runs']} alternating rounds, medians (min-max)"
    )
    header = f"{'engine':<20}{'load s':>20}{'ttft s':>20}{'prompt tok/s':>20}{'decode tok/s':>20}"
    print(header + f"{'peak RSS MiB':>14}")
    for name, e in report["engines"].items():
        if e["skipped"]:
            print(f"{name:<20}skipped: {e['skipped']}")
            continue
        cells = [_cell(e[m]) for m in ("load_s", "ttft_s", "prompt_tps", "decode_tps")]
        rss = e["peak_rss_bytes"]["median"] / 1024**2 if e["peak_rss_bytes"] else float("nan")
        print(f"{name:<20}{cells[0]:>20}{cells[1]:>20}{cells[2]:>20}{cells[3]:>20}{rss:>14.0f}")
    for name, r in report["ratios"].items():
        p, d = r["prompt_tps"], r["decode_tps"]
        if p is not None or d is not None:
            print(f"{name}: prompt {_num(p)}x, decode {_num(d)}x")
    bw = report["bandwidth"]
    if bw:
        print(
            f"memory bandwidth {bw['bytes_per_s'] / 1e9:.1f} GB/s ({bw['method']}); "
            f"{bw['bytes_per_token']['total_bytes'] / 1e6:.0f} MB read per token -> "
            f"bandwidth_bound_tps {bw['bandwidth_bound_tps']:.1f}; Hearth decodes at "
            f"{_num(bw['hearth_decode_fraction'])} of it"
        )
    if report["contention"]:
        for threads, c in report["contention"]["threads"].items():
            print(
                f"contention, {threads} threads: idle {_cell(c['idle_decode_tps'])}, one busy "
                f"neighbour {_cell(c['busy_decode_tps'])} tok/s ({_num(c['busy/idle'])}x)"
                + (
                    f"; threads held fixed {_cell(c['busy_fixed_threads_decode_tps'])} tok/s "
                    f"({_num(c['busy_fixed/idle'])}x)"
                    if c.get("busy_fixed_threads_decode_tps")
                    else ""
                )
            )
    if report["turns"]:
        for t in report["turns"]["turns"]:
            print(
                f"turn {t['turn']}: ttft {_num(t['ttft_s'])} s, prompt {t['prompt_tokens']} "
                f"tokens, {t['cached_tokens']} reused from the KV cache"
            )
        print(f"turn {TURNS} / turn 1 ttft: {_num(report['turns']['ttft_last/first'])}x")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _cell(s: dict[str, float] | None) -> str:
    if not s:
        return "-"
    if s["min"] == s["max"]:
        return _num(s["median"])
    return f"{_num(s['median'])} ({_num(s['min'])}-{_num(s['max'])})"
