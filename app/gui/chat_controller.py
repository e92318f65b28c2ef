"""Runs chat turns off the UI thread and reports them as Qt signals; queues while loading."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.errors import HearthError


class _ChatWorker(QObject):
    """Lives in its own QThread; owns the ChatSession (and so its SQLite connection)."""

    load_progress = Signal(float, object)  # fraction, ETA seconds or None
    loaded = Signal(str, str)  # model name, one-line summary
    token = Signal(str, str)  # answer piece, reasoning piece
    reply_done = Signal(object)  # app.engine.chat.Reply
    failed = Signal(str)  # one sentence of cause + remedy
    busy = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self.session: Any = None
        self.cancel_load = threading.Event()
        self.pending: deque[tuple[str, str]] = deque()  # (conversation id, text)
        self.ready = False
        self.sampling: Any = None  # app.engine.chat.Sampling; None: the defaults

    def _session(self) -> Any:
        if self.session is None:
            from app.engine.chat import ChatSession
            from app.store import open_default_database

            self.session = ChatSession(open_default_database())
        return self.session

    @Slot(str)
    def load(self, model: str) -> None:
        self.ready = False
        self.cancel_load.clear()
        self.busy.emit(True)
        try:
            session = self._session()
            loaded = session.load_model(
                model,
                on_progress=lambda p: self.load_progress.emit(p.fraction, p.eta_s),
                cancel_event=self.cancel_load,
            )
            plan = session.model.plan
            self.ready = True
            self.loaded.emit(
                session.model.name,
                f"{plan.backend.value}, {plan.threads} threads, {plan.n_ctx:,} tokens of "
                f"context, loaded in {loaded.load_s:.1f} s"
                + (f" ({loaded.note})" if loaded.note else ""),
            )
        except HearthError as exc:
            self.failed.emit(str(exc))
        finally:
            self.busy.emit(False)
        self._drain()

    @Slot(str, str)
    def send(self, conversation_id: str, text: str) -> None:
        self.pending.append((conversation_id, text))
        if self.ready:
            self._drain()

    def _drain(self) -> None:
        from app.engine.chat import Sampling

        while self.ready and self.pending:
            conversation_id, text = self.pending.popleft()
            self.busy.emit(True)
            try:
                reply = self._session().send(
                    conversation_id,
                    text,
                    self.sampling or Sampling(),
                    lambda a, r: self.token.emit(a, r),
                )
                self.reply_done.emit(reply)
            except HearthError as exc:
                self.failed.emit(str(exc))
            finally:
                self.busy.emit(False)

    @Slot()
    def shutdown(self) -> None:
        if self.session is not None:
            self.session.unload()


class ChatController(QObject):
    """The chat view's model: forwards requests to the worker thread, relays its signals."""

    request_load = Signal(str)
    request_send = Signal(str, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker_thread = QThread()
        self.worker = _ChatWorker()
        self.worker.moveToThread(self.worker_thread)
        self.request_load.connect(self.worker.load)
        self.request_send.connect(self.worker.send)
        self.worker_thread.start()

    def load(self, model: str) -> None:
        self.request_load.emit(model)

    def send(self, conversation_id: str, text: str) -> None:
        """Queue a message; it is answered as soon as the model is ready."""
        self.request_send.emit(conversation_id, text)

    def stop(self) -> None:
        """Stop the current answer, or cancel a load in progress (safe from the UI thread)."""
        self.worker.cancel_load.set()
        session = self.worker.session
        if session is not None:
            session.stop()

    def close(self) -> None:
        self.stop()
        self.worker.pending.clear()
        self.worker_thread.quit()
        self.worker_thread.wait(15_000)
        # After the thread has stopped: a queued shutdown signal could be dropped by quit().
        self.worker.shutdown()
