"""The Models page's details pane: everything recorded about the selected model, how the
planner would load it on this machine and why, and what can be done with it."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.library_table import PlannedModel, model_details, plan_lines
from app.gui.theme import colours, icon
from app.store.library import ModelKind

#: Shown when nothing is selected (or the library is empty).
EMPTY_HINT = (
    "Select a model to see its details and how it would run here.",
    "To add one: Import a .gguf file, a model folder or an export folder (from a USB drive, "
    "say), drop one onto this page, or pick one in the Catalog tab.",
)


class DetailsPane(QWidget):
    """Shows one PlannedModel (its facts and load plan scroll; the buttons stay in view);
    the buttons emit what the person asked for."""

    chat_clicked = Signal(str)
    images_clicked = Signal(str)
    reveal_clicked = Signal(str)
    export_clicked = Signal()
    delete_clicked = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.row: PlannedModel | None = None
        self.fields: list[tuple[str, str]] = []  # what the facts table shows, for tests
        self.plan_text = ""
        self.reasons: list[str] = []
        self.title = QLabel("")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.view = QTextBrowser()
        self.view.setOpenLinks(False)
        self.view.setFrameShape(QFrame.Shape.NoFrame)
        self.view.viewport().setAutoFillBackground(False)  # the window's colour, not a field's
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.chat_button = QPushButton(icon("chat"), "Chat with it")
        self.chat_button.clicked.connect(self._chat)
        self.images_button = QPushButton(icon("images"), "Open in Images")
        self.images_button.clicked.connect(self._images)
        self.reveal_button = QPushButton(icon("folder"), "Reveal in file manager")
        self.reveal_button.clicked.connect(self._reveal)
        self.export_button = QPushButton(icon("export"), "Export…")
        self.export_button.setToolTip(
            "Copy the selected models and a verified manifest to a folder or USB drive"
        )
        self.export_button.clicked.connect(self.export_clicked)
        self.delete_button = QPushButton(icon("delete"), "Delete…")
        self.delete_button.clicked.connect(self._delete)
        self.buttons = QWidget()
        grid = QGridLayout(self.buttons)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.chat_button, 0, 0)
        grid.addWidget(self.images_button, 0, 0)
        grid.addWidget(self.reveal_button, 0, 1)
        grid.addWidget(self.export_button, 1, 0)
        grid.addWidget(self.delete_button, 1, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(270)
        self.setMaximumWidth(480)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.show_model(None)

    def show_model(self, row: PlannedModel | None, *, busy: bool = False) -> None:
        """Show `row` (None: the hint); `busy` disables what a running library task forbids."""
        self.row = row
        self.buttons.setVisible(row is not None)
        if row is None:
            self.title.setText("<b>Details</b>")
            self.fields, self.plan_text, self.reasons = [], "", []
            self.restyle()
            return
        m = row.model
        self.title.setText(f"<b>{html.escape(m.name)}</b>")
        self.fields = model_details(row)
        head, self.reasons = plan_lines(row)
        self.plan_text = head
        self.restyle()
        usable = row.plan is not None
        is_chat = m.kind is ModelKind.CHAT
        self.chat_button.setVisible(is_chat)
        self.images_button.setVisible(m.kind is ModelKind.IMAGE)  # embedding models: neither
        self.chat_button.setEnabled(usable)
        self.images_button.setEnabled(usable)
        self.reveal_button.setEnabled(m.path.exists())
        self.export_button.setEnabled(usable and not busy)
        self.delete_button.setEnabled(not busy)

    def field(self, label: str) -> str | None:
        """The value shown for `label` ("Path", "Architecture", ...), or None."""
        return next((v for k, v in self.fields if k == label), None)

    def restyle(self) -> None:
        """Render the pane in the theme's colours (again when the theme changes)."""
        c = colours()
        muted = f'style="color: {c.muted};"'
        if self.row is None:
            self.view.setHtml("".join(f"<p {muted}>{html.escape(p)}</p>" for p in EMPTY_HINT))
            return
        rows = "".join(
            f'<tr><td {muted} style="padding-right: 8px; white-space: nowrap;">'
            f"{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in self.fields
        )
        plan_colour = c.bad if self.row.plan is None else c.text
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons if r)
        self.view.setHtml(
            f'<table cellspacing="0" cellpadding="1">{rows}</table>'
            f"<p><b>On this machine</b><br>"
            f'<span style="color: {plan_colour};">{html.escape(self.plan_text)}</span></p>'
            f'<ul {muted} style="margin-left: -20px;">{reasons}</ul>'
        )

    def _name(self) -> str:
        return self.row.model.name if self.row is not None else ""

    def _chat(self) -> None:
        if self.row is not None:
            self.chat_clicked.emit(self._name())

    def _images(self) -> None:
        if self.row is not None:
            self.images_clicked.emit(self._name())

    def _reveal(self) -> None:
        if self.row is not None:
            self.reveal_clicked.emit(self._name())

    def _delete(self) -> None:
        if self.row is not None:
            self.delete_clicked.emit(self._name())
