"""The chat page: conversations, a streaming transcript, load progress with cancel, send/stop."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QKeySequence, QShortcut, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.gui.chat_controller import ChatController
from app.store import conversations as convs
from app.store import open_default_database


class ChatView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.db = open_default_database()
        convs.recover_interrupted(self.db)
        self.controller = ChatController(self)
        self.conversation_id: str | None = None
        self._streaming = False
        self._queued = 0  # messages typed before the model was ready

        self.conversations = QListWidget()
        self.conversations.currentItemChanged.connect(self._open_selected)
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

        self.transcript = QTextBrowser()
        self.transcript.setOpenExternalLinks(False)
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Message (Ctrl+Enter to send, Esc to stop)")
        self.input.setMaximumHeight(90)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.controller.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        self.metrics = QLabel("")
        self.metrics.setStyleSheet("color: #555")

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
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self).activated.connect(self.controller.stop)

        worker = self.controller.worker
        worker.load_progress.connect(self._on_progress)
        worker.loaded.connect(self._on_loaded)
        worker.token.connect(self._on_token)
        worker.reply_done.connect(self._on_reply)
        worker.failed.connect(self._on_failed)
        worker.busy.connect(self._on_busy)
        self.refresh()
        self.input.setFocus()

    # --- actions --------------------------------------------------------------------------

    def refresh(self) -> None:
        from app.models.library import list_models

        current = self.model_box.currentText()
        self.model_box.clear()
        for row in list_models(self.db):
            if row["kind"] == "chat":
                self.model_box.addItem(row["name"])
        from app.models.starter import STARTER

        # Keep the user's pick; otherwise start on the starter assistant when it is there.
        self.model_box.setCurrentText(current or STARTER.name)
        self.conversations.blockSignals(True)
        self.conversations.clear()
        for conv in convs.list_conversations(self.db):
            item = QListWidgetItem(conv["title"] or "New chat")
            item.setData(Qt.ItemDataRole.UserRole, conv["id"])
            self.conversations.addItem(item)
            if conv["id"] == self.conversation_id:
                self.conversations.setCurrentItem(item)
        self.conversations.blockSignals(False)

    def load_selected_model(self) -> None:
        name = self.model_box.currentText()
        if not name:
            self.status.setText("No chat models yet: run `hearth models starter` first.")
            return
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status.setText(f"Loading {name}… (Esc cancels)")
        self.controller.load(name)

    def new_chat(self) -> None:
        self.conversation_id = None
        self.transcript.clear()
        self.metrics.setText("")

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text:
            return
        if self.conversation_id is None:
            self.conversation_id = convs.create_conversation(
                self.db, model=self.model_box.currentText() or None
            )
        self.input.clear()
        self._append_html(f"<br><b>You</b><br>{_html(text)}<br><b>Assistant</b><br>")
        self._streaming = True
        if not self.controller.worker.ready:
            if not self.progress.isVisible():
                self.load_selected_model()
            self._queued += 1
            self.status.setText(
                "Your message is queued: it is answered as soon as the model is ready."
            )
        self.controller.send(self.conversation_id, text)

    # --- signals from the worker ----------------------------------------------------------

    def _on_progress(self, fraction: float, eta: Any) -> None:
        self.progress.setValue(int(fraction * 1000))
        left = f", about {eta:.0f} s left" if eta is not None else ""
        queued = f"; {self._queued} message(s) queued" if self._queued else ""
        self.status.setText(f"Loading… {fraction:.0%}{left}{queued} (Esc cancels)")

    def _on_loaded(self, name: str, summary: str) -> None:
        self.progress.setVisible(False)
        self._queued = 0
        self.status.setText(f"{name}: {summary}")

    def _on_token(self, answer: str, reasoning: str) -> None:
        if reasoning:
            self._append_text(reasoning, grey=True)
        if answer:
            self._append_text(answer)

    def _on_reply(self, reply: Any) -> None:
        self._append_html("<br>")
        self._streaming = False
        m = reply.metrics
        if "decode_tps" in m:
            self.metrics.setText(
                f"{m['generated_tokens']} tokens at {m['decode_tps']:.1f} tok/s · first token "
                f"{m['ttft_s']:.2f} s · context {m['context_used']:,}/{m['n_ctx']:,} · "
                f"{m['backend']}"
                + (f" · {reply.state.value}" if reply.state.value != "complete" else "")
            )
        if reply.error:
            self.status.setText(reply.error)
        self.refresh()

    def _on_failed(self, message: str) -> None:
        self.progress.setVisible(False)
        self._queued = 0
        self.status.setText(message)

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.load_button.setEnabled(not busy)

    def _open_selected(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        if item is None:
            return
        self.conversation_id = str(item.data(Qt.ItemDataRole.UserRole))
        self.transcript.clear()
        parts = []
        for msg in convs.branch(self.db, self.conversation_id):
            who = "You" if msg.role == "user" else "Assistant"
            note = "" if msg.state.value == "complete" else f" <i>({msg.state.value})</i>"
            parts.append(f"<p><b>{who}</b>{note}<br>{_html(msg.content)}</p>")
        self.transcript.setHtml("".join(parts))

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
        fmt.setForeground(QColor("#888" if grey else "#000"))
        cursor.insertText(text, fmt)
        self.transcript.setTextCursor(cursor)
        self.transcript.ensureCursorVisible()

    def shutdown(self) -> None:
        self.controller.close()


def _html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")
