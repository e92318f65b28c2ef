"""Reasoning text inside <think>…</think> is kept apart from the answer, however it streams."""

from __future__ import annotations

import pytest

from app.prompts.reasoning import ReasoningSplitter

REPLY = "<think>\nThe user greets me.\n</think>\n\nHello there! <think> is a tag."


def _run(pieces: list[str], **kw: bool) -> tuple[str, str]:
    s = ReasoningSplitter(**kw)
    answer = reasoning = ""
    for p in pieces:
        a, r = s.feed(p)
        answer += a
        reasoning += r
    a, r = s.finish()
    return answer + a, reasoning + r


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_split_is_the_same_for_any_chunking(size: int) -> None:
    pieces = [REPLY[i : i + size] for i in range(0, len(REPLY), size)]
    answer, reasoning = _run(pieces)
    assert reasoning == "\nThe user greets me.\n"
    assert answer == "Hello there! <think> is a tag."  # a tag inside the answer is just text


def test_plain_answers_pass_through_untouched() -> None:
    assert _run(["  Hi", " there <thi"]) == ("  Hi there <thi", "")


def test_template_that_opens_think_in_the_prompt() -> None:
    answer, reasoning = _run(["step one", "</think>", "Answer."], starts_in_reasoning=True)
    assert (answer, reasoning) == ("Answer.", "step one")


def test_unfinished_reasoning_stays_reasoning() -> None:
    assert _run(["<think>still thinking"]) == ("", "still thinking")
