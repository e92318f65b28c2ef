"""The remote chat engine: an OpenAI-compatible server's `/v1/chat/completions`, streamed.

It fits `app.engines.base.ChatEngine` with no worker process: `load` attaches to a model
the server lists (and reads its context window), `generate` streams the answer as the
chat protocol's `TokenEvent`s, then `Metrics` and `Done`, and `count_tokens` estimates
(servers cannot count for us). Every request has the provider's connect, read, write and
pool timeouts; nothing is sent to any address but the provider's.

    engine = RemoteChatEngine(provider, "meta-llama/Llama-3.1-8B-Instruct", api_key=key)
    engine.load(engine.load_request())
    for event in engine.generate(GenerateRequest("r1", SERVER_TEMPLATE.render(messages))):
        ...

Reasoning the server sends apart from the answer (`reasoning_content`, `reasoning`) is
passed on wrapped in `<think>…</think>`, so the session splits it as it does a local
model's. An answer whose stream ends without a `finish_reason` raises
`TruncatedStreamError`, a dropped connection `ConnectionLostError`: both keep the
partial answer (the session marks it interrupted).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from app import __version__
from app.engines.chat_llama.protocol import (
    Done,
    GenerateRequest,
    Loaded,
    LoadProgress,
    LoadRequest,
    Metrics,
    ReplyEvent,
    TokenEvent,
)
from app.engines.chat_remote.errors import (
    NotFoundError,
    RemoteError,
    TLSError,
    TruncatedStreamError,
    error_for_exception,
    error_for_status,
    server_message,
)
from app.engines.chat_remote.stream import DONE, ChunkAssembler, Piece, iter_sse_events
from app.engines.chat_remote.template import decode_messages, estimate_prompt_tokens
from app.engines.errors import LoadCancelledError, NotLoadedError
from app.store.providers import Provider, TokenParam

log = logging.getLogger(__name__)

#: The tags the session's reasoning splitter (`app.prompts.reasoning`) takes apart; engines
#: and prompts are sibling rooms, so they are written here again.
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

#: The context window assumed when neither the server nor the user says (Ollama's default).
DEFAULT_CONTEXT = 4096

#: The least answer length asked for when the prompt nearly fills the context.
MIN_ANSWER_TOKENS = 16

#: Keys of a `/v1/models` entry that give the context window, by server.
_CONTEXT_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length")

#: Optional request fields a server may refuse by name; dropped (once) when it does.
_DROPPABLE = ("stream_options", "seed")

_OTHER_TOKEN_PARAM: dict[str, TokenParam] = {
    "max_tokens": "max_completion_tokens",
    "max_completion_tokens": "max_tokens",
}


def http_client(
    provider: Provider, api_key: str | None, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client for `provider`: its base URL, headers, TLS settings and timeouts.

    Environment proxies and `.netrc` are ignored (`trust_env=False`): requests go where
    the provider's address says and carry only the headers it lists.
    """
    t = provider.timeouts
    verify: bool | ssl.SSLContext = provider.verify_tls
    if provider.verify_tls and provider.ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=provider.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(
                f"The CA bundle {provider.ca_bundle} for '{provider.name}' cannot be read ({exc})."
            ) from exc
    headers = {"User-Agent": f"Hearth/{__version__}", **provider.headers}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(
        base_url=provider.base_url + "/",
        headers=headers,
        timeout=httpx.Timeout(connect=t.connect_s, read=t.read_s, write=t.write_s, pool=t.pool_s),
        verify=verify,
        transport=transport,
        trust_env=False,
        follow_redirects=False,
    )


def detect_context_window(entry: dict[str, Any]) -> int | None:
    """The context window a `/v1/models` entry states (vLLM's `max_model_len`, ...), or None."""
    for key in _CONTEXT_KEYS:
        value = entry.get(key)
        if isinstance(value, int) and value > 0:
            return value
    meta = entry.get("meta")
    if isinstance(meta, dict):  # llama-server: the running context, else the trained one
        for key in ("n_ctx", "n_ctx_slot", "n_ctx_train"):
            value = meta.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


class RemoteChatEngine:
    """One model on one remote server; thread-safe, no process of its own."""

    def __init__(
        self,
        provider: Provider,
        model: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
        on_token_param: Callable[[TokenParam], None] | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self._api_key = api_key
        self._transport = transport
        self._on_token_param = on_token_param
        self.token_param: TokenParam = provider.token_param or "max_tokens"
        self._client: httpx.Client | None = None
        self._loaded: Loaded | None = None
        self._context_known = False  # the window came from the server or the user
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        """What Metrics and the status line call this engine: `remote NAME`."""
        return f"remote {self.provider.name}"

    def url(self, endpoint: str) -> str:
        return f"{self.provider.base_url}/{endpoint}"

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = http_client(self.provider, self._api_key, transport=self._transport)
            return self._client

    # --- ChatEngine -----------------------------------------------------------------------

    @property
    def loaded(self) -> Loaded | None:
        return self._loaded

    def load_request(self, n_ctx: int = 0) -> LoadRequest:
        """The request `load` takes: the server's model id, and a cap on the context (0: none)."""
        return LoadRequest(model_path=self.model, n_ctx=n_ctx, n_gpu_layers=0, n_threads=0)

    def load(
        self,
        req: LoadRequest,
        on_progress: Callable[[LoadProgress], None] | None = None,
        cancel_event: threading.Event | None = None,
    ) -> Loaded:
        """Attach to the model: check the server lists it and learn its context window.

        The llama.cpp fields of `req` mean nothing here; `req.n_ctx`, when set, caps the
        context Hearth fits the history to.
        """
        start = time.monotonic()
        note: str | None = None
        detected: int | None = None
        try:
            models = self.list_models()
        except NotFoundError:  # some servers (older TGI, proxies) have no model list
            models = None
            note = f"{self.provider.base_url} does not list its models"
        if cancel_event is not None and cancel_event.is_set():
            raise LoadCancelledError("Attaching to the remote model was cancelled.")
        if models is not None:
            entry = next((m for m in models if m.get("id") == self.model), None)
            if entry is None:
                listed = ", ".join(str(m.get("id")) for m in models[:8]) or "none"
                raise NotFoundError(
                    f"The server at {self.provider.base_url} has no model '{self.model}' "
                    f"(it lists: {listed})."
                )
            detected = self.context_window_of(entry)
        n_ctx = self.provider.context_window or detected or self.provider.context_for(self.model)
        self._context_known = bool(n_ctx)
        if not n_ctx:
            n_ctx = DEFAULT_CONTEXT
            unknown = (
                f"the server does not say its context window, so Hearth keeps the history "
                f"to {DEFAULT_CONTEXT:,} tokens (set it with `hearth remote add ... --context N`)"
            )
            note = f"{note}; {unknown}" if note else unknown
        if req.n_ctx and req.n_ctx < n_ctx:
            n_ctx = req.n_ctx
        elapsed = time.monotonic() - start
        if on_progress is not None:
            on_progress(LoadProgress(fraction=1.0, elapsed_s=elapsed))
        self._loaded = Loaded(
            load_s=elapsed,
            n_ctx=n_ctx,
            backend_used=self.backend,
            gpu_layers_used=0,
            note=note[:1].upper() + note[1:] if note else None,
        )
        return self._loaded

    def is_alive(self) -> bool:
        """True once attached; a server that went away shows on the next request."""
        return self._loaded is not None

    def cancel(self, request_id: str) -> None:
        """End `request_id` at its next piece with Done("cancelled"); safe from a signal handler."""
        self._cancelled.add(request_id)

    def unload(self) -> None:
        self._loaded = None
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def count_tokens(self, text: str) -> int:
        """An estimate (on the high side): OpenAI-compatible servers have no way to count."""
        return estimate_prompt_tokens(text)

    def generate(self, req: GenerateRequest) -> Iterator[ReplyEvent]:
        """Stream the answer to `req.prompt` (messages `SERVER_TEMPLATE` rendered).

        Raises NotLoadedError, RemoteError (before or during the answer: the server said
        no, or sent an error chunk), ConnectionLostError/StalledError/TruncatedStreamError
        (the answer began and was cut: the pieces already yielded are the partial answer).
        """
        if self._loaded is None:
            raise NotLoadedError("No remote model is attached.")
        return self._generate(req, self._loaded)

    # --- the wire -------------------------------------------------------------------------

    def _generate(self, req: GenerateRequest, loaded: Loaded) -> Iterator[ReplyEvent]:
        rid = req.request_id
        body = self.chat_body(req)
        assembler = ChunkAssembler()
        start = time.monotonic()
        first: float | None = None
        in_reasoning = False
        cancelled = False
        try:
            for piece in self.stream_chat(
                body, assembler, cancelled=lambda: rid in self._cancelled
            ):
                if first is None:
                    first = time.monotonic()
                text = piece.text
                if piece.reasoning and not in_reasoning:
                    text, in_reasoning = THINK_OPEN + text, True
                elif not piece.reasoning and in_reasoning:
                    text, in_reasoning = THINK_CLOSE + text, False
                yield TokenEvent(rid, text)
            cancelled = rid in self._cancelled
        finally:
            self._cancelled.discard(rid)
        if in_reasoning:
            yield TokenEvent(rid, THINK_CLOSE)
        end = time.monotonic()
        usage = assembler.usage
        prompt_tokens = (
            usage.prompt_tokens
            if usage and usage.prompt_tokens is not None
            else estimate_prompt_tokens(req.prompt)
        )
        generated = (
            usage.completion_tokens
            if usage and usage.completion_tokens is not None
            else assembler.text_chunks
        )
        ttft = (first or end) - start
        decode_s = end - first if first is not None else 0.0
        yield Metrics(
            request_id=rid,
            ttft_s=ttft,
            prompt_tokens=prompt_tokens,
            prompt_tps=prompt_tokens / ttft if ttft > 0 else 0.0,
            generated_tokens=generated,
            decode_tps=(generated - 1) / decode_s if decode_s > 0 and generated > 1 else 0.0,
            n_ctx=loaded.n_ctx,
            context_used=prompt_tokens + generated,
            backend=self.backend,
            gpu_layers=0,
            cached_tokens=(usage.cached_tokens or 0) if usage else 0,
        )
        if cancelled:
            yield Done(rid, "cancelled")
        else:
            yield Done(rid, "length" if assembler.finish_reason == "length" else "stop")

    def chat_body(self, req: GenerateRequest) -> dict[str, Any]:
        """The JSON of a streamed chat completion for `req` (standard OpenAI fields only).

        With a known context window, the answer length asked for leaves the prompt room
        (servers refuse prompt + max_tokens beyond it).
        """
        max_tokens = req.max_tokens
        if self._context_known and self._loaded is not None:
            room = self._loaded.n_ctx - estimate_prompt_tokens(req.prompt)
            max_tokens = max(min(max_tokens, room), MIN_ANSWER_TOKENS)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": decode_messages(req.prompt),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": req.temperature,
            "top_p": req.top_p,
            self.token_param: max_tokens,
        }
        if req.stop:
            body["stop"] = list(req.stop)[:4]  # OpenAI's limit
        if req.seed is not None:
            body["seed"] = req.seed
        schema = getattr(req, "json_schema", None)
        if schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json.loads(schema)},
            }
        return body

    def stream_chat(
        self,
        body: dict[str, Any],
        assembler: ChunkAssembler,
        *,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[Piece]:
        """POST `body` (streamed) and yield its text pieces; `assembler` keeps the rest.

        Ends quietly when `cancelled()` turns true (the connection is closed); raises
        TruncatedStreamError when the stream ends without a finish_reason.
        """
        url = self.url("chat/completions")
        with self._post_stream(body) as response:
            if "application/json" in response.headers.get("content-type", ""):
                # A server that ignores `stream` answers the whole completion at once.
                try:
                    whole = response.read().decode("utf-8", "replace")
                except httpx.HTTPError as exc:
                    raise error_for_exception(exc, url, streaming=True) from exc
                yield from assembler.feed_data(whole)
                return
            try:
                for event in iter_sse_events(response.iter_lines()):
                    if cancelled():
                        return
                    if event.data.strip() == DONE:
                        break
                    yield from assembler.feed_data(event.data, event.event)
            except httpx.HTTPError as exc:
                if assembler.finish_reason is None:
                    raise error_for_exception(exc, url, streaming=True) from exc
                # The answer was finished; only the usage chunk or [DONE] did not come.
                log.info("%s: stream ended after finish_reason (%s)", self.provider.name, exc)
        if cancelled():
            return
        if assembler.finish_reason is None:
            raise TruncatedStreamError(
                f"The server at {self.provider.base_url} ended the answer without saying it "
                "was finished (no finish_reason), so it may be cut short."
            )

    @contextlib.contextmanager
    def _post_stream(self, body: dict[str, Any]) -> Iterator[httpx.Response]:
        """The open streamed response to `body`, after adapting it to what the server accepts."""
        url = self.url("chat/completions")
        swapped: set[str] = set()
        while True:  # each pass drops a field or swaps the token field once, so this ends
            try:
                response = self.http.send(
                    self.http.build_request("POST", "chat/completions", json=body), stream=True
                )
            except httpx.HTTPError as exc:
                raise error_for_exception(exc, url) from exc
            try:
                _refuse_redirect(response, url)
                if response.status_code < 400:
                    yield response
                    return
                try:
                    raw = response.read()
                except httpx.HTTPError:
                    raw = b""
                adapted = self._adapt(body, response.status_code, raw, swapped)
                if adapted is None:
                    raise error_for_status(response.status_code, raw, url)
                body = adapted
            finally:
                response.close()

    def _adapt(
        self, body: dict[str, Any], status: int, raw: bytes, swapped: set[str]
    ) -> dict[str, Any] | None:
        """`body` changed to suit a server that refused it by naming a field, or None.

        `max_tokens` and `max_completion_tokens` swap (OpenAI's newer models want the
        second, many servers only know the first); `stream_options` and `seed` are dropped.
        """
        if status not in (400, 422):
            return None
        message = server_message(raw)
        current = self.token_param
        other = _OTHER_TOKEN_PARAM[current]
        if current in body and not swapped and (current in message or other in message):
            swapped.add(current)
            changed = {k: v for k, v in body.items() if k != current}
            changed[other] = body[current]
            log.info("%s wants %s, not %s", self.provider.name, other, current)
            self.token_param = other
            if self._on_token_param is not None:
                self._on_token_param(other)
            return changed
        for key in _DROPPABLE:
            if key in body and key in message:
                log.info("%s refuses %s: sending without it", self.provider.name, key)
                return {k: v for k, v in body.items() if k != key}
        return None

    def list_models(self) -> list[dict[str, Any]]:
        """The server's `/v1/models` entries (each has at least an `id`)."""
        data = self.get_json("models")
        entries = data.get("data") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise RemoteError(
                f"{self.url('models')} did not answer with a model list.",
                "Check that the address is an OpenAI-compatible API root (usually .../v1).",
            )
        return [e for e in entries if isinstance(e, dict) and "id" in e]

    def get_json(self, endpoint: str) -> Any:
        url = self.url(endpoint)
        try:
            response = self.http.get(endpoint)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, url) from exc
        _refuse_redirect(response, url)
        if response.status_code >= 400:
            raise error_for_status(response.status_code, response.content, url)
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"{url} did not answer with JSON.",
                "Check that the address is an OpenAI-compatible API root (usually .../v1).",
            ) from None

    def post_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        """POST `body` (not streamed), adapting it as a streamed request is; the JSON answer."""
        url = self.url(endpoint)
        swapped: set[str] = set()
        while True:  # each pass drops a field or swaps the token field once, so this ends
            try:
                response = self.http.post(endpoint, json=body)
            except httpx.HTTPError as exc:
                raise error_for_exception(exc, url) from exc
            _refuse_redirect(response, url)
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    raise RemoteError(f"{url} did not answer with JSON.") from None
            adapted = self._adapt(body, response.status_code, response.content, swapped)
            if adapted is None:
                raise error_for_status(response.status_code, response.content, url)
            body = adapted

    def context_window_of(self, entry: dict[str, Any]) -> int | None:
        """The context a `/v1/models` entry's model runs with, as far as the server says."""
        return self._llama_server_context(entry) or detect_context_window(entry)

    def _llama_server_context(self, entry: dict[str, Any]) -> int | None:
        """llama-server's running context per slot (`/props`), for its model entries only."""
        if entry.get("owned_by") != "llamacpp":
            return None
        parts = urlsplit(self.provider.base_url)
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.rsplit("/", 1)[0], "", ""))
        try:
            response = self.http.get(root + "/props")
            props = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return None
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        value = settings.get("n_ctx") if isinstance(settings, dict) else None
        return value if isinstance(value, int) and value > 0 else None


def _refuse_redirect(response: httpx.Response, url: str) -> None:
    """A redirect is not followed (the key must not travel elsewhere): say where it points."""
    if 300 <= response.status_code < 400:
        where = response.headers.get("location", "somewhere else")
        raise RemoteError(
            f"The server at {url} redirects to {where} ({response.status_code}).",
            "Add the address it redirects to instead (`hearth remote add NAME URL --replace`).",
        )
