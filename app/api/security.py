"""The API's gate: Host and Origin allowlists, the bearer key, JSON only, a body size cap.

Every request passes here before any route sees it, in this order:

1. **Host** must be a name this server answers to (localhost, 127.0.0.1, [::1], the
   address it is bound to, names the user added). A missing or empty Host is a malformed
   request (400); any other name is refused (403). This stops DNS rebinding, the attack
   behind Ollama's CVE-2024-28224: a web page whose name resolves to 127.0.0.1 still sends
   its own name as Host.
2. **Origin**, when a browser sends one, must be on the allowlist (empty by default): a
   web page cannot drive the API from the person's browser (403). No CORS headers are sent
   unless the origin is allowed; a preflight from any other origin gets none.
3. **The key**: `Authorization: Bearer <key>` on every request, compared in constant time
   (401 otherwise).
4. **JSON only**: a POST must say `Content-Type: application/json` (415 otherwise), which
   kills the `text/plain` "simple request" a page can send without a preflight.
5. **Size**: a body over the cap is refused (413) before it is read further.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.wire import ErrorType, error_json
from app.store.secrets import get_secret, secrets_place, set_secret

#: The secret's name in the keyring (or the secrets file).
API_KEY_SECRET = "api-server-key"
#: Names every local server answers to.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Request bodies larger than this are refused (a long chat fits many times over).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def api_key(*, new: bool = False) -> tuple[str, str]:
    """(the API key, where it is kept); made and saved on first use, or when `new`."""
    key = None if new else get_secret(API_KEY_SECRET)
    if key:
        return key, secrets_place()
    key = f"hearth-{secrets.token_urlsafe(32)}"
    where = set_secret(API_KEY_SECRET, key)
    return key, where


def mask_key(key: str) -> str:
    """Enough of the key to recognise it, not to use it: `hearth-Ab…xyz9`."""
    return f"{key[:9]}…{key[-4:]}" if len(key) > 16 else "…"


@dataclass(frozen=True)
class GateSettings:
    """What the gate lets through."""

    key: str
    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    allowed_origins: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    open_paths: frozenset[str] = field(default_factory=frozenset)  # no key needed

    @classmethod
    def for_bind(
        cls,
        key: str,
        bind_host: str,
        *,
        extra_hosts: Iterable[str] = (),
        origins: Iterable[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> GateSettings:
        """The loopback names, the bound address (unless it is a wildcard), and `extra_hosts`."""
        hosts = set(LOOPBACK_HOSTS) | {h.strip().lower().strip("[]") for h in extra_hosts if h}
        bound = bind_host.strip().lower().strip("[]")
        if bound and bound not in ("0.0.0.0", "::"):
            hosts.add(bound)
        return cls(
            key=key,
            allowed_hosts=frozenset(hosts),
            allowed_origins=frozenset(o.rstrip("/").lower() for o in origins if o),
            max_body_bytes=max_body_bytes,
        )


def host_name(header: str) -> str | None:
    """The name part of a Host header ("[::1]:4567" → "::1"), lower-case; None if malformed."""
    value = header.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        return name
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    if not name or any(c.isspace() or c in "/@?#" for c in name):
        return None
    return name.rstrip(".")


class Gate:
    """ASGI middleware that applies the checks above to every HTTP request."""

    def __init__(self, app: ASGIApp, settings: GateSettings) -> None:
        self.app = app
        self.settings = settings
        self._key = settings.key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; websockets are not served
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        settings = self.settings

        raw_host = headers.get("host", "")
        name = host_name(raw_host)
        if name is None:
            await _refuse(send, 400, "The request has no valid Host header.", "missing_host")
            return
        if name not in settings.allowed_hosts:
            await _refuse(
                send,
                403,
                f"This server does not answer to the host name '{name}'. Add it with "
                "--allow-host if you meant to reach Hearth by that name.",
                "host_not_allowed",
                type_="permission_error",
            )
            return

        origin = headers.get("origin")
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if origin.rstrip("/").lower() not in settings.allowed_origins:
                await _refuse(
                    send,
                    403,
                    f"Requests from web pages at {origin} are not allowed. Add the origin "
                    "with --allow-origin if you trust that page.",
                    "origin_not_allowed",
                    type_="permission_error",
                )
                return
            cors = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin"),
            ]
        if scope["method"] == "OPTIONS" and cors:  # a preflight from an allowed origin
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                        (b"access-control-allow-headers", b"Authorization, Content-Type"),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        if scope["path"] not in settings.open_paths and not self._key_ok(headers):
            await _refuse(
                send,
                401,
                "A valid API key is required: send it as 'Authorization: Bearer <key>'. "
                "`hearth serve --show-key` prints it.",
                "invalid_api_key",
                type_="authentication_error",
                extra=[(b"www-authenticate", b"Bearer")],
                cors=cors,
            )
            return

        if scope["method"] in ("POST", "PUT", "PATCH"):
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                await _refuse(
                    send,
                    415,
                    "Send the body as JSON with 'Content-Type: application/json'.",
                    "unsupported_media_type",
                    cors=cors,
                )
                return
            length = headers.get("content-length")
            if length is not None and (
                not length.isdigit() or int(length) > settings.max_body_bytes
            ):
                await _refuse(
                    send, 413, _too_big(settings.max_body_bytes), "body_too_large", cors=cors
                )
                return
            body = await _read_body(receive, settings.max_body_bytes)
            if body is None:
                await _refuse(
                    send, 413, _too_big(settings.max_body_bytes), "body_too_large", cors=cors
                )
                return
            receive = _replay(body, receive)

        if cors:
            send = _with_headers(send, cors)
        await self.app(scope, receive, send)

    def _key_ok(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode("utf-8"), self._key)


def _too_big(cap: int) -> str:
    return f"The request body is larger than this server accepts ({cap // 1024:,} KiB)."


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name == "host" and name in out:  # two Host headers: treat as malformed
            out[name] = ""
            continue
        out[name] = value.decode("latin-1")
    return out


async def _read_body(receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None once it passes `cap` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body once, then the real channel (to hear a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _refuse(
    send: Send,
    status: int,
    message: str,
    code: str,
    *,
    type_: ErrorType = "invalid_request_error",
    extra: list[tuple[bytes, bytes]] | None = None,
    cors: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(error_json(message, type_, code=code)).encode("utf-8")
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
        *(cors or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
