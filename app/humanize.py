"""Numbers for people: sizes, durations, rates, counts and times, formatted one way everywhere."""

from __future__ import annotations

import math
from datetime import datetime

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

_UNITS = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def format_size(n: float | None, *, digits: int | None = None) -> str:
    """A byte count in the largest unit that keeps it at least 1: `1.04 GiB`, `241 MiB`.

    By default GiB and TiB get two decimals and smaller units none (the precision people read
    on a download); `digits` fixes the number of decimals for every unit. None gives `?`.

    >>> format_size(1_116_000_000)
    '1.04 GiB'
    >>> format_size(3 * MiB, digits=1)
    '3.0 MiB'
    """
    if n is None:
        return "?"
    if n < 0:
        return "-" + format_size(-n, digits=digits)
    for unit, size in _UNITS:
        if n >= size:
            places = digits if digits is not None else (2 if size >= GiB else 0)
            return f"{n / size:.{places}f} {unit}"
    return f"{int(n)} B"


def format_gib(n: float | None, *, digits: int = 1) -> str:
    """A byte count always in GiB (memory tables line up this way): `5.4 GiB`; None gives `?`."""
    if n is None:
        return "?"
    return f"{n / GiB:.{digits}f} GiB"


def format_duration(seconds: float | None) -> str:
    """A duration the way a progress line shows it: `0.4 s`, `12 s`, `3 min 05 s`, `1 h 02 min`.

    None, NaN and infinity (an ETA not known yet) give `?`.
    """
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "?"
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_rate(bytes_per_second: float | None) -> str:
    """A transfer rate: `12.3 MiB/s`; None (not measured yet) gives `?`."""
    if bytes_per_second is None:
        return "?"
    return format_size(bytes_per_second, digits=1) + "/s"


def format_parameters(n: int | None) -> str:
    """A model's parameter count: `1.54 B`, `270 M`, `12 K`; none (or 0) gives `?`.

    >>> format_parameters(1_543_714_304), format_parameters(268_098_176)
    ('1.54 B', '268 M')
    """
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    return f"{n / 1e6:.0f} M" if n >= 1e6 else f"{n / 1e3:.0f} K"


def format_local_time(stamp: str | None) -> str:
    """A stored ISO timestamp in local time to the minute: `2025-03-01 14:05`; none gives
    `never` (a model not used yet), text that is not a timestamp comes back as it is.

    >>> format_local_time(None)
    'never'
    """
    if not stamp:
        return "never"
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp
