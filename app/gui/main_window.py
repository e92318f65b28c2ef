"""The main window: a sidebar of pages (Chat, Images, Models, Downloads, System, Settings), a
menu, a status bar.

Pages are added in one place (`_add_page`); each gets Ctrl+<n> by its position. Size,
position, splitter sizes and the last page are remembered in `config/window.ini`
(QSettings), the theme in the store with the other settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSettings, QSize
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.gui.adapters.runner import BackgroundRunner
from app.gui.pages.chat import ChatPage
from app.gui.pages.downloads import DownloadsPage
from app.gui.pages.images import ImagesPage
from app.gui.pages.models import ModelsPage
from app.gui.pages.server import ServerPage
from app.gui.pages.settings import SettingsPage
from app.gui.pages.system import SystemPage
from app.gui.theme import Theme, apply_theme, icon
from app.hardware.profile import HardwareProfile
from app.paths import hearth_paths

#: How long closing the window waits for database reads and planning still running.
CLOSE_WAIT_MS = 30_000
DEFAULT_SIZE = QSize(1180, 760)


@dataclass(frozen=True)
class Shortcut:
    keys: str
    does: str


#: The shortcuts list under Help (the pages' own are included: they are the same keys).
SHORTCUTS = (
    Shortcut("Ctrl+1 … Ctrl+7", "Chat, Images, Models, Downloads, System, Settings, Server"),
    Shortcut("Ctrl+,", "Settings"),
    Shortcut("Ctrl+N", "New chat"),
    Shortcut("Ctrl+Enter", "Send the message; on Images, make the image"),
    Shortcut("Esc", "Stop the answer or the image, or cancel a load"),
    Shortcut("F5", "Refresh the library and the chats"),
    Shortcut("Ctrl+Q", "Quit"),
)


class MainWindow(QMainWindow):
    """`hardware` replaces this machine's profile (tests use simulated machines)."""

    def __init__(self, *, hardware: HardwareProfile | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"Hearth {__version__}")
        self.resize(DEFAULT_SIZE)
        self.runner = BackgroundRunner(self)
        self.remember_state = True  # False: closing leaves window.ini as it was
        self.chat = ChatPage(self.runner, hardware=hardware)
        self.images = ImagesPage(self.runner, hardware=hardware)
        self.models = ModelsPage(self.runner, hardware=hardware)
        self.downloads = DownloadsPage(self.runner, hardware=hardware)
        self.system = SystemPage(self.runner, hardware=hardware)
        self.settings_page = SettingsPage(self.runner)
        for page in (self.images, self.models, self.downloads, self.system, self.settings_page):
            page.status.connect(self.statusBar().showMessage)
        self.settings_page.theme_chosen.connect(self.set_theme)
        self.server = ServerPage()  # the local API: off until the person turns it on
        self.server.status.connect(self.statusBar().showMessage)
        self.api_label = QLabel("")
        self.statusBar().addPermanentWidget(self.api_label)
        self.server.api_state.connect(self.api_label.setText)
        self.downloads.library_changed.connect(self.refresh)  # the new model shows everywhere

        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setFixedWidth(168)
        self.sidebar.setFrameShape(QListWidget.Shape.NoFrame)
        self.sidebar.setAutoFillBackground(True)
        self.pages = QStackedWidget()
        self._icons: list[str] = []
        self._add_page(self.chat, "Chat", "chat")
        self._add_page(self.images, "Images", "images")
        self._add_page(self.models, "Models", "models")
        self._add_page(self.downloads, "Downloads", "downloads")
        self._add_page(self.system, "System", "system")
        self._add_page(self.settings_page, "Settings", "settings")
        self._add_page(self.server, "Server", "server")
        self.sidebar.currentRowChanged.connect(self._show_page)

        body = QWidget()
        row = QHBoxLayout(body)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(self.pages, 1)
        self.setCentralWidget(body)

        for n in range(self.pages.count()):
            QShortcut(QKeySequence(f"Ctrl+{n + 1}"), self).activated.connect(
                lambda n=n: self.show_page(n)
            )
        QShortcut(QKeySequence("Ctrl+,"), self).activated.connect(
            lambda: self.show_page(self.pages.indexOf(self.settings_page))
        )
        self._build_menus()
        self._restore_state()
        self.refresh()

    # --- pages ----------------------------------------------------------------------------

    def _add_page(self, page: QWidget, title: str, icon_name: str) -> None:
        item = QListWidgetItem(icon(icon_name), title)
        item.setSizeHint(QSize(160, 40))
        item.setToolTip(f"{title} (Ctrl+{self.sidebar.count() + 1})")
        self.sidebar.addItem(item)
        self.pages.addWidget(page)
        self._icons.append(icon_name)

    def show_page(self, index: int) -> None:
        if 0 <= index < self.pages.count():
            self.sidebar.setCurrentRow(index)

    def page_names(self) -> list[str]:
        return [self.sidebar.item(i).text().lower() for i in range(self.sidebar.count())]

    def _show_page(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        page = self.pages.widget(index)
        if page is self.system and self.system.report is None:
            self.system.refresh()

    def set_theme(self, choice: str) -> None:
        """Apply a theme to the whole app now (the Settings page saves the choice)."""
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, choice)
            for i, name in enumerate(self._icons):
                self.sidebar.item(i).setIcon(icon(name))
            self.chat.restyle()
            self.models.library.layoutChanged.emit()

    # --- menus ----------------------------------------------------------------------------

    def _build_menus(self) -> None:
        refresh = QAction("&Refresh", self)
        refresh.setShortcut(QKeySequence.StandardKey.Refresh)
        refresh.triggered.connect(self.refresh)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        menu = self.menuBar().addMenu("&Hearth")
        menu.addAction(refresh)
        menu.addAction(quit_action)
        shortcuts = QAction("&Keyboard shortcuts", self)
        shortcuts.triggered.connect(self.show_shortcuts)
        logs = QAction("Open the &log folder", self)
        logs.triggered.connect(self.system.open_logs)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(shortcuts)
        help_menu.addAction(logs)

    def show_shortcuts(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(SHORTCUTS), 2)
        table.setHorizontalHeaderLabels(["Keys", "Does"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, shortcut in enumerate(SHORTCUTS):
            table.setItem(r, 0, QTableWidgetItem(shortcut.keys))
            table.setItem(r, 1, QTableWidgetItem(shortcut.does))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(table)
        layout.addWidget(close)
        dialog.resize(460, 320)
        dialog.setModal(False)
        dialog.show()
        return dialog

    # --- state ----------------------------------------------------------------------------

    @staticmethod
    def window_state() -> QSettings:
        """Where size, position, splitters and the last page are kept (per Hearth home)."""
        path = hearth_paths().config / "window.ini"
        return QSettings(str(path), QSettings.Format.IniFormat)

    def _restore_state(self) -> None:
        state = self.window_state()
        geometry = state.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        for i, splitter in enumerate(self.findChildren(QSplitter)):
            sizes = state.value(f"splitter{i}")
            if sizes is not None:
                splitter.restoreState(sizes)
        page = state.value("page", 0)
        try:
            index = int(page)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            index = 0
        self.sidebar.setCurrentRow(index if 0 <= index < self.pages.count() else 0)

    def _save_state(self) -> None:
        if not self.remember_state:
            return
        state = self.window_state()
        state.setValue("geometry", self.saveGeometry())
        for i, splitter in enumerate(self.findChildren(QSplitter)):
            state.setValue(f"splitter{i}", splitter.saveState())
        state.setValue("page", self.sidebar.currentRow())
        state.sync()

    # --- life -----------------------------------------------------------------------------

    def refresh(self) -> None:
        self.models.refresh()
        self.chat.refresh()
        self.images.refresh()
        self.settings_page.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._save_state()
        self.chat.shutdown()  # the chat worker ends: its memory goes back to the system
        self.images.shutdown()  # and so does the image worker
        self.downloads.shutdown()  # running downloads are queued again for the next start
        self.server.shut_down()  # the API stops and unloads its model
        self.runner.wait(CLOSE_WAIT_MS)
        super().closeEvent(event)


def page_index(window: MainWindow, name: str) -> int:
    """The sidebar position of the page called `name` ("chat", "models", ...), or -1."""
    names = window.page_names()
    return names.index(name) if name in names else -1


__all__ = ["SHORTCUTS", "MainWindow", "Theme", "page_index"]
