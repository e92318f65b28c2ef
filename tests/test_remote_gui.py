"""The chat page offers remote models beside local ones, marked, and chats through one (Qt)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from app.store import open_default_database
from app.store import providers as store
from tests.remote_replay import ReplayServer


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")
    with ReplayServer.running() as server:
        yield server


def test_chat_page_lists_remote_models_marked_and_chats_through_one(
    qtbot: QtBot, replay: ReplayServer
) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.chat import ChatPage
    from app.sessions.chat import Sampling
    from app.store import conversations as convs

    db = open_default_database()
    provider = store.Provider(
        "replay",
        store.normalise_base_url(replay.url),
        models=(store.RemoteModel("vllm-reasoning", 8192),),
    )
    store.add_provider(db, provider)
    runner = BackgroundRunner()
    page = ChatPage(runner)
    qtbot.addWidget(page)
    try:
        with qtbot.waitSignal(page.lists_shown, timeout=20_000):
            page.refresh()
        texts = [page.model_box.itemText(i) for i in range(page.model_box.count())]
        assert "replay/vllm-reasoning (remote)" in texts
        page.model_box.setCurrentIndex(texts.index("replay/vllm-reasoning (remote)"))
        assert page.selected_model() == "replay/vllm-reasoning"
        worker = page.chat_runner.worker
        worker.sampling = Sampling(max_tokens=32)
        page.input.setPlainText("Hello!")
        with qtbot.waitSignal(page.reply_shown, timeout=20_000) as done:
            page.send()
        reply = done.args[0]
        assert reply.state.value == "complete" and reply.content == "Hello there!"
        assert "remote replay" in page.status.text()
        assert page.conversation_id is not None
        saved = convs.branch(db, page.conversation_id)[-1]
        assert saved.provider == "replay" and saved.model == "vllm-reasoning"
    finally:
        page.shutdown()
        runner.wait()


def test_add_remote_dialog_saves_tests_and_lists_the_provider(
    qtbot: QtBot, replay: ReplayServer
) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.chat import ChatPage
    from app.gui.pages.remote_dialog import RemoteProviderDialog
    from app.store.secrets import get_secret

    dialog = RemoteProviderDialog()
    qtbot.addWidget(dialog)
    dialog.name.setText("team")
    dialog.url.setText(replay.url)
    dialog.key.setText("sk-typed")
    new = dialog.values()
    assert (new.name, new.context_window) == ("team", None)

    open_default_database().close()  # an existing history, as after a first start
    runner = BackgroundRunner()
    page = ChatPage(runner)
    qtbot.addWidget(page)

    def texts() -> list[str]:
        return [page.model_box.itemText(i) for i in range(page.model_box.count())]

    try:
        with qtbot.waitSignal(page.remote_added, timeout=20_000) as added:
            page.add_remote_provider(new)
        assert added.args[0].checks[0].ok
        assert "ok: The server lists" in page.status.text()
        qtbot.waitUntil(lambda: "team/vllm-reasoning (remote)" in texts(), timeout=20_000)
        assert get_secret(store.provider_secret_name("team")) == "sk-typed"
    finally:
        page.shutdown()
        runner.wait()
