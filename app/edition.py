"""Which edition of Hearth this is: "full" (chat and images) or "chat" (no torch inside).

A source checkout is "full" when torch and diffusers are installed. An installer writes its
edition into `app/resources/edition.txt` (packaging/hearth.spec), so the chat-only build
says "not in this edition" for images instead of failing on a missing import.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import resources

from app.errors import HearthError

FULL = "full"
CHAT = "chat"


@cache
def edition() -> str:
    """ "full" or "chat": what the installer wrote, else what this environment can run."""
    try:
        written = resources.files("app.resources").joinpath("edition.txt").read_text().strip()
    except (FileNotFoundError, OSError, ModuleNotFoundError):
        written = ""
    if written in (FULL, CHAT):
        return written
    return FULL if _image_libraries_present() else CHAT


def _image_libraries_present() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "diffusers"))


def images_available() -> bool:
    """True when this edition makes images (torch and diffusers are inside)."""
    return edition() == FULL


class NotInThisEdition(HearthError):
    """Image generation was asked of the chat-only edition."""

    def __init__(self) -> None:
        super().__init__(
            "Image generation is not in this edition of Hearth: the chat-only build has no "
            "torch or diffusers inside.",
            "Install the full edition to make images; your chats and models stay as they are.",
        )
