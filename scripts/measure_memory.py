#!/usr/bin/env python3
"""Measure the peak resident memory of llama-cpp-python loading a GGUF and evaluating a prompt.

Compares it with Hearth's planner estimate for the same settings on this machine:

    .venv/bin/python scripts/measure_memory.py MODEL.gguf --ctx 4096 [--prompt-tokens 512] [--json]

The model runs in a fresh child process, so its peak RSS (ru_maxrss) is the model's alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
model = sys.argv[1]
n_ctx, n_threads, n_prompt = (int(v) for v in sys.argv[2:5])
import llama_cpp
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=0,
                      use_mmap=True, verbose=False)
load_s = time.perf_counter() - t0
text = "The quick brown fox jumps over the lazy dog. " * (n_prompt // 5 + 8)
tokens = llm.tokenize(text.encode())[: min(n_prompt, n_ctx - 8)]
t0 = time.perf_counter()
llm.eval(tokens)
eval_s = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_rss": peak, "import_rss": base, "load_s": load_s,
                  "prompt_tokens": len(tokens), "prompt_s": eval_s}))
"""


def measure(model: Path, n_ctx: int, threads: int, prompt_tokens: int) -> dict[str, float]:
    """Run the child and return its JSON line as a dict."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(n_ctx), str(threads), str(prompt_tokens)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from app.hardware.detect import detect_hardware
    from app.models.gguf import read_gguf_facts
    from app.planner import LoadSettings, plan_load

    hw = detect_hardware(include_builds=False)
    facts = read_gguf_facts(args.model)
    plan = plan_load(hw, facts, LoadSettings(n_ctx=args.ctx, gpu_layers=0))
    result = measure(args.model, args.ctx, plan.threads, args.prompt_tokens)
    result.update(
        {
            "model": args.model.name,
            "n_ctx": args.ctx,
            "threads": plan.threads,
            "estimate": plan.estimate.total,
            "estimate_parts": {
                "weights": plan.estimate.weights,
                "kv_cache": plan.estimate.kv_cache,
                "compute": plan.estimate.compute,
                "overhead": plan.estimate.overhead,
            },
            "ratio": plan.estimate.total / result["peak_rss"],
        }
    )
    if args.json:
        print(json.dumps(result))
    else:
        from app.humanize import format_size

        print(
            f"{args.model.name} ctx={args.ctx}: peak RSS {format_size(result['peak_rss'])}, "
            f"estimate {format_size(plan.estimate.total)} (ratio {result['ratio']:.3f}); "
            f"load {result['load_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
