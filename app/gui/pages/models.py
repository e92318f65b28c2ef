"""The Models page: this machine at a glance; the installed models (sortable, filterable,
with fit verdicts, details and load plans) to import, export, delete or chat with; and the
curated catalog with the variant suggested for this machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import edition
from app.errors import HearthError
from app.gui.adapters.downloads import DownloadService
from app.gui.adapters.library_actions import (
    ImportReport,
    LibraryTask,
    TaskProgress,
    check_not_in_use,
    delete_question,
    delete_task,
    export_task,
    import_task,
)
from app.gui.adapters.library_table import (
    PLANNED_ROLE,
    Column,
    LibraryFilter,
    LibraryTableModel,
    PlannedLibrary,
    PlannedModel,
    plan_library,
)
from app.gui.adapters.models_catalog import CatalogDownloader, load_catalog_listing
from app.gui.adapters.runner import BackgroundRunner
from app.gui.pages.models_catalog import CatalogPane
from app.gui.pages.models_details import DetailsPane
from app.gui.pages.not_in_edition import HEADLINE
from app.gui.theme import colours, icon
from app.hardware.profile import HardwareProfile
from app.humanize import GiB, format_gib, format_size
from app.models.portable import ExportResult
from app.models.removal import RemovedModel
from app.store.library import ModelSource

#: What the Import file dialog offers.
GGUF_FILTER = "GGUF models (*.gguf);;Export manifests (hearth-manifest.json);;All files (*)"


class ModelsPage(QWidget):
    """Binds the library and catalog table models to views; every library operation and
    all planning run on the page's runner."""

    library_shown = Signal(object)  # the PlannedLibrary now on screen
    catalog_shown = Signal(object)  # the CatalogListing now on screen
    status = Signal(str)  # a line for the window's status bar
    chat_requested = Signal(str)  # "Chat with it": a library name
    images_requested = Signal(str)  # "Open in Images": a library name
    download_requested = Signal(str, str)  # a catalog pick: Hub repo, file name
    library_changed = Signal()  # a model was imported or deleted
    task_ended = Signal(str)  # the line shown when an import, export or delete ended
    refused = Signal(str)  # the one-sentence reason an action was refused

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.hardware = hardware  # None: this machine, detected like the CLI does
        self.task: LibraryTask | None = None
        self._in_use: Callable[[], set[str]] = set
        self._downloader: CatalogDownloader | None = None
        self._keep_selected: str | None = None
        self.setAcceptDrops(True)

        self.machine = QLabel("Looking at this machine…")
        self.machine.setTextFormat(Qt.TextFormat.RichText)
        self.machine.setWordWrap(True)

        # --- installed ---
        self.library = LibraryTableModel()
        self.sorted = LibraryFilter(self.library)
        self.table = QTableView()
        self.table.setModel(self.sorted)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(Column.MODEL, Qt.SortOrder.AscendingOrder)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.ExtendedSelection)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by name, kind, quant or architecture")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.sorted.set_filter_text)
        self.import_file_button = QPushButton(icon("import"), "Import file…")
        self.import_file_button.setToolTip("A .gguf file (any part of a split one) or a manifest")
        self.import_file_button.clicked.connect(self._import_file_clicked)
        self.import_folder_button = QPushButton(icon("folder"), "Import folder…")
        self.import_folder_button.setToolTip(
            "A folder written by Export (on a USB drive, say), a diffusers image model folder, "
            "or a folder holding one .gguf model"
        )
        self.import_folder_button.clicked.connect(self._import_folder_clicked)
        self.details = DetailsPane()
        self.details.chat_clicked.connect(self.chat_requested)
        self.details.images_clicked.connect(self.images_requested)
        self.details.reveal_clicked.connect(self.reveal)
        self.details.export_clicked.connect(self._export_clicked)
        self.details.delete_clicked.connect(self.delete_model)

        self.alert = QLabel("")
        self.alert.setWordWrap(True)
        self.alert.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.alert.setVisible(False)
        self.progress_title = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_detail = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_task)
        self.progress_box = QWidget()
        progress_row = QHBoxLayout(self.progress_box)
        progress_row.setContentsMargins(0, 0, 0, 0)
        progress_left = QVBoxLayout()
        progress_left.addWidget(self.progress_title)
        progress_left.addWidget(self.progress_bar)
        progress_left.addWidget(self.progress_detail)
        progress_row.addLayout(progress_left, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_box.setVisible(False)
        self.drop_hint = QLabel("Drop a .gguf file or a model folder here to import it.")

        tools = QHBoxLayout()
        tools.addWidget(self.filter, 1)
        tools.addWidget(self.import_file_button)
        tools.addWidget(self.import_folder_button)
        split = QSplitter()
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setChildrenCollapsible(False)
        split.setSizes([640, 300])
        installed = QWidget()
        installed_col = QVBoxLayout(installed)
        installed_col.setContentsMargins(0, 6, 0, 0)
        installed_col.addLayout(tools)
        installed_col.addWidget(self.alert)
        installed_col.addWidget(self.progress_box)
        installed_col.addWidget(split, 1)
        installed_col.addWidget(self.drop_hint)

        # --- catalog ---
        self.catalog = CatalogPane()
        self.catalog.download_clicked.connect(self._download_clicked)
        catalog = QWidget()
        catalog_col = QVBoxLayout(catalog)
        catalog_col.setContentsMargins(0, 6, 0, 0)
        catalog_col.addWidget(self.catalog)

        self.tabs = QTabWidget()
        self.tabs.addTab(installed, icon("models"), "Installed")
        self.tabs.addTab(catalog, icon("downloads"), "Catalog")
        layout = QVBoxLayout(self)
        layout.addWidget(self.machine)
        layout.addWidget(self.tabs, 1)
        self.restyle()

    # --- wiring (main_window) ---------------------------------------------------------------

    def set_in_use_check(self, in_use: Callable[[], set[str]]) -> None:
        """`in_use()` names the models loaded in Chat, Images or the API (UI thread, quick);
        Delete refuses those."""
        self._in_use = in_use

    def set_download_service(self, service: DownloadService) -> None:
        """Let Download in the catalog enqueue on the Downloads page's queue (besides
        emitting `download_requested`)."""
        self._downloader = CatalogDownloader(service, self.runner, self.hardware)
        self._downloader.queued.connect(self._download_queued)
        self._downloader.failed.connect(self._refuse)

    # --- planning -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-detect the machine (unless one was given), re-plan every library model and the
        catalog."""
        self.status.emit("Checking hardware and the library…")
        hardware = self.hardware
        job = self.runner.submit(lambda: plan_library(hardware))
        job.done.connect(self._show)
        job.failed.connect(self.status)
        job.failed.connect(self._refresh_catalog)

    def _refresh_catalog(self, _failed: str = "") -> None:
        # After the library's job, not beside it: two connections creating a fresh
        # database at once can make one fail ("database is locked").
        hardware = self.hardware
        catalog = self.runner.submit(lambda: load_catalog_listing(hardware))
        catalog.done.connect(self._show_catalog)
        catalog.failed.connect(self.status)

    def _show(self, planned: PlannedLibrary) -> None:
        keep = self._keep_selected or self.selected_name()
        self._keep_selected = None
        self.machine.setText(machine_summary(planned.hardware))
        self.library.set_models(planned.models)
        self.table.resizeColumnsToContents()
        # The plan is in the details pane; the column stays in the model for other views.
        self.table.setColumnHidden(Column.PLAN, True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(Column.MODEL, QHeaderView.ResizeMode.Stretch)
        if not (keep and self.select(keep)) and self.sorted.rowCount():
            self.table.selectRow(0)
            self.table.setCurrentIndex(self.sorted.index(0, 0))
        if not self.table.currentIndex().isValid():
            self._show_details(None)
        n = len(planned.models)
        self.status.emit(
            f"{n} model{'s' if n != 1 else ''} in the library"
            if n
            else "No models yet: import one, pick one in the catalog, or run "
            "`hearth models starter` for the starter assistant."
        )
        self.library_shown.emit(planned)
        self._refresh_catalog()

    def _show_catalog(self, listing: object) -> None:
        self.catalog.show_listing(listing)  # type: ignore[arg-type]
        self.catalog_shown.emit(listing)

    # --- selection and details --------------------------------------------------------------

    def select(self, name: str) -> bool:
        """Make `name` the current row (False when it is not shown)."""
        row = self.library.row_named(name)
        if row < 0:
            return False
        index = self.sorted.mapFromSource(self.library.index(row, 0))
        if not index.isValid():
            return False
        self.table.selectRow(index.row())
        self.table.setCurrentIndex(index)
        return True

    def selected_row(self) -> PlannedModel | None:
        index = self.table.currentIndex()
        row = index.data(PLANNED_ROLE) if index.isValid() else None
        return row if isinstance(row, PlannedModel) else None

    def selected_name(self) -> str | None:
        row = self.selected_row()
        return row.model.name if row is not None else None

    def selected_names(self) -> list[str]:
        rows = self.table.selectionModel().selectedRows()
        names = [r.data(PLANNED_ROLE).model.name for r in rows]
        current = self.selected_name()
        return names or ([current] if current else [])

    def _current_changed(self, index: QModelIndex, _previous: object = None) -> None:
        row = index.data(PLANNED_ROLE) if index.isValid() else None
        self._show_details(row if isinstance(row, PlannedModel) else None)

    def _show_details(self, row: PlannedModel | None) -> None:
        self.details.show_model(row, busy=self.busy)
        if not edition.images_available():  # the chat-only edition: an image model stays listed
            button = self.details.images_button
            button.setEnabled(False)
            button.setToolTip(f"{HEADLINE}: install the full edition to make images with it.")

    def reveal(self, name: str) -> None:
        """Open the folder holding the model in the system's file manager."""
        row = self.library.row_named(name)
        if row < 0:
            return
        path = self.library.rows[row].model.path
        folder = path if path.is_dir() else path.parent
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # --- import -----------------------------------------------------------------------------

    def import_paths(self, paths: Sequence[Path]) -> LibraryTask | None:
        """Import `paths` (files or folders) off the UI thread; None when another library
        task is running."""
        paths = [Path(p) for p in paths]
        if not paths or not self._can_start():
            return None
        return self._start(import_task(paths))

    def _import_file_clicked(self) -> None:
        path = self.choose_file("Import a model file")
        if path is not None:
            self.import_paths([path])

    def _import_folder_clicked(self) -> None:
        path = self.choose_folder("Import a model folder or an export folder")
        if path is not None:
            self.import_paths([path])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event)
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.tabs.setCurrentIndex(0)
        self.import_paths(paths)

    # --- export -----------------------------------------------------------------------------

    def export_to(self, names: Sequence[str], dest: Path) -> LibraryTask | None:
        """Export `names` and their manifest into `dest` off the UI thread."""
        if not names or not self._can_start():
            return None
        return self._start(export_task(names, Path(dest)))

    def _export_clicked(self) -> None:
        names = self.selected_names()
        if not names:
            return
        dest = self.choose_folder(f"Export {', '.join(names)} to a folder or USB drive")
        if dest is not None:
            self.export_to(names, dest)

    # --- delete -----------------------------------------------------------------------------

    def delete_model(self, name: str) -> LibraryTask | None:
        """Ask, then delete `name` off the UI thread; refused (and said why) while in use."""
        row = self.library.row_named(name)
        if row < 0 or not self._can_start():
            return None
        model = self.library.rows[row].model
        try:
            check_not_in_use(model, self._in_use())
        except HearthError as exc:
            self._refuse(str(exc))
            return None
        title = "Forget the model?" if model.source is ModelSource.LINK else "Delete the model?"
        if not self.confirm(title, delete_question(model)):
            self.status.emit(f"Kept {model.name}.")
            return None
        return self._start(delete_task(model.name))

    # --- the running task -------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.task is not None and self.task.running

    def _can_start(self) -> bool:
        if self.busy and self.task is not None:
            self._refuse(
                f"{self.task.title} is still running. Wait for it to finish, or cancel it."
            )
            return False
        return True

    def _start(self, task: LibraryTask) -> LibraryTask:
        self.task = task
        self.alert.setVisible(False)
        task.progress.connect(self._on_progress)
        task.finished.connect(self._on_finished)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        self.progress_title.setText(task.title + "…")
        self.progress_bar.setValue(0)
        self.progress_detail.setText("Checking…")
        self.cancel_button.setEnabled(True)
        self.progress_box.setVisible(True)
        self.status.emit(task.title + "…")
        task.start(self.runner)
        self._set_busy(True)
        return task

    def cancel_task(self) -> None:
        if self.task is not None and self.task.running:
            self.task.cancel()
            self.cancel_button.setEnabled(False)
            self.progress_detail.setText("Cancelling…")

    def _on_progress(self, progress: TaskProgress) -> None:
        if self.task is None or not self.task.running:
            return
        self.progress_bar.setValue(progress.percent)
        if not self.task.cancel_requested:
            self.progress_detail.setText(progress.text())

    def _on_finished(self, result: object) -> None:
        self._end_task()
        if isinstance(result, ImportReport):
            self._imported(result)
        elif isinstance(result, ExportResult):
            n = len(result.models)
            self._ended(
                f"Exported {n} model{'s' if n != 1 else ''} ({format_size(result.size_bytes)}) "
                f"and {result.manifest.name} to {result.dest}. On the other machine, import "
                "that folder."
            )
        elif isinstance(result, RemovedModel):
            if result.deleted:
                line = f"Deleted {result.name} and freed {format_size(result.freed_bytes)}."
            else:
                where = ", ".join(str(p) for p in result.kept)
                line = f"Removed {result.name} from the library; its files stay at {where}."
            self._changed(line)

    def _imported(self, report: ImportReport) -> None:
        lines = []
        new = [m for m in report.imported if not m.already_present]
        for m in report.imported:
            if m.already_present:
                lines.append(f"{m.name} is already in the library; nothing to do.")
            else:
                lines.append(f"Imported {m.name} ({m.kind}, {format_size(m.size_bytes)}).")
        if report.refused:
            problems = [
                why if path.name in why else f"{path.name}: {why}" for path, why in report.refused
            ]
            self._refuse("\n".join(problems))
        if new:
            self._keep_selected = new[0].name
            self._changed(" ".join(lines))
        elif lines:
            self._ended(" ".join(lines))
        else:  # every path was refused: the alert says why
            self.task_ended.emit(self.alert.text())

    def _changed(self, line: str) -> None:
        self._ended(line)
        self.library_changed.emit()
        self.refresh()

    def _ended(self, line: str) -> None:
        self.status.emit(line)
        self.task_ended.emit(line)

    def _on_failed(self, message: str) -> None:
        self._end_task()
        self._refuse(message)
        self.task_ended.emit(message)

    def _on_cancelled(self) -> None:
        title = self.task.title if self.task is not None else "The operation"
        self._end_task()
        self._ended(f"{title}: cancelled; nothing half-copied was left behind.")

    def _end_task(self) -> None:
        self.progress_box.setVisible(False)
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.import_file_button.setEnabled(not busy)
        self.import_folder_button.setEnabled(not busy)
        self._show_details(self.selected_row())

    def _refuse(self, message: str) -> None:
        self.alert.setText(message)
        self.alert.setVisible(True)
        self.status.emit(message.splitlines()[0] if message else message)
        self.refused.emit(message)

    # --- catalog downloads ------------------------------------------------------------------

    def _download_clicked(self, repo: str, filename: str) -> None:
        self.download_requested.emit(repo, filename)
        if self._downloader is not None:
            self._downloader.download(repo, filename)
        self.status.emit(f"Asked for {filename} from {repo}; see the Downloads page.")

    def _download_queued(self, name: str) -> None:
        self.status.emit(f"Downloading {name}: progress on the Downloads page.")

    # --- look -------------------------------------------------------------------------------

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.restyle()
        super().changeEvent(event)

    def restyle(self) -> None:
        c = colours()
        self.alert.setStyleSheet(f"color: {c.bad};")
        self.drop_hint.setStyleSheet(f"color: {c.muted};")
        self.progress_detail.setStyleSheet(f"color: {c.muted};")
        self.details.restyle()
        self.catalog.restyle()
        # The verdict badges are read from the theme when painted: paint them again.
        self.table.viewport().update()
        self.catalog.table.viewport().update()

    # --- dialogs (tests replace them on the instance) ---------------------------------------

    def confirm(self, title: str, question: str) -> bool:
        """Ask a yes/no question; No is the default."""
        answer = QMessageBox.question(
            self,
            title,
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def choose_folder(self, title: str) -> Path | None:
        folder = QFileDialog.getExistingDirectory(self, title)
        return Path(folder) if folder else None

    def choose_file(self, title: str) -> Path | None:
        path, _filter = QFileDialog.getOpenFileName(self, title, "", GGUF_FILTER)
        return Path(path) if path else None


def dropped_paths(event: QDropEvent | QDragEnterEvent) -> list[Path]:
    """The local files and folders in a drag (URLs from elsewhere are not models)."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def machine_summary(hw: HardwareProfile) -> str:
    """The machine line above the table: CPU, free RAM and each GPU's free memory."""
    gpus = ", ".join(f"{g.name} ({format_gib(g.vram_free)} free)" for g in hw.gpus) or "none"
    simd = ", ".join(s for s in hw.cpu.simd if s.startswith(("avx", "neon")))
    return (
        f"<b>This machine:</b> {hw.cpu.name}, {hw.cpu.physical_cores} cores ({simd}); "
        f"RAM {hw.ram_available / GiB:.1f} of {format_gib(hw.ram_total)} free; GPUs: {gpus}"
    )
