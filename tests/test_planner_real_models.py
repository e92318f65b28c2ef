"""The planner's memory estimate agrees with llama.cpp's measured peak RSS on real models.

Each case loads the model in a fresh process through scripts/measure_memory.py (the same
script docs/benchmarks.md quotes), evaluates a 512-token prompt at the given context and
compares its peak resident memory with the estimate. DESIGN.md promises 15 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "measure_memory.py"


def _measure(model: Path, ctx: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(model), "--ctx", str(ctx), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("ctx", [2048, 16384])
def test_gemma_estimate_within_15_percent_of_peak_rss(gemma_gguf: Path, ctx: int) -> None:
    result = _measure(gemma_gguf, ctx)
    assert 0.85 <= result["ratio"] <= 1.15, result


@pytest.mark.slow
@pytest.mark.parametrize("ctx", [4096, 32768])
def test_starter_estimate_within_15_percent_of_peak_rss(starter_gguf: Path, ctx: int) -> None:
    result = _measure(starter_gguf, ctx)
    assert 0.85 <= result["ratio"] <= 1.15, result


@pytest.mark.slow
def test_context_growth_matches_the_kv_cache_estimate(gemma_gguf: Path) -> None:
    """The part that grows with context is the KV cache: measured slope ≈ estimated slope."""
    small, large = _measure(gemma_gguf, 2048), _measure(gemma_gguf, 16384)
    measured = large["peak_rss"] - small["peak_rss"]
    estimated = large["estimate_parts"]["kv_cache"] - small["estimate_parts"]["kv_cache"]
    assert 0.85 <= measured / estimated <= 1.15, (measured, estimated)
