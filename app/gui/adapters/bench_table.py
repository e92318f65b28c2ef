"""Bench results (`hearth bench`) for the System page: read off the UI thread, a table model."""

from __future__ import annotations

from contextlib import closing
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from app.store import open_default_database
from app.store.bench import BenchRecord, list_results

AnyIndex = QModelIndex | QPersistentModelIndex

HEADERS = ("When", "Model", "Kind", "Where", "Speed", "First result", "Peak memory")


def read_bench_results() -> tuple[BenchRecord, ...]:
    """Every kept result, newest first (a pool thread job: its own connection)."""
    with closing(open_default_database()) as db:
        return tuple(list_results(db))


def bench_row(record: BenchRecord) -> tuple[str, ...]:
    """One result as the table's cells."""
    from app.humanize import format_size

    r: dict[str, Any] = record.result
    when = record.created_at[:16].replace("T", " ")
    peak = format_size(r["peak_rss_bytes"]) if r.get("peak_rss_bytes") else "—"
    if record.kind == "chat":
        where = f"{r['backend'].upper()}, {r['threads']} threads, {r['gpu_layers']} GPU layers"
        speed = f"{r['decode_tps']['median']:.1f} tok/s ({r['prompt_tps']['median']:.0f} prompt)"
        first = f"{r['ttft_s']['median']:.2f} s to first token"
    else:
        where = f"{r['device'].upper()}, {r['dtype']}, {r['width']}×{r['height']}"
        speed = f"{r['s_per_step']['median']:.2f} s/step"
        first = f"{r['first_step_s']['median']:.2f} s to first step"
    return (when, record.model, record.kind, where, speed, first, peak)


class BenchTableModel(QAbstractTableModel):
    """The results on the System page, newest first; filtered by model when one is picked."""

    def __init__(self) -> None:
        super().__init__()
        self.records: tuple[BenchRecord, ...] = ()
        self.rows: list[tuple[str, ...]] = []
        self.model_filter: str | None = None

    def set_records(self, records: tuple[BenchRecord, ...]) -> None:
        self.records = records
        self._fill()

    def set_model_filter(self, model: str | None) -> None:
        self.model_filter = model
        self._fill()

    def models(self) -> list[str]:
        return sorted({r.model for r in self.records})

    def _fill(self) -> None:
        self.beginResetModel()
        self.rows = [
            bench_row(r)
            for r in self.records
            if self.model_filter is None or r.model == self.model_filter
        ]
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if index.isValid() and role == Qt.ItemDataRole.DisplayRole:
            return self.rows[index.row()][index.column()]
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        return None
