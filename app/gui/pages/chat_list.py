"""The chat page's conversation list: a search box (Ctrl+K), conversations under date
headings, and a context menu to rename (F2), export or delete (Delete) one."""

from __future__ import annotations

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont, QKeyEvent, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.conversations import (
    CONVERSATION_ID_ROLE,
    GROUP_ROLE,
    GROUP_START_ROLE,
    SNIPPET_ROLE,
    ConversationListModel,
)
from app.gui.theme import colours

AnyIndex = QModelIndex | QPersistentModelIndex

#: How long typing pauses before the search runs.
SEARCH_DELAY_MS = 250
_HEADING_GAP = 8


class GroupedDelegate(QStyledItemDelegate):
    """Draws a row's title (and a search hit's matching text), with its date group's heading
    above the first row of each group, so each row is still exactly one conversation."""

    def _heading_height(self, option: QStyleOptionViewItem) -> int:
        return int(option.fontMetrics.height() * 1.2) + _HEADING_GAP

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        base = super().sizeHint(option, index)
        height = max(base.height(), option.fontMetrics.height()) + 10
        if index.data(SNIPPET_ROLE):
            height += option.fontMetrics.height()
        if index.data(GROUP_START_ROLE):
            height += self._heading_height(option)
        return QSize(base.width(), height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        rect = QRect(option.rect)
        c = colours()
        painter.save()
        if index.data(GROUP_START_ROLE):
            heading = QRect(rect)
            heading.setHeight(self._heading_height(option))
            font = QFont(option.font)
            font.setBold(True)
            font.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
            painter.setFont(font)
            painter.setPen(QColor(c.muted))
            painter.drawText(
                heading.adjusted(8, _HEADING_GAP, -4, 0),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                str(index.data(GROUP_ROLE)).upper(),
            )
            rect.setTop(heading.bottom() + 1)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hovered:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(c.highlight if selected else c.alternate))
            painter.drawRoundedRect(rect.adjusted(2, 1, -2, -1), 4, 4)
        painter.setFont(option.font)
        painter.setPen(QColor(c.highlighted_text if selected else c.text))
        metrics = option.fontMetrics
        text_rect = rect.adjusted(10, 4, -8, -4)
        title = metrics.elidedText(
            str(index.data(Qt.ItemDataRole.DisplayRole) or ""),
            Qt.TextElideMode.ElideRight,
            text_rect.width(),
        )
        snippet = str(index.data(SNIPPET_ROLE) or "")
        line = QRect(text_rect)
        line.setHeight(metrics.height() + (0 if snippet else text_rect.height() - metrics.height()))
        painter.drawText(
            line, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), title
        )
        if snippet:
            painter.setPen(QColor(c.highlighted_text if selected else c.muted))
            below = QRect(text_rect.left(), line.bottom() + 1, text_rect.width(), metrics.height())
            painter.drawText(
                below,
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                metrics.elidedText(snippet, Qt.TextElideMode.ElideRight, below.width()),
            )
        painter.restore()

    def updateEditorGeometry(
        self, editor: QWidget, option: QStyleOptionViewItem, index: AnyIndex
    ) -> None:
        rect = QRect(option.rect)
        if index.data(GROUP_START_ROLE):
            rect.setTop(rect.top() + self._heading_height(option))
        editor.setGeometry(rect.adjusted(4, 2, -4, -2))


class ConversationList(QWidget):
    """Search, the grouped list and its menu; the page acts on what the person asks for."""

    search_changed = Signal(str)  # the query to run ("" shows the recent conversations)
    delete_requested = Signal(str)  # conversation id (the page asks for confirmation)
    export_requested = Signal(str)  # conversation id (the page asks where)

    def __init__(self, model: ConversationListModel) -> None:
        super().__init__()
        self.model = model
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats (Ctrl+K)")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search chats")
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._run_search)
        self.search.textChanged.connect(self._search_timer.start)
        self.search.returnPressed.connect(self._run_search)

        self.view = QListView()
        self.view.setModel(model)
        self.view.setItemDelegate(GroupedDelegate(self.view))
        self.view.setMouseTracking(True)
        self.view.setUniformItemSizes(False)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)  # F2
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_menu)
        self.view.installEventFilter(self)
        self.view.setAccessibleName("Conversations")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addWidget(self.view, 1)

    def query(self) -> str:
        return self.search.text().strip()

    def _run_search(self) -> None:
        self._search_timer.stop()
        self.search_changed.emit(self.query())

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def current_id(self) -> str | None:
        index = self.view.currentIndex()
        return str(index.data(CONVERSATION_ID_ROLE)) if index.isValid() else None

    def rename_current(self) -> None:
        """Edit the current conversation's title in place (F2 does the same)."""
        index = self.view.currentIndex()
        if index.isValid():
            self.view.edit(index)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.view and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            if event.key() == Qt.Key.Key_Delete and self.view.state() != (
                QAbstractItemView.State.EditingState
            ):
                cid = self.current_id()
                if cid:
                    self.delete_requested.emit(cid)
                return True
        return super().eventFilter(watched, event)

    def menu_for(self, index: QModelIndex) -> QMenu | None:
        """The context menu of a row: Rename, Export…, Delete…"""
        if not index.isValid():
            return None
        cid = str(index.data(CONVERSATION_ID_ROLE))
        menu = QMenu(self)
        rename = QAction("Rename\tF2", menu)
        rename.triggered.connect(lambda: self.view.edit(index))
        export = QAction("Export…", menu)
        export.triggered.connect(lambda: self.export_requested.emit(cid))
        delete = QAction("Delete…\tDel", menu)
        delete.triggered.connect(lambda: self.delete_requested.emit(cid))
        menu.addAction(rename)
        menu.addAction(export)
        menu.addSeparator()
        menu.addAction(delete)
        return menu

    def _show_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        menu = self.menu_for(index)
        if menu is not None:
            self.view.setCurrentIndex(index)
            menu.exec(self.view.viewport().mapToGlobal(pos))
            menu.deleteLater()
