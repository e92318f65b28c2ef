"""The base of Hearth's errors: one class per cause, each with a sentence saying what to do."""

from __future__ import annotations


class HearthError(Exception):
    """An error a person can act on: `cause` says what happened, `remedy` what to do.

    >>> str(HearthError("The model file is truncated.", "Download it again."))
    'The model file is truncated. Download it again.'
    """

    default_remedy = "See `hearth doctor` for details about this machine."

    def __init__(self, cause: str, remedy: str | None = None) -> None:
        self.cause = cause
        self.remedy = remedy if remedy is not None else self.default_remedy
        super().__init__(f"{cause} {self.remedy}".strip())
