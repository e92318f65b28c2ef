"""The model library planned on one machine, as a Qt table model the Models page shows."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor

from app.gui.theme import colours
from app.hardware.detect import this_machine
from app.hardware.profile import HardwareProfile
from app.humanize import format_local_time, format_parameters, format_size
from app.models.kinds import ModelPlan, PlannedModel, kind_spec, plan_library_model
from app.planner import FitVerdict, LoadPlan
from app.sessions.preferences import load_settings
from app.store import open_default_database
from app.store.library import ModelSource, list_models

#: The verdict cell's colour (a meaning of the theme's), so "won't fit" stands out before
#: anyone reads it.
VERDICT_MEANINGS = {
    FitVerdict.FITS_GPU: "good",
    FitVerdict.FITS_SPLIT: "info",
    FitVerdict.FITS_RAM: "info",
    FitVerdict.TIGHT: "warn",
    FitVerdict.WONT_FIT: "bad",
}
UNUSABLE_MEANING = "bad"
#: Best first: the order the verdict column sorts in.
VERDICT_ORDER = (
    FitVerdict.FITS_GPU,
    FitVerdict.FITS_SPLIT,
    FitVerdict.FITS_RAM,
    FitVerdict.TIGHT,
    FitVerdict.WONT_FIT,
)


def verdict_colour(verdict: FitVerdict | None) -> str:
    """The theme colour for a verdict (None: unusable)."""
    meaning = VERDICT_MEANINGS[verdict] if verdict is not None else UNUSABLE_MEANING
    return str(getattr(colours(), meaning))


#: Shown in the verdict column for a model that could not be planned (its file is gone or damaged).
UNUSABLE = "unusable"


def verdict_text(row: PlannedModel) -> str:
    """The verdict column's text: the plan's verdict, or "unusable"."""
    return row.plan.verdict.value if row.plan is not None else UNUSABLE


@dataclass(frozen=True)
class PlannedLibrary:
    """What the Models page shows: the machine and every library model planned on it."""

    hardware: HardwareProfile
    models: tuple[PlannedModel, ...]


def plan_library(hardware: HardwareProfile | None = None) -> PlannedLibrary:
    """Read the library and plan each model as its kind (slow: run it off the UI thread).

    `hardware` None means this machine, detected the way the CLI does (cached build checks),
    so the window and `hearth models list` give the same verdicts.
    """
    if hardware is None:
        hardware = this_machine()
    with closing(open_default_database()) as db:
        models = list_models(db)
        settings = load_settings(db)  # the defaults in Settings, as `hearth models list` uses
    return PlannedLibrary(
        hardware, tuple(plan_library_model(m, hardware, settings) for m in models)
    )


def plan_summary(plan: ModelPlan) -> str:
    """One line of how the model would run: backend or device, and the memory it needs."""
    if isinstance(plan, LoadPlan):
        return (
            f"{plan.backend.value}, {plan.threads} threads, {plan.n_ctx:,} ctx, "
            f"needs {format_size(plan.estimate.total)}"
        )
    return (
        f"{plan.device.value} ({plan.dtype.value}), {plan.memory_mode.value} memory mode, "
        f"{plan.width}x{plan.height}, needs {format_size(plan.peak_device_bytes)}"
    )


def model_details(row: PlannedModel) -> list[tuple[str, str]]:
    """The details pane's (label, value) lines for one planned model."""
    m = row.model
    size = m.size_bytes or 0
    source: str = m.source.value
    if m.source is ModelSource.LINK:
        source = "linked (Hearth uses the files where they are and never deletes them)"
    elif m.repo:
        source = f"{source} from {m.repo}"
    lines = [
        ("Kind", kind_spec(m.kind).label),
        ("Path", str(m.path)),
        ("Source", source),
        ("Architecture", m.architecture or "?"),
        ("Parameters", format_parameters(m.parameters)),
    ]
    if m.context_length:
        lines.append(("Context length", f"{m.context_length:,} tokens (trained)"))
    lines += [
        ("Quant" if m.kind.is_gguf else "Weights", m.quantization or "?"),
        ("Size", f"{format_size(size)} ({size:,} bytes)"),
        ("Licence", m.license or "not recorded"),
        ("Last used", format_local_time(m.last_used_at)),
    ]
    return lines


def plan_lines(row: PlannedModel) -> tuple[str, list[str]]:
    """(the load plan in one line, the planner's reasons and warnings) for the details pane."""
    plan = row.plan
    if plan is None:
        return UNUSABLE, [row.problem or ""]
    if isinstance(plan, LoadPlan):
        layers = {
            "all": "all layers on the GPU",
            "some": f"{plan.gpu_layers} of {plan.total_layers} layers on the GPU",
            "none": "CPU only",
        }.get(str(plan.gpu_layers_mode), str(plan.gpu_layers_mode))
        head = (
            f"{plan.verdict.value}: {plan.backend.value}, {layers}, {plan.threads} threads, "
            f"context {plan.n_ctx:,}, about {format_size(plan.estimate.total)} in all"
        )
    else:
        head = (
            f"{plan.verdict.value}: {plan.device.value} ({plan.dtype.value}), "
            f"{plan.memory_mode.value} memory mode, {plan.width}x{plan.height}, about "
            f"{format_size(plan.peak_device_bytes)} on the device"
        )
    return head, [*plan.reasons, *(f"Warning: {w}" for w in plan.warnings)]


class Column(IntEnum):
    MODEL = 0
    KIND = 1
    SIZE = 2
    QUANT = 3
    VERDICT = 4
    LAST_USED = 5
    PLAN = 6


HEADERS = {
    Column.MODEL: "Model",
    Column.KIND: "Kind",
    Column.SIZE: "Size",
    Column.QUANT: "Quant",
    Column.VERDICT: "Fit here",
    Column.LAST_USED: "Last used",
    Column.PLAN: "Plan",
}

#: Data for other views and tests: the row's PlannedModel and its verdict (None: unusable).
PLANNED_ROLE = Qt.ItemDataRole.UserRole + 1
VERDICT_ROLE = Qt.ItemDataRole.UserRole + 2
#: What a column sorts by (bytes for sizes, timestamps for dates, rank for verdicts).
SORT_ROLE = Qt.ItemDataRole.UserRole + 3

AnyIndex = QModelIndex | QPersistentModelIndex


class LibraryTableModel(QAbstractTableModel):
    """One row per library model; the Models page's table view observes it."""

    rows: tuple[PlannedModel, ...] = ()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[Column(section)]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, column)
        if role == PLANNED_ROLE:
            return row
        if role == VERDICT_ROLE:
            return row.plan.verdict if row.plan is not None else None
        if role == SORT_ROLE:
            return self._sort_key(row, column)
        if column == Column.VERDICT and role == Qt.ItemDataRole.BackgroundRole:
            return QColor(verdict_colour(row.plan.verdict if row.plan else None))
        if column == Column.VERDICT and role == Qt.ItemDataRole.ForegroundRole:
            return QColor(colours().on_status)
        if column in (Column.SIZE, Column.LAST_USED) and role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if row.plan is None:
                return row.problem or None
            return "\n".join((*row.plan.reasons, *row.plan.warnings)) or None
        return None

    def set_models(self, rows: tuple[PlannedModel, ...]) -> None:
        """Show `rows` instead: one reset, since the whole library is planned again at once."""
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_named(self, name: str) -> int:
        """The row of the model called `name`, or -1."""
        return next((i for i, r in enumerate(self.rows) if r.model.name == name), -1)

    @staticmethod
    def _text(row: PlannedModel, column: Column) -> str:
        model = row.model
        if column == Column.MODEL:
            return model.name
        if column == Column.KIND:
            return kind_spec(model.kind).label
        if column == Column.SIZE:
            return format_size(model.size_bytes or 0)
        if column == Column.QUANT:
            return model.quantization or ""
        if column == Column.VERDICT:
            return verdict_text(row)
        if column == Column.LAST_USED:
            return format_local_time(model.last_used_at)
        return plan_summary(row.plan) if row.plan is not None else (row.problem or "")

    @classmethod
    def _sort_key(cls, row: PlannedModel, column: Column) -> object:
        if column == Column.SIZE:
            return int(row.model.size_bytes or 0)
        if column == Column.LAST_USED:
            return row.model.last_used_at or ""  # ISO stamps sort as text; never first
        if column == Column.VERDICT:
            verdict = row.plan.verdict if row.plan is not None else None
            return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)
        return cls._text(row, column).lower()


class LibraryFilter(QSortFilterProxyModel):
    """The sortable, filterable view of the library: the filter box matches name, kind,
    quant and architecture, case-insensitively."""

    def __init__(self, source: LibraryTableModel) -> None:
        super().__init__()
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._needle = ""

    def set_filter_text(self, text: str) -> None:
        self.beginFilterChange()
        self._needle = text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if not self._needle:
            return True
        source = self.sourceModel()
        assert isinstance(source, LibraryTableModel)
        m = source.rows[source_row].model
        haystack = " ".join(
            x or "" for x in (m.name, m.kind, m.quantization, m.architecture, m.repo)
        ).lower()
        return all(word in haystack for word in self._needle.split())
