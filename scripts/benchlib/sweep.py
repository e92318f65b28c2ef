"""`scripts/bench sweep`: llama.cpp settings around Hearth's plan, measured side by side.

Every variant is Hearth's own settings for the model (`llama_cpp_same`) with one thing
changed: threads, batch sizes, flash attention, the KV cache's type, mmap, mlock, or
llama.cpp's repacking of quantised weights. Each runs in a fresh llama-cpp-python process
on the same prompt tokens; rounds alternate the variants and rotate their order, and each
variant is reported as its median over Hearth's (`vs_hearth`, above 1: faster), with the
spread of Hearth's own runs as the noise to beat (`noise`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from benchlib.common import (
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

METRICS = ("load_s", "ttft_s", "prompt_tps", "decode_tps", "peak_rss_bytes")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="llama.cpp settings around Hearth's plan, side by side")
    p.add_argument("--model", type=Path, required=True, help="a .gguf file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--runs", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument(
        "--only", default="", help="comma-separated variant names (default: all; see --list)"
    )
    p.add_argument("--list", action="store_true", help="name the variants and exit")
    p.set_defaults(func=run)


def variants(same: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name → {kwargs, model_params}: Hearth's settings with one change each."""
    threads = int(same["n_threads"])
    logical = os.cpu_count() or threads
    batch, ubatch = int(same["n_batch"]), int(same["n_ubatch"])
    out: dict[str, dict[str, Any]] = {"hearth": {}}
    for n in sorted({1, max(threads - 1, 1), logical} - {threads}):
        out[f"threads={n}"] = {"n_threads": n, "n_threads_batch": n}
    if threads < logical:
        out["batch_threads=logical"] = {"n_threads_batch": logical}
    for b in (128, 256, 512, 1024, 2048):
        if (b, b) != (batch, ubatch):
            out[f"batch={b}"] = {"n_batch": b, "n_ubatch": b}
    if batch < 2048:
        out[f"n_batch=2048/ubatch={ubatch}"] = {"n_batch": 2048, "n_ubatch": ubatch}
    out["flash_attn=" + ("off" if same["flash_attn"] else "on")] = {
        "flash_attn": not same["flash_attn"]
    }
    if same["type_k"] == 1:  # f16: a quantised cache needs flash attention
        out["kv=q8_0"] = {"type_k": 8, "type_v": 8, "flash_attn": True}
    out["mmap=" + ("off" if same["use_mmap"] else "on")] = {"use_mmap": not same["use_mmap"]}
    out["mlock=on"] = {"use_mlock": True}
    out["repack=off"] = {"__model_params": {"use_extra_bufts": False}}
    return {name: {"change": change} for name, change in out.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    model: Path = args.model.resolve()
    if not model.is_file():
        raise SystemExit(f"bench: there is no model file at {model}")
    plan, request = hearth_chat_plan(model)
    n_prompt, n_gen = args.prompt_tokens, args.gen_tokens
    if n_prompt + n_gen >= request["n_ctx"]:
        raise SystemExit(f"bench: {n_prompt} + {n_gen} tokens do not fit Hearth's context")
    same = llama_kwargs_for(request)
    table = variants(same)
    if args.list:
        for name, v in table.items():
            print(f"{name}: {v['change'] or 'Hearth plan as is'}")
        raise SystemExit(0)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(table)
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        raise SystemExit(f"bench: unknown variant(s) {', '.join(unknown)}; see --list")
    if "hearth" not in chosen:
        chosen.insert(0, "hearth")  # the baseline every ratio is taken against

    log(f"the model into the page cache; prompts of exactly {n_prompt} tokens")
    read_into_page_cache(model)
    prompts = run_child("prompt.py", {"model": str(model), "tokens": n_prompt, "runs": args.runs})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    failed: dict[str, str] = {}
    for k in range(args.runs):
        rotated = chosen[k % len(chosen) :] + chosen[: k % len(chosen)]
        for name in rotated:
            if name in failed:
                continue
            change = dict(table[name]["change"])
            model_params = change.pop("__model_params", {})
            log(f"round {k + 1}/{args.runs}: {name}")
            try:
                result = run_child(
                    "llama_run.py",
                    {
                        "model": str(model),
                        "kwargs": {**same, **change},
                        "model_params": model_params,
                        "tokens": prompts["prompts"][k]["tokens"],
                        "gen_tokens": n_gen,
                    },
                )
            except ChildFailed as exc:
                failed[name] = str(exc)
                continue
            runs[name].append({"run": k + 1, **result})

    entries = {
        name: {m: spread([r.get(m) for r in runs[name]]) for m in METRICS} for name in chosen
    }
    base = entries["hearth"]
    return {
        "benchmark": "sweep",
        "model": {"path": str(model), "file_bytes": model.stat().st_size},
        "machine": machine_facts(),
        "settings": {
            "runs": args.runs,
            "prompt_tokens": n_prompt,
            "gen_tokens": n_gen,
            "hearth": same,
            "hearth_plan_threads": plan.threads,
        },
        "noise": {
            m: (base[m]["max"] - base[m]["min"]) / base[m]["median"]
            if base[m] and base[m]["median"]
            else None
            for m in ("prompt_tps", "decode_tps", "ttft_s")
        },
        "variants": {
            name: {
                "change": table[name]["change"],
                **entries[name],
                "vs_hearth": {
                    m: ratio(entries[name][m], base[m]) for m in ("prompt_tps", "decode_tps")
                },
                "failed": failed.get(name),
            }
            for name in chosen
        },
        "runs": runs,
    }


def print_table(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(
        f"{Path(report['model']['path']).name}: {s['prompt_tokens']}-token prompt, "
        f"{s['gen_tokens']} generated, {s['runs']} alternating rounds"
    )
    noise = report["noise"]
    print(
        "Hearth's own spread (max-min)/median: prompt "
        f"{_pct(noise['prompt_tps'])}, decode {_pct(noise['decode_tps'])}"
    )
    head = f"{'variant':<28}{'prompt tok/s':>14}{'decode tok/s':>14}"
    print(f"{head}{'prompt ×':>10}{'decode ×':>10}")
    for name, v in report["variants"].items():
        if v["failed"]:
            print(f"{name:<28}  failed: {v['failed']}")
            continue
        print(
            f"{name:<28}{_med(v['prompt_tps']):>14}{_med(v['decode_tps']):>14}"
            f"{_x(v['vs_hearth']['prompt_tps']):>10}{_x(v['vs_hearth']['decode_tps']):>10}"
        )


def _med(s: dict[str, float] | None) -> str:
    return "-" if not s else f"{s['median']:.1f}"


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.3f}"


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{100 * r:.1f} %"
