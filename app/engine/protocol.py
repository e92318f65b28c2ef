"""The typed messages between the chat engine client (parent) and its worker process.

The image engine speaks the same family (`app.engine.image_protocol`) and shares
`CancelRequest`, `UnloadRequest`, `ErrorEvent` and `Done` from here.

Every message is a frozen dataclass of plain data (str, int, float, bool, None, tuples),
so it pickles across a `multiprocessing` Connection and means the same on both sides.

Requests (client → worker) and what the worker answers:

- `LoadRequest` → several `LoadProgress`, then `Loaded` or `ErrorEvent(request_id=None)`.
- `GenerateRequest` → `TokenEvent`s, then `Metrics` and `Done`; or `ErrorEvent`.
- `TokenizeRequest` → `TokensEvent` or `ErrorEvent` (answered even mid-generation).
- `CancelRequest` → the generation with that id ends with `Done(reason="cancelled")`; sent
  during a load (any id, by convention `LOAD_REQUEST_ID`) it aborts the load, which then
  ends with `ErrorEvent(kind="load_cancelled")`.
- `UnloadRequest` → no answer: the worker frees the model and its process exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.hardware.planner import LoadPlan

#: The request id a `CancelRequest` carries to abort a load (loads have no id of their own).
LOAD_REQUEST_ID = "load"

#: Why a generation ended: an end-of-turn token or stop string, the token or context limit,
#: every requested image made (image engine), or a `CancelRequest`.
DoneReason = Literal["stop", "length", "complete", "cancelled"]

#: What went wrong, for `ErrorEvent.kind`.
ErrorKind = Literal[
    "load_failed",  # the file could not be loaded (not GGUF, corrupt, unsupported, no memory)
    "load_cancelled",  # a CancelRequest arrived during the load
    "not_loaded",  # a generate/tokenize request arrived with no model loaded
    "context_overflow",  # the prompt does not fit the loaded context
    "generate_failed",  # llama.cpp failed while evaluating or sampling
    "bad_request",  # a message the worker does not understand
    "internal",  # a bug in the worker: the message says where
]

#: KV cache element types a LoadRequest may ask for (llama.cpp's names).
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")


# --- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    """Load a GGUF chat model (replacing any loaded one) with these llama.cpp settings."""

    model_path: str
    n_ctx: int
    n_gpu_layers: int  # 0 = CPU only; block_count + 1 (or more) = every layer
    n_threads: int
    n_batch: int = 512
    kv_type: str = "f16"
    flash_attn: bool = False
    use_mmap: bool = True
    chat_format: str | None = None

    @classmethod
    def from_plan(
        cls, model_path: str, plan: LoadPlan, *, n_batch: int = 512, chat_format: str | None = None
    ) -> LoadRequest:
        """The request that carries out a planner's `LoadPlan`."""
        return cls(
            model_path=model_path,
            n_ctx=plan.n_ctx,
            n_gpu_layers=plan.gpu_layers,
            n_threads=plan.threads,
            n_batch=n_batch,
            kv_type=plan.kv_type,
            flash_attn=plan.flash_attn,
            use_mmap=plan.use_mmap,
            chat_format=chat_format,
        )


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
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenizeRequest:
    """Count the tokens of `text`, tokenized the way a prompt is (special tokens parsed)."""

    request_id: str
    text: str


@dataclass(frozen=True)
class CancelRequest:
    """Stop generation `request_id` (stale ids are ignored), or abort a load in progress."""

    request_id: str


@dataclass(frozen=True)
class UnloadRequest:
    """Free the model and end the worker process, so the memory returns to the system."""


Request = LoadRequest | GenerateRequest | TokenizeRequest | CancelRequest | UnloadRequest


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProgress:
    """llama.cpp's own load progress: fraction of tensor bytes loaded, never decreasing."""

    fraction: float
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        """Seconds left if loading continues at the pace so far; None before any progress."""
        if self.fraction <= 0:
            return None
        return self.elapsed_s * (1 - self.fraction) / self.fraction


@dataclass(frozen=True)
class Loaded:
    """The model is ready. `note` says why it runs other than asked (e.g. GPU → CPU)."""

    load_s: float
    n_ctx: int
    backend_used: str  # "cuda" | "metal" | "vulkan" | ... | "cpu"
    gpu_layers_used: int
    note: str | None = None


@dataclass(frozen=True)
class TokenEvent:
    """A piece of generated text (whole UTF-8 characters; a token may yield "")."""

    request_id: str
    text: str


@dataclass(frozen=True)
class TokensEvent:
    """The answer to a TokenizeRequest."""

    request_id: str
    count: int


@dataclass(frozen=True)
class Metrics:
    """Measured numbers for one generation, sent just before its `Done`.

    prompt_tps counts only the prompt tokens evaluated this time: `cached_tokens` of the
    prompt were reused from the previous turn's KV cache and cost nothing.
    """

    request_id: str
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


@dataclass(frozen=True)
class ErrorEvent:
    """A request failed; the worker is still alive. request_id None: the load failed."""

    request_id: str | None
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class Done:
    """The last event of a generation."""

    request_id: str
    reason: DoneReason


Event = LoadProgress | Loaded | TokenEvent | TokensEvent | Metrics | ErrorEvent | Done
