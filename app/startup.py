"""Process start-up: the standard streams, the log file, the native-crash trace, early checks."""

from __future__ import annotations

import faulthandler
import importlib.util
import logging
import logging.handlers
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.errors import HearthError

LOG_MAX_BYTES = 2 * 1024 * 1024
LOG_BACKUPS = 3
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def ensure_standard_streams() -> bool:
    """Point a missing sys.stdin, sys.stdout or sys.stderr at the null device.

    A program with no console (pythonw.exe and the workers it spawns, a program started with
    its standard handles closed) has None for them, and then every `sys.stderr.write`,
    `isatty()`, progress bar and faulthandler without a file raises. (Windows' hearthw.exe
    runs none of Hearth: it starts hearth.exe with a hidden console, packaging/hearthw_entry.py.)
    What goes there is lost, as it would be with no console anyway; the log file keeps what
    matters. Call it first thing, before `multiprocessing.freeze_support()` (a spawned
    worker starts there too). Returns whether any stream was missing.
    """
    missing = False
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            # Opened in this order so that, where the descriptors 0-2 are free (a POSIX
            # program started with them closed), each stream gets its own number back and
            # C code writing to 2 cannot land in a file opened later.
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115
            missing = True
    return missing


def log_file(process: str) -> Path:
    """Where the process named `process` ("hearth", "chat-worker", ...) writes its log."""
    # Imported here, not at the top: app.paths needs platformdirs, and check_dependencies()
    # must be able to run (and explain) before any third-party package is imported.
    from app.paths import hearth_paths

    return hearth_paths().log_file(process)


def crash_file(process: str) -> Path:
    """Where a native crash of `process` leaves its faulthandler trace (all threads' stacks)."""
    from app.paths import hearth_paths

    return hearth_paths().crash_file(process)


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """The log file; a record it cannot write (the disk filled up) is dropped quietly.

    logging's default prints a traceback to stderr for each one, in the middle of the
    terminal output where the person is reading the one sentence about the full disk.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        return None


@dataclass
class _ActiveLog:
    """The log this process writes now: its file, its handler, and the crash-trace file."""

    path: Path
    handler: logging.Handler
    crash: IO[str] | None


_active: _ActiveLog | None = None


def setup_logging(process: str, *, level: int = logging.INFO) -> Path:
    """Send this process's log records to a rotating file in the logs folder.

    Also arms faulthandler so a segfault or abort leaves a Python trace in `crash_file()`.
    Prompt and answer text are never logged: modules log ids, sizes and timings only.
    Calling it again with the same logs folder does nothing; when HEARTH_HOME moved the
    folder (tests, a portable drive), the log follows it. Returns the log file's path.
    """
    global _active
    path = log_file(process)
    if _active is not None and _active.path == path:
        return path
    root = logging.getLogger()
    if _active is not None:
        root.removeHandler(_active.handler)
        _active.handler.close()
        if _active.crash is not None:
            _active.crash.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = _QuietFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
        )
    except OSError:
        # A read-only or full disk must not stop the app from starting: log nowhere.
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    crash: IO[str] | None
    try:
        crash = open(crash_file(process), "a", encoding="utf-8")  # noqa: SIM115
        faulthandler.enable(crash, all_threads=True)
    except OSError:
        crash = None
        faulthandler.enable(all_threads=True)
    _active = _ActiveLog(path, handler, crash)
    logging.getLogger("app.startup").info("%s started (pid %d)", process, os.getpid())
    return path


def unexpected_error(exc: BaseException) -> HearthError:
    """A bug, said the one way every face says it: what broke, and the log holding the trace.

    Call it after logging the exception (`log.exception`), so the file it names has it.
    """
    path = _active.path if _active is not None else log_file("hearth")
    return HearthError(
        f"Hearth hit an unexpected error ({type(exc).__name__}: {exc}).",
        f"The details are in {path}; please attach that file to a bug report.",
    )


# --- dependency checks ----------------------------------------------------------------------


class MissingDependencyError(HearthError):
    """A package Hearth needs is not installed, or this Python lacks a feature Hearth uses."""


@dataclass(frozen=True)
class Dependency:
    """A package found by its import name (`module`), installed as `requirement`."""

    module: str
    requirement: str
    needed_for: str


#: What every command needs. Found by name only (importlib.util.find_spec): nothing heavy
#: is imported here, so the check costs milliseconds.
CORE_DEPENDENCIES = (
    Dependency("platformdirs", "platformdirs>=4.2", "finding Hearth's folders"),
    Dependency("sqlite_utils", "sqlite-utils>=4.0", "the database"),
    Dependency("psutil", "psutil>=5.9", "measuring memory and CPU cores"),
    Dependency("rich", "rich>=13.7", "progress bars and tables"),
    Dependency("jinja2", "jinja2>=3.1", "chat templates"),
    Dependency("gguf", "gguf>=0.10", "reading model files"),
    Dependency("huggingface_hub", "huggingface-hub>=0.34", "the model hub"),
)

#: What the window needs on top (the command line runs without Qt).
GUI_DEPENDENCIES = (Dependency("PySide6", "PySide6-Essentials>=6.7", "the window"),)


def check_dependencies(*, gui: bool = False) -> None:
    """Raise MissingDependencyError, one sentence and a remedy, if Hearth cannot run here.

    Checks that the core packages (and PySide6 when `gui`) are installed, without importing
    them, and that this Python's SQLite has JSON and FTS5 (history search). torch and
    llama_cpp are never imported here: the engines load them in their own processes.
    """
    wanted = CORE_DEPENDENCIES + (GUI_DEPENDENCIES if gui else ())
    missing = [dep for dep in wanted if not _installed(dep.module)]
    if missing:
        names = ", ".join(f"{dep.module} (for {dep.needed_for})" for dep in missing)
        requirements = " ".join(f'"{dep.requirement}"' for dep in missing)
        raise MissingDependencyError(
            f"Hearth cannot start: {names} {'is' if len(missing) == 1 else 'are'} not installed.",
            f"Reinstall Hearth's environment with ./scripts/run --rebuild, or run "
            f"`pip install {requirements}` in it.",
        )
    problem = sqlite_problem()
    if problem:
        raise MissingDependencyError(
            f"Hearth cannot start: this Python's SQLite {sqlite3.sqlite_version} {problem}.",
            "Use a Python whose sqlite3 module has JSON1 and FTS5 (python.org and most Linux "
            "distributions' builds do).",
        )


def sqlite_problem() -> str | None:
    """What this Python's SQLite lacks that Hearth uses (JSON1, FTS5), or None."""
    conn = sqlite3.connect(":memory:")
    try:
        try:
            conn.execute("SELECT json_extract('{\"a\": 1}', '$.a')")
        except sqlite3.OperationalError:
            return "has no JSON functions (JSON1)"
        try:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
        except sqlite3.OperationalError:
            return "has no full-text search (FTS5)"
    finally:
        conn.close()
    return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package: as good as missing
        return False
