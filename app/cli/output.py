"""How the command line talks to people: progress bars, tables, errors and Ctrl-C, in one place.

Results go to stdout (`--json` output is nothing but the JSON); progress, notes and errors go
to stderr. On a terminal progress is a rich bar redrawn in place; in a pipe or a log it is a
plain line now and then, so logs stay readable.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from enum import Enum
from types import FrameType

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from app.errors import HearthError
from app.humanize import format_duration, format_rate, format_size

#: Away from a terminal, one progress line at most this often (plus the first and the last).
PLAIN_LINE_EVERY_S = 5.0

#: Exit status after Ctrl-C, as shells report a process ended by SIGINT.
EXIT_INTERRUPTED = 130


# --- progress ---------------------------------------------------------------------------------


class Unit(Enum):
    """What a progress count counts."""

    BYTES = "bytes"  # sizes, rate and ETA
    STEPS = "steps"  # step n/N, seconds per step and ETA
    FRACTION = "fraction"  # only a share of the work is known: percent and ETA


def progress_facts(
    unit: Unit, done: float, total: float, *, rate: float | None, eta: float | None
) -> str:
    """The numbers after a progress bar: `41.2%  1.04 GiB/2.50 GiB  12.3 MiB/s  ETA 2 min 01 s`.

    `rate` is units per second (None: not measured yet); `eta` is in seconds.
    """
    percent = 100 * done / total if total else 100.0
    if unit is Unit.BYTES:
        parts = [f"{percent:5.1f}%", f"{format_size(done)}/{format_size(total)}"]
        parts += [format_rate(rate)] if rate else []
    elif unit is Unit.STEPS:
        parts = [f"step {int(done)}/{int(total)}"]
        parts += [f"{1 / rate:.2f} s/step"] if rate else []
    else:
        parts = [f"{percent:5.1f}%"]
    return "  ".join([*parts, f"ETA {format_duration(eta)}"])


class ProgressBar:
    """One operation's progress on stderr: a rich bar on a terminal, plain lines elsewhere.

    `update` fits the `progress(done, total, what)` callbacks of the core. Use it as a context
    manager, or call `close()`:

        with ProgressBar("import") as bar:
            import_model(path, progress=bar.update)
    """

    def __init__(self, description: str, unit: Unit = Unit.BYTES, *, quiet: bool = False) -> None:
        self.description = description
        self.unit = unit
        self.quiet = quiet
        self.terminal = sys.stderr.isatty()
        self._rich: RichProgress | None = None
        self._task: TaskID | None = None
        self._started = 0.0  # when the first update came, and how far it was then
        self._first_done = 0.0
        self._line_at: float | None = None  # when the last plain line was printed
        self._pending: str | None = None  # the latest plain line, if not printed yet
        self._finished: set[tuple[str, float]] = set()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(
        self,
        done: float,
        total: float,
        what: str = "",
        *,
        rate: float | None = None,
        eta: float | None = None,
    ) -> None:
        """Show `done` of `total`. `rate` (units/s) and `eta` (s) default to the pace so far."""
        if self.quiet:
            return
        now = time.monotonic()
        if not self._started:
            self._started, self._first_done = now, done
        elif rate is None and now > self._started:
            rate = (done - self._first_done) / (now - self._started) or None
        if eta is None and rate:
            eta = max(total - done, 0) / rate
        if eta is None and done >= total:
            eta = 0.0
        facts = progress_facts(self.unit, done, total, rate=rate, eta=eta)
        if self.terminal:
            self._draw(done, total, what, facts)
            return
        self._pending = f"{self.description}: {what + ' ' if what else ''}{facts}"
        # Each stage (`what`) that reaches its end is shown at once, and only once.
        stage = (what, total)
        finished = done >= total and stage not in self._finished
        if finished:
            self._finished.add(stage)
        if finished or self._line_at is None or now - self._line_at >= PLAIN_LINE_EVERY_S:
            self._print_pending(now)
        elif done >= total:
            self._pending = None  # already shown as finished: nothing new to say at close

    def note(self, text: str) -> None:
        """Print a line of its own, above the bar when one is drawn."""
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the bar; away from a terminal, print the last state if it was not shown."""
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        if self._pending is not None:
            self._print_pending(time.monotonic())

    def _draw(self, done: float, total: float, what: str, facts: str) -> None:
        description = f"{self.description} {what}".strip()
        if self._rich is None:
            self._rich = RichProgress(
                TextColumn("{task.description}", markup=False),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[facts]}", markup=False),
                console=Console(stderr=True, highlight=False),
            )
            self._rich.start()
            self._task = self._rich.add_task(description, total=total, facts=facts)
        assert self._task is not None
        self._rich.update(
            self._task, completed=done, total=total, description=description, facts=facts
        )

    def _print_pending(self, now: float) -> None:
        print(self._pending, file=sys.stderr, flush=True)
        self._pending = None
        self._line_at = now


# --- tables -----------------------------------------------------------------------------------


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Collection[str] = (),
) -> None:
    """Print rows under headers in aligned columns on stdout; `right` names right-aligned ones.

    On a terminal the headers are bold and the table fits the window; in a pipe every row is
    one line, whatever its length, with no trailing spaces, so scripts can split it.
    """
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    if sys.stdout.isatty():
        Console(highlight=False).print(table)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False).print(table)
    for line in buffer.getvalue().splitlines():
        print(line.rstrip())


# --- errors -----------------------------------------------------------------------------------


def print_error(error: HearthError | str) -> int:
    """Say what went wrong (and what to do) on stderr; the exit status to return: 1."""
    if isinstance(error, HearthError):
        print(f"error: {error.cause}", file=sys.stderr)
        if error.remedy:
            print(f"       {error.remedy}", file=sys.stderr)
    else:
        print(f"error: {error}", file=sys.stderr)
    return 1


# --- questions ------------------------------------------------------------------------------


def confirm(question: str, *, refuse_without_terminal: HearthError | None = None) -> bool:
    """Ask `question` on stdout and read the answer on stdin: True for `y` or `yes`.

    With `refuse_without_terminal`, a stdin that is not a terminal raises it instead (nobody
    is there to answer); without it, a script may pipe its answer in.
    """
    if refuse_without_terminal is not None and not sys.stdin.isatty():
        raise refuse_without_terminal
    print(question, end="", flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print()  # the input ended: finish the question's line
    return answer.strip().lower() in ("y", "yes")


# --- Ctrl-C -----------------------------------------------------------------------------------


class CtrlC:
    """While active, the first Ctrl-C asks the running operation to stop; a second one exits.

    `stop` is called from the signal handler, so it must only set a flag or send a message;
    operations that poll can read `pressed` instead. The second Ctrl-C raises
    KeyboardInterrupt, which main() turns into exit status 130.

        with CtrlC(session.stop) as ctrl_c:
            reply = session.send(...)
    """

    def __init__(self, stop: Callable[[], None] | None = None) -> None:
        self.stop = stop
        self.pressed = False
        self._previous: Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        # Python only lets the main thread set signal handlers.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        if self.stop is not None:
            self.stop()
