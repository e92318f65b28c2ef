"""The main window: a tab per page (chat, models), a menu, a status bar; nothing else."""

from __future__ import annotations

from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QMainWindow, QTabWidget

from app import __version__
from app.gui.adapters.runner import BackgroundRunner
from app.gui.pages.chat import ChatPage
from app.gui.pages.models import ModelsPage
from app.hardware.profile import HardwareProfile

#: How long closing the window waits for database reads and planning still running.
CLOSE_WAIT_MS = 30_000


class MainWindow(QMainWindow):
    """`hardware` replaces this machine's profile (tests use simulated machines)."""

    def __init__(self, *, hardware: HardwareProfile | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"Hearth {__version__}")
        self.resize(1000, 640)
        self.runner = BackgroundRunner(self)
        self.chat = ChatPage(self.runner, hardware=hardware)
        self.models = ModelsPage(self.runner, hardware=hardware)
        self.models.status.connect(self.statusBar().showMessage)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.chat, "Chat")
        self.tabs.addTab(self.models, "Models")
        self.setCentralWidget(self.tabs)

        refresh = QAction("&Refresh", self)
        refresh.setShortcut(QKeySequence.StandardKey.Refresh)
        refresh.triggered.connect(self.refresh)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        menu = self.menuBar().addMenu("&Hearth")
        menu.addAction(refresh)
        menu.addAction(quit_action)
        self.refresh()

    def refresh(self) -> None:
        self.models.refresh()
        self.chat.refresh()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.chat.shutdown()  # the chat worker ends: its memory goes back to the system
        self.runner.wait(CLOSE_WAIT_MS)
        super().closeEvent(event)
