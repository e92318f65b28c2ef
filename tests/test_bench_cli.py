"""`hearth bench chat|image|history` as a person runs them (real worker processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.sessions.bench import BenchError, make_prompt
from app.store import open_default_database
from app.store.bench import KEEP_PER_MODEL, list_results, save_result

LAPTOP = "windows-laptop-rtx3060-6gb-16gb"

CHAT_FIELDS = {
    "model",
    "backend",
    "threads",
    "gpu_layers",
    "n_ctx",
    "n_batch",
    "flash_attn",
    "kv_type",
    "runs",
    "prompt_tokens",
    "gen_tokens",
    "load_s",
    "ttft_s",
    "prompt_tps",
    "decode_tps",
    "peak_rss_bytes",
    "cached_tokens",
    "machine",
    "created_at",
    "kind",
}


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_bench_chat_measures_the_gemma_fixture_and_keeps_the_result(gemma_gguf: Path) -> None:
    linked = hearth("models", "import", "--link", str(gemma_gguf), "--name", "gemma")
    assert linked.returncode == 0, linked.stderr
    args = ("--model", "gemma", "--prompt-tokens", "48", "--gen-tokens", "8", "--runs", "2")
    done = hearth("bench", "chat", *args, "--json", "--threads", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == CHAT_FIELDS
    assert result["model"] == "gemma" and result["kind"] == "chat" and result["runs"] == 2
    assert result["threads"] == 1  # the flag reached the worker's plan
    assert 40 <= result["prompt_tokens"] <= 48  # as long as asked, never longer
    assert 2 <= result["gen_tokens"] <= 8
    for name in ("ttft_s", "prompt_tps", "decode_tps"):
        stat = result[name]
        assert 0 < stat["min"] <= stat["median"] <= stat["max"]
    assert result["cached_tokens"] < 8  # each run's prompt starts differently
    assert result["peak_rss_bytes"] > gemma_gguf.stat().st_size // 2

    history = hearth("bench", "history", "--json")
    assert history.returncode == 0, history.stderr
    [kept] = json.loads(history.stdout)
    assert kept == result
    table = hearth("bench", "history", "--model", "gemma")
    assert "tok/s decode" in table.stdout and "gemma" in table.stdout


def test_bench_image_times_the_steps_and_leaves_the_gallery_alone(tiny_pipeline: Path) -> None:
    linked = hearth("models", "import", "--link", str(tiny_pipeline), "--name", "tiny-sd")
    assert linked.returncode == 0, linked.stderr
    done = hearth("bench", "image", "--model", "tiny-sd", "--steps", "2", "--runs", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kind"] == "image" and result["steps"] == 2 and result["runs"] == 2
    assert (result["width"], result["height"]) == (64, 64)
    assert result["s_per_step"]["median"] > 0 and result["load_s"] > 0
    assert result["load_to_first_step_s"] >= result["first_step_s"]["min"]
    gallery = hearth("images", "list", "--json")
    assert gallery.returncode == 0 and json.loads(gallery.stdout) == []


def test_bad_bench_values_are_one_sentence_and_a_remedy() -> None:
    done = hearth("bench", "chat", "--model", "nothing-here", "--runs", "0")
    assert done.returncode == 1
    assert "at least 1 run" in done.stderr and "--runs 1 or more" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_prompt_is_as_long_as_asked_and_never_longer() -> None:
    def words(text: str) -> int:  # a tokenizer that counts words, plus one for BOS
        return len(text.split()) + 1

    for tokens in (16, 100, 700):
        prompts = [make_prompt(words, tokens, run) for run in range(3)]
        assert all(tokens - 2 <= words(p) <= tokens for p in prompts)
        assert len({p.split(".")[0] for p in prompts}) == 3  # each run starts differently
    with pytest.raises(BenchError):
        make_prompt(words, 3, 0)


def test_results_are_kept_newest_first_and_old_ones_dropped() -> None:
    db = open_default_database()
    for n in range(KEEP_PER_MODEL + 3):
        save_result(db, "chat", "m", {"n": n})
    save_result(db, "chat", "other", {"n": -1})
    kept = list_results(db, model="m")
    assert len(kept) == KEEP_PER_MODEL
    assert kept[0].result["n"] == KEEP_PER_MODEL + 2  # the newest first
    assert {r.model for r in list_results(db)} == {"m", "other"}


def test_the_system_page_shows_each_models_speed_history(qtbot: QtBot) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.system import SystemPage
    from app.hardware.profile import load_simulated_machines

    db = open_default_database()
    stat = {"median": 40.0, "min": 39.0, "max": 41.0}
    chat = {
        "backend": "cpu",
        "threads": 2,
        "gpu_layers": 0,
        "decode_tps": stat,
        "prompt_tps": {"median": 300.0, "min": 290.0, "max": 310.0},
        "ttft_s": {"median": 0.4, "min": 0.3, "max": 0.5},
        "peak_rss_bytes": 500 * 1024**2,
    }
    save_result(db, "chat", "gemma", chat)
    save_result(db, "chat", "qwen", {**chat, "threads": 1})
    db.close()
    page = SystemPage(BackgroundRunner(), hardware=load_simulated_machines()[LAPTOP])
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.shown, timeout=30_000):
        page.refresh()
    assert page.bench.rowCount() == 2 and not page.bench_empty.isVisibleTo(page)
    assert page.bench.rows[0][1] == "qwen"  # newest first
    assert "40.0 tok/s (300 prompt)" in page.bench.rows[1]
    assert "CPU, 1 threads, 0 GPU layers" in page.bench.rows[0][3]
    page.bench_model.setCurrentIndex(page.bench_model.findData("gemma"))
    assert [row[1] for row in page.bench.rows] == ["gemma"]


def test_the_system_page_says_how_to_measure_when_nothing_was(qtbot: QtBot) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.system import SystemPage
    from app.hardware.profile import load_simulated_machines

    page = SystemPage(BackgroundRunner(), hardware=load_simulated_machines()[LAPTOP])
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.shown, timeout=30_000):
        page.refresh()
    assert page.bench.rowCount() == 0
    assert page.bench_empty.isVisibleTo(page) and "hearth bench chat" in page.bench_empty.text()
