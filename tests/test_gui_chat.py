"""The chat page (real Qt, offscreen, a real SQLite store): the grouped and searchable list,
rename, delete and export, folded reasoning, the side panel, and real turns on Gemma: stream,
stop, regenerate, edit, switch branches, a killed worker shown with Retry."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.models.gguf import read_gguf_facts
from app.models.library import register_model
from app.store import MessageState, open_default_database
from app.store import conversations as convs
from app.store.library import ModelSource

if TYPE_CHECKING:
    from app.gui.pages.chat import ChatPage


@pytest.fixture
def page(qtbot: QtBot) -> Iterator[ChatPage]:
    """A chat page on the test's Hearth home; its chat thread ends with the test."""
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.chat import ChatPage

    open_default_database().close()  # migrated before the page's first read
    runner = BackgroundRunner()
    chat = ChatPage(runner)
    qtbot.addWidget(chat)
    yield chat
    chat.shutdown()
    runner.wait()


def seed(title: str, updated_at: str | None = None, **messages: str) -> str:
    """A conversation with a question and an answer each (`question=answer`)."""
    db = open_default_database()
    try:
        cid = convs.create_conversation(db, model="gemma", title=title)
        parent = None
        for question, answer in messages.items():
            parent = convs.add_message(db, cid, "user", question, parent_id=parent)
            parent = convs.add_message(db, cid, "assistant", answer, parent_id=parent)
        if updated_at is not None:
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [updated_at, cid])
            db.conn.commit()
        return cid
    finally:
        db.close()


def shown_rows(page: ChatPage) -> list[tuple[str, str, bool]]:
    from app.gui.adapters.conversations import GROUP_ROLE, GROUP_START_ROLE

    model = page.conversation_list
    return [
        (
            str(model.index(r).data()),
            str(model.index(r).data(GROUP_ROLE)),
            bool(model.index(r).data(GROUP_START_ROLE)),
        )
        for r in range(model.rowCount())
    ]


def test_date_groups_follow_the_local_calendar() -> None:
    from app.gui.adapters.conversations import date_group

    today = date(2026, 5, 20)
    assert date_group("2026-05-20T08:00:00", today) == "Today"
    assert date_group("2026-05-19T12:00:00", today) == "Yesterday"
    assert date_group("2026-05-15T12:00:00", today) == "Previous 7 days"
    assert date_group("2026-05-01T12:00:00", today) == "Previous 30 days"
    assert date_group("2026-02-10T12:00:00", today) == "February"
    assert date_group("2024-02-10T12:00:00", today) == "February 2024"
    assert date_group("not a date", today) == "Older"


def test_conversation_list_is_grouped_by_date_and_searches_the_messages(
    qtbot: QtBot, page: ChatPage
) -> None:
    seed("Old recipes", "2020-03-01T10:00:00+00:00", **{"Soup?": "Leek and potato."})
    seed("Sea facts", None, **{"Why is the sea salty?": "Rivers carry minerals."})
    seed("Tides", None, **{"What makes tides?": "The moon's pull on the oceans."})
    with qtbot.waitSignal(page.lists_shown, timeout=20_000):
        page.refresh()
    rows = shown_rows(page)
    assert [r[0] for r in rows] == ["Tides", "Sea facts", "Old recipes"]  # newest first
    assert [r[1] for r in rows] == ["Today", "Today", "March 2020"]
    assert [r[2] for r in rows] == [True, False, True]  # a heading above each group's first

    with qtbot.waitSignal(page.search_shown, timeout=20_000):
        page.chat_list.search.setText("moon")  # only the answer mentions it
    rows = shown_rows(page)
    assert [r[0] for r in rows] == ["Tides"]
    assert rows[0][1] == ""  # search hits are not grouped
    snippet = page.conversation_list.items[0].snippet
    assert "moon" in snippet and "[" not in snippet
    with qtbot.waitSignal(page.search_shown, timeout=20_000):
        page.chat_list.search.setText("sea facts")  # a title matches too
    assert [r[0] for r in shown_rows(page)] == ["Sea facts"]
    with qtbot.waitSignal(page.lists_shown, timeout=20_000):
        page.chat_list.search.clear()
    assert len(shown_rows(page)) == 3


def test_conversations_are_renamed_exported_and_deleted_after_confirmation(
    qtbot: QtBot, page: ChatPage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = seed("Sea facts", None, **{"Why is the sea salty?": "Rivers carry **minerals**."})
    keep = seed("Keep me", "2020-01-01T00:00:00+00:00", **{"Hi": "Hello"})
    with qtbot.waitSignal(page.lists_shown, timeout=20_000):
        page.refresh()
    index = page.conversation_list.index(0)
    menu = page.chat_list.menu_for(index)
    assert menu is not None
    assert [a.text() for a in menu.actions() if a.text()] == [
        "Rename\tF2",
        "Export…",
        "Delete…\tDel",
    ]

    # What the in-place editor (F2) commits:
    with qtbot.waitSignal(page.conversation_changed, timeout=20_000):
        page.conversation_list.setData(index, "Salty seas")
    db = open_default_database()
    assert convs.get_conversation(db, cid)["title"] == "Salty seas"

    markdown = tmp_path / "sea.md"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(markdown), "Markdown"))
    )
    with qtbot.waitSignal(page.exported, timeout=20_000):
        next(a for a in menu.actions() if a.text() == "Export…").trigger()
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# Salty seas") and "Rivers carry **minerals**." in text
    with qtbot.waitSignal(page.exported, timeout=20_000):
        page.export_conversation(cid, tmp_path / "sea.json")
    exported = json.loads((tmp_path / "sea.json").read_text(encoding="utf-8"))
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert exported["title"] == "Salty seas"

    asked: list[str] = []

    def say(answer: QMessageBox.StandardButton) -> Any:
        def question(_parent: object, _title: str, text: str, *_a: object) -> Any:
            asked.append(text)
            return answer

        return staticmethod(question)

    page.conversations.setCurrentIndex(page.conversation_list.index(0))
    monkeypatch.setattr(QMessageBox, "question", say(QMessageBox.StandardButton.Cancel))
    qtbot.keyClick(page.conversations, Qt.Key.Key_Delete)
    assert asked and "Salty seas" in asked[0]
    assert convs.get_conversation(db, cid)["id"] == cid  # cancelled: still there
    monkeypatch.setattr(QMessageBox, "question", say(QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(page.lists_shown, timeout=20_000):
        qtbot.keyClick(page.conversations, Qt.Key.Key_Delete)
    assert [r["id"] for r in convs.list_conversations(db)] == [keep]
    assert [r[0] for r in shown_rows(page)] == ["Keep me"]
    assert page.conversation_id is None
    db.close()


def test_reasoning_is_folded_under_a_line_that_unfolds_it(qtbot: QtBot, page: ChatPage) -> None:
    db = open_default_database()
    cid = convs.create_conversation(db, model="gemma", title="Think")
    user = convs.add_message(db, cid, "user", "What is 2+2?", parent_id=None)
    answer = convs.add_message(db, cid, "assistant", "", parent_id=user)
    convs.update_message(
        db,
        answer,
        content="It is **4**.\n\n```python\nprint(2 + 2)\n```",
        reasoning="Two plus two makes four.",
        metrics={
            "reasoning_s": 3.4,
            "generated_tokens": 20,
            "decode_tps": 50.0,
            "ttft_s": 0.25,
            "context_used": 300,
            "n_ctx": 2048,
            "dropped_messages": 2,
            "backend": "cpu",
        },
    )
    db.close()
    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.open_conversation(cid)
    text = page.transcript.toPlainText()
    assert "Thought for 3 s · Show reasoning" in text
    assert "Two plus two" not in text  # folded
    assert "It is 4." in text and page.code_blocks == ["print(2 + 2)\n"]
    assert "20 tokens · 50.0 tok/s · first token 0.25 s · context 300/2,048" in text
    assert "2 earlier messages left out" in text
    assert page.context_meter.isVisible() or page.context_meter.isVisibleTo(page)
    assert page.context_meter.maximum() == 2048 and page.context_meter.value() == 300
    page.act("think", answer)
    text = page.transcript.toPlainText()
    assert "Two plus two makes four." in text and "Hide reasoning" in text
    assert text.index("Two plus two") < text.index("It is 4.")  # apart from, above, the answer
    page.act("think", answer)
    assert "Two plus two" not in page.transcript.toPlainText()


class RecordingSession:
    """Stands in for ChatSession on the chat thread: records what each turn was given."""

    def __init__(self) -> None:
        self.turns: list[tuple[str, str, Any]] = []

    def send(self, conversation_id: str, text: str, sampling: Any, on_token: Any) -> Any:
        from app.sessions.chat import Reply

        self.turns.append((conversation_id, text, sampling))
        on_token("Fine.", "")
        return Reply("none", "Fine.", state=MessageState.COMPLETE)

    def stop(self) -> None:
        pass

    def unload(self) -> None:
        pass


def test_side_panel_settings_are_kept_with_the_conversation_and_used_next_turn(
    qtbot: QtBot, page: ChatPage
) -> None:
    from app.sessions.chat import Sampling

    cid = seed("Settings", None, **{"Hi": "Hello"})
    other = seed("Other", "2020-01-01T00:00:00+00:00", **{"Yo": "Hey"})
    worker = page.chat_runner.worker
    session = RecordingSession()
    worker.session = session  # type: ignore[assignment]
    worker.ready = True
    worker.sampling = Sampling(max_tokens=64, seed=7)
    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.open_conversation(cid)

    panel = page.panel
    assert panel.temperature.value() == pytest.approx(0.7)  # nothing chosen yet: defaults
    with qtbot.waitSignal(page.conversation_changed, timeout=20_000):
        panel.temperature.setValue(0.2)
        panel.system_prompt.setPlainText("Answer in French.")
    db = open_default_database()
    saved = convs.get_conversation(db, cid)
    assert saved["settings"] == {"temperature": 0.2}
    assert saved["system_prompt"] == "Answer in French."

    panel.max_tokens.setValue(200)  # sent with the turn even before the pause saves it
    page.input.setPlainText("Bonjour")
    with qtbot.waitSignal(page.reply_shown, timeout=20_000):
        qtbot.keyClick(page.input, Qt.Key.Key_Return)  # Enter sends
    turn = session.turns[-1]
    assert turn[:2] == (cid, "Bonjour")
    assert (turn[2].temperature, turn[2].max_tokens) == (0.2, 200)
    assert turn[2].seed == 7  # what the panel does not set stays the worker's
    chosen = {"temperature": 0.2, "max_tokens": 200}
    qtbot.waitUntil(lambda: convs.get_conversation(db, cid)["settings"] == chosen)

    page.input.setPlainText("line one")
    page.input.moveCursor(page.input.textCursor().MoveOperation.End)
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert page.input.toPlainText() == "line one\n"  # Shift+Enter: a new line, not a send
    assert len(session.turns) == 1

    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.open_conversation(other)  # another chat shows its own (default) settings
        # A re-render asked for before that read is back (the answer in the chat just left
        # ending, a theme change) replaces the read, and must still bring other's settings.
        page._rerender()
    assert panel.temperature.value() == pytest.approx(0.7) and panel.options().settings == {}
    assert panel.system_prompt.toPlainText() == ""
    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.open_conversation(cid)
    assert panel.temperature.value() == pytest.approx(0.2)
    assert panel.system_prompt.toPlainText() == "Answer in French."

    panel.save_preset("French")
    qtbot.waitUntil(
        lambda: convs_setting("chat.system_presets") == {"French": "Answer in French."},
        timeout=20_000,
    )
    assert panel.preset_box.currentText() == "French"
    db.close()
    worker.session = None  # nothing real to unload


class FailingSession(RecordingSession):
    """A session whose turns fail the way a model that does not fit fails."""

    def send(self, conversation_id: str, text: str, sampling: Any, on_token: Any) -> Any:
        from app.errors import HearthError

        self.turns.append((conversation_id, text, sampling))
        raise HearthError(
            "The model needs 9 GiB, more than this machine has.", "Pick a smaller one."
        )

    def regenerate(self, conversation_id: str, sampling: Any, on_token: Any) -> Any:
        return RecordingSession.send(self, conversation_id, "(again)", sampling, on_token)


def test_a_failed_turn_is_a_sentence_in_the_conversation_with_retry(
    qtbot: QtBot, page: ChatPage
) -> None:
    cid = seed("Fails", None, **{"Hi": "Hello"})
    worker = page.chat_runner.worker
    session = FailingSession()
    worker.session = session  # type: ignore[assignment]
    worker.ready = True
    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.open_conversation(cid)
    page.input.setPlainText("Tell me more.")
    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.send()
    text = page.transcript.toPlainText()
    assert "The model needs 9 GiB, more than this machine has. Pick a smaller one. Retry" in text
    assert "Hello" in text  # what was there stays
    with qtbot.waitSignal(page.reply_shown, timeout=20_000):
        page.act("retry", "")
    assert session.turns[-1][:2] == (cid, "(again)")  # Retry answered the question again
    qtbot.waitUntil(lambda: "more than this machine" not in page.transcript.toPlainText())
    worker.session = None


def convs_setting(key: str) -> Any:
    from app.store.settings import get_setting

    db = open_default_database()
    try:
        return get_setting(db, key)
    finally:
        db.close()


def register_gemma(gemma_gguf: Path) -> None:
    db = open_default_database()
    try:
        register_model(
            db,
            "gemma",
            gemma_gguf,
            read_gguf_facts(gemma_gguf),
            source=ModelSource.IMPORT,
            sha256=None,
        )
    finally:
        db.close()


def test_answers_stream_stop_regenerate_and_edits_branch_with_siblings_to_switch(
    qtbot: QtBot, page: ChatPage, gemma_gguf: Path
) -> None:
    from app.sessions.chat import Sampling

    register_gemma(gemma_gguf)
    worker = page.chat_runner.worker
    worker.sampling = Sampling(temperature=0.0, max_tokens=12)
    with qtbot.waitSignal(page.lists_shown, timeout=20_000):
        page.refresh()
    assert page.selected_model() == "gemma"

    streamed: list[str] = []
    worker.token.connect(lambda a, r: streamed.append(page.transcript.toPlainText()))
    page.input.setPlainText("Name a colour.")
    with qtbot.waitSignal(page.reply_shown, timeout=120_000) as done:
        page.send()  # loads first, then answers
    first = done.args[0]
    assert first.state == MessageState.COMPLETE and first.content
    assert streamed and "Name a colour." in streamed[0]  # the answer grew in place
    qtbot.waitUntil(lambda: page.view is not None and len(page.view.entries) == 2)
    cid = page.conversation_id
    assert cid is not None
    assert first.content.strip()[:10] in page.transcript.toPlainText()

    # Stop: the partial answer stays, marked.
    worker.sampling = Sampling(temperature=0.0, max_tokens=400)

    def stop_at_once(_answer: str, _reasoning: str) -> None:
        page.stop()

    worker.token.connect(stop_at_once)
    page.input.setPlainText("Tell me a very long story about the sea.")
    with qtbot.waitSignal(page.reply_shown, timeout=120_000) as done:
        page.send()
    worker.token.disconnect(stop_at_once)
    stopped = done.args[0]
    assert stopped.state == MessageState.STOPPED
    qtbot.waitUntil(lambda: page.view is not None and len(page.view.entries) == 4)
    assert "Stopped." in page.transcript.toPlainText()
    db = open_default_database()
    assert convs.branch(db, cid)[-1].content == stopped.content

    # Regenerate: a second answer, the stopped one kept beside it.
    worker.sampling = Sampling(temperature=0.0, max_tokens=12)
    with qtbot.waitSignal(page.reply_shown, timeout=120_000) as done:
        page.act("regenerate", stopped.message_id)
    again = done.args[0]
    assert again.state == MessageState.COMPLETE
    qtbot.waitUntil(lambda: "2/2" in page.transcript.toPlainText(), timeout=20_000)
    assert [m.id for m in convs.siblings(db, again.message_id)] == [
        stopped.message_id,
        again.message_id,
    ]

    # Edit the first question: a new branch from there; the old one is one arrow away.
    assert page.view is not None
    question = page.view.entries[0].message
    page.act("edit", question.id)
    assert page.input.toPlainText() == "Name a colour." and page.edit_banner.isVisibleTo(page)
    page.input.setPlainText("Name a fruit.")
    with qtbot.waitSignal(page.reply_shown, timeout=120_000):
        page.send()
    qtbot.waitUntil(
        lambda: (
            page.view is not None
            and page.view.entries[0].message.content == "Name a fruit."
            and len(page.view.entries) == 2
        ),
        timeout=20_000,
    )
    assert page.view.entries[0].position == 1 and len(page.view.entries[0].sibling_ids) == 2
    assert "Name a colour." not in page.transcript.toPlainText()
    with qtbot.waitSignal(page.transcript_shown, timeout=20_000):
        page.act("prev", page.view.entries[0].message.id)
    texts = [e.message.content for e in page.view.entries]
    assert texts[0] == "Name a colour." and len(texts) == 4  # the old branch, whole
    assert texts[3] == again.content  # where it was left: the newest answer
    db.close()


def test_a_killed_worker_shows_a_sentence_with_retry_and_keeps_the_partial_answer(
    qtbot: QtBot, page: ChatPage, gemma_gguf: Path
) -> None:
    from app.sessions.chat import Sampling

    register_gemma(gemma_gguf)
    worker = page.chat_runner.worker
    worker.sampling = Sampling(temperature=0.0, max_tokens=400)
    with qtbot.waitSignal(page.lists_shown, timeout=20_000):
        page.refresh()
    killed: list[int] = []
    tokens: list[str] = []

    def kill_after_a_few_tokens(answer: str, _reasoning: str) -> None:
        tokens.append(answer)
        pid = page.chat_runner.worker_pid()
        if not killed and pid and len(tokens) >= 4:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    worker.token.connect(kill_after_a_few_tokens)
    page.input.setPlainText("Tell me a very long story about the sea.")
    with qtbot.waitSignal(page.reply_shown, timeout=120_000) as done:
        page.send()
    worker.token.disconnect(kill_after_a_few_tokens)
    reply = done.args[0]
    assert killed, "the answer ended before the worker could be killed"
    assert reply.state == MessageState.INTERRUPTED and reply.error
    qtbot.waitUntil(lambda: page.view is not None and len(page.view.entries) == 2)
    text = page.transcript.toPlainText()
    assert reply.error.split(".")[0] in text and "Retry" in text
    words = [w.strip("*#_`") for w in reply.content.split()]
    assert words and all(w in text for w in words[:3])  # the partial answer stays
    assert page.view is not None
    kept = page.view.entries[-1].message
    assert kept.state == MessageState.INTERRUPTED and kept.content == reply.content

    worker.sampling = Sampling(temperature=0.0, max_tokens=12)
    with qtbot.waitSignal(page.reply_shown, timeout=120_000) as done:
        page.act("retry", kept.id)  # a fresh worker, the same model
    assert done.args[0].state == MessageState.COMPLETE
    assert page.chat_runner.worker_pid() not in (None, killed[0])
    qtbot.waitUntil(lambda: "2/2" in page.transcript.toPlainText(), timeout=20_000)
    db = open_default_database()
    assert [m.id for m in convs.siblings(db, kept.id)] == [kept.id, done.args[0].message_id]
    db.close()
