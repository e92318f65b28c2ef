"""`hearth` as a person runs it in a terminal: real subprocesses, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

HEARTH = [sys.executable, "-m", "app"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEARTH, *args], capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )


def test_doctor_json_has_the_documented_keys() -> None:
    done = run("doctor", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cpu"]["physical_cores"] == psutil.cpu_count(logical=False)
    assert report["cpu"]["logical_cores"] == psutil.cpu_count(logical=True)
    assert isinstance(report["cpu"]["simd"], list)
    assert report["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert 0 < report["memory"]["available_bytes"] <= report["memory"]["total_bytes"]
    assert report["gpus"] == []  # this test machine has none
    assert report["llama"]["gpu_offload"] is False  # CPU build of llama.cpp here
    assert report["torch"]["cuda"] is False and report["torch"]["mps"] is False
    assert report["recommended"]["backend"] == "cpu"


def test_doctor_text_report_on_a_simulated_mac() -> None:
    done = run("doctor", "--machine", "macbook-air-m2-8gb")
    assert done.returncode == 0, done.stderr
    assert "Apple M2" in done.stdout and "metal" in done.stdout


def test_plan_real_model_json(gemma_gguf: Path) -> None:
    done = run("plan", str(gemma_gguf), "--ctx", "4096", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["backend"] == "cpu" and plan["gpu_layers_mode"] == "none"
    assert plan["verdict"] == "fits in RAM"
    assert plan["threads"] == psutil.cpu_count(logical=False)
    assert plan["n_ctx"] == 4096
    parts = plan["estimate"]
    assert parts["total"] == sum(
        parts[k] for k in ("weights", "repacked", "kv_cache", "compute", "overhead")
    )
    # KV cache: 18 blocks x 1 KV head x (256 + 256) x 2 bytes per token.
    assert parts["kv_cache"] == 4096 * 18 * 512 * 2


def test_plan_reference_model_on_simulated_machines() -> None:
    netbook = run(
        "plan", "llama-3.1-8b-instruct-q4_k_m", "--machine", "netbook-4gb", "--ctx", "4096"
    )
    assert netbook.returncode == 0, netbook.stderr
    assert "won't fit" in netbook.stdout
    rtx = run(
        "plan",
        "llama-3.1-8b-instruct-q4_k_m",
        "--machine",
        "windows-laptop-rtx3060-6gb-16gb",
        "--ctx",
        "8192",
        "--json",
    )
    plan = json.loads(rtx.stdout)
    assert plan["verdict"] == "fits split GPU+CPU" and plan["backend"] == "cuda"
    assert 0 < plan["gpu_layers"] < plan["total_layers"]


def test_plan_errors_are_one_clear_sentence_not_a_traceback(tmp_path: Path) -> None:
    done = run("plan", str(tmp_path / "missing.gguf"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: There is no file at")
    unknown = run("plan", "no-such-model")
    assert unknown.returncode == 1 and "hearth models list" in unknown.stderr
    bad_machine = run("plan", "llama-3.1-8b-instruct-q4_k_m", "--machine", "cray-1")
    assert bad_machine.returncode == 1 and "netbook-4gb" in bad_machine.stderr


def test_gui_without_display_explains_instead_of_crashing() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    done = run(env=env)
    assert done.returncode == 1
    assert "no display" in done.stderr and "xvfb-run" in done.stderr
    assert "Traceback" not in done.stderr


def test_models_list_starts_empty_and_says_what_to_do() -> None:
    done = run("models", "list")
    assert done.returncode == 0
    assert "hearth models starter" in done.stdout
    assert json.loads(run("models", "list", "--json").stdout) == []


def test_help_lists_the_commands() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in ("doctor", "plan", "models"):
        assert command in done.stdout
