"""The Models page's Catalog tab: the curated models with the variant suggested for this
machine, its fit badge, licence and access, and a Download button (off in offline mode)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.models_catalog import (
    CATALOG_ROW_ROLE,
    IMAGE_DOWNLOAD_NOTE,
    CatalogColumn,
    CatalogListing,
    CatalogRow,
    CatalogTableModel,
)
from app.gui.theme import colours, icon
from app.humanize import format_size


class CatalogPane(QWidget):
    """Binds the catalog table model to a view; Download emits (repo, filename)."""

    download_clicked = Signal(str, str)  # Hub repo, file of the offered variant

    def __init__(self) -> None:
        super().__init__()
        self.listing: CatalogListing | None = None
        self.catalog = CatalogTableModel()
        self.table = QTableView()
        self.table.setModel(self.catalog)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        self.table.selectionModel().currentRowChanged.connect(self._picked)
        self.offline_note = QLabel("")
        self.offline_note.setWordWrap(True)
        self.offline_note.setVisible(False)
        self.note = QLabel("Pick a model to see its variants and download the suggested one.")
        self.note.setWordWrap(True)
        self.download_button = QPushButton(icon("downloads"), "Download")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self._download)

        bottom = QHBoxLayout()
        bottom.addWidget(self.note, 1)
        bottom.addWidget(self.download_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.offline_note)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        self.restyle()

    def show_listing(self, listing: CatalogListing) -> None:
        self.listing = listing
        self.catalog.set_rows(listing.rows)
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(CatalogColumn.MODEL, QHeaderView.ResizeMode.Stretch)
        if listing.offline:
            self.offline_note.setText(
                f"Offline mode ({listing.offline_reason}): Hearth does not contact the Hub, so "
                "downloads are off. Turn offline mode off in Settings to download; import "
                "models from a folder or USB drive on the Installed tab meanwhile."
            )
        self.offline_note.setVisible(listing.offline)
        self._picked(self.table.currentIndex())

    def selected(self) -> CatalogRow | None:
        index = self.table.currentIndex()
        row = index.data(CATALOG_ROW_ROLE) if index.isValid() else None
        return row if isinstance(row, CatalogRow) else None

    def _picked(self, _index: QModelIndex, _previous: object = None) -> None:
        row = self.selected()
        offline = self.listing is not None and self.listing.offline
        if row is None:
            self.download_button.setEnabled(False)
            return
        offered = row.offered
        variants = ", ".join(
            f"{f.variant.quant} ~{format_size(f.variant.size_bytes)} ({f.verdict.value})"
            for f in row.fits
        )
        if offered.suggested:
            offer = f"Suggested here: {offered.variant.quant}."
        else:
            offer = "Nothing fits this machine; pick a smaller model."
        text = f"{row.entry.description} {offer} Variants: {variants}."
        if not row.downloadable:
            text += " " + IMAGE_DOWNLOAD_NOTE
        self.note.setText(text)
        self.download_button.setEnabled(row.downloadable and not offline)
        self.download_button.setToolTip(
            "Off in offline mode" if offline else f"{row.entry.repo}: {offered.variant.files[0]}"
        )

    def _download(self) -> None:
        row = self.selected()
        if row is None or not row.downloadable or (self.listing and self.listing.offline):
            return
        self.download_clicked.emit(row.entry.repo, row.offered.variant.files[0])

    def restyle(self) -> None:
        self.offline_note.setStyleSheet(f"color: {colours().warn}; font-weight: bold;")
