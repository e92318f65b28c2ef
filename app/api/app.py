"""The FastAPI app: OpenAI's routes over `CompletionService`, behind the security gate.

    app = create_app(CompletionService(open_default_database), GateSettings.for_bind(key, host))

Routes: GET /v1/models, POST /v1/chat/completions (streamed or not), POST /v1/completions,
POST /v1/embeddings (on an embedding model: floats or base64), POST /v1/images/generations
(b64_json). Inference only: nothing here downloads, deletes or changes a model. Prompts and
answers are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.api import wire
from app.api.security import Gate, GateSettings
from app.api.streaming import EventStream, ThreadedEvents, sse
from app.engines.errors import EngineError, EngineLostError
from app.errors import HearthError
from app.models.gguf import ModelNotFoundError
from app.prompts.sandbox import ChatTemplateError
from app.sessions.serving import (
    BadRequestError,
    CompletionService,
    Embedded,
    Finished,
    Generation,
    InputTooLongError,
    NotServableError,
    Piece,
    PromptTooLongError,
    QueueFullError,
    Ticket,
    ToolSpec,
)
from app.store.library import ModelKind

log = logging.getLogger(__name__)

_NOTHING = object()

#: How often a waiting non-streamed request checks whether its client is still there.
DISCONNECT_POLL_S = 0.25
#: The most texts one embeddings request may hold (OpenAI's limit).
MAX_EMBEDDING_INPUTS = 2048

_COMMON: dict[int | str, dict[str, Any]] = {
    code: {"model": wire.ErrorEnvelope, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing or wrong API key"),
        (403, "Host or Origin not allowed"),
        (404, "No such model"),
        (413, "Body too large"),
        (415, "Not JSON"),
        (429, "Queue full (see Retry-After)"),
        (500, "The engine failed"),
    )
}


class ApiError(Exception):
    """An error answered in OpenAI's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: wire.ErrorType = "invalid_request_error",
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type_ = status, message, type_
        self.code, self.param, self.headers = code, param, headers

    def json(self) -> dict[str, Any]:
        return wire.error_json(self.message, self.type_, code=self.code, param=self.param)


def api_error(exc: BaseException) -> ApiError:
    """The HTTP answer for an exception from the session or the engine."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, QueueFullError):
        return ApiError(
            429,
            str(exc),
            "rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    if isinstance(exc, ModelNotFoundError):
        return ApiError(404, str(exc), "not_found_error", code="model_not_found", param="model")
    if isinstance(exc, InputTooLongError):
        return ApiError(400, str(exc), code="context_length_exceeded", param="input")
    if isinstance(exc, PromptTooLongError):
        return ApiError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, NotServableError):
        return ApiError(400, str(exc), code="model_not_supported", param="model")
    if isinstance(exc, BadRequestError):
        return ApiError(400, str(exc), code="invalid_request", param=exc.param)
    if isinstance(exc, ChatTemplateError):
        return ApiError(400, str(exc), code="invalid_request")
    if isinstance(exc, EngineLostError):
        return ApiError(500, str(exc), "server_error", code="engine_lost")
    if isinstance(exc, EngineError | HearthError):
        return ApiError(500, str(exc), "server_error", code="engine_error")
    log.exception("API request failed unexpectedly", exc_info=exc)
    return ApiError(500, "Hearth failed unexpectedly; its log has the details.", "server_error")


def create_app(service: CompletionService, gate: GateSettings) -> Any:
    """The ASGI app: the routes, wrapped in the gate (the gate sees every request first)."""
    api = FastAPI(
        title="Hearth local API",
        version=__version__,
        description="OpenAI-compatible inference on the models of this machine's Hearth.",
        docs_url=None,  # no browser pages: nothing here is meant for a web page to load
        redoc_url=None,
    )

    @api.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.json(), status_code=exc.status, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        message = first.get("msg", "The request is not valid.")
        where = ".".join(loc)
        text = f"{where}: {message}" if where else str(message)
        body = wire.error_json(
            text, "invalid_request_error", code="invalid_request", param=where or None
        )
        return JSONResponse(body, status_code=400)

    @api.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_: wire.ErrorType = (
            "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        )
        body = wire.error_json(str(exc.detail), type_, code=f"http_{exc.status_code}")
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @api.get("/v1/models", response_model=wire.ModelList, responses=_COMMON)
    async def list_models() -> wire.ModelList:
        models = await asyncio.to_thread(service.models)
        return wire.ModelList(data=[wire.ModelCard(id=m.id, created=m.created) for m in models])

    @api.get("/v1/models/{model_id}", response_model=wire.ModelCard, responses=_COMMON)
    async def get_model(model_id: str) -> wire.ModelCard:
        for m in await asyncio.to_thread(service.models):
            if m.id == model_id:
                return wire.ModelCard(id=m.id, created=m.created)
        raise ApiError(
            404,
            f"The model '{model_id}' does not exist.",
            "not_found_error",
            code="model_not_found",
        )

    @api.post(
        "/v1/chat/completions",
        response_model=wire.ChatCompletion,
        responses={**_COMMON, 200: {"content": {"text/event-stream": {}}}},
    )
    async def chat_completions(body: wire.ChatCompletionRequest, request: Request) -> Any:
        gen = _generation(body, body.max_completion_tokens or body.max_tokens)
        tools, choice = _tools(body)
        if body.response_format is not None and body.response_format.type != "text":
            if tools:
                raise ApiError(
                    400,
                    "response_format and tools cannot be used together.",
                    param="response_format",
                )
            fmt = body.response_format
            schema: dict[str, Any] = {"type": "object"}
            if fmt.type == "json_schema":
                if fmt.json_schema is None:
                    raise ApiError(
                        400, "response_format.json_schema is required.", param="response_format"
                    )
                schema = fmt.json_schema.schema_ or {"type": "object"}
            gen = _with(gen, json_schema=schema)
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        ticket = await _admit(service, body.model)

        def produce() -> Iterator[Any]:
            return service.chat(ticket, body.model, messages, gen, tools=tools, tool_choice=choice)

        cid = f"chatcmpl-{ticket.request_id}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            render = _chat_chunks(cid, body.model, include_usage)
            return await _stream(ticket, produce, service, request, render)
        finished = await _collect(ticket, produce, service, request)
        message = wire.AssistantMessage(
            content=finished.content if not finished.tool_calls else None,
            reasoning_content=finished.reasoning or None,
            tool_calls=[
                wire.ToolCallOut(
                    id=c.id, function=wire.FunctionCallOut(name=c.name, arguments=c.arguments)
                )
                for c in finished.tool_calls
            ]
            or None,
        )
        return wire.ChatCompletion(
            id=cid,
            created=wire.now(),
            model=body.model,
            choices=[wire.ChatChoice(index=0, message=message, finish_reason=_finish(finished))],
            usage=wire.Usage(**wire.usage(finished.prompt_tokens, finished.completion_tokens)),
        )

    @api.post(
        "/v1/completions",
        response_model=wire.Completion,
        responses={**_COMMON, 200: {"content": {"text/event-stream": {}}}},
    )
    async def completions(body: wire.CompletionRequest, request: Request) -> Any:
        if isinstance(body.prompt, list):
            if len(body.prompt) != 1:
                raise ApiError(400, "Send one prompt per request.", param="prompt")
            prompt = body.prompt[0]
        else:
            prompt = body.prompt
        if body.suffix:
            raise ApiError(400, "suffix (fill in the middle) is not supported.", param="suffix")
        gen = _generation(body, body.max_tokens or 16)  # OpenAI's default for completions
        ticket = await _admit(service, body.model)

        def produce() -> Iterator[Any]:
            return service.complete(ticket, body.model, prompt, gen)

        cid = f"cmpl-{ticket.request_id}"
        echo = prompt if body.echo else ""
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            render = _completion_chunks(cid, body.model, include_usage, echo)
            return await _stream(ticket, produce, service, request, render)
        finished = await _collect(ticket, produce, service, request)
        reason = _finish(finished)
        return wire.Completion(
            id=cid,
            created=wire.now(),
            model=body.model,
            choices=[
                wire.CompletionChoice(
                    index=0,
                    text=echo + finished.content,
                    finish_reason="length" if reason == "length" else "stop",
                )
            ],
            usage=wire.Usage(**wire.usage(finished.prompt_tokens, finished.completion_tokens)),
        )

    @api.post("/v1/embeddings", response_model=wire.EmbeddingList, responses=_COMMON)
    async def embeddings(body: wire.EmbeddingRequest, request: Request) -> wire.EmbeddingList:
        texts = _embedding_inputs(body.input)
        ticket = await _admit(service, body.model, ModelKind.EMBEDDING)

        def run() -> Iterator[Embedded | None]:
            yield service.embed(ticket, body.model, texts, dimensions=body.dimensions)

        results = await _collect_all(ticket, run, service, request)
        embedded = results[-1] if results else None
        if embedded is None:
            raise ApiError(
                500, "The request was cancelled before its vectors were made.", "server_error"
            )
        as_base64 = body.encoding_format == "base64"
        return wire.EmbeddingList(
            data=[
                wire.Embedding(
                    index=i,
                    embedding=base64.b64encode(v).decode("ascii")
                    if as_base64
                    else embedded.floats(i),
                )
                for i, v in enumerate(embedded.vectors)
            ],
            model=body.model,
            usage=wire.EmbeddingUsage(
                prompt_tokens=embedded.prompt_tokens, total_tokens=embedded.prompt_tokens
            ),
        )

    @api.post("/v1/images/generations", response_model=wire.ImagesResponse, responses=_COMMON)
    async def images(body: wire.ImageRequest, request: Request) -> wire.ImagesResponse:
        if body.response_format == "url":
            raise ApiError(
                400,
                "Only response_format 'b64_json' is supported: Hearth serves no files.",
                param="response_format",
            )
        size = None
        if body.size and body.size != "auto":
            w, h = (int(v) for v in body.size.split("x"))
            size = (w, h)
        ticket = await _admit(service, body.model, ModelKind.IMAGE)

        def run() -> Iterator[list[bytes]]:
            yield service.images(ticket, body.model, body.prompt, n=body.n, size=size)

        pngs: list[bytes] = []
        for result in await _collect_all(ticket, run, service, request):
            pngs = result
        return wire.ImagesResponse(
            created=wire.now(),
            data=[wire.ImageData(b64_json=base64.b64encode(p).decode("ascii")) for p in pngs],
        )

    return Gate(api, gate)


# --- helpers --------------------------------------------------------------------------------


def _generation(body: wire._Sampling, max_tokens: int | None) -> Generation:
    stop: tuple[str, ...] = ()
    if isinstance(body.stop, str):
        stop = (body.stop,)
    elif body.stop:
        if len(body.stop) > 4:
            raise ApiError(400, "stop takes at most 4 strings.", param="stop")
        stop = tuple(body.stop)
    return Generation(
        max_tokens=max_tokens,
        temperature=body.temperature if body.temperature is not None else 0.8,
        top_p=body.top_p if body.top_p is not None else 0.95,
        stop=tuple(s for s in stop if s),
        seed=body.seed,
    )


def _with(gen: Generation, **changes: Any) -> Generation:
    from dataclasses import replace

    return replace(gen, **changes)


def _tools(body: wire.ChatCompletionRequest) -> tuple[list[ToolSpec], str | None]:
    tools = [
        ToolSpec(t.function.name, t.function.description, t.function.parameters)
        for t in body.tools or []
    ]
    choice = body.tool_choice
    if isinstance(choice, wire.NamedToolChoice):
        if choice.function.name not in {t.name for t in tools}:
            raise ApiError(
                400,
                f"tool_choice names '{choice.function.name}', which is not in tools.",
                param="tool_choice",
            )
        return tools, choice.function.name
    if choice == "required" and not tools:
        raise ApiError(400, "tool_choice 'required' needs tools.", param="tool_choice")
    return tools, choice or "auto"


async def _admit(
    service: CompletionService, model: str | None, kind: ModelKind = ModelKind.CHAT
) -> Ticket:
    """A queue place for a request on `model`: 404 for an unknown model, 429 when full."""
    try:
        if model is not None:
            await asyncio.to_thread(service.find, model, kind)
        return service.admit()
    except Exception as exc:
        raise api_error(exc) from exc


def _embedding_inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """The texts of an embeddings request's `input`, or a 400 saying what is wrong with it."""

    def refused(message: str) -> ApiError:
        return ApiError(400, message, code="invalid_request", param="input")

    if isinstance(value, str):
        texts = [value]
    elif all(isinstance(v, str) for v in value):
        texts = [str(v) for v in value]
    else:
        raise refused(
            "input holds token ids, and Hearth embeds text only. Send the text itself: a "
            "string or a list of strings."
        )
    if not texts:
        raise refused("input is empty. Send a string, or a list of strings.")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise refused(
            f"input holds {len(texts):,} texts, more than the {MAX_EMBEDDING_INPUTS:,} one "
            "request may hold. Send them in several requests."
        )
    for i, text in enumerate(texts):
        if not text:
            raise refused(f"input[{i}] is an empty string. Every input must have some text.")
    return texts


def _finish(finished: Finished) -> Any:
    return "stop" if finished.finish_reason == "cancelled" else finished.finish_reason


async def _collect_all(
    ticket: Ticket,
    produce: Callable[[], Iterator[Any]],
    service: CompletionService,
    request: Request,
) -> list[Any]:
    """Every event of `produce()`; cancels the work if the client goes away meanwhile."""
    events = ThreadedEvents(produce, ticket.release)
    items: list[Any] = []

    async def drain() -> None:
        async for item in events:
            items.append(item)

    task = asyncio.ensure_future(drain())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                break
            if await request.is_disconnected():
                service.cancel(ticket.request_id)
                await task
                break
        exc = task.exception()
    except asyncio.CancelledError:
        service.cancel(ticket.request_id)
        raise
    if exc is not None:
        raise api_error(exc) from exc
    return items


async def _collect(
    ticket: Ticket,
    produce: Callable[[], Iterator[Any]],
    service: CompletionService,
    request: Request,
) -> Finished:
    for item in reversed(await _collect_all(ticket, produce, service, request)):
        if isinstance(item, Finished):
            return item
    raise ApiError(500, "The engine ended without an answer.", "server_error")


async def _stream(
    ticket: Ticket,
    produce: Callable[[], Iterator[Any]],
    service: CompletionService,
    request: Request,
    render: Callable[[AsyncIterator[Any]], AsyncIterator[bytes]],
) -> EventStream:
    """Stream the reply as SSE once its first event is there.

    Waiting for the first event (load progress or the first token) lets a request that
    fails before generating (a prompt too long, a template refusing the roles) get a
    proper status code instead of a 200 with an error chunk.
    """
    events = ThreadedEvents(produce, ticket.release).__aiter__()
    first = asyncio.ensure_future(anext(events, _NOTHING))
    try:
        while True:
            done, _ = await asyncio.wait({first}, timeout=DISCONNECT_POLL_S)
            if done:
                break
            if await request.is_disconnected():
                service.cancel(ticket.request_id)
                break
        head = await first
    except asyncio.CancelledError:
        service.cancel(ticket.request_id)
        raise
    except Exception as exc:
        raise api_error(exc) from exc

    async def replay() -> AsyncIterator[Any]:
        if head is not _NOTHING:
            yield head
            async for item in events:
                yield item

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in render(replay()):
                yield chunk
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                raise
            error = api_error(exc)
            yield sse(error.json())  # a mid-stream failure is an error chunk
        yield sse("[DONE]")

    return EventStream(body(), lambda: service.cancel(ticket.request_id))


def _chat_chunks(
    cid: str, model: str, include_usage: bool
) -> Callable[[AsyncIterator[Any]], AsyncIterator[bytes]]:
    created = wire.now()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **({"usage": None} if include_usage else {}),
        }

    async def render(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        started = False
        async for event in events:
            if not started:
                started = True
                yield sse(chunk({"role": "assistant", "content": ""}))
            if isinstance(event, Piece):
                delta: dict[str, Any] = {}
                if event.reasoning:
                    delta["reasoning_content"] = event.reasoning
                if event.content:
                    delta["content"] = event.content
                if delta:
                    yield sse(chunk(delta))
            elif isinstance(event, Finished):
                if event.tool_calls:
                    calls = [
                        {
                            "index": i,
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for i, c in enumerate(event.tool_calls)
                    ]
                    yield sse(chunk({"tool_calls": calls}))
                yield sse(chunk({}, _finish(event)))
                if include_usage:
                    yield sse(
                        {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": wire.usage(event.prompt_tokens, event.completion_tokens),
                        }
                    )

    return render


def _completion_chunks(
    cid: str, model: str, include_usage: bool, echo: str
) -> Callable[[AsyncIterator[Any]], AsyncIterator[bytes]]:
    created = wire.now()

    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        }

    async def render(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
        if echo:
            yield sse(chunk(echo))
        async for event in events:
            if isinstance(event, Piece) and event.content:
                yield sse(chunk(event.content))
            elif isinstance(event, Finished):
                yield sse(chunk("", "length" if event.finish_reason == "length" else "stop"))
                if include_usage:
                    yield sse(
                        {
                            "id": cid,
                            "object": "text_completion",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": wire.usage(event.prompt_tokens, event.completion_tokens),
                        }
                    )

    return render
