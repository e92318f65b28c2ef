"""A Hearth chats through another Hearth's local API (`app.api`, what `hearth serve` runs).

The serving Hearth runs on uvicorn in a thread on 127.0.0.1 (an ephemeral port, its
bearer key) over the Gemma fixture; the chatting Hearth keeps its own history in its
own database. Using `gemma_gguf` marks this test slow.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.engines.chat_remote.probe import check_connection
from app.sessions.chat import ChatSession, Sampling
from app.store import MessageState, open_database, open_default_database
from app.store import conversations as convs
from app.store import providers as store
from app.store.secrets import set_secret

KEY = "hearth-test-key-0123456789abcdef"


@contextmanager
def serving_hearth(gemma_gguf: Path) -> Iterator[str]:
    """The API face of a Hearth whose library holds the Gemma fixture as `gemma`."""
    uvicorn = pytest.importorskip("uvicorn")
    from app.api.app import create_app
    from app.api.security import GateSettings
    from app.models.gguf import read_gguf_facts
    from app.models.library import register_model
    from app.sessions.serving import CompletionService
    from app.store.library import ModelSource

    db = open_default_database()
    register_model(
        db, "gemma", gemma_gguf, read_gguf_facts(gemma_gguf), source=ModelSource.IMPORT, sha256=None
    )
    db.close()
    service = CompletionService(open_default_database)
    app = create_app(service, GateSettings.for_bind(KEY, "127.0.0.1"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    started = threading.Event()
    original_startup = server.startup

    async def startup(*args: object, **kwargs: object) -> None:
        await original_startup(*args, **kwargs)
        started.set()

    server.startup = startup  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert started.wait(30), "the API did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        service.close()  # its chat worker ends


def test_a_hearth_chats_through_another_hearths_api_with_its_own_history(
    gemma_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")
    with serving_hearth(gemma_gguf) as url:
        provider = store.Provider(
            "other", store.normalise_base_url(url), timeouts=store.Timeouts(read_s=120.0)
        )
        report = check_connection(provider, KEY, "gemma")
        assert report.ok, report.checks
        assert not check_connection(provider, "wrong-key", "gemma").ok

        db = open_database(tmp_path / "client-hearth.db")  # the chatting Hearth's own history
        store.add_provider(db, provider)
        set_secret(store.provider_secret_name("other"), KEY)
        session = ChatSession(db)
        try:
            session.load_model("other/gemma")
            cid = session.new_conversation()
            sampling = Sampling(temperature=0.0, max_tokens=16)
            first = session.send(cid, "Name a colour.", sampling)
            second = session.send(cid, "Name another one.", sampling)
        finally:
            session.unload()
        assert first.state == second.state == MessageState.COMPLETE, second.error
        assert first.content.strip() and second.metrics["generated_tokens"] > 0
        stored = convs.branch(db, cid)
        assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
        assert {(m.provider, m.model) for m in stored if m.role == "assistant"} == {
            ("other", "gemma")
        }
