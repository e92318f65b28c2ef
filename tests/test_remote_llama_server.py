"""Hearth chats through a real peer server: llama-cpp-python's own `python -m llama_cpp.server`.

The server runs the Gemma fixture on 127.0.0.1 (an ephemeral port, an API key), started
once for the module; using `gemma_gguf` marks these tests slow.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.engines.chat_remote.probe import check_connection
from app.planner import LoadSettings
from app.sessions.chat import ChatSession, Sampling
from app.store import MessageState, open_default_database
from app.store import conversations as convs
from app.store import providers as store
from app.store.secrets import set_secret

KEY = "sk-hearth-test"
N_CTX = 1024
START_TIMEOUT_S = 180.0


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on the Gemma fixture; its base URL once it lists models."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(gemma_gguf), "--model_alias", "gemma",
                "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", str(N_CTX), "--n_threads", "2",
                "--api_key", KEY, "--verbose", "False",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # a bounded poll: the server says it is ready by answering
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited ({proc.returncode}): {log.read_text()[-2000:]}"
                )
            try:
                answer = httpx.get(
                    f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2.0
                )
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _provider(url: str) -> store.Provider:
    # llama_cpp.server does not say its context window: set by hand, as `--context` does.
    timeouts = store.Timeouts(connect_s=5.0, read_s=120.0)
    return store.Provider(
        "peer", store.normalise_base_url(url), context_window=N_CTX, timeouts=timeouts
    )


def test_connection_test_passes_and_a_wrong_key_is_named(llama_server: str) -> None:
    report = check_connection(_provider(llama_server), KEY, "gemma")
    assert report.ok, report.checks
    assert report.warnings == ()  # loopback: no plain-http warning
    refused = check_connection(_provider(llama_server), "sk-wrong", "gemma")
    assert not refused.checks[0].ok and "(401" in refused.checks[0].sentence


def test_chat_through_llama_cpp_server_with_history_kept(llama_server: str) -> None:
    db = open_default_database()
    store.add_provider(db, _provider(llama_server))
    set_secret(store.provider_secret_name("peer"), KEY)
    session = ChatSession(db)
    try:
        loaded = session.load_model("peer/gemma")
        assert loaded.n_ctx == N_CTX and loaded.backend_used == "remote peer"
        cid = session.new_conversation(system_prompt="Answer in a few words.")
        sampling = Sampling(temperature=0.0, max_tokens=24, seed=1)
        first = session.send(cid, "What colour is the sky on a clear day?", sampling)
        assert first.state == MessageState.COMPLETE, first.error
        assert first.content.strip()
        second = session.send(cid, "And at night?", sampling)
        assert second.state == MessageState.COMPLETE, second.error
        assert second.metrics["generated_tokens"] > 0 and second.metrics["ttft_s"] > 0
        saved = convs.get_message(db, second.message_id)
        assert (saved.provider, saved.model) == ("peer", "gemma")
        path = [m.role for m in convs.branch(db, cid)]
        assert path == ["user", "assistant", "user", "assistant"]
    finally:
        session.unload()


def test_a_session_moves_from_a_remote_model_to_a_local_one(
    llama_server: str, gemma_gguf: Path
) -> None:
    db = open_default_database()
    store.add_provider(db, _provider(llama_server))
    set_secret(store.provider_secret_name("peer"), KEY)
    session = ChatSession(db)
    try:
        session.load_model("peer/gemma")
        cid = session.new_conversation()
        sampling = Sampling(temperature=0.0, max_tokens=8, seed=1)
        remote = session.send(cid, "Say hi.", sampling)
        session.load_model(str(gemma_gguf), settings=LoadSettings(n_ctx=512))
        local = session.send(cid, "Say hi again.", sampling)
        assert remote.state == local.state == MessageState.COMPLETE, local.error
        assert remote.metrics["backend"] == "remote peer"
        assert not local.metrics["backend"].startswith("remote")
        saved = convs.get_message(db, local.message_id)
        assert saved.provider is None and saved.model == session.model.name  # type: ignore[union-attr]
    finally:
        session.unload()
