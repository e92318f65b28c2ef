"""Runs chat turns off the UI thread and reports them as Qt signals; queues while loading."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.errors import HearthError
from app.gui.adapters.session_thread import close_session_thread, end_session
from app.hardware.profile import HardwareProfile
from app.store import Database, open_default_database
from app.store.conversations import create_conversation, recover_interrupted

if TYPE_CHECKING:
    from app.sessions.chat import ChatSession, Sampling


class ChatWorker(QObject):
    """Lives in the chat QThread; owns the ChatSession and the SQLite connection it uses."""

    load_progress = Signal(float, object)  # fraction, ETA seconds or None
    loaded = Signal(str, str)  # model name, one-line summary
    template_note = Signal(str)  # why the model's own chat template was replaced ("": it wasn't)
    token = Signal(str, str)  # answer piece, reasoning piece
    reply_done = Signal(object)  # app.sessions.chat.Reply
    failed = Signal(str)  # one sentence of cause + remedy
    busy = Signal(bool)
    conversation_started = Signal(str)  # the id of a conversation a send created
    recovered = Signal(int)  # answers left streaming by a crash, now marked interrupted

    def __init__(self, hardware: HardwareProfile | None = None) -> None:
        super().__init__()
        self.hardware = hardware
        self.db: Database | None = None  # opened on the chat thread, closed there at shutdown
        self.session: ChatSession | None = None
        self.cancel_load = threading.Event()
        self.pending: deque[tuple[str, str]] = deque()  # (conversation id, text)
        self.ready = False
        self.sampling: Sampling | None = None  # None: the defaults
        self.new_chat_id: str | None = None  # the conversation sends without an id go to

    def _database(self) -> Database:
        if self.db is None:
            self.db = open_default_database()
        return self.db

    def _session(self) -> ChatSession:
        if self.session is None:
            # Imported on first use: the window opens without loading any engine code.
            from app.sessions.chat import ChatSession

            self.session = ChatSession(self._database(), hardware=self.hardware)
        return self.session

    @Slot()
    def recover(self) -> None:
        """Mark answers a crashed Hearth left streaming as interrupted (before any new turn)."""
        try:
            self.recovered.emit(recover_interrupted(self._database()))
        except HearthError as exc:
            self.failed.emit(str(exc))

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
            assert session.model is not None
            plan = session.model.plan
            self.ready = True
            how = (
                f"{plan.backend.value}, {plan.threads} threads, {plan.n_ctx:,} tokens of "
                f"context, loaded in {loaded.load_s:.1f} s"
                if plan is not None
                else f"{loaded.backend_used}, {loaded.n_ctx:,} tokens of context, "
                f"attached in {loaded.load_s:.1f} s"
            )
            self.loaded.emit(session.model.name, how + (f" ({loaded.note})" if loaded.note else ""))
            self.template_note.emit(session.model.template.replacement_note or "")
        except HearthError as exc:
            self.failed.emit(str(exc))
        finally:
            self.busy.emit(False)
        self._drain()

    @Slot()
    def start_new_chat(self) -> None:
        self.new_chat_id = None

    @Slot(str, str, str)
    def send(self, conversation_id: str, text: str, model: str) -> None:
        """Queue `text`; an empty id means the page's new chat, created here on first use."""
        if not conversation_id:
            try:
                conversation_id = self._new_chat(model)
            except HearthError as exc:
                self.failed.emit(str(exc))
                return
        self.pending.append((conversation_id, text))
        if self.ready:
            self._drain()

    def _new_chat(self, model: str) -> str:
        if self.new_chat_id is None:
            self.new_chat_id = create_conversation(self._database(), model=model or None)
            self.conversation_started.emit(self.new_chat_id)
        return self.new_chat_id

    def _drain(self) -> None:
        from app.sessions.chat import Sampling

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
        """End the engine worker (its memory goes back) and close the database, then the thread."""
        end_session(self)


class ChatRunner(QObject):
    """The chat page's model: forwards requests to the chat thread, which relays signals."""

    request_recover = Signal()
    request_load = Signal(str)
    request_send = Signal(str, str, str)
    request_new_chat = Signal()
    request_shutdown = Signal()

    def __init__(
        self, parent: QObject | None = None, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__(parent)
        self.worker_thread = QThread()
        self.worker = ChatWorker(hardware)
        self.worker.moveToThread(self.worker_thread)
        self.request_recover.connect(self.worker.recover)
        self.request_load.connect(self.worker.load)
        self.request_send.connect(self.worker.send)
        self.request_new_chat.connect(self.worker.start_new_chat)
        self.request_shutdown.connect(self.worker.shutdown)
        self.worker_thread.start()
        self.request_recover.emit()  # first in the thread's queue: before any turn starts

    def load(self, model: str) -> None:
        self.request_load.emit(model)

    def send(self, conversation_id: str | None, text: str, model: str) -> None:
        """Queue a message; it is answered as soon as the model is ready.

        With no conversation id the message goes to the page's new chat (created once).
        """
        self.request_send.emit(conversation_id or "", text, model)

    def new_chat(self) -> None:
        """The next message without an id starts a fresh conversation."""
        self.request_new_chat.emit()

    def stop(self) -> None:
        """Stop the current answer, or cancel a load in progress (safe from the UI thread)."""
        self.worker.cancel_load.set()
        session = self.worker.session
        if session is not None:
            session.stop()

    def close(self) -> None:
        if not self.worker_thread.isRunning():
            return
        self.stop()
        self.worker.pending.clear()
        close_session_thread(self.worker_thread, self.worker, self.request_shutdown)
