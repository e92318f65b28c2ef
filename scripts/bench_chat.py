#!/usr/bin/env python3
"""Decode speed through Hearth's worker vs. raw llama-cpp-python, measured side by side.

    .venv/bin/python scripts/bench_chat.py MODEL.gguf [--tokens 128] [--rounds 3]

Both sides load the same GGUF with the same settings (CPU, physical-core threads, same
context), generate the same number of tokens greedily from the same prompt, and are timed
the same way from the caller's side: first token to last. Rounds alternate (raw, Hearth,
raw, Hearth, ...) so drift on a shared machine hits both. Raw llama-cpp-python with its
own default thread count (logical cores // 2) is shown too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT = "Write a long story about a lighthouse keeper and the sea. Once upon a time,"

RAW = r"""
import json, sys, time
import llama_cpp
path, threads, prompt = sys.argv[1], sys.argv[3], sys.argv[5]
n_ctx, n_tokens = int(sys.argv[2]), int(sys.argv[4])
kw = {} if threads == "default" else {"n_threads": int(threads), "n_threads_batch": int(threads)}
llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_gpu_layers=0, verbose=False, **kw)
stamps = []
greedy = dict(temperature=0.0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
for chunk in llm.create_completion(prompt, max_tokens=n_tokens, stream=True, **greedy):
    stamps.append(time.perf_counter())
n = len(stamps)
print(json.dumps({"tokens": n, "decode_tps": (n - 1) / (stamps[-1] - stamps[0]),
                  "threads": llm.n_threads if hasattr(llm, "n_threads") else threads}))
"""


def raw_run(model: Path, n_ctx: int, threads: str, n_tokens: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", RAW, str(model), str(n_ctx), threads, str(n_tokens), PROMPT],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def hearth_run(model: Path, n_ctx: int, threads: int, n_tokens: int) -> dict[str, float]:
    from app.engines.chat_llama.client import ChatEngineClient
    from app.engines.chat_llama.protocol import GenerateRequest, LoadRequest, TokenEvent

    with ChatEngineClient() as client:
        client.load(LoadRequest(str(model), n_ctx=n_ctx, n_gpu_layers=0, n_threads=threads))
        stamps = []
        for event in client.generate(
            GenerateRequest(
                "bench",
                PROMPT,
                max_tokens=n_tokens,
                temperature=0.0,
                repeat_penalty=1.0,
                top_k=40,
                top_p=1.0,
                min_p=0.0,
            )
        ):
            if isinstance(event, TokenEvent):
                stamps.append(time.perf_counter())
    n = len(stamps)
    return {"tokens": n, "decode_tps": (n - 1) / (stamps[-1] - stamps[0]), "threads": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from app.hardware.detect import detect_hardware
    from app.planner.budget import cpu_threads

    threads = cpu_threads(detect_hardware(include_builds=False))
    raw, hearth, raw_default = [], [], []
    for i in range(args.rounds):
        raw.append(raw_run(args.model, args.ctx, str(threads), args.tokens)["decode_tps"])
        hearth.append(hearth_run(args.model, args.ctx, threads, args.tokens)["decode_tps"])
        raw_default.append(raw_run(args.model, args.ctx, "default", args.tokens)["decode_tps"])
        print(
            f"round {i + 1}: raw {raw[-1]:.1f}  hearth {hearth[-1]:.1f}  "
            f"raw-default-threads {raw_default[-1]:.1f} tok/s",
            file=sys.stderr,
        )
    med = statistics.median
    print(
        json.dumps(
            {
                "model": args.model.name,
                "tokens": args.tokens,
                "threads": threads,
                "raw_tps": med(raw),
                "hearth_tps": med(hearth),
                "raw_default_threads_tps": med(raw_default),
                "hearth_over_raw": med(hearth) / med(raw),
                "hearth_over_raw_default": med(hearth) / med(raw_default),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
