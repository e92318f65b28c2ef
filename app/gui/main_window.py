"""The main window: a sidebar of pages (Chat, Images, Models, Downloads, System, Settings,
Server), a menu, a status bar; and the welcome, shown instead of the pages while the library
has no models (and from Help ▸ Welcome).

Pages are added in one place (`_add_page`); each gets Ctrl+<n> by its position. Size,
position, splitter sizes and the last page are remembered in `config/window.ini`
(QSettings), the theme in the store with the other settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path

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
from app.gui.pages.welcome import LibraryState, WelcomePage, library_state, mark_welcome_seen
from app.gui.status_bar import WindowStatus
from app.gui.theme import Theme, apply_theme, icon
from app.hardware.profile import HardwareProfile
from app.hub.quants import GgufVariant
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
    Shortcut("Enter", "Send the message (Shift+Enter: a new line; Ctrl+Enter sends too)"),
    Shortcut("Ctrl+Enter", "On Images: make the image"),
    Shortcut("Ctrl+K", "Search the chats"),
    Shortcut("F2 / Delete", "Rename / delete the chat picked in the list"),
    Shortcut("Esc", "Stop the answer or the image, cancel a load, or cancel an edit"),
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
        self.welcome = WelcomePage(self.runner, hardware=hardware)
        for page in (
            self.images,
            self.models,
            self.downloads,
            self.system,
            self.settings_page,
            self.welcome,
        ):
            page.status.connect(self.statusBar().showMessage)
        self.settings_page.theme_chosen.connect(self.set_theme)
        self.settings_page.shown.connect(self._apply_settings)
        self.server = ServerPage()  # the local API: off until the person turns it on
        self.server.status.connect(self.statusBar().showMessage)
        self.status = WindowStatus(self.statusBar())
        self.status.watch_chat(self.chat.chat_runner)
        self.status.watch_images(self.images.image_runner)
        self.api_label = QLabel("")
        self.statusBar().addPermanentWidget(self.api_label)
        self.server.api_state.connect(self.api_label.setText)
        self.downloads.library_changed.connect(self.refresh)  # the new model shows everywhere
        self.models.set_in_use_check(self.models_in_use)
        self.models.set_download_service(self.downloads.service)
        self.models.chat_requested.connect(self.chat_with)
        self.models.images_requested.connect(self.open_in_images)
        self.models.library_changed.connect(self._library_edited)
        self._chat_pick: str | None = None  # a model to pick once the chat page lists it
        self.chat.lists_shown.connect(self._pick_chat_model)
        self.downloads.service.started.connect(self._start_pending_download)
        self.welcome.model_added.connect(self._model_arrived)
        self.welcome.download_wanted.connect(self.download)
        self.welcome.skipped.connect(self.hide_welcome)
        self.welcome_dismissed = False  # the person left the welcome: it stays away
        self.library_models: int | None = None  # None until the library was counted
        self._pending_download: GgufVariant | None = None

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
        self.sidebar.itemClicked.connect(self.hide_welcome)  # the current page too

        # The pages, or the welcome in their place (the sidebar stays: every page is a click).
        self.content = QStackedWidget()
        self.content.addWidget(self.pages)
        self.content.addWidget(self.welcome)
        body = QWidget()
        row = QHBoxLayout(body)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(self.content, 1)
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
            self.hide_welcome()
            self.sidebar.setCurrentRow(index)

    # --- the welcome ------------------------------------------------------------------------

    def welcome_shown(self) -> bool:
        return self.content.currentWidget() is self.welcome

    def show_welcome(self) -> None:
        """The welcome in place of the pages (Help ▸ Welcome, or an empty library)."""
        self.welcome.refresh()
        self.content.setCurrentWidget(self.welcome)
        self.sidebar.clearSelection()  # no page is on screen
        self.welcome.skip_button.setFocus()  # nor is the sidebar's current row marked

    def hide_welcome(self) -> None:
        """Back to the pages; the welcome does not come back by itself this session, and
        on later starts only while the library is empty."""
        if not self.welcome_dismissed and self.welcome_shown():
            self.runner.submit(mark_welcome_seen)
        self.welcome_dismissed = True
        if self.welcome_shown():
            self.content.setCurrentWidget(self.pages)
            item = self.sidebar.currentItem()
            if item is not None:
                item.setSelected(True)

    def _library_counted(self, state: LibraryState) -> None:
        models = state.models
        before, self.library_models = self.library_models, models
        if self.welcome_dismissed:
            return
        if self.welcome_shown():
            if models and before == 0:
                self._to_chat()  # a model arrived (a download finished): go and use it
        elif models == 0 or not state.welcome_seen:
            # Never an empty window with nothing to do; and on the first start, even with
            # models (./scripts/run installs the starter), what this machine has and how
            # to get more.
            self.show_welcome()

    def _model_arrived(self, names: str) -> None:
        self.refresh()
        self._to_chat()
        self._chat_pick = names.split(", ")[0] if names else None  # picked once listed

    def _to_chat(self) -> None:
        self.show_page(self.pages.indexOf(self.chat))

    # --- between pages ----------------------------------------------------------------------

    def models_in_use(self) -> set[str]:
        """Library names loaded now: the chat and image models, and the API's."""
        names = {self.status.chat_model, self.status.image_model}
        names |= set(self.server.models_in_use())
        return {name for name in names if name}

    def chat_with(self, name: str) -> None:
        """The Models page's "Chat with it": the Chat page, that model picked."""
        self._chat_pick = name
        self._to_chat()
        self.chat.refresh()  # the pick is made once the list is read (_pick_chat_model)

    def _pick_chat_model(self, _lists: object) -> None:
        name, self._chat_pick = self._chat_pick, None
        index = self.chat.model_box.findData(name) if name else -1
        if index >= 0:
            self.chat.model_box.setCurrentIndex(index)

    def open_in_images(self, name: str) -> None:
        """The Models page's "Open in Images": the Images page, that model picked."""
        self.show_page(self.pages.indexOf(self.images))
        index = self.images.model_box.findData(name)
        if index >= 0:
            self.images.model_box.setCurrentIndex(index)

    def _library_edited(self) -> None:
        """A model imported or deleted on the Models page (which re-reads itself)."""
        self.chat.refresh()
        self.images.refresh()

    def download(self, variant: GgufVariant) -> None:
        """Queue `variant` on the Downloads page and show that page."""
        service = self.downloads.service
        if service.queue is None:
            self._pending_download = variant  # queued as soon as the queue has started
            service.start()
        else:
            service.enqueue(variant)
        self.show_page(self.pages.indexOf(self.downloads))

    def _start_pending_download(self, _jobs: object) -> None:
        variant, self._pending_download = self._pending_download, None
        if variant is not None:
            self.downloads.service.enqueue(variant)

    def _apply_settings(self, settings: object) -> None:
        """What the window itself follows from Settings: offline mode on the Downloads page."""
        offline = bool(getattr(settings, "offline_now", False))
        self.downloads.set_offline(offline, str(getattr(settings, "offline_reason", "")))
        queue = self.downloads.service.queue
        models = str(getattr(settings, "models_in_use", "") or "")
        if queue is not None and models and str(queue.paths.models) != models:
            # A models folder chosen in Settings: the next downloads go there.
            queue.paths = dataclass_replace(queue.paths, models=Path(models))
        if self.welcome.facts is not None:
            self.welcome.refresh()  # its download choice follows offline mode too

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
            self.settings_page.restyle()
            self.welcome.restyle()
            self.status.restyle()
            self.downloads.set_offline(self.downloads.offline, self._offline_reason())

    def _offline_reason(self) -> str:
        current = self.settings_page.current
        return current.offline_reason if current is not None else ""

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
        welcome = QAction("&Welcome", self)
        welcome.triggered.connect(self.show_welcome)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(welcome)
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
        for key, splitter in self._splitters().items():
            sizes = state.value(key)
            if sizes is not None:
                splitter.restoreState(sizes)
        page = state.value("page", 0)
        try:
            index = int(page)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            index = 0
        self.sidebar.setCurrentRow(index if 0 <= index < self.pages.count() else 0)

    def _splitters(self) -> dict[str, QSplitter]:
        """Every splitter by a key that stays put when a page gains one: page, then order."""
        keys: dict[str, QSplitter] = {}
        for page_index in range(self.pages.count()):
            page = self.pages.widget(page_index)
            if page is None:
                continue
            for n, splitter in enumerate(page.findChildren(QSplitter)):
                keys[f"splitters/{type(page).__name__}-{n}"] = splitter
        return keys

    def _save_state(self) -> None:
        if not self.remember_state:
            return
        state = self.window_state()
        state.setValue("geometry", self.saveGeometry())
        for key, splitter in self._splitters().items():
            state.setValue(key, splitter.saveState())
        state.setValue("page", self.sidebar.currentRow())
        state.sync()

    # --- life -----------------------------------------------------------------------------

    def refresh(self) -> None:
        self.models.refresh()
        self.chat.refresh()
        self.images.refresh()
        if not self.settings_page.isVisible():  # never under the person's unsaved edits
            self.settings_page.refresh()
        self.runner.submit(library_state).done.connect(self._library_counted)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._save_state()
        self.status.stop()
        self.welcome.shutdown()  # an install or import still running is cancelled
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
