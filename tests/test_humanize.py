"""Sizes, durations, rates, counts and times read one way in the CLI, the GUI and the doctor."""

from __future__ import annotations

import math

import pytest

from app.humanize import (
    GiB,
    KiB,
    MiB,
    TiB,
    format_duration,
    format_gib,
    format_local_time,
    format_parameters,
    format_rate,
    format_size,
)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (KiB, "1 KiB"),
        (241 * MiB + 5, "241 MiB"),
        (1_116_000_000, "1.04 GiB"),
        (GiB, "1.00 GiB"),
        (3 * TiB // 2, "1.50 TiB"),
        (-2 * MiB, "-2 MiB"),
        (None, "?"),
    ],
)
def test_format_size_picks_the_largest_unit_that_keeps_the_number_above_one(
    n: int | None, text: str
) -> None:
    assert format_size(n) == text


def test_format_size_digits_apply_to_every_unit() -> None:
    assert format_size(3 * MiB, digits=1) == "3.0 MiB"
    assert format_size(5 * GiB, digits=0) == "5 GiB"
    assert format_size(1536, digits=2) == "1.50 KiB"


def test_format_gib_keeps_memory_tables_in_one_unit() -> None:
    # The planner's reasons and the doctor report show memory this way (tests read them).
    assert format_gib(int(5.44 * GiB)) == "5.4 GiB"
    assert format_gib(300 * MiB) == "0.3 GiB"
    assert format_gib(int(1.234 * GiB), digits=2) == "1.23 GiB"
    assert format_gib(None) == "?"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.42, "0.4 s"),
        (-3, "0.0 s"),
        (12.4, "12 s"),
        (185, "3 min 05 s"),
        (3720, "1 h 02 min"),
        (None, "?"),
        (math.nan, "?"),
        (math.inf, "?"),
    ],
)
def test_format_duration_reads_like_a_progress_line(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rate_is_a_size_per_second() -> None:
    assert format_rate(12.34 * MiB) == "12.3 MiB/s"
    assert format_rate(512) == "512 B/s"
    assert format_rate(None) == "?"


@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "?"), (0, "?"), (12_345, "12 K"), (268_098_176, "268 M"), (1_543_714_304, "1.54 B")],
)
def test_format_parameters_reads_like_a_model_card(n: int | None, text: str) -> None:
    assert format_parameters(n) == text


def test_format_local_time_is_local_to_the_minute_and_never_for_none() -> None:
    from datetime import UTC, datetime

    stamp = datetime(2025, 3, 1, 14, 5, 59, tzinfo=UTC)
    assert format_local_time(stamp.isoformat()) == stamp.astimezone().strftime("%Y-%m-%d %H:%M")
    assert format_local_time(None) == format_local_time("") == "never"
    assert format_local_time("yesterday") == "yesterday"  # not a stamp: shown as it is
