"""The main window: this machine at a glance and the model library with fit verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QMainWindow,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.gui.chat_view import ChatView
from app.hardware.detect import detect_hardware
from app.hardware.planner import FitVerdict, plan_load
from app.hardware.profile import HardwareProfile

GiB = 1024**3
_VERDICT_COLOURS = {
    FitVerdict.FITS_GPU: "#1b7f3b",
    FitVerdict.FITS_SPLIT: "#1b5e7f",
    FitVerdict.FITS_RAM: "#1b5e7f",
    FitVerdict.TIGHT: "#a86b00",
    FitVerdict.WONT_FIT: "#b3261e",
}


class _LibrarySignals(QObject):
    loaded = Signal(object, object)  # (HardwareProfile, list of row dicts with plans)
    failed = Signal(str)


class _LoadLibrary(QRunnable):
    """Detect hardware and plan every library model off the UI thread."""

    def __init__(self, signals: _LibrarySignals) -> None:
        super().__init__()
        self.signals = signals

    def run(self) -> None:
        try:
            from app.models.gguf_info import read_gguf_facts
            from app.models.library import list_models
            from app.store import open_default_database

            hw = detect_hardware(include_builds=False)
            rows: list[dict[str, Any]] = []
            for row in list_models(open_default_database()):
                entry = dict(row)
                try:
                    entry["plan"] = plan_load(hw, read_gguf_facts(Path(row["path"])))
                except Exception as exc:  # a missing or damaged file: show why in the row
                    entry["plan"] = None
                    entry["problem"] = str(exc)
                rows.append(entry)
            self.signals.loaded.emit(hw, rows)
        except Exception as exc:
            self.signals.failed.emit(str(exc))


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(f"Hearth {__version__}")
        self.resize(1000, 640)

        self.machine = QLabel("Looking at this machine…")
        self.machine.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(
            ["Model", "Architecture", "Size", "On this machine", "Plan"]
        )
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)

        title = QLabel("Private, on-device AI. Nothing leaves this machine.")
        layout = QVBoxLayout()
        layout.addWidget(title)
        layout.addWidget(self.machine)
        layout.addWidget(QLabel("<b>Model library</b>"))
        layout.addWidget(self.table)
        models_page = QWidget()
        models_page.setLayout(layout)
        self.chat = ChatView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.chat, "Chat")
        self.tabs.addTab(models_page, "Models")
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

        self.signals = _LibrarySignals()
        self.signals.loaded.connect(self._show_library)
        self.signals.failed.connect(lambda msg: self.statusBar().showMessage(msg))
        self.refresh()

    def closeEvent(self, event: Any) -> None:
        self.chat.shutdown()  # the chat worker ends: its memory goes back to the system
        super().closeEvent(event)

    def refresh(self) -> None:
        self.statusBar().showMessage("Checking hardware and the library…")
        QThreadPool.globalInstance().start(_LoadLibrary(self.signals))

    def _show_library(self, hw: HardwareProfile, rows: list[dict[str, Any]]) -> None:
        gpus = ", ".join(f"{g.name} ({g.vram_free / GiB:.1f} GiB free)" for g in hw.gpus) or "none"
        self.machine.setText(
            f"<b>This machine:</b> {hw.cpu.name}, {hw.cpu.physical_cores} cores "
            f"({', '.join(s for s in hw.cpu.simd if s.startswith(('avx', 'neon')))}); "
            f"RAM {hw.ram_available / GiB:.1f} of {hw.ram_total / GiB:.1f} GiB free; GPUs: {gpus}"
        )
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            plan = row.get("plan")
            cells = [
                row["name"],
                f"{row.get('architecture') or ''} {row.get('quantization') or ''}",
                f"{(row.get('size_bytes') or 0) / GiB:.2f} GiB",
                plan.verdict.value if plan else "unusable",
                (
                    f"{plan.backend.value}, {plan.threads} threads, {plan.n_ctx:,} ctx, "
                    f"needs {plan.estimate.total / GiB:.1f} GiB"
                    if plan
                    else row.get("problem", "")
                ),
            ]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j == 3:
                    colour = _VERDICT_COLOURS.get(plan.verdict, "#000") if plan else "#b3261e"
                    item.setForeground(Qt.GlobalColor.white)
                    item.setBackground(_qcolor(colour))
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        n = len(rows)
        self.statusBar().showMessage(
            f"{n} model{'s' if n != 1 else ''} in the library"
            if n
            else "No models yet: run `hearth models starter` to install the starter assistant."
        )


def _qcolor(hex_colour: str) -> Any:
    from PySide6.QtGui import QColor

    return QColor(hex_colour)
