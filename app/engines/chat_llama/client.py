"""The chat engine client: runs the llama.cpp chat worker process and speaks its protocol.

Used by the CLI and the GUI in the parent process, which never imports `llama_cpp` nor
the worker module (`app.engines.chat_llama.worker`): it starts in a fresh process.
Starting, crashes, cancels and unloading follow the rules of every engine worker
(`app.engines.worker.client.WorkerClient`): `count_tokens` answers while a reply is being
generated, `cancel` may be called from any thread or a signal handler, and a worker that
dies is reported as `WorkerCrashedError`; the next `load` starts a fresh worker.

    client = ChatEngineClient()
    client.load(LoadRequest.from_plan(path, plan), on_progress=show)
    for event in client.generate(GenerateRequest(request_id="r1", prompt=text)):
        ...  # TokenEvent..., Metrics, Done
    client.unload()  # the process ends, its memory goes back to the system

An embedding model loads the same way (`LoadRequest.for_embeddings`) and answers `embed`:

    for event in client.embed(EmbedRequest("e1", ("a cat", "a dog"))):
        ...  # EmbeddingsEvent (one vector per text), Done
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from app.engines.chat_llama.protocol import (
    EmbedEvent,
    EmbedRequest,
    GenerateRequest,
    Loaded,
    LoadProgress,
    LoadRequest,
    ReplyEvent,
    TokenizeRequest,
    TokensEvent,
)
from app.engines.errors import EngineError
from app.engines.worker.client import WorkerClient, WorkerSpec


class ModelLoadError(EngineError):
    default_remedy = (
        "Check that the file is a complete GGUF chat model (download it again if it may be "
        "cut short or damaged); if memory is short, choose a smaller quantization, a "
        "shorter context or fewer GPU layers."
    )


class ContextOverflowError(EngineError):
    default_remedy = (
        "Start a new chat, shorten the message, or load the model with a larger context."
    )


CHAT_WORKER = WorkerSpec(
    kind="chat",
    log_name="chat-worker",
    library="llama.cpp",
    module="app.engines.chat_llama.worker",
    errors={"load_failed": ModelLoadError, "context_overflow": ContextOverflowError},
)


class ChatEngineClient(WorkerClient[LoadRequest, Loaded, LoadProgress]):
    """Runs one chat worker process on demand; thread-safe."""

    def __init__(self) -> None:
        super().__init__(CHAT_WORKER)

    def generate(self, req: GenerateRequest) -> Iterator[ReplyEvent]:
        """Stream a reply: TokenEvents, then Metrics, then Done (always last).

        The request is sent when iteration starts. `cancel(req.request_id)` from any thread
        ends it with Done(reason="cancelled"); leaving the loop early cancels it too.
        Raises NotLoadedError, ContextOverflowError, WorkerCrashedError, EngineError.
        """
        events = self.stream(
            req, req.request_id, unloaded="The model was unloaded while it was answering."
        )
        return cast(Iterator[ReplyEvent], events)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for the loaded model (special tokens parsed, with BOS)."""
        event = self.ask(lambda rid: TokenizeRequest(rid, text), "The model was unloaded.")
        assert isinstance(event, TokensEvent)
        return event.count

    def embed(self, req: EmbedRequest) -> Iterator[EmbedEvent]:
        """Stream the vectors of `req.texts` (a model loaded for embeddings): one
        EmbeddingsEvent, then Done (always last; Done("cancelled") alone when cancelled).

        Raises NotLoadedError, ContextOverflowError (an input longer than the loaded
        context), WorkerCrashedError, EngineError.
        """
        events = self.stream(
            req, req.request_id, unloaded="The model was unloaded while it was embedding."
        )
        return cast(Iterator[EmbedEvent], events)
