"""The model library planned on one machine, as a Qt table model the Models page shows."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from app.errors import HearthError
from app.gui.theme import colours
from app.hardware.detect import this_machine
from app.hardware.profile import HardwareProfile
from app.humanize import format_size
from app.models.kinds import ModelPlan, kind_spec, plan_model
from app.planner import FitVerdict, LoadPlan
from app.store import open_default_database
from app.store.library import LibraryModel, list_models

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


def verdict_colour(verdict: FitVerdict | None) -> str:
    """The theme colour for a verdict (None: unusable)."""
    meaning = VERDICT_MEANINGS[verdict] if verdict is not None else UNUSABLE_MEANING
    return str(getattr(colours(), meaning))


#: Shown in the verdict column for a model that could not be planned (its file is gone or damaged).
UNUSABLE = "unusable"


@dataclass(frozen=True)
class PlannedModel:
    """A library model with its plan on the machine, or the reason there is none."""

    model: LibraryModel
    plan: ModelPlan | None
    problem: str | None = None  # one sentence: a missing or damaged file

    @property
    def verdict_text(self) -> str:
        return self.plan.verdict.value if self.plan is not None else UNUSABLE


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
    return PlannedLibrary(hardware, tuple(plan_one(m, hardware) for m in models))


def plan_one(model: LibraryModel, hardware: HardwareProfile) -> PlannedModel:
    """Plan one model; a missing or damaged file becomes the row's problem, not an error."""
    try:
        return PlannedModel(model, plan_model(model, hardware))
    except HearthError as exc:
        return PlannedModel(model, None, str(exc))


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


class Column(IntEnum):
    MODEL = 0
    KIND = 1
    ARCHITECTURE = 2
    SIZE = 3
    VERDICT = 4
    PLAN = 5


HEADERS = {
    Column.MODEL: "Model",
    Column.KIND: "Kind",
    Column.ARCHITECTURE: "Architecture",
    Column.SIZE: "Size",
    Column.VERDICT: "On this machine",
    Column.PLAN: "Plan",
}

#: Data for other views and tests: the row's PlannedModel and its verdict (None: unusable).
PLANNED_ROLE = Qt.ItemDataRole.UserRole + 1
VERDICT_ROLE = Qt.ItemDataRole.UserRole + 2

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
        if column == Column.VERDICT and role == Qt.ItemDataRole.BackgroundRole:
            return QColor(verdict_colour(row.plan.verdict if row.plan else None))
        if column == Column.VERDICT and role == Qt.ItemDataRole.ForegroundRole:
            return QColor(colours().on_status)
        if role == Qt.ItemDataRole.ToolTipRole and row.plan is not None:
            return "\n".join((*row.plan.reasons, *row.plan.warnings)) or None
        return None

    def set_models(self, rows: tuple[PlannedModel, ...]) -> None:
        """Show `rows` instead: one reset, since the whole library is planned again at once."""
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    @staticmethod
    def _text(row: PlannedModel, column: Column) -> str:
        model = row.model
        if column == Column.MODEL:
            return model.name
        if column == Column.KIND:
            return kind_spec(model.kind).label
        if column == Column.ARCHITECTURE:
            return " ".join(x for x in (model.architecture, model.quantization) if x)
        if column == Column.SIZE:
            return format_size(model.size_bytes or 0)
        if column == Column.VERDICT:
            return row.verdict_text
        return plan_summary(row.plan) if row.plan is not None else (row.problem or "")
