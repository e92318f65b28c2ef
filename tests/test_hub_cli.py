"""`hearth models search|files|pull|downloads|login` in real subprocesses against a local Hub."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.paths import hearth_paths
from app.store import open_default_database
from app.store.library import find_model
from tests.hubserver import (
    HubFile,
    HubRepo,
    HubServer,
    point_hub_client_at,
    running_hub,
    tiny_gguf_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
HEARTH = [sys.executable, "-m", "app"]
MACHINE = ["--machine", "airgapped-lab-cpu-32gb"]  # no hardware probe, same verdicts anywhere
BIG = "hearth-test/Big-Chat-GGUF"
MiB = 1024**2
WAIT_S = 60.0


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with running_hub(tmp_path / "hub-files", lifetime_s=240) as server:
        # Big enough that the app's 1 MiB reads leave a partial file to resume from.
        data = tiny_gguf_bytes(tmp_path, "big-chat-Q4_K_M.gguf", n_embd=256, vocab=2048)
        server.add(HubRepo(BIG, [HubFile("big-chat-Q4_K_M.gguf", data)], downloads=10))
        point_hub_client_at(server, monkeypatch, tmp_path)
        yield server


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEARTH, *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        cwd=ROOT,
        env=dict(os.environ),
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*HEARTH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
    )


def wait_for_partial(size: int) -> Path:
    """The staging file once it holds `size` bytes (bounded: fails instead of hanging)."""
    deadline = time.monotonic() + WAIT_S
    staging = hearth_paths().cache / "downloads"
    while time.monotonic() < deadline:
        found = [p for p in staging.rglob("*.incomplete") if p.stat().st_size >= size]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no partial file of {size} bytes appeared in {staging}")


def wait_for_state(state: str) -> None:
    """Wait (bounded) until every row of the downloads table is in `state`."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        db = open_default_database()
        states = {row[0] for row in db.execute("SELECT state FROM downloads").fetchall()}
        db.close()
        if states == {state}:
            return
        time.sleep(0.05)
    raise AssertionError(f"the downloads never all became {state}")


def test_search_shows_repos_numbers_and_best_fit(hub: HubServer) -> None:
    done = run("models", "search", "chat", *MACHINE)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "BEST FIT ON airgapped-lab-cpu-32gb" in lines[0]
    tiny = next(line for line in lines if line.startswith("hearth-test/Tiny-Chat-GGUF"))
    assert "1,200" in tiny and "34" in tiny and "Q4_K_M" in tiny and "fits in RAM" in tiny
    assert any("Gated-Chat-GGUF (gated)" in line for line in lines)
    assert not any("safetensors" in line for line in lines)

    as_json = json.loads(run("models", "search", "tiny", "--json", *MACHINE).stdout)
    assert [m["repo"] for m in as_json] == ["hearth-test/Tiny-Chat-GGUF"]
    assert as_json[0]["best_fit"]["verdict"] == "fits in RAM"


def test_files_groups_by_quant_and_stars_the_suggestion(hub: HubServer) -> None:
    done = run("models", "files", "hearth-test/Split-Chat-GGUF", *MACHINE)

    assert done.returncode == 0, done.stderr
    assert "license mit" in done.stdout
    assert "★ Q4_K_M" in done.stdout
    assert "split: split-chat-Q4_K_M-00001-of-00002.gguf, split-chat-Q4_K_M-00002-of-00002" in (
        done.stdout
    )
    assert "hearth models pull hearth-test/Split-Chat-GGUF --quant Q4_K_M" in done.stdout

    listing = json.loads(run("models", "files", "hearth-test/Split-Chat-GGUF", "--json").stdout)
    assert [v["quant"] for v in listing["variants"]] == ["Q4_K_M", "Q8_0"]
    assert listing["variants"][0]["split"] and len(listing["variants"][0]["files"]) == 2


def test_pull_downloads_verifies_and_adds_to_the_library(hub: HubServer) -> None:
    done = run("models", "pull", "hearth-test/Split-Chat-GGUF", "--file",
               "split-chat-Q4_K_M-00002-of-00002.gguf", *MACHINE)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "Added split-chat-q4_k_m to the library" in done.stdout
    assert "sha256 verified against the Hub" in done.stdout
    row = find_model(open_default_database(), "split-chat-q4_k_m")
    assert row is not None and row.path.is_file() and row.source == "hub"

    again = run("models", "pull", "hearth-test/Split-Chat-GGUF", "--quant", "Q4_K_M", *MACHINE)
    assert again.returncode == 0 and "already in the library" in again.stdout


def test_ctrl_c_pauses_and_the_same_pull_resumes_with_range(hub: HubServer) -> None:
    served = hub.repos[BIG].files[0]
    served.hold_at = 2 * MiB
    pull = start("models", "pull", BIG, "--quant", "Q4_K_M", *MACHINE)
    partial = wait_for_partial(2 * MiB)

    pull.send_signal(signal.SIGINT)
    wait_for_state("paused")
    served.release.set()  # the stalled transfer now gets a chunk and sees the pause
    _out, err = pull.communicate(timeout=WAIT_S)

    assert pull.returncode == 130, err
    assert "Paused big-chat-q4_k_m at 2.0 MiB" in err
    assert f"Resume with: hearth models pull {BIG} --quant Q4_K_M" in err
    assert partial.stat().st_size == 2 * MiB
    queue_state = json.loads(run("models", "downloads", "--json").stdout)
    assert [j["state"] for j in queue_state] == ["paused"]
    assert find_model(open_default_database(), "big-chat-q4_k_m") is None

    served.hold_at = None
    done = run("models", "pull", BIG, "--quant", "Q4_K_M", *MACHINE)

    assert done.returncode == 0, done.stderr
    assert "resuming at 2.0 MiB" in done.stderr
    last = hub.downloads_of("big-chat-Q4_K_M.gguf")[-1]
    assert last.range == f"bytes={2 * MiB}-" and last.body_bytes == served.size - 2 * MiB
    row = find_model(open_default_database(), "big-chat-q4_k_m")
    assert row is not None and row.path.read_bytes() == served.data


def test_a_killed_pull_leaves_no_half_model_and_the_next_one_resumes(hub: HubServer) -> None:
    served = hub.repos[BIG].files[0]
    served.hold_at = 2 * MiB
    pull = start("models", "pull", BIG, *MACHINE)
    wait_for_partial(2 * MiB)

    pull.send_signal(signal.SIGKILL)
    pull.communicate(timeout=WAIT_S)
    served.release.set()
    served.hold_at = None

    assert find_model(open_default_database(), "big-chat-q4_k_m") is None
    assert not (hearth_paths().models / "hearth-test").exists()
    listed = run("models", "downloads")
    assert "big-chat-q4_k_m" in listed.stdout and "2.0 MiB" in listed.stdout

    done = run("models", "pull", BIG, *MACHINE)

    assert done.returncode == 0, done.stderr
    assert hub.downloads_of("big-chat-Q4_K_M.gguf")[-1].range == f"bytes={2 * MiB}-"
    assert find_model(open_default_database(), "big-chat-q4_k_m") is not None


def test_login_keeps_the_token_private_and_gated_pull_uses_it(hub: HubServer) -> None:
    secret = "hf_" + "CliSecretToken" * 2
    refused = run("models", "pull", "hearth-test/Gated-Chat-GGUF", *MACHINE)
    assert refused.returncode == 1
    assert "gated or private" in refused.stderr and "hearth models login" in refused.stderr

    login = run("models", "login", stdin=secret + "\n")

    assert login.returncode == 0, login.stderr
    token_file = hearth_paths().config / "hub-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "hf_…oken" in login.stdout and str(token_file) in login.stdout
    hub.repos["hearth-test/Gated-Chat-GGUF"].allowed_tokens.add(secret)
    pulled = run("models", "pull", "hearth-test/Gated-Chat-GGUF", *MACHINE)
    assert pulled.returncode == 0, pulled.stderr
    assert hub.requests("gated-chat-Q4_K_M.gguf", method="HEAD")[-1].token == secret
    everything = login.stdout + login.stderr + pulled.stdout + pulled.stderr + refused.stderr
    assert secret not in everything
    logs = [p.read_text(errors="replace") for p in hearth_paths().logs.rglob("*") if p.is_file()]
    assert not any(secret in text for text in logs)

    logout = run("models", "logout")
    assert logout.returncode == 0 and not token_file.exists()


def test_offline_search_and_pull_fail_at_once_without_network(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    search = run("models", "search", "tiny", *MACHINE)
    pull = run("models", "pull", "hearth-test/Tiny-Chat-GGUF", *MACHINE)

    for done in (search, pull):
        assert done.returncode == 1
        assert "error: Hearth is in offline mode (HF_HUB_OFFLINE=1)" in done.stderr
        assert "Traceback" not in done.stderr
    assert hub.log == []


def test_hub_errors_are_one_clear_sentence(hub: HubServer) -> None:
    no_gguf = run("models", "files", "hearth-test/Tiny-Chat-safetensors", *MACHINE)
    missing = run("models", "pull", "nobody/Nothing-GGUF", *MACHINE)
    wrong_quant = run("models", "pull", "hearth-test/Tiny-Chat-GGUF", "--quant", "Q2_K", *MACHINE)

    assert "error: hearth-test/Tiny-Chat-safetensors has no GGUF files." in no_gguf.stderr
    assert "no model repository called nobody/Nothing-GGUF" in missing.stderr
    assert "has no Q2_K file" in wrong_quant.stderr and "IQ4_XS" in wrong_quant.stderr
    for done in (no_gguf, missing, wrong_quant):
        assert done.returncode == 1 and "Traceback" not in done.stderr
