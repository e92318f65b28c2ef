"""The typed messages between the chat engine client (parent) and its llama.cpp worker.

`CancelRequest`, `UnloadRequest`, `ErrorEvent` and `Done`, and their rules, are those of
every engine (`app.engines.worker.messages`); the requests and events here are the chat
engine's own. Each is a frozen dataclass of plain data, so it pickles across the pipe.

Requests (client → worker) and what the worker answers:

- `LoadRequest` → several `LoadProgress`, then `Loaded` or `ErrorEvent(request_id=None)`.
- `GenerateRequest` → `TokenEvent`s, then `Metrics` and `Done`; or `ErrorEvent`.
- `TokenizeRequest` → `TokensEvent` or `ErrorEvent` (answered even mid-generation).
- `EmbedRequest` (a model loaded for embeddings) → `EmbeddingsEvent`, then `Done`
  ("complete", or "cancelled" alone); or `ErrorEvent` (`context_overflow` when an input is
  longer than the loaded context).
- `CancelRequest` → the generation with that id ends with `Done(reason="cancelled")`; sent
  during a load (any id, by convention `LOAD_REQUEST_ID`) it aborts the load, which then
  ends with `ErrorEvent(kind="load_cancelled")`.
- `UnloadRequest` → no answer: the worker frees the model and its process exits.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass, replace
from typing import Literal

from app.engines.worker.messages import (
    LOAD_REQUEST_ID,
    CancelRequest,
    Done,
    DoneReason,
    ErrorEvent,
    ErrorKind,
    LoadedEvent,
    LoadProgressEvent,
    RequestEvent,
    UnloadRequest,
)
from app.planner import LoadPlan

__all__ = [
    "KV_TYPES",
    "LOAD_REQUEST_ID",
    "CancelRequest",
    "Done",
    "DoneReason",
    "EmbedEvent",
    "EmbedRequest",
    "EmbeddingsEvent",
    "ErrorEvent",
    "ErrorKind",
    "Event",
    "GenerateRequest",
    "LoadProgress",
    "LoadRequest",
    "Loaded",
    "Metrics",
    "Pooling",
    "ReplyEvent",
    "Request",
    "TokenEvent",
    "TokenizeRequest",
    "TokensEvent",
    "UnloadRequest",
    "vector_floats",
]

#: KV cache element types a LoadRequest may ask for (llama.cpp's names).
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")

#: How an embedding model pools its token vectors into one (llama.cpp's pooling types).
Pooling = Literal["mean", "cls", "last"]


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    """Load a GGUF model (replacing any loaded one) with these llama.cpp settings.

    With `embedding_pooling` the model is loaded to embed text (`EmbedRequest`), not to
    generate it: its context is the longest input, and `n_batch` must hold all of it.
    """

    model_path: str
    n_ctx: int
    n_gpu_layers: int  # 0 = CPU only; block_count + 1 (or more) = every layer
    n_threads: int
    n_batch: int = 512
    #: Tokens per step within one call (llama.cpp's n_ubatch); None: all of n_batch.
    n_ubatch: int | None = None
    kv_type: str = "f16"
    flash_attn: bool = False
    use_mmap: bool = True
    chat_format: str | None = None
    #: An embedding model's pooling ("mean", "cls", "last"); None: a chat model.
    embedding_pooling: Pooling | None = None

    @classmethod
    def from_plan(
        cls, model_path: str, plan: LoadPlan, *, chat_format: str | None = None
    ) -> LoadRequest:
        """The request that carries out a planner's `LoadPlan`."""
        return cls(
            model_path=model_path,
            n_ctx=plan.n_ctx,
            n_gpu_layers=plan.gpu_layers,
            n_threads=plan.threads,
            n_batch=plan.n_batch,
            n_ubatch=plan.n_ubatch,
            kv_type=plan.kv_type,
            flash_attn=plan.flash_attn,
            use_mmap=plan.use_mmap,
            chat_format=chat_format,
        )

    @classmethod
    def for_embeddings(cls, model_path: str, plan: LoadPlan, pooling: Pooling) -> LoadRequest:
        """The request that loads an embedding model as planned (`plan_embedding_load`):
        one batch holds its whole context, so any input that fits is encoded at once."""
        request = cls.from_plan(model_path, plan)
        return replace(request, n_batch=plan.n_ctx, n_ubatch=plan.n_ctx, embedding_pooling=pooling)


@dataclass(frozen=True)
class GenerateRequest:
    """Continue `prompt`, text already rendered by the chat template (special tokens and all).

    temperature 0 means greedy decoding; seed None means a fresh random seed.
    """

    request_id: str
    prompt: str
    max_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: A JSON Schema (as JSON text) the reply must match: llama.cpp samples through the
    #: grammar made from it, so the reply always parses. None: free text.
    json_schema: str | None = None


@dataclass(frozen=True)
class TokenizeRequest:
    """Count the tokens of `text`, tokenized the way a prompt is (special tokens parsed)."""

    request_id: str
    text: str


@dataclass(frozen=True)
class EmbedRequest:
    """Turn each of `texts` into one vector with the model loaded for embeddings.

    Each text is tokenized as plain text (special-token names are just text) with the
    model's own start and end tokens; one longer than the loaded context is refused
    (`context_overflow`), never cut short.
    """

    request_id: str
    texts: tuple[str, ...]


Request = (
    LoadRequest | GenerateRequest | TokenizeRequest | EmbedRequest | CancelRequest | UnloadRequest
)


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProgress(LoadProgressEvent):
    """llama.cpp's own load progress: fraction of tensor bytes loaded, never decreasing."""

    fraction: float
    elapsed_s: float


@dataclass(frozen=True)
class Loaded(LoadedEvent):
    """The model is ready. `note` says why it runs other than asked (e.g. GPU → CPU)."""

    load_s: float
    n_ctx: int
    backend_used: str  # "cuda" | "metal" | "vulkan" | ... | "cpu"
    gpu_layers_used: int
    note: str | None = None


@dataclass(frozen=True)
class TokenEvent(RequestEvent):
    """A piece of generated text (whole UTF-8 characters; a token may yield "")."""

    text: str


@dataclass(frozen=True)
class TokensEvent(RequestEvent):
    """The answer to a TokenizeRequest."""

    count: int


@dataclass(frozen=True)
class Metrics(RequestEvent):
    """Measured numbers for one generation, sent just before its `Done`.

    prompt_tps counts only the prompt tokens evaluated this time: `cached_tokens` of the
    prompt were reused from the previous turn's KV cache and cost nothing.
    """

    ttft_s: float
    prompt_tokens: int
    prompt_tps: float
    generated_tokens: int
    decode_tps: float
    n_ctx: int
    context_used: int
    backend: str
    gpu_layers: int
    cached_tokens: int = 0
    #: llama.cpp's CPU threads at the end, and the fewest used on the way: fewer than
    #: planned while other programs kept cores busy (app.engines.chat_llama.cpu_share).
    threads: int = 0
    fewest_threads: int = 0


@dataclass(frozen=True)
class EmbeddingsEvent(RequestEvent):
    """The answer to an EmbedRequest: one vector per text, in order, each of unit length
    (L2), as little-endian float32 bytes (OpenAI's base64 encoding is exactly these bytes);
    and how many tokens each text was."""

    vectors: tuple[bytes, ...]
    token_counts: tuple[int, ...]

    def floats(self, index: int) -> list[float]:
        """Vector `index` as numbers."""
        return vector_floats(self.vectors[index])


def vector_floats(vector: bytes) -> list[float]:
    """The numbers of a vector sent as little-endian float32 bytes."""
    values = array.array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


#: What a generation streams.
ReplyEvent = TokenEvent | Metrics | Done

#: What an embedding request streams.
EmbedEvent = EmbeddingsEvent | Done

Event = (
    LoadProgress | Loaded | TokenEvent | TokensEvent | EmbeddingsEvent | Metrics | ErrorEvent | Done
)
