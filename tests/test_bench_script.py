"""scripts/bench runs on the Gemma fixture and the tiny pipeline and prints well-formed JSON.

No timing is asserted (the machines are shared): only that every documented name is
there, that the numbers are numbers, and what must hold whatever the speed (the prompt is
exactly the tokens asked for, nothing came from a prompt cache, a skipped engine says why).
GPT4All is left out with --engines so these tests stay offline.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench"
SPREAD = {"median", "min", "max"}
CHAT_METRICS = {"load_s", "ttft_s", "prompt_tps", "decode_tps", "peak_rss_bytes"}
OFFLINE_ENGINES = "hearth,llama_cpp_same,llama_cpp_defaults"


def bench(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(BENCH), *args], capture_output=True, text=True, timeout=900, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout))


def assert_spread(value: Any) -> None:
    assert set(value) == SPREAD
    assert value["min"] <= value["median"] <= value["max"]
    assert value["min"] > 0


@pytest.mark.slow
def test_bench_chat_reports_every_engine_with_the_documented_names(gemma_gguf: Path) -> None:
    report = bench(
        "chat",
        "--model",
        str(gemma_gguf),
        "--json",
        "--runs",
        "1",
        "--prompt-tokens",
        "32",
        "--gen-tokens",
        "8",
        "--engines",
        OFFLINE_ENGINES,
        "--turns",
    )

    engines = report["engines"]
    assert set(engines) == {"hearth", "llama_cpp_same", "llama_cpp_defaults", "gpt4all"}
    for name in ("hearth", "llama_cpp_same", "llama_cpp_defaults"):
        assert set(engines[name]) == CHAT_METRICS | {"skipped", "settings"}
        assert engines[name]["skipped"] is None
        for metric in CHAT_METRICS:
            assert_spread(engines[name][metric])
    assert engines["gpt4all"]["skipped"]  # says why
    assert all(engines["gpt4all"][m] is None for m in CHAT_METRICS)

    assert set(report["ratios"]) == {
        "hearth/llama_cpp_same",
        "hearth/llama_cpp_defaults",
        "hearth/gpt4all",
    }
    for name, ratios in report["ratios"].items():
        assert set(ratios) == {"prompt_tps", "decode_tps"}
        if name == "hearth/gpt4all":
            assert ratios == {"prompt_tps": None, "decode_tps": None}
        else:
            assert all(v > 0 for v in ratios.values())

    # Hearth ran with its plan's settings, and llama_cpp_same with exactly those.
    same = engines["llama_cpp_same"]["settings"]
    hearth = engines["hearth"]["settings"]
    assert (same["n_ctx"], same["n_threads"]) == (hearth["n_ctx"], hearth["n_threads"])
    assert (same["n_batch"], same["n_ubatch"]) == (hearth["n_batch"], hearth["n_ubatch"])

    # The prompt is exactly the tokens asked for, and no run started from a cached prefix.
    (hearth_run,) = report["runs"]["hearth"]
    assert hearth_run["prompt_tokens"] == 32
    assert report["prompt_cache"]["hearth_cached_tokens"] == [0]

    # Five turns in one worker: each prompt repeats the history, whose KV prefix is kept.
    turns = report["turns"]["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5]
    assert turns[0]["cached_tokens"] <= 1  # at most a BOS shared with the warm-up
    assert all(t["prompt_tokens"] > p["prompt_tokens"] for p, t in itertools.pairwise(turns))
    assert all(t["cached_tokens"] > p["prompt_tokens"] / 2 for p, t in itertools.pairwise(turns))
    assert report["turns"]["ttft_last/first"] > 0
    assert report["contention"] is None  # only with --contention

    bandwidth = report["bandwidth"]
    assert bandwidth["bytes_per_s"] > 0
    assert bandwidth["bandwidth_bound_tps"] > 0
    assert bandwidth["hearth_decode_fraction"] > 0
    per_token = bandwidth["bytes_per_token"]
    assert per_token["total_bytes"] == per_token["weights_bytes"] + per_token["kv_cache_bytes"]
    assert per_token["weights_bytes"] <= report["model"]["file_bytes"]


@pytest.mark.slow
def test_bench_image_compares_hearth_with_plain_diffusers(tiny_pipeline: Path) -> None:
    report = bench("image", "--json", "--model", str(tiny_pipeline), "--steps", "2", "--runs", "1")

    engines = report["engines"]
    assert set(engines) == {"hearth", "hearth_not_progressive", "diffusers"}
    for metrics in engines.values():
        assert set(metrics) == {"load_s", "first_step_s", "s_per_step", "total_s", "peak_rss_bytes"}
        for value in metrics.values():
            assert_spread(value)
    assert set(report["ratios"]) == {"hearth/diffusers", "hearth/hearth_not_progressive"}
    assert set(report["ratios"]["hearth/diffusers"]) == {"s_per_step", "first_step_s"}
    assert report["settings"]["steps"] == 2


@pytest.mark.slow
def test_bench_load_measures_cold_and_warm_loads(gemma_gguf: Path) -> None:
    report = bench("load", "--model", str(gemma_gguf), "--json", "--runs", "1")

    for state in ("cold", "warm"):
        assert set(report[state]) == {"load_s", "load_wall_s", "peak_rss_bytes"}
        for value in report[state].values():
            assert_spread(value)
    assert report["peak_rss/file_bytes"] > 0
    assert report["peak_rss/planner_estimate"] > 0
    assert report["planner_estimate_bytes"] > report["model"]["file_bytes"]


def test_bench_refuses_an_unknown_engine(tiny_gguf: Callable[..., Path]) -> None:
    out = subprocess.run(
        [str(BENCH), "chat", "--model", str(tiny_gguf()), "--engines", "hearth,ollama"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode != 0
    assert "ollama" in out.stderr


@pytest.mark.slow
def test_bench_sweep_measures_each_change_against_hearths_plan(gemma_gguf: Path) -> None:
    report = bench(
        "sweep",
        "--model",
        str(gemma_gguf),
        "--json",
        "--runs",
        "1",
        "--prompt-tokens",
        "32",
        "--gen-tokens",
        "4",
        "--only",
        "repack=off,batch=128",
    )

    assert report["benchmark"] == "sweep"
    assert list(report["variants"]) == ["hearth", "repack=off", "batch=128"]
    for name, variant in report["variants"].items():
        assert variant["failed"] is None, name
        for metric in CHAT_METRICS:
            assert_spread(variant[metric])
        assert set(variant["vs_hearth"]) == {"prompt_tps", "decode_tps"}
    assert report["variants"]["hearth"]["vs_hearth"]["decode_tps"] == 1.0
    assert report["variants"]["batch=128"]["change"] == {"n_batch": 128, "n_ubatch": 128}
    # The repack switch really reached llama.cpp: on an AVX2 CPU it copies Gemma's Q4_K
    # attention-output and FFN-down weights into an interleaved buffer (12.7 MiB, its log
    # says); with repacking off that copy is not made, so the peak is lower by about that.
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "avx2" in cpuinfo.read_text(errors="replace").split():
        hearth_rss = report["variants"]["hearth"]["peak_rss_bytes"]["median"]
        saved = hearth_rss - report["variants"]["repack=off"]["peak_rss_bytes"]["median"]
        assert 6 * 2**20 < saved < 40 * 2**20, saved / 2**20
