"""The "template" of a remote model: the server applies its own, so Hearth sends messages.

A session renders every prompt through its model's template and counts it with the
engine. For a remote model the rendered prompt is the conversation itself, in OpenAI's
messages form as JSON, which `RemoteChatEngine.generate` sends as `messages` and
`count_tokens` estimates. So the session's turn (history fitting, streaming, saving) is
the same for local and remote models.

>>> prompt = SERVER_TEMPLATE.render([{"role": "user", "content": "Hi"}])
>>> decode_messages(prompt)
[{'role': 'user', 'content': 'Hi'}]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Marks a prompt as messages, so plain text given to a remote engine is still understood.
_KIND = "hearth.messages"

#: Tokens a chat template adds around each message (role markers, separators), roughly.
PER_MESSAGE_OVERHEAD = 4


@dataclass(frozen=True)
class ServerTemplate:
    """What a session needs from a template, for a server that templates itself."""

    stop_strings: tuple[str, ...] = ()
    replacement_note: str | None = None
    source: str = "server"

    def render(
        self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True
    ) -> str:
        """The messages as the JSON a remote engine sends (`add_generation_prompt` is implied)."""
        wire = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return json.dumps({"kind": _KIND, "messages": wire}, ensure_ascii=False)


SERVER_TEMPLATE = ServerTemplate()


def decode_messages(prompt: str) -> list[dict[str, str]]:
    """The messages of a prompt `ServerTemplate` rendered; any other text is one user turn."""
    try:
        data = json.loads(prompt)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("kind") == _KIND:
        return [dict(m) for m in data["messages"]]
    return [{"role": "user", "content": prompt}]


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate of a text's tokens, for servers that cannot count.

    About 4 characters per token for ASCII text and one token per other character (CJK
    scripts, emoji), plus 10 %: trimming history a little early is better than a server
    that silently drops the start of the conversation (Ollama's `/v1` does).

    >>> estimate_tokens("hello world, how are you?")
    8
    """
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    other = len(text) - ascii_chars
    return math.ceil((ascii_chars / 4 + other) * 1.1)


def estimate_prompt_tokens(prompt: str) -> int:
    """`estimate_tokens` over a rendered prompt's messages, with each message's overhead."""
    messages = decode_messages(prompt)
    return sum(estimate_tokens(m["content"]) + PER_MESSAGE_OVERHEAD for m in messages) + 3
