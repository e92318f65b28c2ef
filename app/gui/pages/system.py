"""The System page: the doctor report, readable, with "copy for a bug report" and the logs."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app import __version__
from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import icon
from app.hardware.profile import HardwareProfile
from app.paths import hearth_paths


@dataclass(frozen=True)
class SystemReport:
    """What the page shows: the doctor report as text, and the same with paths for a bug."""

    text: str
    for_bug_report: str


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
    return SystemReport(text, f"{where}\n{text}")


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
        layout = QVBoxLayout(self)
        title = QLabel(
            "<h2>System</h2>What Hearth found on this machine, as `hearth doctor` shows it."
        )
        title.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)

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
        self.shown.emit(report)

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
