"""The curated catalog for the Models page: each entry with the variant suggested for this
machine, its fit, licence and access, as a Qt table model; and catalog downloads handed to
the Downloads page's DownloadService."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QColor

from app.gui.adapters.downloads import DownloadService, repo_variants
from app.gui.adapters.library_table import AnyIndex, verdict_colour
from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import colours
from app.hardware.detect import this_machine
from app.hardware.profile import HardwareProfile
from app.hub.catalog import CatalogEntry, VariantFit, catalog_entries, fit_variants
from app.hub.config import hub_config
from app.hub.quants import GgufVariant
from app.humanize import format_size
from app.store import open_default_database
from app.store.library import ModelKind, list_models

#: Why an image entry has no Download button here (the queue fetches GGUF files).
IMAGE_DOWNLOAD_NOTE = (
    "The download queue fetches GGUF chat models; for an image model get its diffusers "
    "folder and import it here."
)


@dataclass(frozen=True)
class CatalogRow:
    """One catalog entry on one machine: the variant to offer, and whether it is here."""

    entry: CatalogEntry
    fits: tuple[VariantFit, ...]
    installed: bool

    @property
    def offered(self) -> VariantFit:
        """The suggested variant, or (when none runs here) the smallest, to show why not."""
        return next((f for f in self.fits if f.suggested), None) or min(
            self.fits, key=lambda f: f.variant.size_bytes
        )

    @property
    def gated(self) -> bool:
        # The shipped catalog lists public repos; an entry may say otherwise.
        return bool(getattr(self.entry, "gated", False))

    @property
    def downloadable(self) -> bool:
        return self.entry.kind is ModelKind.CHAT


@dataclass(frozen=True)
class CatalogListing:
    """The catalog planned on a machine, and whether the Hub may be used (offline mode)."""

    machine: str
    rows: tuple[CatalogRow, ...]
    offline: bool
    offline_reason: str


def load_catalog_listing(hardware: HardwareProfile | None) -> CatalogListing:
    """Plan every catalog entry on `hardware` (this machine when None) and read offline mode
    and the library (slow: off the UI thread)."""
    hw = hardware or this_machine()
    with closing(open_default_database()) as db:
        config = hub_config(db)
        models = list_models(db)
    have = {m.filename for m in models if m.filename} | {m.name for m in models}
    rows = []
    for e in catalog_entries():
        fits = tuple(fit_variants(e, hw))
        installed = any(
            f.variant.files[0] in have or f.variant.library_name in have for f in fits
        ) or (e.kind is ModelKind.IMAGE and e.name in have)
        rows.append(CatalogRow(e, fits, installed))
    return CatalogListing(
        hw.simulated or "this machine", tuple(rows), config.offline, config.offline_reason
    )


class CatalogColumn(IntEnum):
    MODEL = 0
    KIND = 1
    VARIANT = 2
    VERDICT = 3
    LICENCE = 4
    ACCESS = 5


CATALOG_HEADERS = {
    CatalogColumn.MODEL: "Model",
    CatalogColumn.KIND: "Kind",
    CatalogColumn.VARIANT: "Suggested here",
    CatalogColumn.VERDICT: "Fit here",
    CatalogColumn.LICENCE: "Licence",
    CatalogColumn.ACCESS: "Access",
}
CATALOG_ROW_ROLE = Qt.ItemDataRole.UserRole + 1


class CatalogTableModel(QAbstractTableModel):
    """One row per catalog entry; the catalog view observes it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: tuple[CatalogRow, ...] = ()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(CatalogColumn)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return CATALOG_HEADERS[CatalogColumn(section)]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = CatalogColumn(index.column())
        if role == CATALOG_ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            return catalog_text(row, column)
        if column == CatalogColumn.VERDICT and role == Qt.ItemDataRole.BackgroundRole:
            return QColor(verdict_colour(row.offered.verdict))
        if column == CatalogColumn.VERDICT and role == Qt.ItemDataRole.ForegroundRole:
            return QColor(colours().on_status)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [row.entry.description, f"Hub repo: {row.entry.repo}"]
            lines += [
                f"{f.variant.quant}: ~{format_size(f.variant.size_bytes)}, {f.verdict.value}"
                + ("  (suggested)" if f.suggested else "")
                for f in row.fits
            ]
            lines.append(row.offered.summary)
            return "\n".join(lines)
        return None

    def set_rows(self, rows: tuple[CatalogRow, ...]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()


def catalog_text(row: CatalogRow, column: CatalogColumn) -> str:
    e = row.entry
    if column == CatalogColumn.MODEL:
        return e.title + ("  (installed)" if row.installed else "")
    if column == CatalogColumn.KIND:
        return str(e.kind.value)
    if column == CatalogColumn.VARIANT:
        offered = row.offered
        return f"{offered.variant.quant} · ~{format_size(offered.variant.size_bytes)}"
    if column == CatalogColumn.VERDICT:
        return row.offered.verdict.value
    if column == CatalogColumn.LICENCE:
        return e.license
    return "gated: needs a Hub token" if row.gated else "open"


class CatalogDownloader(QObject):
    """Turns a catalog pick (repo, file) into a download on the Downloads page's queue: the
    repo's variants are listed off the UI thread (pinned revision, sha256), then the one
    holding `filename` is enqueued on the UI thread."""

    queued = Signal(str)  # the library name being downloaded
    failed = Signal(str)

    def __init__(
        self,
        service: DownloadService,
        runner: BackgroundRunner,
        hardware: HardwareProfile | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.runner = runner
        self.hardware = hardware
        self._pending: dict[str, str] = {}

    def download(self, repo: str, filename: str) -> None:
        self.service.start()  # the queue may not be running yet (the page was never shown)
        hardware = self.hardware
        self._pending = {"repo": repo, "filename": filename}
        job = self.runner.submit(lambda: repo_variants(repo, hardware))
        job.done.connect(self._listed)
        job.failed.connect(self.failed)

    def _listed(self, variants: list[GgufVariant]) -> None:
        filename = self._pending.get("filename", "")
        variant = next((v for v in variants if v.files and v.files[0].path == filename), None)
        if variant is None:
            repo = self._pending.get("repo", "")
            self.failed.emit(
                f"{repo} no longer has {filename}. Search the repo on the Downloads page and "
                "pick another quant."
            )
            return
        self.service.enqueue(variant)
        self.queued.emit(variant.name)
