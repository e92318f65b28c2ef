"""One chat turn end to end: save the question, fit the context, stream the answer durably.

This is the core the CLI and the GUI share. It never imports llama_cpp: the model runs
behind a `ChatEngine` (by default the llama.cpp worker's `ChatEngineClient`; for a
`PROVIDER/MODEL` id of an added provider, a `RemoteChatEngine`, which the server's own
template and Hearth's history fitting serve the same way).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from app.engines.base import ChatEngine
from app.engines.chat_llama.client import ChatEngineClient
from app.engines.chat_llama.protocol import (
    Done,
    GenerateRequest,
    Loaded,
    LoadProgress,
    LoadRequest,
    Metrics,
)
from app.engines.chat_remote.client import RemoteChatEngine
from app.engines.chat_remote.factory import remote_engine_for
from app.engines.chat_remote.template import SERVER_TEMPLATE, ServerTemplate
from app.engines.errors import EngineLostError, NotLoadedError
from app.errors import HearthError
from app.hardware.profile import HardwareProfile
from app.models.gguf import check_gguf_header, read_gguf_facts
from app.models.gguf_header import read_gguf_header
from app.models.library import resolve_model_path
from app.planner import LoadPlan, LoadSettings, plan_load
from app.prompts.choice import ChosenTemplate, choose_template
from app.prompts.reasoning import OPEN as THINK_OPEN
from app.prompts.reasoning import ReasoningSplitter
from app.prompts.sandbox import ChatTemplateError
from app.sessions.base import Session
from app.store import MessageState
from app.store import conversations as convs
from app.store.library import mark_model_used

#: The growing answer reaches SQLite at least this often (DESIGN.md: nothing lost).
FLUSH_INTERVAL_S = 0.5


class EmptyMessageError(HearthError):
    default_remedy = "Type something to send."


class MessageTooLongError(HearthError):
    default_remedy = (
        "Shorten the message, or load the model with a longer context (--ctx), if it fits."
    )


class ModelWontFitError(HearthError):
    default_remedy = "Pick a smaller model or quantization, or a shorter context (--ctx)."


class NotAChatModelError(HearthError):
    """The model turns text into vectors (an embedding model); it cannot write replies."""

    default_remedy = (
        "Pick a chat model (`hearth models list` shows each model's kind); other programs "
        "can use this one through `hearth serve`, at POST /v1/embeddings."
    )


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults suit chat with small instruct models."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 1024


@dataclass
class Reply:
    """What one turn produced; `state` says how it ended."""

    message_id: str
    content: str = ""
    reasoning: str = ""
    state: MessageState = MessageState.STREAMING
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    dropped_messages: int = 0


TokenCallback = Callable[[str, str], None]  # (answer piece, reasoning piece)


@dataclass
class _LoadedModel:
    name: str
    path: Path | None  # None: a remote model
    plan: LoadPlan | None  # None: a remote model (the server planned it)
    template: ChosenTemplate | ServerTemplate
    request: LoadRequest
    loaded: Loaded
    provider: str | None = None  # the remote provider's name
    model_id: str | None = None  # the model as the engine knows it (the server's id)


class ChatSession(Session[ChatEngine]):
    """A loaded model plus the conversation store; one turn at a time."""

    def __init__(
        self,
        db: Database,
        *,
        client: ChatEngine | None = None,
        hardware: HardwareProfile | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        super().__init__(db, client=client, hardware=hardware)
        self._local_client = self.client  # back in use when a local model follows a remote one
        self.flush_interval_s = flush_interval_s
        self.model: _LoadedModel | None = None
        self._current_request: str | None = None
        self._stop_requested = False

    def default_client(self) -> ChatEngine:
        return ChatEngineClient()

    # --- models -------------------------------------------------------------------------

    def plan(self, name_or_path: str, settings: LoadSettings | None = None) -> LoadPlan:
        path, _name = resolve_model_path(self.db, name_or_path)
        return plan_load(self.hardware, read_gguf_facts(path), settings)

    def load_model(
        self,
        name_or_path: str,
        *,
        settings: LoadSettings | None = None,
        on_progress: Callable[[LoadProgress], None] | None = None,
        cancel_event: Any = None,
    ) -> Loaded:
        """Plan and load a model (unloading another first); a no-op if it is already loaded.

        `PROVIDER/MODEL`, for a provider added with `hearth remote add`, attaches to that
        server's model instead (`settings.n_ctx` then caps the history Hearth sends).
        """
        remote = remote_engine_for(self.db, name_or_path)
        if remote is not None:
            return self._attach_remote(remote, name_or_path, settings, on_progress, cancel_event)
        if isinstance(self.client, RemoteChatEngine):
            self.unload()
            self.client = self._local_client
        path, name = resolve_model_path(self.db, name_or_path)
        facts = read_gguf_facts(path)
        if facts.is_embedding:
            raise NotAChatModelError(
                f"{name} is an embedding model: it turns text into vectors and cannot chat."
            )
        plan = plan_load(self.hardware, facts, settings)
        if plan.verdict.value == "won't fit":
            raise ModelWontFitError(
                f"{name} needs about {plan.estimate.total / 1024**3:.1f} GiB, more than this "
                "machine has."
            )
        template = choose_template(read_gguf_header(path).metadata)
        request = LoadRequest.from_plan(str(path), plan)
        current = self.model
        if current and current.request == request and self.client.is_alive():
            return current.loaded
        if current is not None:
            self.client.unload()  # memory goes back before the next model comes in
            self.model = None
        loaded = self.client.load(request, on_progress=on_progress, cancel_event=cancel_event)
        self.model = _LoadedModel(name, path, plan, template, request, loaded, model_id=name)
        mark_model_used(self.db, name)
        return loaded

    def _attach_remote(
        self,
        engine: RemoteChatEngine,
        model_id: str,
        settings: LoadSettings | None,
        on_progress: Callable[[LoadProgress], None] | None,
        cancel_event: Any,
    ) -> Loaded:
        current = self.model
        if current and current.name == model_id and self.client.is_alive():
            return current.loaded
        if current is not None:
            self.unload()  # a local model's memory goes back before the remote answers
        self.client = engine
        request = engine.load_request((settings.n_ctx or 0) if settings else 0)
        loaded = engine.load(request, on_progress=on_progress, cancel_event=cancel_event)
        self.model = _LoadedModel(
            model_id,
            None,
            None,
            SERVER_TEMPLATE,
            request,
            loaded,
            provider=engine.provider.name,
            model_id=engine.model,
        )
        return loaded

    def _ensure_worker(self) -> _LoadedModel:
        """The loaded model; after a worker crash, the same model in a fresh worker."""
        model = self.model
        if model is None:
            raise NotLoadedError("No model is loaded.", "Load a model first.")
        if not self.client.is_alive() or self.client.loaded is None:
            if model.path is not None:
                check_gguf_header(model.path)  # deleted or replaced while loaded: say so
            model.loaded = self.client.load(model.request)
        return model

    def unload(self) -> None:
        self.client.unload()
        self.model = None

    # --- turns ----------------------------------------------------------------------------

    def new_conversation(
        self, *, system_prompt: str | None = None, title: str | None = None
    ) -> str:
        model_name = self.model.name if self.model else None
        return convs.create_conversation(
            self.db, model=model_name, system_prompt=system_prompt, title=title
        )

    def send(
        self,
        conversation_id: str,
        text: str,
        sampling: Sampling | None = None,
        on_token: TokenCallback | None = None,
    ) -> Reply:
        """Save the user's message, then answer it (the message is safe before generation)."""
        if not text.strip():
            raise EmptyMessageError("The message is empty.")
        conv = convs.get_conversation(self.db, conversation_id)
        leaf = conv["leaf_id"]
        user_id = convs.add_message(self.db, conv["id"], "user", text, parent_id=leaf)
        if conv["title"] in (None, "", "New chat"):
            convs.rename_conversation(self.db, conv["id"], _title_from(text))
        return self._answer(conv["id"], user_id, sampling or Sampling(), on_token)

    def regenerate(
        self,
        conversation_id: str,
        sampling: Sampling | None = None,
        on_token: TokenCallback | None = None,
    ) -> Reply:
        """A new answer to the last question; the old answer stays as a sibling branch."""
        path = convs.branch(self.db, conversation_id)
        while path and path[-1].role != "user":
            path.pop()
        if not path:
            raise HearthError("There is no question to answer again in this conversation.")
        return self._answer(path[-1].conversation_id, path[-1].id, sampling or Sampling(), on_token)

    def edit(
        self,
        conversation_id: str,
        message_id: str,
        new_text: str,
        sampling: Sampling | None = None,
        on_token: TokenCallback | None = None,
    ) -> Reply:
        """Replace a past question with `new_text` and continue from there.

        The original question and everything after it stay in the database as another
        branch (`siblings`), so an edit never silently loses an answer.
        """
        if not new_text.strip():
            raise EmptyMessageError("The edited message is empty.")
        old = convs.get_message(self.db, message_id)
        if old.role != "user":
            raise HearthError("Only your own messages can be edited.", "Pick a user message.")
        new_id = convs.add_message(
            self.db, old.conversation_id, "user", new_text, parent_id=old.parent_id
        )
        return self._answer(old.conversation_id, new_id, sampling or Sampling(), on_token)

    def stop(self) -> None:
        """Stop the answer being generated (safe from a signal handler or another thread)."""
        self._stop_requested = True
        if self._current_request:
            self.client.cancel(self._current_request)

    # --- internals ------------------------------------------------------------------------

    def _answer(
        self, conversation_id: str, user_id: str, sampling: Sampling, on_token: TokenCallback | None
    ) -> Reply:
        conv = convs.get_conversation(self.db, conversation_id)
        history = convs.branch(self.db, conversation_id, user_id)
        model = self._ensure_worker()
        prompt, dropped = self._fit_prompt(model, conv["system_prompt"], history, sampling)
        assistant_id = convs.add_message(
            self.db,
            conversation_id,
            "assistant",
            "",
            parent_id=user_id,
            state=MessageState.STREAMING,
        )
        reply = Reply(assistant_id, dropped_messages=dropped)
        splitter = ReasoningSplitter(starts_in_reasoning=prompt.rstrip().endswith(THINK_OPEN))
        request_id = uuid.uuid4().hex
        self._current_request = request_id
        self._stop_requested = False
        # Sampling's fields are GenerateRequest's sampling fields, name for name.
        request = GenerateRequest(
            request_id=request_id,
            prompt=prompt,
            stop=model.template.stop_strings,
            **dataclasses.asdict(sampling),
        )
        last_flush = time.monotonic()
        # How long the model reasoned (a window shows "Thought for N s" above the answer).
        think_started: float | None = None
        think_ended: float | None = None
        try:
            for event in self.client.generate(request):
                if self._stop_requested:
                    self.client.cancel(request_id)
                if isinstance(event, Metrics):
                    reply.metrics = dataclasses.asdict(event)
                    reply.metrics.pop("request_id", None)
                elif isinstance(event, Done):
                    reply.state = (
                        MessageState.STOPPED
                        if event.reason == "cancelled"
                        else MessageState.COMPLETE
                    )
                    reply.metrics["finish_reason"] = event.reason
                else:
                    answer, reasoning = splitter.feed(event.text)
                    if reasoning and think_started is None:
                        think_started = time.monotonic()
                    if answer and think_started is not None and think_ended is None:
                        think_ended = time.monotonic()
                    if on_token and (answer or reasoning):
                        on_token(answer, reasoning)
                now = time.monotonic()
                if now - last_flush >= self.flush_interval_s:
                    convs.update_message(
                        self.db,
                        assistant_id,
                        content=splitter.answer,
                        reasoning=splitter.reasoning,
                    )
                    last_flush = now
        except EngineLostError as exc:  # the worker died: keep the partial answer
            reply.state = MessageState.INTERRUPTED
            reply.error = str(exc)
        except HearthError as exc:
            reply.state = MessageState.FAILED
            reply.error = str(exc)
        except BaseException:  # KeyboardInterrupt, a bug: keep what we have, marked honestly
            reply.state = MessageState.INTERRUPTED
            reply.error = "Hearth stopped while answering."
            self._finish(reply, splitter, model, dropped)
            raise
        finally:
            self._current_request = None
        if think_started is not None:
            reply.metrics["reasoning_s"] = (think_ended or time.monotonic()) - think_started
        self._finish(reply, splitter, model, dropped)
        return reply

    def _finish(
        self, reply: Reply, splitter: ReasoningSplitter, model: _LoadedModel, dropped: int
    ) -> None:
        splitter.finish()  # flush a held-back partial tag into answer/reasoning
        reply.content = splitter.answer
        reply.reasoning = splitter.reasoning
        if reply.state == MessageState.STREAMING:
            reply.state = MessageState.INTERRUPTED
        reply.metrics.update(
            {
                "model": model.name,
                "load_note": model.loaded.note,
                "dropped_messages": dropped,
                "backend": reply.metrics.get("backend", model.loaded.backend_used),
            }
        )
        convs.update_message(
            self.db,
            reply.message_id,
            content=reply.content,
            reasoning=reply.reasoning,
            state=reply.state,
            error=reply.error,
            metrics=reply.metrics,
            provider=model.provider,
            model=model.model_id,
        )

    def _fit_prompt(
        self,
        model: _LoadedModel,
        system_prompt: str | None,
        history: list[convs.Message],
        sampling: Sampling,
    ) -> tuple[str, int]:
        """Render the prompt, dropping the oldest turns until it leaves room for an answer.

        The system prompt and the latest message are never dropped; a latest message that
        alone does not fit is an error, not a silent cut.
        """
        n_ctx = model.loaded.n_ctx
        reserve = min(sampling.max_tokens, n_ctx // 4)
        budget = n_ctx - reserve
        turns = [{"role": m.role, "content": m.content} for m in history if m.content]
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        dropped = 0
        while True:
            prompt = self._render(model, system + turns)
            count = self.client.count_tokens(prompt)
            if count <= budget:
                return prompt, dropped
            if len(turns) <= 1:
                break
            # Drop the oldest exchange so the history still starts with a question.
            cut = 2 if len(turns) > 2 and turns[1]["role"] == "assistant" else 1
            turns = turns[cut:]
            dropped += cut
        raise MessageTooLongError(
            f"The message is about {count:,} tokens with the system prompt, but the model's "
            f"context holds {n_ctx:,} with {reserve:,} kept free for the answer."
        )

    @staticmethod
    def _render(model: _LoadedModel, messages: list[dict[str, str]]) -> str:
        try:
            return model.template.render(messages, add_generation_prompt=True)
        except ChatTemplateError:
            raise
        except Exception as exc:  # a template bug must not lose the user's message
            raise ChatTemplateError(f"The chat template failed: {exc}") from exc


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "…"
