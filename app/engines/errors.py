"""The errors every engine raises, local worker or remote server alike."""

from __future__ import annotations

from app.errors import HearthError


class EngineError(HearthError):
    """An engine could not do what was asked."""

    default_remedy = "Try again; if it keeps failing, run `hearth doctor` and reload the model."


class EngineLostError(EngineError):
    """The engine stopped in the middle of a request: a worker died, a server went away.

    Sessions keep the partial answer and mark it interrupted; the next request may succeed.
    """


class LoadCancelledError(EngineError):
    default_remedy = "Load the model again when you are ready."


class NotLoadedError(EngineError):
    default_remedy = "Load a model first."
