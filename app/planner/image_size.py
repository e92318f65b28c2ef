"""The one rule for image sizes, shared by every face (CLI, plan, GUI, API) and the worker.

A size is `WIDTHxHEIGHT`: both positive multiples of 8 within the model family's limits.
Leaving it out (None) means the model's native size; 0 is not "default", it is refused.
"""

from __future__ import annotations

import re

from app.errors import HearthError

#: Smallest and largest width/height per model family, in pixels (multiples of 8 between).
SIZE_LIMITS = {"sd15": (64, 2048), "sd2": (64, 2048), "sdxl": (64, 2048)}
DEFAULT_SIZE_LIMITS = (64, 2048)

_SIZE_RE = re.compile(r"^\s*([+-]?\d+)\s*[x×]\s*([+-]?\d+)\s*$", re.IGNORECASE)


class ImageSizeError(HearthError):
    default_remedy = "Leave the size out for the model's own, or pick one like 512x512."


def check_size(width: int, height: int, family: str) -> str | None:
    """Why width x height does not suit this model family (one sentence), or None.

    >>> check_size(100, 100, "sd15")
    'The image size 100x100 is not possible: width and height must be multiples of 8.'
    >>> check_size(0, 64, "sd15")
    'The image size 0x64 is not possible: width and height must be positive multiples of 8.'
    """
    low, high = SIZE_LIMITS.get(family, DEFAULT_SIZE_LIMITS)
    if width <= 0 or height <= 0:
        return (
            f"The image size {width}x{height} is not possible: width and height must be "
            "positive multiples of 8."
        )
    if width % 8 or height % 8:
        return (
            f"The image size {width}x{height} is not possible: width and height must be "
            "multiples of 8."
        )
    if not (low <= width <= high and low <= height <= high):
        return (
            f"The image size {width}x{height} is outside what this model can make: width and "
            f"height must be between {low} and {high} pixels."
        )
    return None


def parse_size(text: str) -> tuple[int, int]:
    """`512x768` (or `512X768`, ` 512 x 768 `) -> (512, 768); any other text is refused.

    Only the form is checked here; `image_size` checks the numbers against the model.

    >>> parse_size(" 64 x 64 ")
    (64, 64)
    >>> parse_size("-64x64")
    (-64, 64)
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise ImageSizeError(f"'{text}' is not an image size.", "Write it as WxH, e.g. 512x512.")
    return int(m[1]), int(m[2])


def image_size(width: int | None, height: int | None, family: str, native: int) -> tuple[int, int]:
    """The size to make: `native` where not given, else the given one if the rule allows it.

    >>> image_size(None, None, "sd15", 512)
    (512, 512)
    >>> image_size(0, 0, "sd15", 512)
    Traceback (most recent call last):
    app.planner.image_size.ImageSizeError: The image size 0x0 is not possible: ...
    """
    w = native if width is None else width
    h = native if height is None else height
    problem = check_size(w, h, family)
    if problem:
        raise ImageSizeError(problem)
    return w, h
