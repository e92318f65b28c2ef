"""`hearth chat` and `hearth history` as a person uses them, in real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

HEARTH = [sys.executable, "-m", "app"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEARTH, *args], capture_output=True, text=True, timeout=600, input=stdin
    )


def seeded_chat(
    model: Path, *args: str, max_tokens: int, seed: int
) -> subprocess.CompletedProcess[str]:
    """`hearth chat` on `model`: a short, seeded answer in a 1024-token context."""
    options = ["--max-tokens", str(max_tokens), "--seed", str(seed), "--ctx", "1024"]
    return run("chat", "-m", str(model), *options, *args)


def test_chat_streams_an_answer_and_reports_metrics(gemma_gguf: Path) -> None:
    done = seeded_chat(gemma_gguf, "Write two sentences about the sea.", max_tokens=24, seed=7)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "tok/s" in done.stderr and "context" in done.stderr
    assert "loading:" in done.stderr or "fits in RAM" in done.stderr


def test_chat_json_and_history(gemma_gguf: Path) -> None:
    done = seeded_chat(
        gemma_gguf, "--json", "--system", "Be brief.", "Name three fish.", max_tokens=16, seed=1
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert done.stdout == json.dumps(reply, indent=2) + "\n"  # only the JSON: progress is on stderr
    assert reply["state"] == "complete" and reply["content"]
    assert reply["metrics"]["generated_tokens"] > 0 and reply["metrics"]["decode_tps"] > 0
    cid = reply["conversation_id"]

    listed = json.loads(run("history", "list", "--json").stdout)
    assert [c["id"] for c in listed] == [cid] and listed[0]["messages"] == 2
    shown = run("history", "show", cid[:8]).stdout
    assert "Name three fish." in shown and reply["content"].strip()[:20] in shown
    assert "fish" in run("history", "search", "fish").stdout
    exported = json.loads(run("history", "export", cid, "--format", "json").stdout)
    assert exported["system_prompt"] == "Be brief."
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    refused = run("history", "delete", cid)  # no terminal to confirm on: refuses
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert run("history", "delete", cid, "--yes").returncode == 0
    assert json.loads(run("history", "list", "--json").stdout) == []


def test_message_from_stdin_and_empty_message(gemma_gguf: Path) -> None:
    piped = run(
        "chat", "-m", str(gemma_gguf), "--max-tokens", "8", "--ctx", "512", "-q", stdin="Say hi.\n"
    )
    assert piped.returncode == 0 and piped.stdout.strip()
    empty = run("chat", "-m", str(gemma_gguf), "--ctx", "512", "   ")
    assert empty.returncode == 1
    assert "error: The message is empty." in empty.stderr and "Traceback" not in empty.stderr


def test_bad_model_file_gives_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(os.urandom(4096))
    done = run("chat", "-m", str(fake), "hello")
    assert done.returncode == 1
    assert "not a GGUF model file" in done.stderr and "Traceback" not in done.stderr


def test_killing_the_app_mid_answer_keeps_the_answer_so_far(
    gemma_gguf: Path, hearth_home: Path
) -> None:
    proc = subprocess.Popen(
        [
            *HEARTH,
            "chat",
            "-m",
            str(gemma_gguf),
            "--ctx",
            "1024",
            "--max-tokens",
            "800",
            "--temperature",
            "0.8",
            "Tell me a very long story about a lighthouse.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    db_path = hearth_home / "data" / "hearth.db"
    partial = ""
    deadline = time.monotonic() + 300
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and len(partial) < 40:
        time.sleep(0.2)
        if not db_path.exists():
            continue
        workers = workers or psutil.Process(proc.pid).children()
        try:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
                row = conn.execute(
                    "SELECT content FROM messages WHERE role = 'assistant' AND state = 'streaming'"
                ).fetchone()
        except sqlite3.OperationalError:  # the app is still creating its tables
            continue
        partial = row[0] if row else ""
    assert len(partial) >= 40, "the growing answer was flushed while streaming"
    proc.send_signal(signal.SIGKILL)  # the whole app dies, no chance to clean up
    proc.wait(timeout=30)
    _gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "the worker noticed its parent died and exited"

    listed = json.loads(run("history", "list", "--json").stdout)  # a restart
    shown = run("history", "show", listed[0]["id"]).stdout
    assert "(interrupted)" in shown
    assert partial in shown


def test_an_empty_message_is_refused_before_loading_and_leaves_no_conversation(
    tmp_path: Path,
) -> None:
    from tests.gguf_factory import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "tiny.gguf", chat_ready=True)
    for how in ({"args": ("   ",)}, {"args": (), "stdin": "\n\n"}):
        done = run("chat", "-m", str(model), *how["args"], stdin=how.get("stdin"))
        assert done.returncode == 1
        assert done.stderr.startswith("error: The message is empty.")
        assert "Type something to send." in done.stderr
        assert "loaded in" not in done.stderr and "loading" not in done.stderr
    assert json.loads(run("history", "list", "--json").stdout) == []
