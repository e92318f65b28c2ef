"""What can go wrong in the store, one class per cause: each says what to do about it."""

from __future__ import annotations

from pathlib import Path

from app.errors import HearthError


class CorruptDatabaseError(HearthError):
    """The file is not a SQLite database, or SQLite's integrity check fails on it."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"The database at {path} is damaged ({reason}).",
            "Hearth left it untouched: move it aside (or restore a backup) and start Hearth again.",
        )


class NewerDatabaseError(HearthError):
    """The database records schema changes this version of Hearth does not know."""

    def __init__(self, path: Path | str, schema: int, known: int) -> None:
        self.path = Path(path)
        self.schema = schema
        self.known = known
        super().__init__(
            f"The database at {path} was written by a newer version of Hearth "
            f"(schema {schema}, this version knows {known}).",
            "Update Hearth, or set HEARTH_HOME to use a different folder.",
        )


class ConversationNotFoundError(HearthError):
    """No saved conversation has the id (or id prefix) that was asked for."""

    default_remedy = "Run `hearth history list` to see the conversations and their ids."


class ImageNotFoundError(HearthError):
    """No image in the gallery has the id (or id prefix) that was asked for."""

    default_remedy = "Run `hearth images list` to see the images and their ids."


class NotAHearthImageError(HearthError):
    """A PNG without the settings Hearth writes into every image it saves."""

    default_remedy = "Only PNG images made by Hearth carry their settings."
