"""Read an OpenAI-style `/v1/chat/completions` stream: SSE framing, then the chunks.

Servers differ, so nothing is assumed beyond the framing:

- SSE comments (`: ping`, llama-server and proxies' keep-alives), blank keep-alive lines,
  `event:`/`id:`/`retry:` fields and multi-line `data:` are handled (`iter_sse_data`).
- Reasoning arrives as `delta.reasoning_content` (vLLM, SGLang, llama-server, DeepSeek),
  `delta.reasoning` (Ollama, OpenRouter, newer vLLM) or raw `<think>` tags inside
  `delta.content` (left to `app.prompts.reasoning`).
- Usage comes in the last chunk with empty `choices` (OpenAI with
  `stream_options.include_usage`, vLLM), in every chunk, in the final choice chunk, or
  never; the last one seen wins.
- Tool calls come as `delta.tool_calls` pieces assembled by `index` (the id and name in
  the first piece, the arguments split over many).
- `{"error": ...}` as a chunk (or an `event: error`) ends the answer with that message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.engines.chat_remote.errors import ProtocolError, StreamErrorChunk, server_message

DONE = "[DONE]"


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its `event:` name ("message" if none) and joined `data:`."""

    data: str
    event: str = "message"


def iter_sse_events(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """The events in a stream of lines (without their line ends), as the SSE spec frames them.

    >>> [e.data for e in iter_sse_events([": ping", "data: {}", "", "", "data: [DONE]"])]
    ['{}', '[DONE]']
    """
    data: list[str] = []
    event = "message"
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield SSEEvent("\n".join(data), event)
            data, event = [], "message"
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive ping
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value or "message"
        # `id:` and `retry:` mean nothing for a one-shot answer; unknown fields are ignored.
    if data:  # a stream whose last event lacks its blank line
        yield SSEEvent("\n".join(data), event)


@dataclass
class ToolCall:
    """A tool call assembled from its pieces (`arguments` is the JSON text as sent)."""

    index: int
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: str = ""

    def parsed_arguments(self) -> Any:
        """The arguments as JSON; raises ValueError when the model wrote invalid JSON."""
        return json.loads(self.arguments or "{}")


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True)
class Piece:
    """Text from one chunk: part of the answer, or of the reasoning."""

    text: str
    reasoning: bool = False


@dataclass
class ChunkAssembler:
    """Feed parsed chunks in order; it returns the text pieces and keeps everything else.

    Only the first choice (index 0) is read: Hearth asks for one.
    """

    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: dict[int, ToolCall] = field(default_factory=dict)
    model: str | None = None
    chunks: int = 0
    text_chunks: int = 0  # chunks that carried answer or reasoning text (≈ tokens)

    def feed_data(self, data: str, event: str = "message") -> list[Piece]:
        """Parse one SSE event's data and feed it; raises StreamErrorChunk, ProtocolError."""
        if event == "error":
            raise StreamErrorChunk(
                f"The server stopped the answer with an error: {server_message(data)}."
            )
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ProtocolError(
                f"The server sent a piece of the answer that is not JSON: {data[:80]!r}."
            ) from None
        if not isinstance(chunk, dict):
            raise ProtocolError(
                f"The server sent a piece of the answer that is not an object: {data[:80]!r}."
            )
        return self.feed(chunk)

    def feed(self, chunk: dict[str, Any]) -> list[Piece]:
        self.chunks += 1
        if "error" in chunk and not chunk.get("choices"):
            raise StreamErrorChunk(
                f"The server stopped the answer with an error: {server_message(json.dumps(chunk))}."
            )
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        pieces: list[Piece] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            for key in ("reasoning_content", "reasoning"):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    pieces.append(Piece(text, reasoning=True))
                    break  # a server sending both names sends the same text twice
            content = delta.get("content")
            if isinstance(content, str) and content:
                pieces.append(Piece(content))
            for call in delta.get("tool_calls") or ():
                self._add_tool_call_piece(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        if pieces:
            self.text_chunks += 1
        return pieces

    def _add_tool_call_piece(self, piece: dict[str, Any]) -> None:
        index = int(piece.get("index", len(self.tool_calls)))
        call = self.tool_calls.setdefault(index, ToolCall(index))
        if piece.get("id"):
            call.id = str(piece["id"])
        if piece.get("type"):
            call.type = str(piece["type"])
        function = piece.get("function") or {}
        if function.get("name"):
            call.name += str(function["name"])  # some servers split the name too
        if function.get("arguments"):
            call.arguments += str(function["arguments"])

    def ordered_tool_calls(self) -> list[ToolCall]:
        return [self.tool_calls[i] for i in sorted(self.tool_calls)]


def _usage(data: dict[str, Any]) -> Usage:
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=_int(data.get("prompt_tokens")),
        completion_tokens=_int(data.get("completion_tokens")),
        cached_tokens=_int(details.get("cached_tokens")) if isinstance(details, dict) else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
