"""The System page: the doctor report, readable, with "copy for a bug report" and the logs; and
how fast each model ran here (`hearth bench` results, per model)."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.gui.adapters.bench_table import BenchTableModel, read_bench_results
from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import icon
from app.hardware.profile import HardwareProfile
from app.paths import hearth_paths
from app.store.bench import BenchRecord


@dataclass(frozen=True)
class SystemReport:
    """What the page shows: the doctor report as text, and the same with paths for a bug."""

    text: str
    for_bug_report: str
    bench: tuple[BenchRecord, ...] = ()


def system_report(hardware: HardwareProfile | None, *, fresh: bool) -> SystemReport:
    """Detect (or take) the machine and format its doctor report (slow: off the UI thread)."""
    from app.hardware.detect import this_machine
    from app.hardware.doctor import doctor_report, format_doctor_report

    hw = hardware or this_machine(fresh_builds=fresh)
    text = format_doctor_report(doctor_report(hw))
    paths = hearth_paths()
    where = (
        f"Hearth {__version__} on {platform.platform()}\n"
        f"data: {paths.data}\nmodels: {paths.models}\nlogs: {paths.logs}\n"
    )
    return SystemReport(text, f"{where}\n{text}", read_bench_results())


class SystemPage(QWidget):
    """Shows the report; Refresh runs the build checks afresh, like `hearth doctor`."""

    status = Signal(str)
    shown = Signal(object)  # the SystemReport on screen

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.hardware = hardware
        self.report: SystemReport | None = None
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("Looking at this machine…")
        self.copy_button = QPushButton(icon("copy"), "Copy for a bug report")
        self.copy_button.setToolTip("The report, Hearth's version and its folders, as plain text")
        self.copy_button.clicked.connect(self.copy_report)
        self.copy_button.setEnabled(False)
        self.logs_button = QPushButton(icon("folder"), "Open the log folder")
        self.logs_button.setToolTip(str(hearth_paths().logs))
        self.logs_button.clicked.connect(self.open_logs)
        self.refresh_button = QPushButton(icon("refresh"), "Check again")
        self.refresh_button.setToolTip("Run the llama.cpp and PyTorch build checks afresh")
        self.refresh_button.clicked.connect(lambda: self.refresh(fresh=True))
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.logs_button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)

        self.bench = BenchTableModel()
        self.bench_table = QTableView()
        self.bench_table.setModel(self.bench)
        self.bench_table.verticalHeader().setVisible(False)
        self.bench_table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.bench_table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.bench_table.horizontalHeader().setStretchLastSection(True)
        self.bench_model = QComboBox()
        self.bench_model.addItem("All models", None)
        self.bench_model.currentIndexChanged.connect(self._filter_bench)
        self.bench_empty = QLabel(
            "No speed measurements yet. <code>hearth bench chat --model NAME</code> (or "
            "<code>hearth bench image</code>) measures a model the way Hearth runs it; "
            "the results show here."
        )
        self.bench_empty.setWordWrap(True)
        bench_head = QHBoxLayout()
        bench_head.addWidget(QLabel("<b>Speed on this machine</b>"), 1)
        bench_head.addWidget(self.bench_model)
        bench_box = QWidget()
        bench_layout = QVBoxLayout(bench_box)
        bench_layout.setContentsMargins(0, 0, 0, 0)
        bench_layout.addLayout(bench_head)
        bench_layout.addWidget(self.bench_empty)
        bench_layout.addWidget(self.bench_table, 1)

        report_box = QWidget()
        report_layout = QVBoxLayout(report_box)
        report_layout.setContentsMargins(0, 0, 0, 0)
        report_layout.addWidget(self.text, 1)
        report_layout.addLayout(buttons)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(report_box)
        self.splitter.addWidget(bench_box)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        title = QLabel(
            "<h2>System</h2>What Hearth found on this machine, as `hearth doctor` shows it."
        )
        title.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(self.splitter, 1)

    def refresh(self, *, fresh: bool = False) -> None:
        self.refresh_button.setEnabled(False)
        hardware = self.hardware
        job = self.runner.submit(lambda: system_report(hardware, fresh=fresh))
        job.done.connect(self._show)
        job.failed.connect(self._failed)

    def _show(self, report: SystemReport) -> None:
        self.report = report
        self.text.setPlainText(report.text)
        self.copy_button.setEnabled(True)
        self.refresh_button.setEnabled(True)
        self._show_bench(report.bench)
        self.shown.emit(report)

    def _show_bench(self, records: tuple[BenchRecord, ...]) -> None:
        self.bench.set_records(records)
        picked = self.bench_model.currentData()
        self.bench_model.blockSignals(True)
        self.bench_model.clear()
        self.bench_model.addItem("All models", None)
        for name in self.bench.models():
            self.bench_model.addItem(name, name)
        self.bench_model.setCurrentIndex(max(self.bench_model.findData(picked), 0))
        self.bench_model.blockSignals(False)
        self.bench.set_model_filter(self.bench_model.currentData())
        self.bench_empty.setVisible(not records)
        self.bench_table.setVisible(bool(records))
        self.bench_model.setVisible(bool(records))
        self.bench_table.resizeColumnsToContents()
        self.bench_table.horizontalHeader().setSectionResizeMode(
            len(self.bench.rows[0]) - 1 if self.bench.rows else 0,
            QHeaderView.ResizeMode.Stretch,
        )

    def _filter_bench(self) -> None:
        self.bench.set_model_filter(self.bench_model.currentData())

    def _failed(self, message: str) -> None:
        self.refresh_button.setEnabled(True)
        self.text.setPlainText(message)
        self.status.emit(message)

    def copy_report(self) -> None:
        if self.report is not None:
            QGuiApplication.clipboard().setText(self.report.for_bug_report)
            self.status.emit("The system report is on the clipboard.")

    def open_logs(self) -> None:
        logs = hearth_paths().logs
        logs.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(logs)))
