"""Runs chat turns off the UI thread and reports them as Qt signals; queues while loading."""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.errors import HearthError
from app.gui.adapters.session_thread import close_session_thread, end_session
from app.hardware.profile import HardwareProfile
from app.store import Database, open_default_database
from app.store.conversations import (
    create_conversation,
    get_conversation,
    recover_interrupted,
    update_conversation,
)

if TYPE_CHECKING:
    from app.sessions.chat import ChatSession, Reply, Sampling


@dataclass(frozen=True)
class TurnOptions:
    """The side panel's choices sent with a turn; saved with the conversation before it runs.

    `settings` holds only what the person set (`temperature`, `top_p`, `max_tokens`,
    `n_ctx`); anything missing keeps the worker's own sampling (`ChatWorker.sampling`).
    `None` for the system prompt leaves the conversation's as it is.
    """

    system_prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # the model picked: kept as the conversation's model


@dataclass(frozen=True)
class Turn:
    """One queued turn: a new message, an answer again, or an edited question."""

    kind: str  # "send", "regenerate" or "edit"
    conversation_id: str
    text: str = ""
    message_id: str = ""  # the question an edit replaces
    options: TurnOptions | None = None


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
        self.pending: deque[Turn] = deque()
        self.ready = False
        self.sampling: Sampling | None = None  # None: the defaults; a conversation's override it
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

    @Slot(str, int)
    def load(self, model: str, n_ctx: int = 0) -> None:
        """Load `model` (`n_ctx` > 0: with that context size; 0: Settings, else the planner's
        choice), with the backend, GPU layers and threads chosen in Settings, as the CLI does."""
        from app.sessions.preferences import load_settings

        self.ready = False
        self.cancel_load.clear()
        self.busy.emit(True)
        try:
            session = self._session()
            loaded = session.load_model(
                model,
                settings=load_settings(self._database(), n_ctx=n_ctx if n_ctx > 0 else None),
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

    @Slot(str, str, str, object)
    def send(
        self, conversation_id: str, text: str, model: str, options: TurnOptions | None = None
    ) -> None:
        """Queue `text`; an empty id means the page's new chat, created here on first use."""
        if not conversation_id:
            try:
                conversation_id = self._new_chat(model, options)
            except HearthError as exc:
                self.failed.emit(str(exc))
                return
        self._queue(Turn("send", conversation_id, text, options=options))

    @Slot(str, object)
    def regenerate(self, conversation_id: str, options: TurnOptions | None = None) -> None:
        """Queue a new answer to the conversation's last question (the old one stays)."""
        self._queue(Turn("regenerate", conversation_id, options=options))

    @Slot(str, str, str, object)
    def edit(
        self,
        conversation_id: str,
        message_id: str,
        text: str,
        options: TurnOptions | None = None,
    ) -> None:
        """Queue an edited question in place of `message_id`, answered from there."""
        self._queue(Turn("edit", conversation_id, text, message_id, options))

    def _queue(self, turn: Turn) -> None:
        self.pending.append(turn)
        if self.ready:
            self._drain()

    def _new_chat(self, model: str, options: TurnOptions | None = None) -> str:
        if self.new_chat_id is None:
            self.new_chat_id = create_conversation(
                self._database(),
                model=model or None,
                system_prompt=(options.system_prompt or None) if options else None,
                settings=options.settings if options else None,
            )
            self.conversation_started.emit(self.new_chat_id)
        return self.new_chat_id

    def sampling_for(self, conversation_id: str, options: TurnOptions | None) -> Sampling:
        """The worker's sampling with the conversation's own choices on top; the panel's
        choices sent with the turn are saved with the conversation first."""
        from app.sessions.chat import Sampling

        db = self._database()
        conv = get_conversation(db, conversation_id)
        settings = dict(conv["settings"] or {})
        if options is not None:
            settings = dict(options.settings)
            changes: dict[str, Any] = {}
            if settings != (conv["settings"] or {}):
                changes["settings"] = settings
            if (options.system_prompt or None) != (conv["system_prompt"] or None):
                changes["system_prompt"] = options.system_prompt or None
            if options.model and options.model != conv["model"]:
                changes["model"] = options.model
            if changes:
                update_conversation(db, conv["id"], **changes)
        chosen = {k: settings[k] for k in ("temperature", "top_p", "max_tokens") if k in settings}
        return dataclasses.replace(self.sampling or Sampling(), **chosen)

    def _drain(self) -> None:
        while self.ready and self.pending:
            turn = self.pending.popleft()
            self.busy.emit(True)
            try:
                self.reply_done.emit(self._run(turn))
            except HearthError as exc:
                self.failed.emit(str(exc))
            finally:
                self.busy.emit(False)

    def _run(self, turn: Turn) -> Reply:
        session = self._session()
        sampling = self.sampling_for(turn.conversation_id, turn.options)

        def on_token(answer: str, reasoning: str) -> None:
            self.token.emit(answer, reasoning)

        if turn.kind == "regenerate":
            return session.regenerate(turn.conversation_id, sampling, on_token)
        if turn.kind == "edit":
            return session.edit(
                turn.conversation_id, turn.message_id, turn.text, sampling, on_token
            )
        return session.send(turn.conversation_id, turn.text, sampling, on_token)

    @Slot()
    def shutdown(self) -> None:
        """End the engine worker (its memory goes back) and close the database, then the thread."""
        end_session(self)


class ChatRunner(QObject):
    """The chat page's model: forwards requests to the chat thread, which relays signals."""

    request_recover = Signal()
    request_load = Signal(str, int)
    request_send = Signal(str, str, str, object)
    request_regenerate = Signal(str, object)
    request_edit = Signal(str, str, str, object)
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
        self.request_regenerate.connect(self.worker.regenerate)
        self.request_edit.connect(self.worker.edit)
        self.request_new_chat.connect(self.worker.start_new_chat)
        self.request_shutdown.connect(self.worker.shutdown)
        self.worker_thread.start()
        self.request_recover.emit()  # first in the thread's queue: before any turn starts

    def load(self, model: str, n_ctx: int | None = None) -> None:
        """Load `model`, with `n_ctx` tokens of context (None: the planner's choice)."""
        self.request_load.emit(model, n_ctx or 0)

    def send(
        self,
        conversation_id: str | None,
        text: str,
        model: str,
        options: TurnOptions | None = None,
    ) -> None:
        """Queue a message; it is answered as soon as the model is ready.

        With no conversation id the message goes to the page's new chat (created once).
        """
        self.request_send.emit(conversation_id or "", text, model, options)

    def regenerate(self, conversation_id: str, options: TurnOptions | None = None) -> None:
        """Answer the last question again; the earlier answer stays as a sibling."""
        self.request_regenerate.emit(conversation_id, options)

    def edit(
        self,
        conversation_id: str,
        message_id: str,
        text: str,
        options: TurnOptions | None = None,
    ) -> None:
        """Replace a question with `text` (the original stays as a sibling) and answer it."""
        self.request_edit.emit(conversation_id, message_id, text, options)

    def worker_pid(self) -> int | None:
        """The chat worker process's id while one runs (None: none, or a remote model)."""
        session = self.worker.session
        client = getattr(session, "client", None) if session is not None else None
        pid = getattr(client, "pid", None)
        return pid if isinstance(pid, int) else None

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
