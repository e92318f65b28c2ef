"""The Images page of the chat-only edition: it says image generation is not in this edition
and what to do about it, instead of a page that would fail on a missing torch."""

from __future__ import annotations

import html

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.edition import NotInThisEdition
from app.gui.theme import colours, icon

#: The headline (the Models page's Open in Images says it too, in the chat-only edition).
HEADLINE = "Image generation is not in this edition of Hearth"


class NotInEditionPage(QWidget):
    """What the sidebar's Images entry shows when `app.edition.images_available()` is False."""

    def __init__(self) -> None:
        super().__init__()
        why = NotInThisEdition()
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.headline = QLabel(f"<h2>{html.escape(HEADLINE)}</h2>")
        self.headline.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.headline.setWordWrap(True)
        # The cause after its first clause ("…: the chat-only build has no torch…").
        detail = why.cause.split(": ", 1)[-1]
        self.detail = QLabel(f"{detail[:1].upper()}{detail[1:]}")
        self.remedy = QLabel(why.remedy)
        for label in (self.detail, self.remedy):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        column = QWidget()
        column.setMaximumWidth(560)
        inner = QVBoxLayout(column)
        inner.setSpacing(10)
        inner.addWidget(self.picture)
        inner.addWidget(self.headline)
        inner.addWidget(self.detail)
        inner.addWidget(self.remedy)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(column, 4)  # as wide as there is room for, up to its maximum
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(2)
        self.restyle()

    def restyle(self) -> None:
        """Draw the page in the theme's colours (again when the theme changes)."""
        c = colours()
        self.picture.setPixmap(icon("images", c.muted).pixmap(QSize(48, 48)))
        self.detail.setStyleSheet(f"color: {c.muted};")
        self.remedy.setStyleSheet(f"color: {c.text};")
