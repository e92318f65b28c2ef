"""The parent's side of an engine worker process: start it, read its events, notice its death.

Used by `app.engines.worker.client.WorkerClient`, the base of every engine's client. A
worker is a fresh "spawn" process speaking over one duplex `multiprocessing` pipe. A
reader thread receives every event and puts it in the queue of whoever waits for it,
chosen by a routing key (a request id; `None` for the load). When the pipe closes without
an unload having been asked for, the process has died: every waiting queue then receives
a `Gone` carrying a `WorkerCrashedError` that says why (`describe_exit`) and which log
file to read (`where_to_look`), and the next request starts a fresh worker.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from app.engines.errors import EngineLostError
from app.startup import crash_file, log_file, setup_logging

#: How often a waiting call wakes up to look at its cancel flag.
POLL_S = 0.05

#: The routing key of load events (loads have no request id of their own).
LOAD_KEY = None
Key = str | None


class WorkerCrashedError(EngineLostError):
    """The worker process died; `exitcode` is its exit status (negative: killed by a signal)."""

    default_remedy = (
        "Hearth starts a fresh worker for the next load. If it keeps happening, choose a "
        "smaller model or quantization, a shorter context, or fewer GPU layers."
    )

    def __init__(
        self, cause: str, remedy: str | None = None, *, exitcode: int | None = None
    ) -> None:
        super().__init__(cause, remedy)
        self.exitcode = exitcode


_SIGNAL_HINTS = {
    "SIGKILL": "often the out-of-memory killer",
    "SIGSEGV": "a crash inside {library}",
    "SIGABRT": "{library} stopped itself, often on a failed check or when GPU memory ran out",
    "SIGBUS": "the model file became unreadable while in use, e.g. its drive was removed",
    "SIGILL": "the {library} build uses CPU instructions this processor lacks",
    "SIGFPE": "a crash inside {library}",
    "SIGTERM": "another program asked it to stop",
}
_WINDOWS_CODES = {
    0xC0000005: "an access violation inside {library}",
    0xC00000FD: "a stack overflow inside {library}",
    0xC0000409: "{library} stopped itself, often on a failed check",
    0xC000001D: "the {library} build uses CPU instructions this processor lacks",
}


def describe_exit(
    exitcode: int | None, worker: str = "chat worker", library: str = "llama.cpp"
) -> str:
    """One sentence on why the worker process ended, from its exit status.

    >>> describe_exit(-9, "image worker", "torch")
    'The image worker was killed by signal 9 (SIGKILL — often the out-of-memory killer).'
    """
    if exitcode is None:
        return f"The {worker} stopped answering: its connection closed."
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            return f"The {worker} was killed by signal {number}."
        hint = _SIGNAL_HINTS.get(name)
        detail = f"{name} — {hint.format(library=library)}" if hint else name
        return f"The {worker} was killed by signal {number} ({detail})."
    code = exitcode & 0xFFFFFFFF
    hint = _WINDOWS_CODES.get(code)
    if hint:
        return f"The {worker} crashed with code {code:#x} ({hint.format(library=library)})."
    return f"The {worker} exited unexpectedly with code {exitcode}."


def trace_size(log_name: str) -> int:
    """How long the crash trace file of worker `log_name` is now (0 if there is none)."""
    try:
        return crash_file(log_name).stat().st_size
    except OSError:
        return 0


def where_to_look(log_name: str, trace_size_at_start: int) -> str:
    """The sentence that names the file to read after worker `log_name` died.

    The faulthandler trace (app.startup) if the worker wrote one since it started (a
    segfault, an abort); else its log (a SIGKILL leaves no trace).
    """
    if trace_size(log_name) > trace_size_at_start:
        return f"Its crash trace is in {crash_file(log_name)}."
    return f"Its log is {log_file(log_name)}."


def worker_process_main(module: str, log_name: str, conn: Connection) -> None:
    """The first thing a worker process runs; then `module.worker_main(conn)`.

    The parent names the worker by its module, so it never imports it (nor, through it,
    llama.cpp or torch). Logging and the faulthandler trace (app.startup) are set up
    before the engine's library is imported, so even a crash on import leaves a trace.
    Ctrl+C in a terminal reaches the whole process group; the parent decides what it
    means (usually: cancel the generation), so the worker must not die of it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(log_name)
    importlib.import_module(module).worker_main(conn)


class Gone:
    """Put in every waiting queue when the worker process has ended."""

    def __init__(self, error: WorkerCrashedError | None) -> None:
        self.error = error


class WorkerProcess:
    """One worker process, its pipe, and the thread that reads the pipe.

    `route(event)` names the queue an event goes to; `crash_error(exitcode)` builds the
    error reported when the process dies unasked; `unload_message` is what `stop` sends.
    """

    def __init__(
        self,
        process: BaseProcess,
        conn: Connection,
        *,
        route: Callable[[object], Key],
        crash_error: Callable[[int | None], WorkerCrashedError],
        unload_message: object,
        reader_name: str = "hearth-engine-reader",
    ) -> None:
        self.process = process
        self.conn = conn
        self.route = route
        self.crash_error = crash_error
        self.unload_message = unload_message
        self.send_lock = threading.Lock()
        self.lock = threading.Lock()
        self.queues: dict[Key, queue.SimpleQueue[object]] = {}
        self.dead = False
        self.stopping = False  # an unload was sent: the end is expected
        self.crash: WorkerCrashedError | None = None
        self.crash_reported = False
        self.reader = threading.Thread(target=self._read, name=reader_name, daemon=True)
        self.reader.start()

    @classmethod
    def start(
        cls,
        mp: SpawnContext,
        module: str,
        log_name: str,
        *,
        route: Callable[[object], Key],
        crash_error: Callable[[int | None], WorkerCrashedError],
        unload_message: object,
    ) -> WorkerProcess:
        """Start `module.worker_main(conn)` in a fresh process and begin reading its events."""
        name = f"hearth-{log_name}"
        parent_conn, child_conn = mp.Pipe(duplex=True)
        process = mp.Process(
            target=worker_process_main,
            args=(module, log_name, child_conn),
            name=name,
            daemon=True,
        )
        process.start()
        child_conn.close()  # so that the worker's death reads as EOF here
        return cls(
            process,
            parent_conn,
            route=route,
            crash_error=crash_error,
            unload_message=unload_message,
            reader_name=f"{name}-reader",
        )

    def _read(self) -> None:
        while True:
            try:
                event = self.conn.recv()
            except (EOFError, OSError):
                break
            key = self.route(event)
            with self.lock:
                q = self.queues.get(key)
            if q is not None:
                q.put(event)  # events nobody waits for (an abandoned request) are dropped
        crash = None
        if not self.stopping:
            self.process.join(timeout=5)
            crash = self.crash_error(self.process.exitcode)
        with self.lock:
            self.dead = True
            self.crash = crash
            # A queue may be open under several keys (a generate that waits on its load).
            for q in {id(q): q for q in self.queues.values()}.values():
                q.put(Gone(crash))
                self.crash_reported = crash is not None

    def open(
        self, key: Key, shared: queue.SimpleQueue[object] | None = None
    ) -> queue.SimpleQueue[object]:
        """The queue that receives the events routed to `key` (`shared`: one already open)."""
        q: queue.SimpleQueue[object] = shared if shared is not None else queue.SimpleQueue()
        with self.lock:
            if self.dead and shared is None:
                q.put(Gone(self.crash))
                self.crash_reported = self.crash is not None
            self.queues[key] = q
        return q

    def close(self, key: Key) -> None:
        with self.lock:
            self.queues.pop(key, None)

    def send(self, message: object) -> bool:
        """Send; False if the worker is gone (the reader then tells whoever waits)."""
        with self.send_lock:
            try:
                self.conn.send(message)
                return True
            except (OSError, EOFError, ValueError):
                return False

    def try_send(self, message: object) -> bool:
        """Send only if no other send is under way (safe inside a signal handler)."""
        if not self.send_lock.acquire(blocking=False):
            return False
        try:
            self.conn.send(message)
            return True
        except (OSError, EOFError, ValueError):
            return False
        finally:
            self.send_lock.release()

    def stop(self, timeout: float) -> None:
        """Ask the process to end, then make sure it has; close the pipe."""
        self.stopping = True
        self.send(self.unload_message)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        with contextlib.suppress(OSError):
            self.conn.close()
        self.reader.join(timeout=5)
