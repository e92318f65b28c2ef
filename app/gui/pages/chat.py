"""The chat page: conversations, a streaming transcript, load progress with cancel, send/stop."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QUrl, Signal
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QGuiApplication,
    QKeySequence,
    QShortcut,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.chat_runner import ChatRunner
from app.gui.adapters.conversations import (
    CONVERSATION_ID_ROLE,
    ChatLists,
    ConversationListModel,
    read_chat_lists,
    read_transcript,
)
from app.gui.adapters.remote_providers import NewProvider, add_and_test_provider, report_text
from app.gui.adapters.runner import BackgroundRunner
from app.gui.markdown import COPY_SCHEME, render_markdown
from app.gui.theme import colours
from app.hardware.profile import HardwareProfile
from app.models.starter import STARTER
from app.store import MessageState

if TYPE_CHECKING:
    from app.engines.chat_remote.probe import ConnectionReport
    from app.sessions.chat import Reply
    from app.store.conversations import Message


class ChatPage(QWidget):
    """Binds the conversation list, the model picker and the transcript to the chat runner."""

    lists_shown = Signal(object)  # the ChatLists now on screen
    remote_added = Signal(object)  # the ConnectionReport of a provider just added
    transcript_shown = Signal(str)  # the conversation whose messages were just shown

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.chat_runner = ChatRunner(self, hardware=hardware)
        self.conversation_id: str | None = None
        self._queued = 0  # messages typed before the model was ready

        self.conversation_list = ConversationListModel()
        self.conversations = QListView()
        self.conversations.setModel(self.conversation_list)
        self.conversations.selectionModel().currentChanged.connect(self._open_selected)
        new_chat = QPushButton("New chat")
        new_chat.setShortcut(QKeySequence.StandardKey.New)
        new_chat.clicked.connect(self.new_chat)
        left = QVBoxLayout()
        left.addWidget(new_chat)
        left.addWidget(self.conversations)
        left_box = QWidget()
        left_box.setLayout(left)

        self.model_box = QComboBox()
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

        self.transcript = QTextBrowser()
        self.transcript.setOpenExternalLinks(False)
        self.transcript.setOpenLinks(False)  # every click comes to _on_link
        self.transcript.anchorClicked.connect(self._on_link)
        self.code_blocks: list[str] = []  # what each code block's Copy link copies
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Message (Ctrl+Enter to send, Esc to stop)")
        self.input.setMaximumHeight(90)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.chat_runner.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        self.metrics = QLabel("")
        self.restyle()

        right = QVBoxLayout()
        right.addLayout(top)
        right.addWidget(self.progress)
        right.addWidget(self.status)
        right.addWidget(self.transcript, 1)
        right.addLayout(bottom)
        right.addWidget(self.metrics)
        right_box = QWidget()
        right_box.setLayout(right)

        splitter = QSplitter()
        splitter.addWidget(left_box)
        splitter.addWidget(right_box)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        QShortcut(QKeySequence("Ctrl+Return"), self).activated.connect(self.send)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self).activated.connect(self.chat_runner.stop)

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
        self.input.setFocus()

    # --- actions --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the chat models and conversations (off the UI thread)."""
        self.runner.submit(read_chat_lists).done.connect(self._show_lists)

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
        self.chat_runner.load(name)

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

    def new_chat(self) -> None:
        self.conversation_id = None
        self.chat_runner.new_chat()
        self.conversations.selectionModel().clearCurrentIndex()
        self.transcript.clear()
        self.metrics.setText("")

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text:
            return
        self.input.clear()
        self._append_html(f"<br><b>You</b><br>{_html(text)}<br><b>Assistant</b><br>")
        if not self.chat_runner.worker.ready:
            if not self.progress.isVisible():
                self.load_selected_model()
            self._queued += 1
            self.status.setText(
                "Your message is queued: it is answered as soon as the model is ready."
            )
        # With no conversation yet, the chat thread creates one and reports its id back.
        self.chat_runner.send(self.conversation_id, text, self.selected_model())

    def shutdown(self) -> None:
        self.chat_runner.close()

    # --- results from the runners ---------------------------------------------------------

    def _show_lists(self, lists: ChatLists) -> None:
        current = self.selected_model()
        self.model_box.clear()
        for name in lists.chat_models:
            self.model_box.addItem(name, name)
        for model_id in lists.remote_models:  # beside the local ones, marked remote
            self.model_box.addItem(f"{model_id} (remote)", model_id)
        # Keep the user's pick; otherwise start on the starter assistant when it is there.
        index = self.model_box.findData(current or STARTER.name)
        if index >= 0:
            self.model_box.setCurrentIndex(index)
        selection = self.conversations.selectionModel()
        selection.blockSignals(True)  # re-selecting the open chat must not reload it
        self.conversation_list.set_conversations(lists.conversations)
        row = self.conversation_list.row_of(self.conversation_id)
        if row is not None:
            selection.setCurrentIndex(
                self.conversation_list.index(row),
                QItemSelectionModel.SelectionFlag.ClearAndSelect,
            )
        selection.blockSignals(False)
        self.lists_shown.emit(lists)

    def _open_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        conversation_id = str(current.data(CONVERSATION_ID_ROLE))
        self.conversation_id = conversation_id
        self._read_transcript(conversation_id)

    def _show_transcript(self, conversation_id: str, messages: tuple[Message, ...]) -> None:
        if conversation_id != self.conversation_id:
            return  # the person opened another chat meanwhile
        parts = []
        self.code_blocks = []
        for msg in messages:
            who = "You" if msg.role == "user" else "Assistant"
            state = msg.state.value
            note = "" if msg.state == MessageState.COMPLETE else f" <i>({state})</i>"
            if msg.role == "user":
                body = f"<p>{_html(msg.content)}</p>"
            else:  # answers are Markdown, with highlighted code blocks to copy
                rendered = render_markdown(
                    msg.content, colours(), first_block=len(self.code_blocks)
                )
                self.code_blocks.extend(rendered.code_blocks)
                body = rendered.html
            parts.append(f"<p><b>{who}</b>{note}</p>{body}")
        # Re-rendering keeps the reader's place unless they were following the bottom.
        bar = self.transcript.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 4
        self.transcript.setHtml("".join(parts))
        if following:
            bar.setValue(bar.maximum())
        self.transcript_shown.emit(conversation_id)

    def _on_link(self, url: QUrl) -> None:
        """`copy:N` copies code block N; other links open in the browser (a person's click)."""
        if url.scheme() == COPY_SCHEME:
            index = int(url.path() or -1) if url.path().isdigit() else -1
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index])
                self.status.setText("The code is on the clipboard.")
            return
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)

    def _on_conversation_started(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id

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
        self.metrics.setStyleSheet(f"color: {colours().muted}")

    def _on_template_note(self, note: str) -> None:
        self.template_badge.setToolTip(note)
        self.template_badge.setAccessibleDescription(note)
        self.template_badge.setVisible(bool(note))

    def _on_token(self, answer: str, reasoning: str) -> None:
        if reasoning:
            self._append_text(reasoning, grey=True)
        if answer:
            self._append_text(answer)

    def _on_reply(self, reply: Reply) -> None:
        self._append_html("<br>")
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
        self.refresh()
        self._rerender()  # the streamed plain text becomes Markdown, once, at the end

    def _rerender(self) -> None:
        conversation_id = self.conversation_id
        if conversation_id is None:
            return
        self._read_transcript(conversation_id)

    def _read_transcript(self, conversation_id: str) -> None:
        # Bound methods, not lambdas: Qt drops the connection if the page goes first.
        job = self.runner.submit(lambda: (conversation_id, read_transcript(conversation_id)))
        job.done.connect(self._transcript_read)
        job.failed.connect(self.status.setText)

    def _transcript_read(self, result: tuple[str, tuple[Message, ...]]) -> None:
        self._show_transcript(*result)

    def _on_failed(self, message: str) -> None:
        self.progress.setVisible(False)
        self._queued = 0
        self.status.setText(message)

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.load_button.setEnabled(not busy)

    def _append_html(self, fragment: str) -> None:
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertHtml(fragment)
        self.transcript.setTextCursor(cursor)
        self.transcript.ensureCursorVisible()

    def _append_text(self, text: str, grey: bool = False) -> None:
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        fmt = QTextCharFormat()
        fmt.setForeground(QColor(colours().muted if grey else colours().text))
        cursor.insertText(text, fmt)
        self.transcript.setTextCursor(cursor)
        self.transcript.ensureCursorVisible()


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")
