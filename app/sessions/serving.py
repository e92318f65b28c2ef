"""Stateless completions for the local API: library models, chat templates, a bounded queue.

The API face (`app.api`) turns HTTP requests into calls here, as the CLI turns its
arguments into `ChatSession` calls. Nothing here writes the chat history: API traffic is
not a conversation of the person's, and its prompts are never logged.

One chat model is loaded at a time (the planner sizes it for this machine; asking for
another model unloads the first, as a person switching models in the window does), and
requests take turns on it. An embedding model (`/v1/embeddings`) is loaded beside it in a
worker of its own, from the same engine (llama.cpp): a program that embeds its documents
and then chats about them does not reload either model each time. Embedding requests take
turns on their model. At most `max_queue` requests are admitted at once, chat, embedding
and image requests together, the one running included; one more is refused with
`QueueFullError` (the API's 429).

    service = CompletionService(open_default_database)
    with service.admit() as ticket:
        for event in service.chat(ticket, "gemma-3-270m-it-q4_k_m", messages, Generation()):
            ...  # Piece..., then Finished (a model not loaded is loaded first)
    with service.admit() as ticket:
        embedded = service.embed(ticket, "all-minilm-l6-v2-f16", ["a cat", "a dog"])
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from sqlite_utils import Database

from app.engines.base import ChatEngine, EmbeddingEngine, ImageEngine
from app.engines.chat_llama.client import ChatEngineClient, ContextOverflowError
from app.engines.chat_llama.protocol import (
    Done,
    EmbeddingsEvent,
    EmbedRequest,
    GenerateRequest,
    Loaded,
    LoadProgress,
    LoadRequest,
    Metrics,
    Pooling,
    TokenEvent,
    vector_floats,
)
from app.engines.image_diffusers.protocol import Done as ImageDone
from app.engines.image_diffusers.protocol import ImageResult
from app.errors import HearthError
from app.hardware.profile import HardwareProfile
from app.models.gguf import ModelNotFoundError, read_gguf_facts
from app.models.gguf_header import read_gguf_header
from app.models.library import library_name
from app.planner import LoadSettings, plan_embedding_load, plan_load
from app.prompts.choice import ChosenTemplate, choose_template
from app.prompts.families import FAMILY_EOS_TEXT
from app.prompts.reasoning import OPEN as THINK_OPEN
from app.prompts.reasoning import ReasoningSplitter
from app.prompts.sandbox import ChatTemplateError, render_chat
from app.store.library import LibraryModel, ModelKind, find_model, list_models

#: Requests admitted at once (the one generating included) before new ones get a 429.
DEFAULT_MAX_QUEUE = 8
#: How long a refused client should wait before trying again, in seconds.
RETRY_AFTER_S = 2

FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


class QueueFullError(HearthError):
    """Every place in the queue is taken."""

    default_remedy = f"Wait a moment and send the request again (after {RETRY_AFTER_S} s)."

    def __init__(self, size: int) -> None:
        self.retry_after_s = RETRY_AFTER_S
        super().__init__(f"Hearth is already working on {size} requests, its limit.")


class NotServableError(HearthError):
    """The model exists but cannot do what the request asks (embeddings, images...)."""

    default_remedy = "Pick another model from GET /v1/models."


class PromptTooLongError(HearthError):
    default_remedy = "Send fewer or shorter messages, or ask for fewer tokens (max_tokens)."


class InputTooLongError(PromptTooLongError):
    """A text to embed is longer than the embedding model reads at once."""

    default_remedy = (
        "Split the text into shorter pieces and embed each; Hearth never cuts an input short "
        "(OpenAI's API has no option to ask for that)."
    )


class BadRequestError(HearthError):
    """A request the model cannot carry out as asked (a tool schema, a message shape).

    `param` names the request field at fault, when one is.
    """

    default_remedy = "Check the request against the OpenAI API reference."

    def __init__(self, cause: str, remedy: str | None = None, *, param: str | None = None):
        super().__init__(cause, remedy)
        self.param = param


@dataclass(frozen=True)
class ServedModel:
    """A library model as the API lists it: its library name is its id."""

    id: str
    kind: ModelKind
    created: int  # unix time it was added to the library
    context_length: int | None = None


@dataclass(frozen=True)
class Generation:
    """How to sample one reply (OpenAI's request fields, in Hearth's words).

    `max_tokens` None: as many as the context leaves, up to the service's cap.
    """

    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_schema: Mapping[str, Any] | None = None  # the reply must be JSON matching it


@dataclass(frozen=True)
class ToolSpec:
    """One function the model may call (OpenAI's `tools[].function`)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True)
class Piece:
    """Text as it streams: answer and reasoning (`<think>`) parts, either may be empty."""

    content: str = ""
    reasoning: str = ""


@dataclass(frozen=True)
class Finished:
    """The end of a reply: why it ended and what it cost."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...] = ()


CompletionEvent = Piece | Finished


@dataclass(frozen=True)
class Embedded:
    """The vectors of one embedding request, in the order of its texts."""

    vectors: tuple[bytes, ...]  # each of unit length, little-endian float32
    dimensions: int  # numbers in each vector
    prompt_tokens: int  # the texts' tokens, all together

    def floats(self, index: int) -> list[float]:
        """Vector `index` as numbers."""
        return vector_floats(self.vectors[index])


class Ticket:
    """A place in the queue; release it (leave the `with` block) when the reply is done."""

    def __init__(self, service: CompletionService) -> None:
        self.request_id = uuid.uuid4().hex
        self._service = service
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._service._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass
class _LoadedChat:
    name: str
    request: LoadRequest
    template: ChosenTemplate
    loaded: Loaded


@dataclass
class _LoadedEmbedding:
    name: str
    request: LoadRequest
    loaded: Loaded
    dimensions: int


def _still_loaded(
    current: _LoadedChat | _LoadedEmbedding | None,
    name: str,
    engine: ChatEngine | EmbeddingEngine,
) -> bool:
    """Whether `current` is model `name`, held by a worker that is alive and loaded."""
    return (
        current is not None
        and current.name == name
        and engine.is_alive()
        and engine.loaded is not None
    )


class CompletionService:
    """The models of the library, served to other programs; thread-safe."""

    def __init__(
        self,
        open_db: Callable[[], Database],
        *,
        engine_factory: Callable[[], ChatEngine] = ChatEngineClient,
        embedding_engine_factory: Callable[[], EmbeddingEngine] = ChatEngineClient,
        image_engine_factory: Callable[[], ImageEngine] | None = None,
        hardware: HardwareProfile | None = None,
        load_settings: LoadSettings | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_tokens_cap: int = 4096,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._open_db = open_db
        self._engine_factory = engine_factory
        self._embedding_engine_factory = embedding_engine_factory
        self._image_engine_factory = image_engine_factory
        self._engine: ChatEngine | None = None
        self._embedding_engine: EmbeddingEngine | None = None
        self._image_engine: ImageEngine | None = None
        self._hardware = hardware
        self.load_settings = load_settings
        self.max_queue = max_queue
        self.max_tokens_cap = max_tokens_cap
        self._model: _LoadedChat | None = None
        self._embedding: _LoadedEmbedding | None = None
        self._lock = threading.Lock()  # admissions and cancels
        self._idle = threading.Condition(self._lock)
        self._engine_lock = threading.Lock()  # one generation (or load) at a time
        self._embedding_lock = threading.Lock()  # one embedding request (or load) at a time
        self._image_lock = threading.Lock()
        self._admitted: set[str] = set()
        self._running: str | None = None
        self._embedding_running: str | None = None
        self._cancelled: set[str] = set()
        #: Called with (request id, finish reason, completion tokens) after each reply
        #: (tests and the GUI's status; never with text).
        self.on_finished: Callable[[str, str, int], None] | None = None

    # --- the queue ----------------------------------------------------------------------

    def admit(self) -> Ticket:
        """A place in the queue, or QueueFullError at once."""
        with self._lock:
            if len(self._admitted) >= self.max_queue:
                raise QueueFullError(len(self._admitted))
            ticket = Ticket(self)
            self._admitted.add(ticket.request_id)
            return ticket

    @property
    def queued(self) -> int:
        """Requests admitted and not yet finished."""
        return len(self._admitted)

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            self._admitted.discard(ticket.request_id)
            self._cancelled.discard(ticket.request_id)
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is admitted; False if some still are after `timeout_s`."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._admitted, timeout_s)

    def cancel(self, request_id: str) -> None:
        """Stop request `request_id`: the engine ends its generation, or it never starts."""
        with self._lock:
            if request_id not in self._admitted:
                return
            self._cancelled.add(request_id)
            running = self._running == request_id
            embedding = self._embedding_running == request_id
            image = self._image_running
        if running and self._engine is not None:
            self._engine.cancel(request_id)
        if embedding and self._embedding_engine is not None:
            self._embedding_engine.cancel(request_id)
        if image is not None and image[0] == request_id and self._image_engine is not None:
            self._image_engine.cancel(image[1])

    def cancel_all(self) -> None:
        """Cancel every admitted request (the server is stopping)."""
        with self._lock:
            admitted = list(self._admitted)
        for rid in admitted:
            self.cancel(rid)

    # --- models -------------------------------------------------------------------------

    def models(self) -> list[ServedModel]:
        """Every model of the library (chat, embedding and image), by name, as OpenAI's
        GET /v1/models lists every model whatever it does."""
        db = self._open_db()
        try:
            return [_served(m) for m in list_models(db)]
        finally:
            db.close()

    def find(self, name: str, kind: ModelKind = ModelKind.CHAT) -> ServedModel:
        """The library model `name` if it can serve `kind`; ModelNotFoundError, NotServableError."""
        model = self._library_model(name)
        if model.kind is not kind:
            raise _not_servable(name, model.kind, kind)
        return _served(model)

    def _library_model(self, name: str) -> LibraryModel:
        db = self._open_db()
        try:
            model = find_model(db, library_name(name))
        finally:
            db.close()
        if model is None:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist in Hearth's library.",
                "GET /v1/models lists the models you can use.",
            )
        return model

    @property
    def loaded_model(self) -> str | None:
        return self._model.name if self._model else None

    def loaded_models(self) -> list[str]:
        """The library names this service holds loaded: its chat, embedding and image models."""
        names = [self._model.name] if self._model else []
        names += [self._embedding.name] if self._embedding else []
        return names + ([self._image_model] if self._image_model else [])

    def close(self) -> None:
        """Unload every model: their workers end and their memory goes back."""
        with self._engine_lock:
            if self._engine is not None:
                self._engine.unload()
            self._model = None
        with self._embedding_lock:
            if self._embedding_engine is not None:
                self._embedding_engine.unload()
            self._embedding = None
        with self._image_lock:
            if self._image_engine is not None:
                self._image_engine.unload()
            self._image_model = None

    def preload(
        self, name: str, on_progress: Callable[[LoadProgress], None] | None = None
    ) -> Loaded:
        """Load the model `name` now (`hearth serve --model`), not at its first request: a
        chat model, or an embedding model (loaded beside the chat model)."""
        if self._library_model(name).kind is ModelKind.EMBEDDING:
            served = self.find(name, ModelKind.EMBEDDING)
            with self._embedding_lock:
                embedding = self._ensure_embedding_loaded(served.id, on_progress)
                return embedding.loaded
        served = self.find(name)
        with self._engine_lock:
            self._ensure_loaded(served.id, on_progress)
            assert self._model is not None
            return self._model.loaded

    def _ensure_loaded(
        self, name: str, on_progress: Callable[[LoadProgress], None] | None = None
    ) -> None:
        """Load `name` (planned for this machine) unless it is the loaded model; with the lock."""
        engine = self._engine
        if engine is None:
            engine = self._engine = self._engine_factory()
        current = self._model
        if _still_loaded(current, name, engine):
            return
        path = self._model_path(name, ModelKind.CHAT)
        plan = plan_load(self._hardware_profile(), read_gguf_facts(path), self.load_settings)
        if plan.verdict.value == "won't fit":
            raise NotServableError(
                f"{name} needs about {plan.estimate.total / 1024**3:.1f} GiB, more than this "
                "machine has.",
                "Pick a smaller model or quantization.",
            )
        template = choose_template(read_gguf_header(path).metadata)
        request = LoadRequest.from_plan(str(path), plan)
        if current is not None and current.request != request:
            engine.unload()  # memory goes back before the next model comes in
            self._model = None
        loaded = engine.load(request, on_progress=on_progress)
        self._model = _LoadedChat(name, request, template, loaded)

    def _ensure_embedding_loaded(
        self, name: str, on_progress: Callable[[LoadProgress], None] | None = None
    ) -> _LoadedEmbedding:
        """Load embedding model `name` unless it is the loaded one; with the embedding lock."""
        engine = self._embedding_engine
        if engine is None:
            engine = self._embedding_engine = self._embedding_engine_factory()
        current = self._embedding
        if current is not None and _still_loaded(current, name, engine):
            return current
        path = self._model_path(name, ModelKind.EMBEDDING)
        facts = read_gguf_facts(path)
        if facts.pooling is None:
            raise NotServableError(f"{name} is no longer an embedding model: its file changed.")
        plan = plan_embedding_load(self._hardware_profile(), facts, self.load_settings)
        if plan.verdict.value == "won't fit":
            raise NotServableError(
                f"{name} needs about {plan.estimate.total / 1024**3:.1f} GiB, more than this "
                "machine has.",
                "Pick a smaller embedding model or quantization.",
            )
        pooling = cast(Pooling, facts.pooling)
        request = LoadRequest.for_embeddings(str(path), plan, pooling)
        if current is not None and current.request != request:
            engine.unload()
            self._embedding = None
        loaded = engine.load(request, on_progress=on_progress)
        self._embedding = _LoadedEmbedding(name, request, loaded, facts.embedding_length)
        return self._embedding

    def _model_path(self, name: str, kind: ModelKind) -> Path:
        """The file of library model `name` of `kind`, or ModelNotFoundError."""
        db = self._open_db()
        try:
            model = find_model(db, name)
        finally:
            db.close()
        if model is None or model.kind is not kind:
            raise ModelNotFoundError(f"The model '{name}' is no longer in the library.")
        if not model.path.exists():
            raise ModelNotFoundError(
                f"The library lists '{name}' at {model.path}, but the file is gone.",
                "Reconnect the drive it was on, or import the model again.",
            )
        return model.path

    def _hardware_profile(self) -> HardwareProfile:
        if self._hardware is None:
            from app.hardware.detect import this_machine

            self._hardware = this_machine()
        return self._hardware

    # --- completions --------------------------------------------------------------------

    def chat(
        self,
        ticket: Ticket,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        gen: Generation,
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = "auto",
    ) -> Iterator[CompletionEvent]:
        """Answer `messages` (OpenAI's shape) with model `model`: pieces, then Finished.

        `tool_choice` is "auto", "none", "required" or a tool's name. When a tool must be
        called, the reply is sampled through a grammar, so it always parses.
        """
        name = self.find(model).id
        offered = () if tool_choice == "none" else tuple(tools)
        if tool_choice not in (None, "auto", "none", "required") and tool_choice not in {
            t.name for t in tools
        }:
            raise BadRequestError(f"tool_choice names '{tool_choice}', which is not in tools.")
        forced: tuple[ToolSpec, ...] = ()
        if tool_choice == "required":
            forced = offered
        elif tool_choice not in (None, "auto", "none"):
            forced = tuple(t for t in offered if t.name == tool_choice)
        with self._engine_lock:
            if self._is_cancelled(ticket):
                yield _cancelled()
                return
            self._ensure_loaded(name)
            assert self._model is not None
            template = self._model.template
            prompt = _render(template, messages, offered)
            schema = _tool_call_schema(forced) if forced else gen.json_schema
            stops = tuple(dict.fromkeys(template.stop_strings + gen.stop))
            splitter = ReasoningSplitter(starts_in_reasoning=prompt.rstrip().endswith(THINK_OPEN))
            if forced:
                splitter = ReasoningSplitter()  # a grammar-bound reply has no <think> part
            yield from self._generate(
                ticket, prompt, gen, stops, schema, splitter, offered, forced=bool(forced)
            )

    def complete(
        self, ticket: Ticket, model: str, prompt: str, gen: Generation
    ) -> Iterator[CompletionEvent]:
        """Continue raw `prompt` (no chat template): the legacy /v1/completions."""
        name = self.find(model).id
        with self._engine_lock:
            if self._is_cancelled(ticket):
                yield _cancelled()
                return
            self._ensure_loaded(name)
            splitter = ReasoningSplitter()
            splitter.seen_answer_text = True  # raw text: a "<think>" is just text
            yield from self._generate(ticket, prompt, gen, gen.stop, gen.json_schema, splitter, ())

    def _is_cancelled(self, ticket: Ticket) -> bool:
        with self._lock:
            return ticket.request_id in self._cancelled

    def _generate(
        self,
        ticket: Ticket,
        prompt: str,
        gen: Generation,
        stops: tuple[str, ...],
        schema: Mapping[str, Any] | None,
        splitter: ReasoningSplitter,
        tools: Sequence[ToolSpec],
        *,
        forced: bool = False,
    ) -> Iterator[CompletionEvent]:
        engine, model = self._engine, self._model
        assert engine is not None and model is not None
        rid = ticket.request_id
        n_ctx = model.loaded.n_ctx
        prompt_tokens = engine.count_tokens(prompt)
        if prompt_tokens >= n_ctx:
            raise PromptTooLongError(
                f"The messages are {prompt_tokens:,} tokens long, but {model.name} is loaded "
                f"with a context of {n_ctx:,} tokens (prompt and reply together)."
            )
        room = n_ctx - prompt_tokens
        max_tokens = min(gen.max_tokens or room, room, self.max_tokens_cap)
        request = GenerateRequest(
            request_id=rid,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            top_k=gen.top_k,
            min_p=gen.min_p,
            repeat_penalty=gen.repeat_penalty,
            stop=stops,
            seed=gen.seed if gen.seed is not None else (0 if gen.temperature <= 0 else None),
            json_schema=json.dumps(schema) if schema is not None else None,
        )
        reason: FinishReason = "stop"
        completion_tokens = 0
        with self._lock:
            self._running = rid
            cancelled_already = rid in self._cancelled
        try:
            if cancelled_already:
                engine.cancel(rid)
            # Text that may be a tool call is held back until the reply ends: a client must
            # not see a call's JSON as the answer.
            hold = bool(tools)
            for event in engine.generate(request):
                if isinstance(event, TokenEvent):
                    answer, reasoning = splitter.feed(event.text)
                    if (answer and not hold) or reasoning:
                        yield Piece(answer if not hold else "", reasoning)
                elif isinstance(event, Metrics):
                    prompt_tokens = event.prompt_tokens
                    completion_tokens = event.generated_tokens
                elif isinstance(event, Done) and event.reason in ("length", "cancelled"):
                    reason = "length" if event.reason == "length" else "cancelled"
        except ContextOverflowError as exc:
            raise PromptTooLongError(exc.cause) from exc
        finally:
            with self._lock:
                self._running = None
        tail_answer, tail_reasoning = splitter.finish()
        calls: tuple[ToolCall, ...] = ()
        if tools and reason != "cancelled":
            calls = parse_tool_calls(splitter.answer, tools)
        content = splitter.answer
        if calls:
            reason = "tool_calls"
            content = ""
        elif hold and content:
            tail_answer = content  # the held-back answer was not a call after all
        if tail_answer or tail_reasoning:
            yield Piece(tail_answer if not calls else "", tail_reasoning)
        if self.on_finished is not None:
            self.on_finished(rid, reason, completion_tokens)
        yield Finished(
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            content=content,
            reasoning=splitter.reasoning,
            tool_calls=calls,
        )

    # --- embeddings ---------------------------------------------------------------------

    def embed(
        self,
        ticket: Ticket,
        model: str,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
    ) -> Embedded | None:
        """One unit-length vector per text, made by embedding model `model` (loaded first
        if need be); None when the request was cancelled.

        `dimensions`, when given, must be the model's own: Hearth does not shorten vectors.
        Raises InputTooLongError for a text longer than the model reads at once,
        BadRequestError, NotServableError, ModelNotFoundError and the engine's errors.
        """
        name = self.find(model, ModelKind.EMBEDDING).id
        if not texts:
            raise BadRequestError("input is empty: send at least one text.", param="input")
        with self._embedding_lock:
            if self._is_cancelled(ticket):
                return None
            loaded = self._ensure_embedding_loaded(name)
            engine = self._embedding_engine
            assert engine is not None
            if dimensions is not None and dimensions != loaded.dimensions:
                raise BadRequestError(
                    f"{name} makes vectors of {loaded.dimensions} dimensions, and Hearth does "
                    f"not shorten them to {dimensions}.",
                    f"Leave dimensions out, or send {loaded.dimensions}.",
                    param="dimensions",
                )
            rid = ticket.request_id
            with self._lock:
                self._embedding_running = rid
                cancelled_already = rid in self._cancelled
            result: EmbeddingsEvent | None = None
            try:
                if cancelled_already:
                    engine.cancel(rid)
                for event in engine.embed(EmbedRequest(rid, tuple(texts))):
                    if isinstance(event, EmbeddingsEvent):
                        result = event
            except ContextOverflowError as exc:
                raise InputTooLongError(exc.cause) from exc
            finally:
                with self._lock:
                    self._embedding_running = None
        if result is None:
            return None
        width = len(result.vectors[0]) // 4 if result.vectors else loaded.dimensions
        return Embedded(result.vectors, width, sum(result.token_counts))

    # --- images -------------------------------------------------------------------------

    def images(
        self,
        ticket: Ticket,
        model: str | None,
        prompt: str,
        *,
        n: int,
        size: tuple[int, int] | None,
    ) -> list[bytes]:
        """PNG bytes of `n` images of `prompt`; not saved to the gallery."""
        from app.sessions.image import ImageSession, ImageSettings

        if model is not None:
            self.find(model, ModelKind.IMAGE)
        with self._image_lock:
            if self._is_cancelled(ticket):
                return []
            db = self._open_db()
            try:
                if self._image_engine is None and self._image_engine_factory is not None:
                    self._image_engine = self._image_engine_factory()
                session = ImageSession(db, client=self._image_engine, hardware=self._hardware)
                self._image_engine = session.client
                width, height = size if size else (None, None)
                settings = ImageSettings(
                    prompt=prompt, width=width, height=height, n_images=n, preview_every=0
                )
                job = session.prepare(model, settings)
            finally:
                db.close()
            engine = self._image_engine
            self._image_model = job.model  # loaded by the generate below, kept until close
            pngs: list[bytes] = []
            with self._lock:
                self._image_running = (ticket.request_id, job.request.request_id)
            try:
                for event in engine.generate(job.request, load=job.load):
                    if isinstance(event, ImageResult):
                        pngs.append(event.png)
                    elif isinstance(event, ImageDone):
                        break
            finally:
                with self._lock:
                    self._image_running = None
            return pngs

    _image_running: tuple[str, str] | None = None
    _image_model: str | None = None


def _served(model: LibraryModel) -> ServedModel:
    try:
        created = int(datetime.fromisoformat(model.added_at).timestamp())
    except ValueError:
        created = 0
    return ServedModel(model.name, model.kind, created, model.context_length)


def _not_servable(name: str, kind: ModelKind, wanted: ModelKind) -> NotServableError:
    """Why model `name` of `kind` cannot do `wanted`'s work, and what to pick instead."""
    if kind is ModelKind.EMBEDDING:
        return NotServableError(
            f"'{name}' is an embedding model: it turns text into vectors for "
            f"POST /v1/embeddings and cannot make {_WORK[wanted]}.",
            f"Pick {_article(wanted)} {wanted} model from GET /v1/models.",
        )
    if wanted is ModelKind.EMBEDDING:
        return NotServableError(
            f"'{name}' is {_article(kind)} {kind} model, not an embedding model, so it cannot "
            "make embeddings.",
            "Name an embedding model (a GGUF such as nomic-embed-text, bge or all-MiniLM, "
            "added with `hearth models import`); GET /v1/models lists the models.",
        )
    return NotServableError(
        f"'{name}' is {_article(kind)} {kind} model, not {_article(wanted)} {wanted} model."
    )


_WORK = {ModelKind.CHAT: "replies", ModelKind.IMAGE: "images", ModelKind.EMBEDDING: "vectors"}


def _article(kind: ModelKind) -> str:
    return "an" if kind.value[0] in "aeiou" else "a"


def _cancelled() -> Finished:
    return Finished("cancelled", 0, 0, "", "")


# --- prompts --------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """OpenAI's content: a string, or a list of parts of which the text ones count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, Mapping):
                raise BadRequestError(
                    f"Message parts of type '{part.get('type')}' are not supported; this "
                    "model reads text only."
                )
        return "\n".join(parts)
    raise BadRequestError("A message's content must be a string or a list of text parts.")


def _takes_tools(template: ChosenTemplate) -> bool:
    """Whether the template itself renders `tools` (Qwen, Llama 3.1, Hermes, ...)."""
    return re.search(r"\btools\b", template.template) is not None


def _plain_messages(
    messages: Sequence[Mapping[str, Any]], template_takes_tools: bool
) -> list[dict[str, Any]]:
    """Messages the way the template wants them: text content, tool turns spelled out."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = str(m.get("role", ""))
        text = _text_of(m.get("content"))
        if role == "developer":
            role = "system"
        if template_takes_tools:
            msg: dict[str, Any] = {"role": role, "content": text}
            if m.get("tool_calls"):
                msg["tool_calls"] = [_template_call(c) for c in m["tool_calls"]]
            if m.get("tool_call_id"):
                msg["tool_call_id"] = m["tool_call_id"]
            if m.get("name"):
                msg["name"] = m["name"]
            out.append(msg)
            continue
        if role == "assistant" and m.get("tool_calls"):
            calls = [_template_call(c)["function"] for c in m["tool_calls"]]
            text = (text + "\n" if text else "") + json.dumps(
                calls[0] if len(calls) == 1 else calls
            )
        elif role == "tool":
            role, text = "user", f"The tool answered: {text}"
        out.append({"role": role, "content": text})
    # Templates with strict alternation (Gemma) refuse two user turns in a row.
    merged: list[dict[str, Any]] = []
    for msg in out:
        if (
            merged
            and msg["role"] == merged[-1]["role"]
            and msg["role"] in ("user", "system")
            and not template_takes_tools
        ):
            merged[-1]["content"] += "\n\n" + msg["content"]
        else:
            merged.append(msg)
    return merged


def _template_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", "{}")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        parsed = arguments
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": function.get("name"), "arguments": parsed},
    }


def _tool_instructions(tools: Sequence[ToolSpec]) -> str:
    listing = json.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    )
    return (
        "You can call these tools:\n"
        f"{listing}\n"
        "To call one, answer with only a JSON object of the form "
        '{"name": "<tool name>", "arguments": {<its arguments>}} and nothing else. '
        "Otherwise answer normally."
    )


def _render(
    template: ChosenTemplate, messages: Sequence[Mapping[str, Any]], tools: Sequence[ToolSpec]
) -> str:
    if not messages:
        raise BadRequestError("messages is empty: send at least one message.")
    native_tools = bool(tools) and _takes_tools(template)
    prepared = _plain_messages(messages, native_tools)
    if tools and not native_tools:
        note = _tool_instructions(tools)
        if prepared and prepared[0]["role"] == "system":
            prepared[0]["content"] = f"{prepared[0]['content']}\n\n{note}"
        else:
            prepared.insert(0, {"role": "system", "content": note})
    try:
        if native_tools:
            openai_tools = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in tools
            ]
            return render_chat(
                template.template,
                prepared,
                add_generation_prompt=True,
                eos_token=template.eos_token or FAMILY_EOS_TEXT[template.family],
                extra={"tools": openai_tools},
            )
        return template.render(prepared, add_generation_prompt=True)
    except ChatTemplateError as exc:
        raise BadRequestError(
            f"The model's chat template refused these messages: {exc.cause}",
            "Check the order of the roles (most templates want user and assistant turns "
            "to alternate).",
        ) from exc


# --- tool calls ----------------------------------------------------------------------------


def _tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """A schema matching exactly one call of one of `tools`."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": dict(t.parameters) or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_tool_calls(text: str, tools: Sequence[ToolSpec]) -> tuple[ToolCall, ...]:
    """The tool calls in a reply: `<tool_call>{...}</tool_call>` blocks, or a reply that is
    only a JSON call (fenced or not). Calls of tools not offered are ignored.

    >>> tools = [ToolSpec("get_weather")]
    >>> [c.arguments for c in parse_tool_calls('{"name": "get_weather", "arguments": {}}', tools)]
    ['{}']
    """
    names = {t.name for t in tools}
    candidates = _TAGGED.findall(text)
    if not candidates:
        stripped = text.strip()
        fenced = _FENCED.match(stripped)
        candidates = [fenced.group(1) if fenced else stripped]
    calls: list[ToolCall] = []
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict) or item.get("name") not in names:
                continue
            arguments = item.get("arguments", item.get("parameters", {}))
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    continue
            calls.append(
                ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(item["name"]), json.dumps(arguments))
            )
    return tuple(calls)
