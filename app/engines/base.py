"""The engine protocols: what a chat or image session needs from an engine, local or remote.

`app.sessions` types its engine against these, never against a worker client, so an engine
without a worker process (an OpenAI-compatible server) fits by having these methods. The
messages are the chat and image protocols' (`app.engines.chat_llama.protocol`,
`app.engines.image_diffusers.protocol`): plain frozen dataclasses any engine can build.
Errors are `app.engines.errors`' (a lost engine raises an `EngineLostError`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from app.engines.chat_llama import protocol as chat
from app.engines.image_diffusers import protocol as image

Request = TypeVar("Request", contravariant=True)
Ready = TypeVar("Ready", covariant=True)
Progress = TypeVar("Progress", covariant=True)
Event = TypeVar("Event")
OnProgress = Callable[[Event], None] | None
Cancel = threading.Event | None


class Loads(Protocol[Request, Ready, Progress]):
    """Loading a model and giving it back; every method is safe from any thread."""

    @property
    def loaded(self) -> Ready | None:
        """What the engine reported for the loaded model, or None."""
        ...

    def load(
        self, req: Request, on_progress: OnProgress[Progress] = None, cancel_event: Cancel = None
    ) -> Ready:
        """Load (or attach to) a model, reporting progress; setting `cancel_event` aborts it."""
        ...

    def cancel(self, request_id: str) -> None:
        """End generation `request_id` soon with Done("cancelled"); safe from a signal handler."""
        ...

    def unload(self) -> None:
        """Free the model (a local engine's memory really returns)."""
        ...


class ChatEngine(Loads[chat.LoadRequest, chat.Loaded, chat.LoadProgress], Protocol):
    """Loads one chat model and streams replies."""

    def is_alive(self) -> bool:
        """Whether the engine is there to answer (its process runs, its server answers)."""
        ...

    def generate(self, req: chat.GenerateRequest) -> Iterator[chat.ReplyEvent]:
        """Stream a reply: TokenEvents, then Metrics, then Done (always last)."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for the loaded model."""
        ...


class EmbeddingEngine(Loads[chat.LoadRequest, chat.Loaded, chat.LoadProgress], Protocol):
    """Loads one embedding model (a GGUF loaded for embeddings) and turns texts into vectors."""

    def is_alive(self) -> bool:
        """Whether the engine is there to answer."""
        ...

    def embed(self, req: chat.EmbedRequest) -> Iterator[chat.EmbedEvent]:
        """Stream the vectors: one EmbeddingsEvent, then Done (always last)."""
        ...


class ImageEngine(
    Loads[image.ImageLoadRequest, image.ImageLoaded, image.ImageLoadProgress], Protocol
):
    """Loads one image pipeline (component by component) and streams its generations."""

    def generate(
        self, req: image.ImageGenerateRequest, *, load: image.ImageLoadRequest | None = None
    ) -> Iterator[image.ImageEvent]:
        """Stream one request's events (with `load`: loading it first if needed); Done last."""
        ...
