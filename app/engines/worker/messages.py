"""The messages every engine worker speaks: cancel, unload, load progress, error, done.

Each engine's protocol (`app.engines.chat_llama.protocol`,
`app.engines.image_diffusers.protocol`) adds its own requests and events to these. Every
message is a frozen dataclass of plain data (str, int, float, bool, None, tuples, bytes),
so it pickles across a `multiprocessing` Connection and means the same on both sides.

The rules they carry, the same for every engine:

- `CancelRequest(id)` ends the generation with that id with `Done(id, "cancelled")`;
  stale ids are ignored, and an id still waiting in the worker's queue is answered with
  that `Done` when its turn comes. `CancelRequest(LOAD_REQUEST_ID)` aborts a load, which
  then ends with `ErrorEvent(None, "load_cancelled", ...)`.
- `UnloadRequest` has no answer: the worker frees the model and its process exits.
- `ErrorEvent` reports a failed request and leaves the worker alive; `request_id` None
  means the load failed.
- Events of a load (`LoadProgressEvent`, `LoadedEvent`) carry no request id: the client
  routes them to whoever waits on the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The request id a `CancelRequest` carries to abort a load (loads have no id of their own).
LOAD_REQUEST_ID = "load"

#: Why a generation ended: an end-of-turn token or stop string, the token or context limit,
#: every requested image made (image engine), or a `CancelRequest`.
DoneReason = Literal["stop", "length", "complete", "cancelled"]

#: What went wrong, for `ErrorEvent.kind`.
ErrorKind = Literal[
    "load_failed",  # the model could not be loaded (bad file, unsupported, no memory)
    "load_cancelled",  # a CancelRequest arrived during the load
    "not_loaded",  # a request that needs a model arrived with none loaded
    "context_overflow",  # the prompt does not fit the loaded context (chat)
    "generate_failed",  # the library failed while generating
    "bad_request",  # a message the worker does not understand, or a request it refuses
    "internal",  # a bug in the worker: the message says where
]


@dataclass(frozen=True)
class CancelRequest:
    """Stop generation `request_id` (stale ids are ignored), or abort a load in progress."""

    request_id: str


@dataclass(frozen=True)
class UnloadRequest:
    """Free the model and end the worker process, so the memory returns to the system."""


@dataclass(frozen=True)
class RequestEvent:
    """The base of the events of one request: the client hands them to whoever waits on it."""

    request_id: str


@dataclass(frozen=True)
class ErrorEvent:
    """A request failed; the worker is still alive. request_id None: the load failed."""

    request_id: str | None
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class Done(RequestEvent):
    """The last event of a generation."""

    reason: DoneReason


class LoadProgressEvent:
    """What every engine's load progress event has (each engine's dataclass adds detail).

    `fraction` (0..1, never decreasing) and `elapsed_s` are fields of the subclass.
    """

    fraction: float
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        """Seconds left if loading continues at the pace so far; None before any progress."""
        if self.fraction <= 0:
            return None
        return self.elapsed_s * (1 - self.fraction) / self.fraction


class LoadedEvent:
    """Marks each engine's "the model is ready" event: the last event of a load."""

    load_s: float
    note: str | None
