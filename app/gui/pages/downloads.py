"""The Downloads page: find a GGUF model on the Hub (or the mirror in HF_ENDPOINT), see each
quant's size and fit here with the suggested one marked, download it; and the queue, with
progress, speed, time left, pause, resume (Retry) and cancel."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.downloads import (
    JOB_ROLE,
    DownloadColumn,
    DownloadService,
    DownloadsModel,
    repo_variants,
    search_hub,
)
from app.gui.adapters.library_table import verdict_colour
from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import colours, icon
from app.hardware.profile import HardwareProfile
from app.hub.downloads import DownloadJob
from app.hub.quants import GgufVariant
from app.humanize import format_size
from app.store.downloads import DownloadState


class DownloadsPage(QWidget):
    status = Signal(str)
    results_shown = Signal(object)  # the search results on screen
    variants_shown = Signal(object)  # the GgufVariants of the picked repo
    library_changed = Signal()  # a download reached the library

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.hardware = hardware
        self.variants: list[GgufVariant] = []
        self.service = DownloadService(runner)
        self.service.job_changed.connect(self._on_job)
        self.service.started.connect(self._on_started)
        self.service.failed.connect(self.status)

        # --- find ---
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search the Hub for GGUF models, e.g. qwen2.5 1.5b")
        self.query.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        self.results = QListWidget()
        self.results.currentItemChanged.connect(self._pick_repo)
        self.variant_table = QTableWidget(0, 4)
        self.variant_table.setHorizontalHeaderLabels(["Quant", "Size", "Here", "Licence"])
        self.variant_table.verticalHeader().setVisible(False)
        self.variant_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.variant_table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.variant_table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.variant_table.horizontalHeader().setStretchLastSection(True)
        self.download_button = QPushButton(icon("downloads"), "Download")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download_selected)
        self.offline = False  # set_offline: search and Download stay off while it is on
        self.variant_table.itemSelectionChanged.connect(
            lambda: self.download_button.setEnabled(
                not self.offline and bool(self.variant_table.selectedItems())
            )
        )
        self.find_note = QLabel("")
        self.find_note.setWordWrap(True)

        search_row = QHBoxLayout()
        search_row.addWidget(self.query, 1)
        search_row.addWidget(self.search_button)
        find = QVBoxLayout()
        find.addLayout(search_row)
        find.addWidget(self.find_note)
        lists = QSplitter()
        lists.addWidget(self.results)
        right = QWidget()
        right_col = QVBoxLayout(right)
        right_col.setContentsMargins(0, 0, 0, 0)
        right_col.addWidget(self.variant_table, 1)
        right_col.addWidget(self.download_button)
        lists.addWidget(right)
        lists.setStretchFactor(1, 2)
        find.addWidget(lists, 1)
        find_box = QWidget()
        find_box.setLayout(find)

        # --- the queue ---
        self.jobs = DownloadsModel()
        self.table = QTableView()
        self.table.setModel(self.jobs)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(
            DownloadColumn.NOTE, QHeaderView.ResizeMode.Stretch
        )
        self.table.selectionModel().currentRowChanged.connect(self._job_picked)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(lambda: self._on_selected(self.service.pause))
        self.resume_button = QPushButton("Resume / Retry")
        self.resume_button.clicked.connect(lambda: self._on_selected(self.service.resume))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop and delete the partial files")
        self.cancel_button.clicked.connect(lambda: self._on_selected(self.service.cancel))
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            button.setEnabled(False)
        job_buttons = QHBoxLayout()
        job_buttons.addWidget(self.pause_button)
        job_buttons.addWidget(self.resume_button)
        job_buttons.addWidget(self.cancel_button)
        job_buttons.addStretch(1)
        queue = QVBoxLayout()
        queue.addWidget(
            QLabel(
                "<b>Downloads</b> (they go on in the background, and resume after Hearth restarts)"
            )
        )
        queue.addWidget(self.table, 1)
        queue.addLayout(job_buttons)
        queue_box = QWidget()
        queue_box.setLayout(queue)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(find_box)
        splitter.addWidget(queue_box)
        layout = QVBoxLayout(self)
        title = QLabel("<h2>Downloads</h2>")
        layout.addWidget(title)
        self.offline_note = QLabel("")
        self.offline_note.setWordWrap(True)
        self.offline_note.hide()
        layout.addWidget(self.offline_note)
        layout.addWidget(splitter, 1)
        # Downloads an earlier Hearth left unfinished resume at once; otherwise the queue
        # starts when this page is first shown.
        self.service.start(only_if_unfinished=True)

    def set_offline(self, offline: bool, reason: str = "") -> None:
        """Offline mode on: say so above the search, and turn search and Download off."""
        self.offline = offline
        from_env = bool(reason) and "Settings" not in reason  # HF_HUB_OFFLINE=1 wins
        why = f" ({reason})" if from_env else " in Settings"
        fix = "Unset HF_HUB_OFFLINE and restart Hearth" if from_env else "Turn it off in Settings"
        self.offline_note.setText(
            f"Offline mode is on{why}: Hearth does not contact the Hub, so search and new "
            f"downloads are off. {fix} to search and download."
            if offline
            else ""
        )
        self.offline_note.setStyleSheet(f"color: {colours().warn};")
        self.offline_note.setVisible(offline)
        self.query.setEnabled(not offline)
        self.search_button.setEnabled(not offline)
        self.download_button.setEnabled(not offline and bool(self.variant_table.selectedItems()))

    def showEvent(self, event: QShowEvent) -> None:
        self.service.start()
        super().showEvent(event)

    # --- finding --------------------------------------------------------------------------

    def search(self) -> None:
        query = self.query.text().strip()
        self.search_button.setEnabled(False)
        self.find_note.setText(
            f"Searching for “{query}”…" if query else "Listing popular GGUF models…"
        )
        hardware = self.hardware
        job = self.runner.submit(lambda: search_hub(query, hardware))
        job.done.connect(self._show_results)
        job.failed.connect(self._find_failed)

    def _show_results(self, results: list[object]) -> None:
        self.search_button.setEnabled(True)
        self.results.clear()
        for model in results:
            fit = getattr(model, "best_fit", None)
            gated = " · gated" if getattr(model, "gated", False) else ""
            best = f" · {fit.quant}: {fit.verdict.value}" if fit else ""
            item = QListWidgetItem(f"{model.repo}\n{model.downloads:,} downloads{best}{gated}")  # type: ignore[attr-defined]
            item.setData(Qt.ItemDataRole.UserRole, model.repo)  # type: ignore[attr-defined]
            self.results.addItem(item)
        self.find_note.setText(
            f"{len(results)} repos; pick one to see its quants." if results else "Nothing found."
        )
        self.results_shown.emit(results)

    def _find_failed(self, message: str) -> None:
        self.search_button.setEnabled(True)
        self.find_note.setText(message)
        self.status.emit(message)

    def _pick_repo(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        if item is None:
            return
        repo = str(item.data(Qt.ItemDataRole.UserRole))
        self.find_note.setText(f"Listing the GGUF files of {repo}…")
        hardware = self.hardware
        job = self.runner.submit(lambda: repo_variants(repo, hardware))
        job.done.connect(self._show_variants)
        job.failed.connect(self._find_failed)

    def _show_variants(self, variants: list[GgufVariant]) -> None:
        self.variants = list(variants)
        self.variant_table.setRowCount(len(variants))
        suggested_row = -1
        for row, v in enumerate(variants):
            quant = (v.quant or "GGUF") + ("  ★ suggested" if v.suggested else "")
            licence = (v.license or "?") + (" · gated" if v.gated else "")
            cells = [quant, format_size(v.size, digits=1), v.verdict.value, licence]
            for column, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                if column == 2:  # the fit badge, in the verdict's colour
                    cell.setBackground(QColor(verdict_colour(v.verdict)))
                    cell.setForeground(QColor(colours().on_status))
                self.variant_table.setItem(row, column, cell)
            if v.suggested:
                suggested_row = row
        self.variant_table.resizeColumnsToContents()
        if suggested_row >= 0:
            self.variant_table.selectRow(suggested_row)
        repo = variants[0].repo if variants else ""
        self.find_note.setText(
            f"{repo}: the suggested quant fits this machine best." if variants else "No GGUF files."
        )
        self.variants_shown.emit(self.variants)

    def download_selected(self) -> None:
        rows = {i.row() for i in self.variant_table.selectedItems()}
        if not rows:
            return
        variant = self.variants[min(rows)]
        self.service.enqueue(variant)
        self.status.emit(f"Downloading {variant.name} ({format_size(variant.size, digits=1)}).")

    # --- the queue ------------------------------------------------------------------------

    def _on_started(self, jobs: list[DownloadJob]) -> None:
        self.jobs.set_jobs(jobs)
        self.table.resizeColumnsToContents()

    def _on_job(self, job: DownloadJob) -> None:
        rows = self.jobs.rowCount()
        before = next((j.state for j in self.jobs.jobs if j.id == job.id), None)
        self.jobs.update(job)
        if self.jobs.rowCount() != rows:
            self.table.resizeColumnsToContents()
        self._job_picked(self.table.currentIndex())
        if job.state == DownloadState.COMPLETE and before != DownloadState.COMPLETE:
            self.status.emit(f"{job.name} is in the library.")
            self.library_changed.emit()
        elif job.state == DownloadState.FAILED and job.error:
            self.status.emit(job.error)

    def selected_job(self) -> DownloadJob | None:
        index = self.table.currentIndex()
        job = index.data(JOB_ROLE) if index.isValid() else None
        return job if isinstance(job, DownloadJob) else None

    def _job_picked(self, _index: QModelIndex, _previous: object = None) -> None:
        job = self.selected_job()
        state = job.state if job else None
        self.pause_button.setEnabled(state in (DownloadState.RUNNING, DownloadState.QUEUED))
        self.resume_button.setEnabled(state in (DownloadState.PAUSED, DownloadState.FAILED))
        self.cancel_button.setEnabled(
            state is not None and state not in (DownloadState.COMPLETE, DownloadState.CANCELLED)
        )

    def _on_selected(self, action: object) -> None:
        job = self.selected_job()
        if job is not None:
            action(job.id)  # type: ignore[operator]

    def shutdown(self) -> None:
        self.service.close()
