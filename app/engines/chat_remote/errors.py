"""What can go wrong talking to a remote server: one class per cause, each one sentence.

`error_for_exception` and `error_for_status` turn httpx's exceptions and HTTP answers into
them. Failures after an answer has begun (`ConnectionLostError`, `StalledError`,
`TruncatedStreamError`) are `EngineLostError`s: the session keeps the partial answer and
marks it interrupted.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from app.engines.errors import EngineError, EngineLostError
from app.humanize import format_duration


class RemoteError(EngineError):
    """A remote server did not do what was asked."""

    default_remedy = "Run `hearth remote test NAME` to see which part of the connection fails."


class RefusedError(RemoteError):
    default_remedy = (
        "Check that the server is running and that the address and port are right "
        "(`hearth remote list`)."
    )


class HostNotFoundError(RemoteError):
    default_remedy = "Check the host name in the address (`hearth remote list`) and the network."


class TLSError(RemoteError):
    default_remedy = (
        "Give Hearth the server's CA certificate (`hearth remote add ... --ca-bundle FILE "
        "--replace`), or fix the server's certificate."
    )


class AuthError(RemoteError):
    default_remedy = (
        "Give the provider the right API key: `hearth remote add NAME URL --key-stdin "
        "--replace` (the key is kept in the keyring)."
    )


class NotFoundError(RemoteError):
    default_remedy = (
        "Check that the address is the API root (it usually ends in /v1) and that the model "
        "id is one the server lists (`hearth remote test NAME`)."
    )


class RemoteTimeoutError(RemoteError):
    default_remedy = (
        "Check that the server is not stuck or overloaded; a slow first answer needs a "
        "longer read timeout (`hearth remote add ... --read-timeout S --replace`)."
    )


class BusyError(RemoteError):
    default_remedy = "Wait a little and try again; the server is rate-limiting or full."


class BadRequestError(RemoteError):
    default_remedy = (
        "The server does not accept what Hearth sent: check `hearth remote test NAME`, "
        "and the compatibility notes in docs/remote.md."
    )


class ServerError(RemoteError):
    default_remedy = "Check the server's own log; try again when it is healthy."


class ProtocolError(RemoteError):
    default_remedy = (
        "Check that the address is an OpenAI-compatible API (`hearth remote test NAME`)."
    )


class StreamErrorChunk(RemoteError):
    """The server sent an `{"error": ...}` chunk in the middle of an answer."""

    default_remedy = "Check the server's own log; the part of the answer that came is kept."


class ConnectionLostError(EngineLostError):
    default_remedy = (
        "The part of the answer that came is kept; check the network and the server, "
        "then ask again."
    )


class StalledError(EngineLostError):
    default_remedy = ConnectionLostError.default_remedy


class TruncatedStreamError(EngineLostError):
    default_remedy = (
        "The part of the answer that came is kept; the server (or a proxy before it) may "
        "have cut the stream: ask again, and check its log."
    )


def error_for_exception(
    exc: httpx.HTTPError, url: str, *, streaming: bool = False
) -> RemoteError | EngineLostError:
    """One sentence for a failed request to `url`; `streaming`: the answer had begun."""
    timeout = _timeout_of(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        return RemoteTimeoutError(
            f"The server at {url} did not accept a connection within {_secs(timeout)}."
        )
    if isinstance(exc, httpx.ReadTimeout):
        if streaming:
            return StalledError(
                f"The server at {url} sent nothing for {_secs(timeout)} mid-answer."
            )
        return RemoteTimeoutError(
            f"The server at {url} accepted the request but sent nothing for {_secs(timeout)}."
        )
    if isinstance(exc, httpx.TimeoutException):  # write or pool
        return RemoteTimeoutError(
            f"The request to {url} did not go through within {_secs(timeout)}."
        )
    if isinstance(exc, httpx.ConnectError):
        text = _describe(exc)
        if _is_tls(exc):
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                return TLSError(f"The TLS certificate of {url} could not be verified ({text}).")
            return TLSError(f"The TLS handshake with {url} failed ({text}).")
        lowered = text.lower()
        if (
            "name or service not known" in lowered
            or "nodename nor servname" in lowered
            or ("getaddrinfo" in lowered or "name resolution" in lowered)
        ):
            return HostNotFoundError(f"The host of {url} could not be found ({text}).")
        return RefusedError(f"The server at {url} refused the connection ({text}).")
    if isinstance(exc, httpx.TransportError):
        if streaming:
            return ConnectionLostError(
                f"The connection to {url} dropped mid-answer ({_describe(exc)})."
            )
        if _is_tls(exc):
            return TLSError(f"The TLS connection to {url} failed ({_describe(exc)}).")
        return ProtocolError(
            f"The server at {url} closed the connection without answering ({_describe(exc)})."
        )
    return RemoteError(f"The request to {url} failed ({_describe(exc)}).")


def error_for_status(status: int, body: bytes | str, url: str) -> RemoteError:
    """One sentence for an HTTP error answer (4xx/5xx), with the server's own message."""
    message = server_message(body)
    said = f": {message}" if message else ""
    if status in (401, 403):
        return AuthError(f"The server at {url} refused the API key ({status}{said}).")
    if status == 404 and "model" in message.lower():
        return NotFoundError(f"The server at {url} does not have that model ({status}{said}).")
    if status == 404:
        return NotFoundError(f"The server has no {url} ({status}{said}).")
    if status == 429:
        return BusyError(f"The server at {url} is busy ({status}{said}).")
    if status == 408:
        return RemoteTimeoutError(
            f"The server at {url} gave up waiting for the request ({status})."
        )
    if status < 500:
        return BadRequestError(f"The server at {url} refused the request ({status}{said}).")
    return ServerError(f"The server at {url} failed ({status}{said}).")


def server_message(body: bytes | str) -> str:
    """The message in an error answer: OpenAI's envelope, FastAPI's `detail`, or the text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data: Any = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    return _message_of(data)[:300]


def _message_of(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if key in data:
                return _message_of(data[key])
        return json.dumps(data)[:200]
    if isinstance(data, list) and data:  # FastAPI's validation errors
        first = data[0]
        if isinstance(first, dict) and "msg" in first:
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first['msg']}" if where else str(first["msg"])
        return _message_of(first)
    return str(data)


def _timeout_of(exc: httpx.HTTPError) -> float | None:
    """The timeout that ran out, when httpx says (from the request's extensions)."""
    try:
        request = exc.request
    except RuntimeError:
        return None
    timeouts = request.extensions.get("timeout", {})
    kinds: dict[type[httpx.HTTPError], str] = {
        httpx.ConnectTimeout: "connect",
        httpx.ReadTimeout: "read",
        httpx.WriteTimeout: "write",
        httpx.PoolTimeout: "pool",
    }
    kind = kinds.get(type(exc))
    value = timeouts.get(kind) if kind else None
    return float(value) if value is not None else None


def _secs(value: float | None) -> str:
    return format_duration(value) if value is not None else "the time allowed"


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen) or "SSL" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    """The innermost cause's words (httpx wraps the socket error)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        nxt = inner.__cause__ or inner.__context__
        assert nxt is not None
        inner = nxt
    text = str(inner) or str(exc) or type(inner).__name__
    return " ".join(text.split())[:200]
