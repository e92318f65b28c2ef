"""Conversations and their messages: a tree of branches, saved as they grow, searchable."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from app.errors import HearthError
from app.store import MessageState, utc_now
from app.store.errors import ConversationNotFoundError


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    reasoning: str
    state: MessageState
    error: str | None
    metrics: dict[str, Any]
    created_at: str
    updated_at: str
    provider: str | None = None  # the remote provider that answered; None: this machine
    model: str | None = None  # the model that answered (library name or server model id)


def _message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        parent_id=row["parent_id"],
        role=row["role"],
        content=row["content"] or "",
        reasoning=row["reasoning"] or "",
        state=MessageState(row["state"]),
        error=row["error"],
        metrics=json.loads(row["metrics"]) if row["metrics"] else {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        provider=row.get("provider"),
        model=row.get("model"),
    )


def create_conversation(
    db: Database,
    *,
    model: str | None,
    system_prompt: str | None = None,
    title: str | None = None,
    settings: dict[str, Any] | None = None,
) -> str:
    now = utc_now()
    cid = uuid.uuid4().hex
    db.table("conversations").insert(
        {
            "id": cid,
            "title": title or "New chat",
            "model": model,
            "system_prompt": system_prompt,
            "settings": json.dumps(settings or {}),
            "created_at": now,
            "updated_at": now,
            "leaf_id": None,
        }
    )
    return cid


def get_conversation(db: Database, conversation_id: str) -> dict[str, Any]:
    """A conversation by id, or by a unique prefix of its id (as `hearth history` shows)."""
    rows = list(
        db.query(
            "SELECT * FROM conversations WHERE id = ? OR id LIKE ? LIMIT 2",
            [conversation_id, conversation_id + "%"],
        )
    )
    exact = [r for r in rows if r["id"] == conversation_id]
    if exact:
        rows = exact
    if not rows or (len(conversation_id) < 4 and not exact):
        raise ConversationNotFoundError(f"There is no conversation '{conversation_id}'.")
    if len(rows) > 1:
        raise ConversationNotFoundError(
            f"'{conversation_id}' matches more than one conversation.",
            "Type more characters of the id.",
        )
    row = dict(rows[0])
    row["settings"] = json.loads(row["settings"] or "{}")
    return row


def list_conversations(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.query(
            "SELECT c.id, c.title, c.model, c.created_at, c.updated_at, "
            "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS messages "
            "FROM conversations c ORDER BY c.updated_at DESC LIMIT ?",
            [limit],
        )
    ]


def rename_conversation(db: Database, conversation_id: str, title: str) -> None:
    cid = get_conversation(db, conversation_id)["id"]
    db.table("conversations").update(cid, {"title": title, "updated_at": utc_now()})


def update_conversation(db: Database, conversation_id: str, **fields: Any) -> None:
    if "settings" in fields:
        fields["settings"] = json.dumps(fields["settings"])
    db.table("conversations").update(conversation_id, {**fields, "updated_at": utc_now()})


def delete_conversation(db: Database, conversation_id: str) -> None:
    cid = get_conversation(db, conversation_id)["id"]
    with db.conn:
        db.execute("DELETE FROM messages WHERE conversation_id = ?", [cid])
        db.execute("DELETE FROM conversations WHERE id = ?", [cid])


def add_message(
    db: Database,
    conversation_id: str,
    role: str,
    content: str,
    *,
    parent_id: str | None,
    state: MessageState = MessageState.COMPLETE,
) -> str:
    """Append a message under `parent_id` and make it the conversation's current leaf.

    Committed before this returns: a crash right after loses nothing the user typed.
    """
    now = utc_now()
    mid = uuid.uuid4().hex
    with db.conn:
        db.table("messages").insert(
            {
                "id": mid,
                "conversation_id": conversation_id,
                "parent_id": parent_id,
                "role": role,
                "content": content,
                "reasoning": "",
                "state": state.value,
                "error": None,
                # Who writes a streaming answer, so crash recovery can tell live from dead.
                "metrics": (
                    json.dumps({"writer_pid": os.getpid()})
                    if state == MessageState.STREAMING
                    else None
                ),
                "created_at": now,
                "updated_at": now,
            }
        )
        db.execute(
            "UPDATE conversations SET leaf_id = ?, updated_at = ? WHERE id = ?",
            [mid, now, conversation_id],
        )
    return mid


def update_message(
    db: Database,
    message_id: str,
    *,
    content: str | None = None,
    reasoning: str | None = None,
    state: MessageState | None = None,
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> None:
    fields: dict[str, Any] = {"updated_at": utc_now()}
    if provider is not None:
        fields["provider"] = provider
    if model is not None:
        fields["model"] = model
    if content is not None:
        fields["content"] = content
    if reasoning is not None:
        fields["reasoning"] = reasoning
    if state is not None:
        fields["state"] = state.value
    if error is not None:
        fields["error"] = error
    if metrics is not None:
        fields["metrics"] = json.dumps(metrics)
    with db.conn:
        db.table("messages").update(message_id, fields)


def get_message(db: Database, message_id: str) -> Message:
    rows = list(db.query("SELECT * FROM messages WHERE id = ?", [message_id]))
    if not rows:
        raise HearthError(f"There is no message '{message_id}'.")
    return _message(rows[0])


def branch(db: Database, conversation_id: str, leaf_id: str | None = None) -> list[Message]:
    """The messages from the root to `leaf_id` (default: the conversation's current leaf)."""
    if leaf_id is None:
        leaf_id = get_conversation(db, conversation_id)["leaf_id"]
    if leaf_id is None:
        return []
    rows = db.query(
        "WITH RECURSIVE path(id, parent_id, depth) AS ("
        " SELECT id, parent_id, 0 FROM messages WHERE id = ?"
        " UNION ALL SELECT m.id, m.parent_id, p.depth + 1 FROM messages m"
        " JOIN path p ON m.id = p.parent_id)"
        " SELECT messages.* FROM path JOIN messages ON messages.id = path.id"
        " ORDER BY path.depth DESC",
        [leaf_id],
    )
    return [_message(r) for r in rows]


def set_leaf(db: Database, conversation_id: str, leaf_id: str | None) -> None:
    with db.conn:
        db.execute(
            "UPDATE conversations SET leaf_id = ?, updated_at = ? WHERE id = ?",
            [leaf_id, utc_now(), conversation_id],
        )


def siblings(db: Database, message_id: str) -> list[Message]:
    """The alternatives to a message (earlier edits or regenerations), oldest first."""
    msg = get_message(db, message_id)
    rows = db.query(
        "SELECT * FROM messages WHERE conversation_id = ? AND role = ? AND "
        "parent_id IS ? ORDER BY created_at",
        [msg.conversation_id, msg.role, msg.parent_id],
    )
    return [_message(r) for r in rows]


def latest_leaf(db: Database, message_id: str) -> str:
    """The end of the newest branch under `message_id` (the message itself when it has no
    replies): where a conversation continues when the person switches to that message."""
    leaf = message_id
    while True:
        rows = list(
            db.query(
                "SELECT id FROM messages WHERE parent_id = ? ORDER BY created_at DESC LIMIT 1",
                [leaf],
            )
        )
        if not rows:
            return leaf
        leaf = rows[0]["id"]


def search_messages(db: Database, query: str, limit: int = 50) -> list[dict[str, Any]]:
    """Full-text search over message text; each hit names its conversation."""
    fts_query = " ".join(f'"{word}"' for word in query.replace('"', " ").split())
    if not fts_query:
        return []
    return [
        dict(r)
        for r in db.query(
            "SELECT m.id, m.conversation_id, c.title, m.role, "
            "snippet(messages_fts, 0, '[', ']', '…', 12) AS snippet "
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
            [fts_query, limit],
        )
    ]


def recover_interrupted(db: Database) -> int:
    """Mark answers left `streaming` by a process that died as `interrupted`; returns how many.

    Each streaming answer records its writer's pid, so answers that another live Hearth
    process (the GUI beside a CLI) is still writing are left alone.
    """
    import psutil

    rows = list(
        db.query("SELECT id, metrics FROM messages WHERE state = ?", [MessageState.STREAMING.value])
    )
    dead = []
    for row in rows:
        pid = (json.loads(row["metrics"]) if row["metrics"] else {}).get("writer_pid")
        if not isinstance(pid, int) or pid == os.getpid() or not psutil.pid_exists(pid):
            dead.append(row["id"])
    with db.conn:
        for mid in dead:
            db.execute(
                "UPDATE messages SET state = ?, updated_at = ? WHERE id = ?",
                [MessageState.INTERRUPTED.value, utc_now(), mid],
            )
    return len(dead)


def export_markdown(db: Database, conversation_id: str) -> str:
    conv = get_conversation(db, conversation_id)
    lines = [f"# {conv['title']}", ""]
    lines.append(f"*Model: {conv['model'] or 'unknown'} · started {conv['created_at'][:19]}Z*")
    lines.append("")
    if conv["system_prompt"]:
        lines += ["**System**", "", conv["system_prompt"], ""]
    for msg in branch(db, conv["id"]):
        who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(msg.role, msg.role)
        note = "" if msg.state == MessageState.COMPLETE else f" *({msg.state.value})*"
        lines += [f"**{who}**{note}", ""]
        if msg.reasoning:
            lines += ["<details><summary>Reasoning</summary>", "", msg.reasoning, ""]
            lines += ["</details>", ""]
        lines += [msg.content, ""]
    return "\n".join(lines)


def export_json(db: Database, conversation_id: str) -> dict[str, Any]:
    conv = get_conversation(db, conversation_id)
    messages = [
        {
            "id": m.id,
            "parent_id": m.parent_id,
            "role": m.role,
            "content": m.content,
            "reasoning": m.reasoning or None,
            "state": m.state.value,
            "error": m.error,
            "metrics": m.metrics or None,
            "provider": m.provider,
            "model": m.model,
            "created_at": m.created_at,
        }
        for m in branch(db, conv["id"])
    ]
    return {**conv, "messages": messages}
