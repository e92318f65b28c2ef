"""A model whose own chat template is hostile or broken loads at once and chats with its
family's template, and the person is told (issue 10, case 3).

These run real llama.cpp (in the worker) on tiny GGUFs: llama-cpp-python would compile the
GGUF's template itself while loading unless Hearth keeps it from seeing the template.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.engines.chat_llama.worker import without_chat_templates
from app.planner import LoadSettings
from app.sessions.chat import ChatSession, Sampling
from app.store import open_default_database

#: A template whose constant folding alone builds a 3 GB string (a minute and 9 GB of
#: memory in llama-cpp-python's unsandboxed compile), and one with a syntax error.
HUGE = "{{ 'x' * 3000000000 }}"
BROKEN = "{% for m in messages %}{{ m['content'] }"
SHORT = ("--max-tokens", "2", "--seed", "1")


@pytest.mark.parametrize(
    ("template", "reason"),
    [(BROKEN, "syntax error on line 1"), (HUGE, "far larger than any prompt")],
    ids=["syntax-error", "huge-string"],
)
def test_a_bad_own_template_loads_at_once_and_chats_with_the_family_template(
    tiny_gguf: Callable[..., Path], template: str, reason: str
) -> None:
    path = tiny_gguf(chat_template=template, chat_ready=True)
    session = ChatSession(open_default_database())
    try:
        session.load_model(str(path), settings=LoadSettings(n_ctx=256))
        assert session.model is not None
        chosen = session.model.template
        assert chosen.source == "family"
        note = chosen.replacement_note or ""
        assert reason in note and f"standard {chosen.family.value} template" in note
        conversation = session.new_conversation()
        reply = session.send(conversation, "Hello", Sampling(max_tokens=3, seed=1))
        assert reply.error is None
    finally:
        session.unload()


def test_the_cli_says_when_a_models_template_was_replaced(tiny_gguf: Callable[..., Path]) -> None:
    path = tiny_gguf(chat_template=BROKEN, chat_ready=True)
    done = subprocess.run(
        [sys.executable, "-m", "app", "chat", "-m", str(path), "--ctx", "256", *SHORT, "Hello"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "note: The model's chat template has a syntax error on line 1: unexpected '}', so "
        "Hearth uses the standard chatml template for it instead." in done.stderr
    )


def test_a_good_own_template_is_kept_and_no_note_is_shown(tiny_gguf: Callable[..., Path]) -> None:
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    session = ChatSession(open_default_database())
    try:
        path = tiny_gguf(chat_template=template, chat_ready=True)
        session.load_model(str(path), settings=LoadSettings(n_ctx=256))
        assert session.model is not None
        assert session.model.template.source == "gguf"
        assert session.model.template.replacement_note is None
    finally:
        session.unload()


def test_only_the_chat_templates_are_hidden_from_llama_cpp() -> None:
    metadata = {
        "general.architecture": "llama",
        "tokenizer.chat_template": BROKEN,
        "tokenizer.chat_template.tool_use": HUGE,
        "tokenizer.ggml.model": "llama",
    }
    assert without_chat_templates(metadata) == {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "llama",
    }
