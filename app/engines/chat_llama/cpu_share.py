"""How many CPU threads llama.cpp may use now, leaving room for the other programs' work.

llama.cpp's worker threads spin-wait at every barrier of a graph, so one thread that the
OS takes away for another program stalls all the others: on a 2-core machine with both
cores decoding beside one busy program, the starter model's decode fell from 23.8 to
8.0 tok/s, while one thread kept 17.2 (docs/benchmarks.md). Laptops are never idle, so
the chat worker watches how much CPU the *other* programs use (the whole machine's busy
time less its own) and, between tokens and before a prompt, gives llama.cpp one thread
fewer for every core they keep busy, and the threads back when they are gone
(`llama_set_n_threads` takes effect at the next batch).

`HEARTH_FIXED_THREADS=1` turns it off (the benchmarks use it to measure fixed counts).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Set to "1" to keep the planned thread count whatever else runs.
FIXED_THREADS_ENV = "HEARTH_FIXED_THREADS"
#: How often the machine's CPU use is read (seconds), and how long the window is.
SAMPLE_INTERVAL_S = 0.25
#: A core counts as taken once others keep it this busy (half a core, rounded as usual).
ROUNDING = 0.5
#: The threads come back only after this many readings in a row say they may.
RAISE_AFTER = 3


@dataclass(frozen=True)
class CpuReading:
    """Seconds of CPU time so far: the whole machine's busy time and this process's own."""

    wall_s: float
    machine_busy_s: float
    own_s: float


def read_cpu() -> CpuReading:
    """The machine's busy CPU seconds (all cores, steal included) and this process's."""
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)  # every field psutil reports, idle and steal included
    own = psutil.Process().cpu_times()
    return CpuReading(time.monotonic(), total - idle, own.user + own.system)


def others_busy_cores(before: CpuReading, after: CpuReading) -> float:
    """How many cores other programs kept busy between two readings (never below 0)."""
    wall = after.wall_s - before.wall_s
    if wall <= 0:
        return 0.0
    others = (after.machine_busy_s - before.machine_busy_s) - (after.own_s - before.own_s)
    return max(others / wall, 0.0)


def threads_for(planned: int, others: float) -> int:
    """llama.cpp's threads when other programs keep `others` cores busy: one fewer per core
    they take (half a core or more counts as one), never below one, never above the plan."""
    if planned <= 1:
        return 1
    return max(1, min(planned, int(planned - others + ROUNDING)))


class ThreadGovernor:
    """Reads the machine's CPU use on a thread of its own; `update()` applies its advice.

    `apply(n)` sets llama.cpp's thread count; it is called only from `update()`, on the
    thread that runs llama.cpp, so a change never lands in the middle of a batch.
    """

    def __init__(
        self,
        planned: int,
        apply: Callable[[int], None],
        *,
        read: Callable[[], CpuReading] = read_cpu,
        interval_s: float = SAMPLE_INTERVAL_S,
    ) -> None:
        self.planned = max(planned, 1)
        self.current = self.planned
        self.enabled = os.environ.get(FIXED_THREADS_ENV) != "1" and self.planned > 1
        self._apply = apply
        self._read = read
        self._interval_s = interval_s
        self._advice = self.planned
        self._calm_readings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, since: CpuReading | None = None) -> None:
        """Watch from now on; `since`, a reading taken earlier (at the start of the load),
        gives the first advice at once, before the first prompt is evaluated."""
        if since is not None and self.enabled:
            with contextlib.suppress(Exception):  # no figures: keep the plan for now
                self.observe(others_busy_cores(since, self._read()))
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="cpu-share", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def observe(self, others: float) -> None:
        """One reading of the others' busy cores: fewer threads at once, more only once the
        machine has stayed calm for RAISE_AFTER readings (a neighbour that pauses for a
        moment does not make the threads bounce)."""
        want = threads_for(self.planned, others)
        if want < self._advice:
            self._advice, self._calm_readings = want, 0
        elif want > self._advice:
            self._calm_readings += 1
            if self._calm_readings >= RAISE_AFTER:
                self._advice, self._calm_readings = want, 0
        else:
            self._calm_readings = 0

    def update(self) -> int:
        """Apply the latest advice if it changed; the thread count in use."""
        if self.enabled and self._advice != self.current:
            self._apply(self._advice)
            self.current = self._advice
        return self.current

    def _watch(self) -> None:
        try:
            before = self._read()
            while not self._stop.wait(self._interval_s):
                after = self._read()
                self.observe(others_busy_cores(before, after))
                before = after
        except Exception:  # no CPU figures on this system: keep the plan
            self._advice = self.planned
