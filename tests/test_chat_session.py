"""A chat turn end to end on the real Gemma model: durable, stoppable, crash-safe."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.models.gguf import ModelNotFoundError, UnsupportedArchitectureError
from app.planner import LoadSettings
from app.prompts.families import TemplateFamily
from app.sessions.chat import ChatSession, EmptyMessageError, MessageTooLongError, Sampling
from app.store import MessageState, open_default_database
from app.store import conversations as convs

GREEDY = Sampling(temperature=0.0, max_tokens=40, seed=1)


@pytest.fixture
def session(gemma_gguf: Path) -> Iterator[ChatSession]:
    s = ChatSession(open_default_database(), flush_interval_s=0.05)
    s.load_model(str(gemma_gguf), settings=LoadSettings(n_ctx=1024))
    yield s
    s.unload()


def test_base_gemma_gets_the_gemma_template_not_llama2(session: ChatSession) -> None:
    assert session.model is not None
    assert session.model.template.family == TemplateFamily.GEMMA
    assert session.model.template.source == "family"
    assert "<end_of_turn>" in session.model.template.stop_strings


def test_question_is_saved_before_the_answer_and_the_answer_grows_in_the_db(
    session: ChatSession,
) -> None:
    cid = session.new_conversation(system_prompt="Answer briefly.")
    seen: list[tuple[str, str, str]] = []

    def on_token(answer: str, reasoning: str) -> None:
        path = convs.branch(session.db, cid)
        user, assistant = path[0], path[-1]
        seen.append((user.content, assistant.state.value, assistant.content))

    reply = session.send(cid, "Write a sentence about the sea.", GREEDY, on_token)
    assert reply.state == MessageState.COMPLETE and reply.content.strip()
    assert seen and all(s[0] == "Write a sentence about the sea." for s in seen)
    assert all(s[1] == "streaming" for s in seen)
    flushed = [s[2] for s in seen if s[2]]
    assert flushed, "the growing answer reached SQLite while streaming"
    assert all(reply.content.startswith(f) for f in flushed)
    stored = convs.branch(session.db, cid)[-1]
    assert stored.content == reply.content and stored.state == MessageState.COMPLETE
    for key in (
        "ttft_s",
        "prompt_tokens",
        "prompt_tps",
        "generated_tokens",
        "decode_tps",
        "n_ctx",
        "context_used",
        "backend",
        "gpu_layers",
    ):
        assert key in stored.metrics
    assert stored.metrics["decode_tps"] > 0 and stored.metrics["n_ctx"] == 1024
    assert convs.get_conversation(session.db, cid)["title"] == "Write a sentence about the sea."


def test_same_seed_same_answer(session: ChatSession) -> None:
    warm = Sampling(temperature=0.9, seed=42, max_tokens=30)
    first = session.send(session.new_conversation(), "Name a colour.", warm)
    second = session.send(session.new_conversation(), "Name a colour.", warm)
    assert first.content == second.content


def test_stop_keeps_the_partial_answer_as_stopped(session: ChatSession) -> None:
    cid = session.new_conversation()
    count = 0

    def on_token(answer: str, reasoning: str) -> None:
        nonlocal count
        count += 1
        if count == 5:
            session.stop()

    reply = session.send(cid, "Tell me a very long story.", Sampling(max_tokens=300), on_token)
    assert reply.state == MessageState.STOPPED
    assert reply.metrics["generated_tokens"] < 300
    assert convs.branch(session.db, cid)[-1].state == MessageState.STOPPED


def test_killed_worker_keeps_partial_answer_and_next_turn_uses_a_fresh_worker(
    session: ChatSession,
) -> None:
    cid = session.new_conversation()
    first_pid = session.client.pid
    count = 0

    def on_token(answer: str, reasoning: str) -> None:
        nonlocal count
        count += 1
        if count == 5 and first_pid:
            os.kill(first_pid, signal.SIGKILL)

    reply = session.send(cid, "Tell me a very long story.", Sampling(max_tokens=300), on_token)
    assert reply.state == MessageState.INTERRUPTED
    assert reply.error and "signal 9" in reply.error
    stored = convs.branch(session.db, cid)[-1]
    assert stored.state == MessageState.INTERRUPTED and stored.content == reply.content
    assert stored.error == reply.error
    again = session.send(cid, "Say hello.", GREEDY)
    assert again.state == MessageState.COMPLETE
    assert session.client.pid not in (None, first_pid)


def test_regenerate_and_edit_keep_old_branches(session: ChatSession) -> None:
    cid = session.new_conversation()
    first = session.send(cid, "Name an animal.", Sampling(temperature=1.0, seed=1, max_tokens=10))
    second = session.regenerate(cid, Sampling(temperature=1.0, seed=2, max_tokens=10))
    assert [m.id for m in convs.siblings(session.db, first.message_id)] == [
        first.message_id,
        second.message_id,
    ]
    question = convs.branch(session.db, cid)[0]
    edited = session.edit(cid, question.id, "Name a plant.", GREEDY)
    path = convs.branch(session.db, cid)
    assert path[0].content == "Name a plant."
    assert path[-1].id == edited.message_id
    assert len(convs.siblings(session.db, question.id)) == 2


def test_old_turns_are_dropped_when_the_context_fills_but_not_the_system_prompt(
    session: ChatSession,
) -> None:
    cid = session.new_conversation(system_prompt="You are a pirate.")
    parent = None
    for i in range(12):
        parent = convs.add_message(
            session.db, cid, "user", f"Question {i}: " + "tide " * 60, parent_id=parent
        )
        parent = convs.add_message(session.db, cid, "assistant", "Arr. " * 40, parent_id=parent)
    reply = session.send(cid, "What is your name?", GREEDY)
    assert reply.state == MessageState.COMPLETE
    assert reply.dropped_messages >= 2 and reply.dropped_messages % 2 == 0
    assert reply.metrics["context_used"] <= 1024


def test_message_longer_than_the_context_is_refused_and_kept(session: ChatSession) -> None:
    cid = session.new_conversation()
    long_text = "sea " * 3000
    with pytest.raises(MessageTooLongError, match="context holds 1,024"):
        session.send(cid, long_text, GREEDY)
    assert convs.branch(session.db, cid)[0].content == long_text  # nothing the user typed is lost


def test_empty_message_is_refused(session: ChatSession) -> None:
    with pytest.raises(EmptyMessageError):
        session.send(session.new_conversation(), "   \n", GREEDY)


def test_model_deleted_while_loaded(gemma_gguf: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gemma-copy.gguf"
    shutil.copy(gemma_gguf, copy)
    s = ChatSession(open_default_database())
    try:
        s.load_model(str(copy), settings=LoadSettings(n_ctx=512))
        cid = s.new_conversation()
        copy.unlink()
        # The weights are memory-mapped: the loaded model keeps answering.
        assert s.send(cid, "Hi", GREEDY).state == MessageState.COMPLETE
        assert s.client.pid is not None
        os.kill(s.client.pid, signal.SIGKILL)
        s.client.unload()
        with pytest.raises(ModelNotFoundError, match="no file"):
            s.send(cid, "Hi again", GREEDY)
    finally:
        s.unload()


def test_unsupported_architecture_is_a_clear_load_error(tiny_gguf: Callable[..., Path]) -> None:
    path = tiny_gguf(arch="notarealarch")
    s = ChatSession(open_default_database())
    try:
        with pytest.raises(UnsupportedArchitectureError, match="'notarealarch' model"):
            s.load_model(str(path), settings=LoadSettings(n_ctx=256))
    finally:
        s.unload()
