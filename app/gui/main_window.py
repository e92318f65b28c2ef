"""The main window: a sidebar of pages (Chat, Images, Models, Downloads, System, Settings,
Server), a menu, a status bar; and the welcome, shown instead of the pages while the library
has no models (and from Help ▸ Welcome).

Pages are listed in one place (`PAGES`); each gets Ctrl+<n> by its position. A page is built,
and its module imported, when it is first needed: the first paint builds only the page on
screen, `open_main_window` has the others built a moment later (`build_remaining_pages`),
and a page asked for before that (a click, `window.models`) is built at once. In the
chat-only edition the Images page says so instead (`pages/not_in_edition.py`). Size,
position, splitter sizes and the last page are remembered in `config/window.ini`
(QSettings), the theme in the store with the other settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtCore import QSettings, QSize, QTimer
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

from app import __version__, edition
from app.gui.adapters.runner import BackgroundRunner
from app.gui.starting import import_module
from app.gui.status_bar import WindowStatus
from app.gui.theme import Theme, apply_theme, icon
from app.paths import hearth_paths

if TYPE_CHECKING:
    from app.gui.pages.chat import ChatPage
    from app.gui.pages.downloads import DownloadsPage
    from app.gui.pages.images import ImagesPage
    from app.gui.pages.models import ModelsPage
    from app.gui.pages.not_in_edition import NotInEditionPage
    from app.gui.pages.server import ServerPage
    from app.gui.pages.settings import SettingsPage
    from app.gui.pages.system import SystemPage
    from app.gui.pages.welcome import LibraryState, WelcomePage
    from app.hardware.profile import HardwareProfile
    from app.hub.quants import GgufVariant

#: How long closing the window waits for database reads and planning still running.
CLOSE_WAIT_MS = 30_000
DEFAULT_SIZE = QSize(1180, 760)


@dataclass(frozen=True)
class PageSlot:
    """A page of the sidebar: `key` names its builder (`MainWindow._build_<key>`)."""

    key: str
    title: str
    icon_name: str


#: The sidebar, top to bottom (Ctrl+1 … Ctrl+7 by position).
PAGES = (
    PageSlot("chat", "Chat", "chat"),
    PageSlot("images", "Images", "images"),
    PageSlot("models", "Models", "models"),
    PageSlot("downloads", "Downloads", "downloads"),
    PageSlot("system", "System", "system"),
    PageSlot("settings", "Settings", "settings"),
    PageSlot("server", "Server", "server"),
)
PAGE_KEYS = tuple(slot.key for slot in PAGES)
#: The module of each page, imported when the page is first built (or warmed before).
PAGE_MODULES = {
    "chat": "app.gui.pages.chat",
    "images": "app.gui.pages.images",
    "models": "app.gui.pages.models",
    "downloads": "app.gui.pages.downloads",
    "system": "app.gui.pages.system",
    "settings": "app.gui.pages.settings",
    "server": "app.gui.pages.server",
    "welcome": "app.gui.pages.welcome",
}
NOT_IN_EDITION_MODULE = "app.gui.pages.not_in_edition"
#: The order `build_remaining_pages` builds in: what a page needs comes before it (Models
#: takes the Downloads queue, Downloads the offline mode Settings reads), so each turn of
#: the event loop builds one page, not three.
BUILD_ORDER = ("settings", "downloads", "models", "images", "system", "server", "chat")


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
        self.hardware = hardware
        self.images_available = edition.images_available()
        self.runner = BackgroundRunner(self)
        self.remember_state = True  # False: closing leaves window.ini as it was
        self._built: dict[str, QWidget] = {}  # the pages built so far, by key
        self._welcome: WelcomePage | None = None
        self._to_build: list[str] = []  # build_remaining_pages: the pages still to build
        self._closed = False
        self._settings: object | None = None  # the WindowSettings last shown by Settings
        self.status = WindowStatus(self.statusBar())
        self.api_label = QLabel("")
        self.statusBar().addPermanentWidget(self.api_label)
        self._chat_pick: str | None = None  # a model to pick once the chat page lists it
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
        for n, slot in enumerate(PAGES):
            item = QListWidgetItem(icon(slot.icon_name), slot.title)
            item.setSizeHint(QSize(160, 40))
            item.setToolTip(f"{slot.title} (Ctrl+{n + 1})")
            self.sidebar.addItem(item)
            self.pages.addWidget(QWidget())  # a stand-in until the page is built
        self.sidebar.currentRowChanged.connect(self._show_page)
        self.sidebar.itemClicked.connect(self.hide_welcome)  # the current page too

        # The pages, or the welcome in their place (the sidebar stays: every page is a click).
        self.content = QStackedWidget()
        self.content.addWidget(self.pages)
        body = QWidget()
        row = QHBoxLayout(body)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(self.content, 1)
        self.setCentralWidget(body)

        for n in range(len(PAGES)):
            QShortcut(QKeySequence(f"Ctrl+{n + 1}"), self).activated.connect(
                lambda n=n: self.show_page(n)
            )
        QShortcut(QKeySequence("Ctrl+,"), self).activated.connect(
            lambda: self.show_page(PAGE_KEYS.index("settings"))
        )
        self._build_menus()
        self._restore_state()  # builds the page on screen (it reads what it shows), only that
        self._count_library()  # the welcome instead, when the library is empty

    # --- pages ----------------------------------------------------------------------------

    @property
    def chat(self) -> ChatPage:
        return cast("ChatPage", self.page("chat"))

    @property
    def images(self) -> ImagesPage | NotInEditionPage:
        """The Images page; in the chat-only edition, the page saying it is not in it."""
        return cast("ImagesPage | NotInEditionPage", self.page("images"))

    @property
    def models(self) -> ModelsPage:
        return cast("ModelsPage", self.page("models"))

    @property
    def downloads(self) -> DownloadsPage:
        return cast("DownloadsPage", self.page("downloads"))

    @property
    def system(self) -> SystemPage:
        return cast("SystemPage", self.page("system"))

    @property
    def settings_page(self) -> SettingsPage:
        return cast("SettingsPage", self.page("settings"))

    @property
    def server(self) -> ServerPage:
        return cast("ServerPage", self.page("server"))

    def built(self, key: str) -> Any:
        """The page `key` if it is built already, else None (nothing is built for asking)."""
        if key == "welcome":
            return self._welcome
        return self._built.get(key)

    def page(self, key: str) -> QWidget:
        """The page `key` ("chat", "models", ...), built now if it was not yet."""
        page = self._built.get(key)
        if page is None:
            page = getattr(self, f"_build_{key}")()
            assert isinstance(page, QWidget)
            index = PAGE_KEYS.index(key)
            stand_in = self.pages.widget(index)
            showing = self.pages.currentIndex() == index
            self.pages.insertWidget(index, page)
            if stand_in is not None:
                self.pages.removeWidget(stand_in)
                stand_in.deleteLater()
            if showing:
                self.pages.setCurrentIndex(index)
            self._built[key] = page
            self._restore_splitters(page)
        return page

    def _imported(self, key: str) -> Any:
        return import_module(PAGE_MODULES[key])

    def _build_chat(self) -> QWidget:
        page = self._imported("chat").ChatPage(self.runner, hardware=self.hardware)
        self.status.watch_chat(page.chat_runner)
        page.lists_shown.connect(self._pick_chat_model)
        page.refresh()
        return cast(QWidget, page)

    def _build_images(self) -> QWidget:
        if not self.images_available:
            page = import_module(NOT_IN_EDITION_MODULE).NotInEditionPage()
            return cast(QWidget, page)
        page = self._imported("images").ImagesPage(self.runner, hardware=self.hardware)
        page.status.connect(self.statusBar().showMessage)
        self.status.watch_images(page.image_runner)
        page.refresh()
        return cast(QWidget, page)

    def _build_models(self) -> QWidget:
        page = self._imported("models").ModelsPage(self.runner, hardware=self.hardware)
        page.status.connect(self.statusBar().showMessage)
        page.set_in_use_check(self.models_in_use)
        page.set_download_service(self.downloads.service)
        page.chat_requested.connect(self.chat_with)
        page.images_requested.connect(self.open_in_images)
        page.library_changed.connect(self._library_edited)
        page.refresh()
        return cast(QWidget, page)

    def _build_downloads(self) -> QWidget:
        page = self._imported("downloads").DownloadsPage(self.runner, hardware=self.hardware)
        page.status.connect(self.statusBar().showMessage)
        page.library_changed.connect(self.refresh)  # the new model shows everywhere
        page.service.started.connect(self._start_pending_download)
        if self._settings is not None:
            self._follow_settings(page, self._settings)
        else:
            self.page("settings")  # its first read brings offline mode here
        return cast(QWidget, page)

    def _build_system(self) -> QWidget:
        page = self._imported("system").SystemPage(self.runner, hardware=self.hardware)
        page.status.connect(self.statusBar().showMessage)
        return cast(QWidget, page)

    def _build_settings(self) -> QWidget:
        page = self._imported("settings").SettingsPage(self.runner)
        page.status.connect(self.statusBar().showMessage)
        page.theme_chosen.connect(self.set_theme)
        page.shown.connect(self._apply_settings)
        page.refresh()
        return cast(QWidget, page)

    def _build_server(self) -> QWidget:
        page = self._imported("server").ServerPage()  # the local API: off until turned on
        page.status.connect(self.statusBar().showMessage)
        page.api_state.connect(self.api_label.setText)
        return cast(QWidget, page)

    @property
    def welcome(self) -> WelcomePage:
        if self._welcome is None:
            page = self._imported("welcome").WelcomePage(self.runner, hardware=self.hardware)
            page.status.connect(self.statusBar().showMessage)
            page.model_added.connect(self._model_arrived)
            page.download_wanted.connect(self.download)
            page.skipped.connect(self.hide_welcome)
            self.content.addWidget(page)
            self._welcome = page
        return self._welcome

    def page_modules(self) -> list[str]:
        """The modules of the pages not built yet (what `build_remaining_pages` imports)."""
        keys = [key for key in PAGE_KEYS if key not in self._built]
        if self._welcome is None:
            keys.append("welcome")
        return [
            NOT_IN_EDITION_MODULE
            if key == "images" and not self.images_available
            else PAGE_MODULES[key]
            for key in keys
        ]

    def build_remaining_pages(self) -> None:
        """Build the pages not built yet, one per turn of the event loop, so the window
        answers clicks between them (`open_main_window` calls this once their modules are
        imported, after the first paint). Unfinished downloads resume once Downloads is
        built, as they did at start."""
        if self._closed:
            return
        self._to_build = [key for key in BUILD_ORDER if key not in self._built]
        self._build_next()

    def _build_next(self) -> None:
        while self._to_build and self._to_build[0] in self._built:
            self._to_build.pop(0)  # built meanwhile (a click, or as another page's part)
        if self._closed or not self._to_build:
            return
        self.page(self._to_build.pop(0))
        if self._to_build:
            QTimer.singleShot(0, self, self._build_next)

    def show_page(self, index: int) -> None:
        if 0 <= index < len(PAGES):
            self.hide_welcome()
            self.sidebar.setCurrentRow(index)

    # --- the welcome ------------------------------------------------------------------------

    def welcome_shown(self) -> bool:
        return self._welcome is not None and self.content.currentWidget() is self._welcome

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
            self.runner.submit(import_module(PAGE_MODULES["welcome"]).mark_welcome_seen)
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
        self.show_page(PAGE_KEYS.index("chat"))

    # --- between pages ----------------------------------------------------------------------

    def models_in_use(self) -> set[str]:
        """Library names loaded now: the chat and image models, and the API's."""
        names = {self.status.chat_model, self.status.image_model}
        server = self.built("server")
        if server is not None:
            names |= set(server.models_in_use())
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
        """The Models page's "Open in Images": the Images page, that model picked (in the
        chat-only edition, the page saying images are not in it)."""
        self.show_page(PAGE_KEYS.index("images"))
        if not self.images_available:
            return
        images = cast("ImagesPage", self.images)
        index = images.model_box.findData(name)
        if index >= 0:
            images.model_box.setCurrentIndex(index)

    def _library_edited(self) -> None:
        """A model imported or deleted on the Models page (which re-reads itself); a page
        not built yet reads the library when it is."""
        for key in ("chat", "images"):
            page = self.built(key)
            if page is not None and hasattr(page, "refresh"):
                page.refresh()

    def download(self, variant: GgufVariant) -> None:
        """Queue `variant` on the Downloads page and show that page."""
        service = self.downloads.service
        if service.queue is None:
            self._pending_download = variant  # queued as soon as the queue has started
            service.start()
        else:
            service.enqueue(variant)
        self.show_page(PAGE_KEYS.index("downloads"))

    def _start_pending_download(self, _jobs: object) -> None:
        variant, self._pending_download = self._pending_download, None
        if variant is not None:
            self.downloads.service.enqueue(variant)

    def _apply_settings(self, settings: object) -> None:
        """What the window itself follows from Settings: offline mode on the Downloads page."""
        self._settings = settings
        downloads = self.built("downloads")
        if downloads is not None:  # else it follows them when it is built
            self._follow_settings(downloads, settings)
        welcome = self._welcome
        if welcome is not None and welcome.facts is not None:
            welcome.refresh()  # its download choice follows offline mode too

    @staticmethod
    def _follow_settings(downloads: DownloadsPage, settings: object) -> None:
        offline = bool(getattr(settings, "offline_now", False))
        downloads.set_offline(offline, str(getattr(settings, "offline_reason", "")))
        queue = downloads.service.queue
        models = str(getattr(settings, "models_in_use", "") or "")
        if queue is not None and models and str(queue.paths.models) != models:
            # A models folder chosen in Settings: the next downloads go there.
            queue.paths = dataclass_replace(queue.paths, models=Path(models))

    def page_names(self) -> list[str]:
        return [self.sidebar.item(i).text().lower() for i in range(self.sidebar.count())]

    def _show_page(self, index: int) -> None:
        if not 0 <= index < len(PAGES):
            return
        key = PAGE_KEYS[index]
        self.page(key)  # built now if it was not: never a blank page
        self.pages.setCurrentIndex(index)
        if key == "system" and self.system.report is None:
            self.system.refresh()

    def set_theme(self, choice: str) -> None:
        """Apply a theme to the whole app now (the Settings page saves the choice)."""
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, choice)
            for i, slot in enumerate(PAGES):
                self.sidebar.item(i).setIcon(icon(slot.icon_name))
            # Pages not built yet take the theme's colours when they are.
            for key in ("chat", "settings", "welcome", "images"):
                page = self.built(key)
                if page is not None and hasattr(page, "restyle"):
                    page.restyle()
            models = self.built("models")
            if models is not None:
                models.library.layoutChanged.emit()
            self.status.restyle()
            downloads = self.built("downloads")
            if downloads is not None:
                downloads.set_offline(downloads.offline, self._offline_reason())

    def _offline_reason(self) -> str:
        settings = self.built("settings")
        current = settings.current if settings is not None else None
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
        logs.triggered.connect(self._open_logs)
        welcome = QAction("&Welcome", self)
        welcome.triggered.connect(self.show_welcome)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(welcome)
        help_menu.addAction(shortcuts)
        help_menu.addAction(logs)

    def _open_logs(self) -> None:
        self.system.open_logs()

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
        page = state.value("page", 0)
        try:
            index = int(page)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            index = 0
        index = index if 0 <= index < len(PAGES) else 0
        self.sidebar.setCurrentRow(index)
        self._show_page(index)  # also when the row was current already

    def _restore_splitters(self, page: QWidget) -> None:
        """A page just built takes the splitter sizes it had when the window last closed."""
        state = self.window_state()
        for key, splitter in self._page_splitters(page).items():
            sizes = state.value(key)
            if sizes is not None:
                splitter.restoreState(sizes)

    @staticmethod
    def _page_splitters(page: QWidget) -> dict[str, QSplitter]:
        """The page's splitters by a key that stays put when a page gains one: page, then
        order."""
        return {
            f"splitters/{type(page).__name__}-{n}": splitter
            for n, splitter in enumerate(page.findChildren(QSplitter))
        }

    def _splitters(self) -> dict[str, QSplitter]:
        """Every built page's splitters (a page never built keeps its saved sizes)."""
        keys: dict[str, QSplitter] = {}
        for page in self._built.values():
            keys.update(self._page_splitters(page))
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
        """Read the library and the chats again (F5; a download that arrived). A page not
        built yet reads them when it is built."""
        for key in ("models", "chat", "images"):
            page = self.built(key)
            if page is not None and hasattr(page, "refresh"):
                page.refresh()
        settings = self.built("settings")
        if settings is not None and not settings.isVisible():  # never under unsaved edits
            settings.refresh()
        self._count_library()

    def _count_library(self) -> None:
        self.runner.submit(read_library_state).done.connect(self._library_counted)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closed = True  # no page is built after this
        self._save_state()
        self.status.stop()
        if self._welcome is not None:
            self._welcome.shutdown()  # an install or import still running is cancelled
        for key, stop in (
            ("chat", "shutdown"),  # the chat worker ends: its memory goes back to the system
            ("images", "shutdown"),  # and so does the image worker
            ("downloads", "shutdown"),  # running downloads are queued again for next start
            ("server", "shut_down"),  # the API stops and unloads its model
        ):
            page = self.built(key)
            if page is not None and hasattr(page, stop):
                getattr(page, stop)()
        self.runner.wait(CLOSE_WAIT_MS)
        super().closeEvent(event)


def read_library_state() -> LibraryState:
    """How many models the library holds and whether the welcome was seen (a pool thread;
    the welcome's module is imported there, off the path to the first paint)."""
    state: LibraryState = import_module(PAGE_MODULES["welcome"]).library_state()
    return state


def page_index(window: MainWindow, name: str) -> int:
    """The sidebar position of the page called `name` ("chat", "models", ...), or -1."""
    names = window.page_names()
    return names.index(name) if name in names else -1


__all__ = ["SHORTCUTS", "MainWindow", "Theme", "page_index"]
