"""The chat page: the conversation list, the model picker with load progress, the streaming
transcript with its actions, the input, and the conversation's side panel."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QObject, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.chat_runner import ChatRunner, TurnOptions
from app.gui.adapters.conversations import (
    CONVERSATION_ID_ROLE,
    ChatLists,
    ConversationListModel,
    ConversationSummary,
    ConversationView,
    delete_conversation,
    export_conversation,
    read_chat_lists,
    read_conversation,
    read_presets,
    rename_conversation,
    save_conversation_settings,
    save_presets,
    search_conversations,
    switch_to_sibling,
)
from app.gui.adapters.remote_providers import NewProvider, add_and_test_provider, report_text
from app.gui.adapters.runner import BackgroundRunner
from app.gui.markdown import COPY_SCHEME
from app.gui.pages.chat_list import ConversationList
from app.gui.pages.chat_panel import ChatSettingsPanel
from app.gui.pages.chat_transcript import TranscriptView, answer_numbers, transcript_html
from app.gui.theme import colours, icon
from app.hardware.profile import HardwareProfile
from app.models.starter import STARTER
from app.store import MessageState

if TYPE_CHECKING:
    from app.engines.chat_remote.probe import ConnectionReport
    from app.sessions.chat import Reply

#: The side panel's width when it is opened again after being collapsed.
PANEL_WIDTH = 260


class ChatPage(QWidget):
    """Binds the conversation list, the model picker, the transcript and the side panel to
    the chat runner; every read and write of the store runs on the background runner."""

    lists_shown = Signal(object)  # the ChatLists now on screen
    remote_added = Signal(object)  # the ConnectionReport of a provider just added
    transcript_shown = Signal(str)  # the conversation whose messages were just shown
    search_shown = Signal(str)  # the query whose hits the list now shows
    conversation_changed = Signal(str)  # a rename, delete, export or settings save finished
    exported = Signal(object)  # the Path written
    # A Reply the page has handled (numbers, status, list): the worker's `reply_done` comes
    # from the chat thread, before the page has seen it.
    reply_shown = Signal(object)

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.chat_runner = ChatRunner(self, hardware=hardware)
        self.conversation_id: str | None = None
        self.view: ConversationView | None = None  # the conversation on screen
        self.expanded: set[str] = set()  # answers whose reasoning is unfolded
        self.editing: str | None = None  # the question being edited
        self.note = ""  # a failure shown at the end of the transcript, with Retry
        self._queued = 0  # messages typed before the model was ready
        self._busy = False
        self._streaming: str | None = None  # the chat an answer streams into ("": a new one)
        self._lists: ChatLists | None = None
        self._first_lists = True  # the first list shown reopens the latest chat
        self._reads = 0  # conversation reads asked for; only the newest one's answer shows
        self._adopting: str | None = None  # the chat whose model and settings a read brings

        # --- the conversation list
        self.conversation_list = ConversationListModel()
        self.chat_list = ConversationList(self.conversation_list)
        self.conversations = self.chat_list.view
        self.conversations.selectionModel().currentChanged.connect(self._open_selected)
        self.conversation_list.rename_requested.connect(self.rename_conversation)
        self.chat_list.search_changed.connect(self.search)
        self.chat_list.delete_requested.connect(self.ask_to_delete)
        self.chat_list.export_requested.connect(self.ask_where_to_export)
        new_chat = QPushButton("New chat")
        new_chat.setIcon(icon("chat"))
        new_chat.setToolTip("Start a new conversation (Ctrl+N)")
        new_chat.setShortcut(QKeySequence.StandardKey.New)
        new_chat.clicked.connect(self.new_chat)
        self.new_chat_button = new_chat
        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 4, 0)
        left.addWidget(new_chat)
        left.addWidget(self.chat_list, 1)
        left_box = QWidget()
        left_box.setLayout(left)

        # --- the model picker
        self.model_box = QComboBox()
        self.model_box.setMinimumContentsLength(12)
        self.model_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load_selected_model)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.status = QLabel("Pick a model and press Load. You can type while it loads.")
        self.status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Model:"))
        top.addWidget(self.model_box, 1)
        top.addWidget(self.load_button)
        self.add_remote_button = QPushButton("Add remote…")
        self.add_remote_button.setToolTip("Chat through an OpenAI-compatible server")
        self.add_remote_button.clicked.connect(self.ask_for_remote_provider)
        top.addWidget(self.add_remote_button)
        # Shown when the model's own chat template was replaced by its family's (why: tooltip).
        self.template_badge = QLabel("family template")
        self.template_badge.setFrameShape(QFrame.Shape.StyledPanel)
        self.template_badge.setVisible(False)
        top.addWidget(self.template_badge)
        self.panel_button = QToolButton()
        self.panel_button.setIcon(icon("settings"))
        self.panel_button.setCheckable(True)
        self.panel_button.setChecked(True)
        self.panel_button.setToolTip("Show or hide this conversation's settings")
        self.panel_button.setAccessibleName("Conversation settings")
        self.panel_button.toggled.connect(self.show_panel)
        top.addWidget(self.panel_button)

        # --- the transcript and the input
        self.transcript = TranscriptView()
        self.transcript.anchorClicked.connect(self._on_link)
        self.edit_banner = QLabel("")
        self.edit_banner.setVisible(False)
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Message (Enter sends, Shift+Enter for a new line)")
        self.input.setAccessibleName("Message")
        self.input.setMaximumHeight(90)
        self.input.installEventFilter(self)
        self.send_button = QPushButton("Send")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the answer or the load (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.context_meter = QProgressBar()
        self.context_meter.setRange(0, 1)
        self.context_meter.setValue(0)
        self.context_meter.setFormat("context")
        self.context_meter.setMinimumWidth(170)
        self.context_meter.setMaximumWidth(240)
        self.context_meter.setVisible(False)
        numbers = QHBoxLayout()
        numbers.addWidget(self.metrics, 1)
        numbers.addWidget(self.context_meter)

        right = QVBoxLayout()
        right.setContentsMargins(4, 0, 4, 0)
        right.addLayout(top)
        right.addWidget(self.progress)
        right.addWidget(self.status)
        right.addWidget(self.transcript, 1)
        right.addWidget(self.edit_banner)
        right.addLayout(bottom)
        right.addLayout(numbers)
        centre = QWidget()
        centre.setLayout(right)

        # --- the side panel
        self.panel = ChatSettingsPanel()
        self.panel.changed.connect(self._panel_changed)
        self.panel.preset_saved.connect(self._presets_edited)
        self.panel.preset_deleted.connect(self._presets_edited)

        self.splitter = QSplitter()
        self.splitter.setObjectName("chatSplitter")
        self.splitter.addWidget(left_box)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.panel)
        self.splitter.setCollapsible(0, False)
        self.splitter.setCollapsible(1, False)
        self.splitter.setCollapsible(2, True)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([200, 760, PANEL_WIDTH - 20])
        self.splitter.splitterMoved.connect(self._splitter_moved)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        self.restyle()

        QShortcut(QKeySequence("Ctrl+K"), self).activated.connect(self.chat_list.focus_search)
        QShortcut(QKeySequence("Ctrl+Return"), self).activated.connect(self.send)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self).activated.connect(self.escape)

        worker = self.chat_runner.worker
        worker.load_progress.connect(self._on_progress)
        worker.loaded.connect(self._on_loaded)
        worker.template_note.connect(self._on_template_note)
        worker.token.connect(self._on_token)
        worker.reply_done.connect(self._on_reply)
        worker.failed.connect(self._on_failed)
        worker.busy.connect(self._on_busy)
        worker.conversation_started.connect(self._on_conversation_started)
        worker.recovered.connect(self.refresh)  # the list shows recovered chats as they are now
        self.runner.submit(read_presets).done.connect(self.panel.set_presets)
        self.input.setFocus()

    @property
    def code_blocks(self) -> list[str]:
        """What each code block's Copy link copies, in the transcript on screen."""
        return self.transcript.code_blocks

    # --- lists ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the chat models and conversations (off the UI thread)."""
        self.runner.submit(read_chat_lists).done.connect(self._show_lists)

    def search(self, query: str) -> None:
        """Show the conversations matching `query` ("" shows the recent ones again)."""
        if not query:
            self.refresh()
            return
        job = self.runner.submit(lambda: search_conversations(query))
        job.done.connect(self._show_search)
        job.failed.connect(self.status.setText)

    def _show_search(self, result: tuple[str, tuple[ConversationSummary, ...]]) -> None:
        query, hits = result
        if query != self.chat_list.query():
            return  # the person typed on meanwhile
        self._set_rows(hits, searching=True)
        self.search_shown.emit(query)

    def _show_lists(self, lists: ChatLists) -> None:
        self._lists = lists
        current = self.selected_model()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for name in lists.chat_models:
            self.model_box.addItem(name, name)
        for model_id in lists.remote_models:  # beside the local ones, marked remote
            self.model_box.addItem(f"{model_id} (remote)", model_id)
        # Keep the user's pick; otherwise start on the starter assistant when it is there.
        index = self.model_box.findData(current or STARTER.name)
        if index >= 0:
            self.model_box.setCurrentIndex(index)
        self.model_box.blockSignals(False)
        if not self.chat_list.query():
            self._set_rows(lists.conversations)
        if self._first_lists:
            self._first_lists = False
            self._reopen_latest(lists)
        self.lists_shown.emit(lists)

    def _reopen_latest(self, lists: ChatLists) -> None:
        """On start, show the chat last used, as it was left (unless the person began one)."""
        if not lists.conversations or self.conversation_id or self._streaming is not None:
            return
        latest = lists.conversations[0].id
        self.conversation_id = latest
        # Selected, not made current: a click on it (or on another) still opens it.
        self.conversations.selectionModel().select(
            self.conversation_list.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self._read_conversation(latest, adopt=True)

    def _set_rows(self, rows: tuple[ConversationSummary, ...], *, searching: bool = False) -> None:
        selection = self.conversations.selectionModel()
        selection.blockSignals(True)  # re-selecting the open chat must not reload it
        self.conversation_list.set_conversations(rows, searching=searching)
        row = self.conversation_list.row_of(self.conversation_id)
        if row is not None:
            selection.setCurrentIndex(
                self.conversation_list.index(row),
                QItemSelectionModel.SelectionFlag.ClearAndSelect,
            )
        selection.blockSignals(False)

    # --- models -----------------------------------------------------------------------------

    def selected_model(self) -> str:
        """The model id picked: a library name, or `PROVIDER/MODEL` for a remote one."""
        data = self.model_box.currentData()
        return str(data) if data else self.model_box.currentText()

    def load_selected_model(self) -> None:
        name = self.selected_model()
        if not name:
            self.status.setText("No chat models yet: run `hearth models starter` first.")
            return
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status.setText(f"Loading {name}… (Esc cancels)")
        self.chat_runner.load(name, self.panel.context_size())

    def ask_for_remote_provider(self) -> None:
        from app.gui.pages.remote_dialog import RemoteProviderDialog

        dialog = RemoteProviderDialog(self)
        if dialog.exec() == RemoteProviderDialog.DialogCode.Accepted:
            self.add_remote_provider(dialog.values())

    def add_remote_provider(self, new: NewProvider) -> None:
        """Save, test and list a remote provider (off the UI thread); the checks show below."""
        self.status.setText(f"Adding and testing {new.name}…")
        job = self.runner.submit(lambda: add_and_test_provider(new))
        job.done.connect(self._on_remote_added)
        job.failed.connect(self.status.setText)

    def _on_remote_added(self, report: ConnectionReport) -> None:
        self.status.setText(report_text(report))
        self.refresh()
        self.remote_added.emit(report)

    # --- turns ------------------------------------------------------------------------------

    def new_chat(self) -> None:
        self.conversation_id = None
        self._adopting = None
        self.view = None
        self.note = ""
        self.cancel_edit()
        self.chat_runner.new_chat()
        self.conversations.selectionModel().clearCurrentIndex()
        self.conversations.clearSelection()
        self.transcript.clear()
        self.transcript.code_blocks = []
        self.metrics.setText("")
        self.context_meter.setVisible(False)
        self.panel.show_settings("", {})
        self.panel.show_model(None)
        self.input.setFocus()

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text:
            return
        self.input.clear()
        self.note = ""
        self.panel.flush()
        options = self.options()
        editing, self.editing = self.editing, None
        self.edit_banner.setVisible(False)
        if editing and self.conversation_id and self.view is not None:
            self._show_view(self.view, stop_before=editing)
            self._streaming = self.conversation_id
            self.transcript.begin_answer(text, self.selected_model())
            self._ensure_loading()
            self.chat_runner.edit(self.conversation_id, editing, text, options)
            return
        self._streaming = self.conversation_id or ""
        self.transcript.begin_answer(text, self.selected_model())
        self._ensure_loading()
        # With no conversation yet, the chat thread creates one and reports its id back.
        self.chat_runner.send(self.conversation_id, text, self.selected_model(), options)

    def regenerate(self) -> None:
        """Answer the last question again; the earlier answer stays, one arrow away."""
        if self.conversation_id is None or self.view is None:
            return
        if self._busy:
            self.status.setText("Wait for the answer to finish, or press Esc to stop it.")
            return
        self.note = ""
        last = next((e for e in reversed(self.view.entries) if e.message.role == "user"), None)
        if last is None:
            return
        answer = next(
            (e.message.id for e in self.view.entries if e.message.parent_id == last.message.id),
            None,
        )
        self._show_view(self.view, stop_before=answer)
        self._streaming = self.conversation_id
        self.transcript.begin_answer(None, self.selected_model())
        self._ensure_loading()
        self.chat_runner.regenerate(self.conversation_id, self.options())

    def retry(self) -> None:
        """After a failure: load again if the load failed, otherwise answer again."""
        self.note = ""
        if not self.chat_runner.worker.ready:
            self.load_selected_model()  # the waiting messages are answered once it is ready
            if self.view is not None:
                self._show_view(self.view)
            return
        self.regenerate()

    def start_edit(self, message_id: str) -> None:
        """Put a question back in the input; sending replaces it (the original is kept)."""
        if self.view is None:
            return
        if self._busy:
            self.status.setText("Wait for the answer to finish, or press Esc to stop it.")
            return
        entry = next((e for e in self.view.entries if e.message.id == message_id), None)
        if entry is None or entry.message.role != "user":
            return
        self.editing = message_id
        self.input.setPlainText(entry.message.content)
        self.input.setFocus()
        self.edit_banner.setText(
            "Editing your message: Enter sends it as a new branch, Esc cancels."
        )
        self.edit_banner.setVisible(True)

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.input.clear()
        self.edit_banner.setVisible(False)

    def stop(self) -> None:
        self.chat_runner.stop()

    def escape(self) -> None:
        """Esc: cancel an edit when one is open and nothing runs; otherwise stop."""
        if self.editing is not None and not self._busy:
            self.cancel_edit()
            return
        self.chat_runner.stop()

    def _ensure_loading(self) -> None:
        if not self.chat_runner.worker.ready:
            if not self.progress.isVisible():
                self.load_selected_model()
            self._queued += 1
            self.status.setText(
                "Your message is queued: it is answered as soon as the model is ready."
            )

    def shutdown(self) -> None:
        self.chat_runner.close()

    # --- one conversation -------------------------------------------------------------------

    def _open_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        self._open(str(current.data(CONVERSATION_ID_ROLE)))

    def _open(self, conversation_id: str) -> None:
        if conversation_id != self.conversation_id:
            self.cancel_edit()
            self.note = ""
            self.expanded.clear()
        self.conversation_id = conversation_id
        self._read_conversation(conversation_id, adopt=True)

    def open_conversation(self, conversation_id: str) -> None:
        """Show a conversation (as a click on it in the list does)."""
        row = self.conversation_list.row_of(conversation_id)
        index = self.conversation_list.index(row) if row is not None else None
        if index is not None and index != self.conversations.currentIndex():
            self.conversations.setCurrentIndex(index)
        else:
            # Not listed (a search hides it), or already current, where Qt sends no change:
            # shown all the same, so asking to open a chat always shows it.
            self._open(conversation_id)

    def _read_conversation(self, conversation_id: str, *, adopt: bool = False) -> None:
        self._reads += 1
        serial = self._reads
        if adopt:
            # Kept until a read of it shows: a later plain re-read (the end of an answer in
            # the chat left, a theme change) replaces this read but must still adopt.
            self._adopting = conversation_id
        # Bound methods, not lambdas: Qt drops the connection if the page goes first.
        job = self.runner.submit(lambda: (serial, read_conversation(conversation_id)))
        job.done.connect(self._conversation_arrived)
        job.failed.connect(self.status.setText)

    def _conversation_arrived(self, result: tuple[int, ConversationView]) -> None:
        serial, view = result
        if serial != self._reads:
            return  # a later read (or a branch switch) is on its way: only the newest shows
        if view.id == self._adopting:
            self._adopting = None
            self._adopt_conversation(view)
        else:
            self._conversation_read(view)

    def _adopt_conversation(self, view: ConversationView) -> None:
        """A conversation just opened: its model and settings come with it."""
        if view.id != self.conversation_id:
            return
        self.panel.show_settings(view.system_prompt, view.settings)
        if view.model and not self._busy:
            index = self.model_box.findData(view.model)
            if index >= 0:
                self.model_box.setCurrentIndex(index)
        self._conversation_read(view)

    def _conversation_read(self, view: ConversationView) -> None:
        if view.id != self.conversation_id:
            return  # the person opened another chat meanwhile
        if self._streaming is not None and self._streaming == view.id:
            return  # an answer streams into the transcript; it is re-read when it ends
        self.view = view
        self.panel.show_model(view.model)
        self._show_numbers(view)  # first: the meter showing shrinks the transcript
        self._show_view(view)
        self.transcript_shown.emit(view.id)

    def _show_view(self, view: ConversationView, *, stop_before: str | None = None) -> None:
        self.transcript.show_html(
            transcript_html(
                view,
                colours(),
                expanded=frozenset(self.expanded),
                stop_before=stop_before,
                busy=self._busy,
                note=self.note,
            )
        )

    def _show_numbers(self, view: ConversationView) -> None:
        answers = [e.message for e in view.entries if e.message.role == "assistant"]
        metrics = answers[-1].metrics if answers else {}
        line = answer_numbers(metrics)
        if line and metrics.get("backend"):
            line += f" · {metrics['backend']}"
        self.metrics.setText(line)
        # The meter shows the latest answer that measured it (a cut-off one did not).
        measured = [m.metrics for m in answers if "context_used" in m.metrics]
        latest = measured[-1] if measured else {}
        used, n_ctx = latest.get("context_used"), latest.get("n_ctx")
        if isinstance(used, int) and isinstance(n_ctx, int) and n_ctx > 0:
            self.context_meter.setRange(0, n_ctx)
            self.context_meter.setValue(min(used, n_ctx))
            self.context_meter.setFormat(f"context {used:,} / {n_ctx:,}")
            self.context_meter.setToolTip("Context used by the conversation so far")
            self.context_meter.setVisible(True)
        else:
            self.context_meter.setVisible(False)

    def _rerender(self) -> None:
        if self.conversation_id is not None:
            self._read_conversation(self.conversation_id)

    # --- list actions -----------------------------------------------------------------------

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        job = self.runner.submit(lambda: rename_conversation(conversation_id, title))
        job.done.connect(self._conversation_changed)
        job.failed.connect(self.status.setText)

    def ask_to_delete(self, conversation_id: str) -> None:
        row = self.conversation_list.row_of(conversation_id)
        title = self.conversation_list.items[row].title if row is not None else "this chat"
        answer = QMessageBox.question(
            self,
            "Delete chat",
            f"Delete “{title}” and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_conversation(conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        if conversation_id == self.conversation_id:
            self.new_chat()
        job = self.runner.submit(lambda: delete_conversation(conversation_id))
        job.done.connect(self._conversation_changed)
        job.failed.connect(self.status.setText)

    def ask_where_to_export(self, conversation_id: str) -> None:
        row = self.conversation_list.row_of(conversation_id)
        title = self.conversation_list.items[row].title if row is not None else "chat"
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title).strip()
        path, chosen = QFileDialog.getSaveFileName(
            self,
            "Export chat",
            str(Path.home() / f"{safe or 'chat'}.md"),
            "Markdown (*.md);;JSON (*.json)",
        )
        if not path:
            return
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(".json" if "json" in chosen.lower() else ".md")
        self.export_conversation(conversation_id, target)

    def export_conversation(self, conversation_id: str, path: Path) -> None:
        """Write the conversation to `path`: JSON for `.json`, Markdown otherwise."""
        job = self.runner.submit(lambda: export_conversation(conversation_id, path))
        job.done.connect(self._on_exported)
        job.failed.connect(self.status.setText)

    def _on_exported(self, path: Path) -> None:
        self.status.setText(f"Exported to {path}.")
        self.exported.emit(path)

    def _conversation_changed(self, conversation_id: str) -> None:
        if self.chat_list.query():
            self.search(self.chat_list.query())
        else:
            self.refresh()
        self.conversation_changed.emit(conversation_id)

    # --- the side panel ---------------------------------------------------------------------

    def show_panel(self, shown: bool) -> None:
        sizes = self.splitter.sizes()
        if shown and sizes[2] == 0:
            sizes[1] = max(sizes[1] - PANEL_WIDTH, 200)
            sizes[2] = PANEL_WIDTH
        elif not shown and sizes[2] > 0:
            sizes[1] += sizes[2]
            sizes[2] = 0
        self.splitter.setSizes(sizes)

    def _splitter_moved(self, _pos: int, _index: int) -> None:
        self.panel_button.blockSignals(True)
        self.panel_button.setChecked(self.splitter.sizes()[2] > 0)
        self.panel_button.blockSignals(False)

    def sync_panel_button(self) -> None:
        """Match the toggle to a splitter restored by the window (sizes from window.ini)."""
        self._splitter_moved(0, 0)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.sync_panel_button()  # the window restores the splitter before it shows the page

    def _panel_changed(self) -> None:
        cid = self.conversation_id
        if cid is None:
            return  # a new chat: the choices go with its first message
        options = self.options()
        job = self.runner.submit(
            lambda: save_conversation_settings(cid, options.system_prompt or "", options.settings)
        )
        job.done.connect(self._settings_saved)
        job.failed.connect(self.status.setText)

    def _settings_saved(self, conversation_id: str) -> None:
        self.conversation_changed.emit(conversation_id)

    def _presets_edited(self, *_args: object) -> None:
        presets = dict(self.panel.presets)
        self.runner.submit(lambda: save_presets(presets)).failed.connect(self.status.setText)

    def options(self) -> TurnOptions:
        """The side panel's choices and the model picked, sent with the next turn."""
        return self.panel.options(self.selected_model() or None)

    # --- keys and links ---------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.input and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                    self.input.insertPlainText("\n")  # a new line (not Qt's line separator)
                    return True
                self.send()  # Enter, and Ctrl+Enter as before
                return True
        return super().eventFilter(watched, event)

    def _on_link(self, url: QUrl) -> None:
        """`copy:N` copies code block N, `act:…` acts on a message; web links open in the
        browser (a person's click)."""
        if url.scheme() == COPY_SCHEME:
            index = int(url.path()) if url.path().isdigit() else -1
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index])
                self.status.setText("The code is on the clipboard.")
            return
        action = self.transcript.action_for(url)
        if action is not None:
            self.act(*action)
            return
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)

    def act(self, kind: str, message_id: str) -> None:
        """Do what a transcript link asks: edit, copy, regenerate, retry, prev, next, think."""
        view = self.view
        entry = (
            next((e for e in view.entries if e.message.id == message_id), None) if view else None
        )
        if kind == "retry":
            self.retry()
        elif kind == "regenerate":
            self.regenerate()
        elif kind == "edit":
            self.start_edit(message_id)
        elif entry is None or view is None:
            return
        elif kind == "copy":
            QGuiApplication.clipboard().setText(entry.message.content)
            self.status.setText("The message is on the clipboard.")
        elif kind == "think":
            self.expanded.symmetric_difference_update({message_id})
            self._show_view(view)
        elif kind in ("prev", "next") and not self._busy:
            step = -1 if kind == "prev" else 1
            position = entry.position + step
            if 0 <= position < len(entry.sibling_ids):
                self.switch_sibling(view.id, entry.sibling_ids[position])

    def switch_sibling(self, conversation_id: str, message_id: str) -> None:
        """Show the branch through another version of a message."""
        self._reads += 1
        serial = self._reads
        job = self.runner.submit(lambda: (serial, switch_to_sibling(conversation_id, message_id)))
        job.done.connect(self._conversation_arrived)
        job.failed.connect(self.status.setText)

    # --- results from the chat thread -------------------------------------------------------

    def _on_conversation_started(self, conversation_id: str) -> None:
        if self._streaming == "" and self.conversation_id is None:
            self._streaming = conversation_id
        self.conversation_id = conversation_id

    def _shows_stream(self) -> bool:
        return self._streaming is not None and self._streaming == (self.conversation_id or "")

    def _on_progress(self, fraction: float, eta: float | None) -> None:
        self.progress.setValue(int(fraction * 1000))
        left = f", about {eta:.0f} s left" if eta is not None else ""
        queued = f"; {self._queued} message(s) queued" if self._queued else ""
        self.status.setText(f"Loading… {fraction:.0%}{left}{queued} (Esc cancels)")

    def _on_loaded(self, name: str, summary: str) -> None:
        self.progress.setVisible(False)
        self._queued = 0
        self.status.setText(f"{name}: {summary}")

    def restyle(self) -> None:
        """Take the colours of the theme in use (called again when the theme changes)."""
        c = colours()
        self.metrics.setStyleSheet(f"color: {c.muted}")
        self.edit_banner.setStyleSheet(
            f"color: {c.text}; background-color: {c.alternate}; padding: 4px;"
        )
        self.panel.note.setStyleSheet(f"color: {c.muted}")
        self.panel_button.setIcon(icon("settings"))
        self.new_chat_button.setIcon(icon("chat"))
        if self.view is not None and not self._busy:
            self._show_view(self.view)

    def _on_template_note(self, note: str) -> None:
        self.template_badge.setToolTip(note)
        self.template_badge.setAccessibleDescription(note)
        self.template_badge.setVisible(bool(note))

    def _on_token(self, answer: str, reasoning: str) -> None:
        if self._shows_stream():  # not into another chat the person opened meanwhile
            self.transcript.append_stream(answer, reasoning)

    def _on_reply(self, reply: Reply) -> None:
        m = reply.metrics
        if "decode_tps" in m:
            self.metrics.setText(
                f"{m['generated_tokens']} tokens at {m['decode_tps']:.1f} tok/s · first token "
                f"{m['ttft_s']:.2f} s · context {m['context_used']:,}/{m['n_ctx']:,} · "
                f"{m['backend']}"
                + (f" · {reply.state.value}" if reply.state != MessageState.COMPLETE else "")
            )
        if reply.error:
            self.status.setText(reply.error)
        self._streaming = None
        self._on_busy(False)  # the turn is over (a queued one reports busy again)
        self.refresh()
        self._rerender()  # the streamed plain text becomes Markdown, once, at the end
        self.reply_shown.emit(reply)

    def _on_failed(self, message: str) -> None:
        self.progress.setVisible(False)
        self._queued = 0
        self.status.setText(message)
        self._on_busy(False)
        shown = self._shows_stream()
        self._streaming = None
        if not self.chat_runner.worker.ready or self.view is None:
            # The load failed: the typed messages still wait (unsaved), so add the sentence.
            if shown or self.view is None:
                self.transcript.append_note(message, retry=True)
            return
        self.note = message  # in the conversation, with Retry, after what is saved
        self._rerender()

    def _on_busy(self, busy: bool) -> None:
        self._busy = busy
        self.stop_button.setEnabled(busy)
        self.load_button.setEnabled(not busy)
