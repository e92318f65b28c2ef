"""The Models page: this machine at a glance and the library with each model's fit verdict."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from app.gui.adapters.library_table import Column, LibraryTableModel, PlannedLibrary, plan_library
from app.gui.adapters.runner import BackgroundRunner
from app.hardware.profile import HardwareProfile
from app.humanize import GiB, format_gib


class ModelsPage(QWidget):
    """Binds the library table model to a view; planning runs on the page's runner."""

    library_shown = Signal(object)  # the PlannedLibrary now on screen
    status = Signal(str)  # a line for the window's status bar

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.hardware = hardware  # None: this machine, detected like the CLI does
        self.machine = QLabel("Looking at this machine…")
        self.machine.setTextFormat(Qt.TextFormat.RichText)
        self.machine.setWordWrap(True)
        self.library = LibraryTableModel()
        self.table = QTableView()
        self.table.setModel(self.library)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Private, on-device AI. Nothing leaves this machine."))
        layout.addWidget(self.machine)
        layout.addWidget(QLabel("<b>Model library</b>"))
        layout.addWidget(self.table)

    def refresh(self) -> None:
        """Re-detect the machine (unless one was given) and re-plan every library model."""
        self.status.emit("Checking hardware and the library…")
        hardware = self.hardware
        job = self.runner.submit(lambda: plan_library(hardware))
        job.done.connect(self._show)
        job.failed.connect(self.status)

    def _show(self, planned: PlannedLibrary) -> None:
        self.machine.setText(machine_summary(planned.hardware))
        self.library.set_models(planned.models)
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(Column.PLAN, QHeaderView.ResizeMode.Stretch)
        n = len(planned.models)
        self.status.emit(
            f"{n} model{'s' if n != 1 else ''} in the library"
            if n
            else "No models yet: run `hearth models starter` to install the starter assistant."
        )
        self.library_shown.emit(planned)


def machine_summary(hw: HardwareProfile) -> str:
    """The machine line above the table: CPU, free RAM and each GPU's free memory."""
    gpus = ", ".join(f"{g.name} ({format_gib(g.vram_free)} free)" for g in hw.gpus) or "none"
    simd = ", ".join(s for s in hw.cpu.simd if s.startswith(("avx", "neon")))
    return (
        f"<b>This machine:</b> {hw.cpu.name}, {hw.cpu.physical_cores} cores ({simd}); "
        f"RAM {hw.ram_available / GiB:.1f} of {format_gib(hw.ram_total)} free; GPUs: {gpus}"
    )
