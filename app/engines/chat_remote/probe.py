"""Test a provider's connection: its model list, a one-token answer, and a streamed one.

Each check ends in one sentence saying what worked or which part failed (refused, TLS,
401, 404, timeout, ...), so `hearth remote test NAME` and Settings can show them as is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.engines.chat_remote.client import RemoteChatEngine
from app.engines.chat_remote.stream import ChunkAssembler
from app.errors import HearthError
from app.store.providers import Provider, RemoteModel, TokenParam

PROBE_PROMPT = "Reply with the single word: ok"


@dataclass(frozen=True)
class Check:
    """One step of the test: its name, whether it passed, and the sentence that says so."""

    name: str  # "models" | "one-token" | "stream"
    ok: bool
    sentence: str
    remedy: str | None = None


@dataclass(frozen=True)
class ConnectionReport:
    provider: str
    checks: tuple[Check, ...]
    models: tuple[RemoteModel, ...] = ()
    model: str | None = None  # the model the answers were asked of
    token_param: TokenParam | None = None  # what the server turned out to want
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def plain_http_warning(provider: Provider, has_key: bool) -> str | None:
    """The warning for a key (or any chat) crossing the network unencrypted, or None."""
    if not provider.is_plain_http_off_machine:
        return None
    host = urlsplit(provider.base_url).hostname
    if has_key:
        return (
            f"The API key travels unencrypted over http:// to {host}: anyone on the network "
            "in between can read it and your chats. Use https:// (or an SSH tunnel)."
        )
    return (
        f"Chats travel unencrypted over http:// to {host}: anyone on the network in between "
        "can read them. Use https:// (or an SSH tunnel) outside a network you trust."
    )


def check_connection(
    provider: Provider,
    api_key: str | None,
    model: str | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
) -> ConnectionReport:
    """Run the three checks against `provider` (stopping where the next cannot succeed)."""
    warning = plain_http_warning(provider, bool(api_key)) if api_key else None
    warnings = (warning,) if warning else ()
    engine = RemoteChatEngine(provider, model or "", api_key=api_key, transport=transport)
    checks: list[Check] = []
    models: tuple[RemoteModel, ...] = ()
    try:
        entries: list[dict[str, Any]] | None = None
        try:
            entries = engine.list_models()
        except HearthError as exc:
            checks.append(Check("models", False, exc.cause, exc.remedy))
        else:
            models = tuple(RemoteModel(str(e["id"]), engine.context_window_of(e)) for e in entries)
            shown = ", ".join(m.id for m in models[:5])
            if len(models) > 5:
                shown += f" and {len(models) - 5} more"
            checks.append(
                Check(
                    "models", True, f"The server lists {len(models)} model(s): {shown or 'none'}."
                )
            )
        chosen = model or (models[0].id if models else None)
        if chosen is None:
            if entries is not None:
                checks.append(
                    Check(
                        "one-token",
                        False,
                        "There is no model to ask: the server lists none.",
                        "Name one with --model.",
                    )
                )
            return ConnectionReport(provider.name, tuple(checks), models, None, None, warnings)
        engine.model = chosen
        checks.append(_one_token(engine))
        checks.append(_streamed(engine))
        return ConnectionReport(
            provider.name, tuple(checks), models, chosen, engine.token_param, warnings
        )
    finally:
        engine.unload()


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": PROBE_PROMPT}]


def _one_token(engine: RemoteChatEngine) -> Check:
    start = time.monotonic()
    body = {
        "model": engine.model,
        "messages": _messages(),
        "stream": False,
        "temperature": 0,
        engine.token_param: 1,
    }
    try:
        answer = engine.post_json("chat/completions", body)
    except HearthError as exc:
        return Check("one-token", False, exc.cause, exc.remedy)
    if not isinstance(answer, dict) or not answer.get("choices"):
        return Check(
            "one-token",
            False,
            f"{engine.url('chat/completions')} answered without any choices.",
            "Check that the address is an OpenAI-compatible API.",
        )
    took = time.monotonic() - start
    return Check(
        "one-token", True, f"A one-token answer from {engine.model} came back in {took:.1f} s."
    )


def _streamed(engine: RemoteChatEngine) -> Check:
    body = {
        "model": engine.model,
        "messages": _messages(),
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        engine.token_param: 4,
    }
    assembler = ChunkAssembler()
    start = time.monotonic()
    try:
        pieces = list(engine.stream_chat(body, assembler))
    except HearthError as exc:
        return Check("stream", False, exc.cause, exc.remedy)
    took = time.monotonic() - start
    usage = "with usage" if assembler.usage else "without usage (Hearth estimates it)"
    return Check(
        "stream",
        True,
        f"A streamed answer came back in {took:.1f} s: {assembler.chunks} chunk(s), "
        f"{len(pieces)} with text, finish_reason '{assembler.finish_reason}', {usage}.",
    )
