"""Benchmark results (`hearth bench`): one row per bench, its numbers as JSON."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from app.store import utc_now

#: Results kept per model and kind; older ones are dropped as new ones come.
KEEP_PER_MODEL = 50


@dataclass(frozen=True)
class BenchRecord:
    id: str
    kind: str  # "chat" | "image"
    model: str
    created_at: str
    result: dict[str, Any]


def save_result(db: Database, kind: str, model: str, result: dict[str, Any]) -> str:
    """Keep one result; returns its time stamp (UTC, ISO 8601)."""
    created = utc_now()
    with db.conn:
        db.table("bench_results").insert(
            {
                "id": uuid.uuid4().hex,
                "kind": kind,
                "model": model,
                "created_at": created,
                "result": json.dumps({**result, "created_at": created}),
            }
        )
        db.execute(
            "DELETE FROM bench_results WHERE kind = ? AND model = ? AND id NOT IN ("
            " SELECT id FROM bench_results WHERE kind = ? AND model = ?"
            " ORDER BY created_at DESC LIMIT ?)",
            [kind, model, kind, model, KEEP_PER_MODEL],
        )
    return created


def list_results(
    db: Database, *, model: str | None = None, kind: str | None = None, limit: int = 200
) -> list[BenchRecord]:
    """Results, newest first, optionally of one model and kind."""
    where, args = [], []
    if model is not None:
        where.append("model = ?")
        args.append(model)
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    sql = "SELECT id, kind, model, created_at, result FROM bench_results"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC LIMIT ?"
    rows = db.execute(sql, [*args, limit]).fetchall()
    return [BenchRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
