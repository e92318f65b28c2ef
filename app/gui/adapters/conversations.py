"""Conversations for the chat page: the reads and writes it runs off the UI thread (each
opens its own connection), the date groups, and the list model the conversation list shows."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from app.store import conversations as convs
from app.store import open_default_database
from app.store.library import ModelKind, list_models
from app.store.providers import list_providers
from app.store.settings import get_setting, set_setting

AnyIndex = QModelIndex | QPersistentModelIndex

#: The conversation id of a row (Qt.UserRole), for the page to open it.
CONVERSATION_ID_ROLE = Qt.ItemDataRole.UserRole + 1
#: The date group a row belongs to ("Today", "Yesterday", ...), or "" in search results.
GROUP_ROLE = Qt.ItemDataRole.UserRole + 2
#: True on the first row of its group: the list draws the group's heading above it.
GROUP_START_ROLE = Qt.ItemDataRole.UserRole + 3
#: The matching text of a search hit ("" outside a search).
SNIPPET_ROLE = Qt.ItemDataRole.UserRole + 4

#: The saved system prompts (name -> prompt), in the store's settings.
SETTING_PRESETS = "chat.system_presets"

#: The keys a conversation's `settings` may hold: Sampling fields, and the load's context.
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens")
CONTEXT_KEY = "n_ctx"


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list."""

    id: str
    title: str  # "New chat" until the first message names it
    updated_at: str = ""  # ISO time in UTC, as the store writes it
    snippet: str = ""  # the matching text, for a search hit


@dataclass(frozen=True)
class ChatLists:
    """What the chat page lists: the chat models to pick from and the recent conversations."""

    chat_models: tuple[str, ...]
    conversations: tuple[ConversationSummary, ...]
    #: `PROVIDER/MODEL` ids of the models remote providers reported (`hearth remote test`).
    remote_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class TranscriptEntry:
    """A message of the branch on screen, with the alternatives to it (edits, regenerations)."""

    message: convs.Message
    sibling_ids: tuple[str, ...]  # oldest first; this message's id is among them

    @property
    def position(self) -> int:
        """Which of its siblings this message is, from 0."""
        return self.sibling_ids.index(self.message.id)


@dataclass(frozen=True)
class ConversationView:
    """A conversation as the chat page shows it: its settings and its current branch."""

    id: str
    title: str
    model: str | None
    system_prompt: str
    settings: dict[str, Any] = field(default_factory=dict)
    entries: tuple[TranscriptEntry, ...] = ()

    @property
    def messages(self) -> tuple[convs.Message, ...]:
        return tuple(e.message for e in self.entries)


def read_chat_lists() -> ChatLists:
    """Read the chat models and conversations (a pool thread job: its own connection)."""
    with closing(open_default_database()) as db:
        models = tuple(m.name for m in list_models(db, ModelKind.CHAT))
        rows = convs.list_conversations(db, limit=500)
        remote = tuple(f"{p.name}/{m.id}" for p in list_providers(db) for m in p.models)
    return ChatLists(models, tuple(_summary(r) for r in rows), remote)


def _summary(row: dict[str, Any], snippet: str = "") -> ConversationSummary:
    return ConversationSummary(
        row["id"], row["title"] or "New chat", row.get("updated_at") or "", snippet
    )


def search_conversations(query: str) -> tuple[str, tuple[ConversationSummary, ...]]:
    """The conversations whose title or messages match `query` (full-text), best first."""
    with closing(open_default_database()) as db:
        found: dict[str, ConversationSummary] = {}
        by_id = {r["id"]: r for r in convs.list_conversations(db, limit=500)}
        words = query.lower().split()
        for row in by_id.values():  # titles first: a chat named after the words is the answer
            if words and all(w in (row["title"] or "").lower() for w in words):
                found[row["id"]] = _summary(row)
        for hit in convs.search_messages(db, query, limit=200):
            cid = hit["conversation_id"]
            if cid not in found and cid in by_id:
                found[cid] = _summary(by_id[cid], _plain_snippet(hit["snippet"] or ""))
    return query, tuple(found.values())


def _plain_snippet(snippet: str) -> str:
    return " ".join(snippet.replace("[", "").replace("]", "").split())


def read_conversation(conversation_id: str) -> ConversationView:
    """A conversation's settings and current branch, each message with its siblings."""
    with closing(open_default_database()) as db:
        conv = convs.get_conversation(db, conversation_id)
        entries = []
        for msg in convs.branch(db, conv["id"]):
            ids = tuple(m.id for m in convs.siblings(db, msg.id))
            entries.append(TranscriptEntry(msg, ids or (msg.id,)))
        settings = conv["settings"] if isinstance(conv["settings"], dict) else {}
        return ConversationView(
            conv["id"],
            conv["title"] or "New chat",
            conv["model"],
            conv["system_prompt"] or "",
            settings,
            tuple(entries),
        )


def read_transcript(conversation_id: str) -> tuple[convs.Message, ...]:
    """The messages of a conversation's current branch (a pool thread job)."""
    return read_conversation(conversation_id).messages


def switch_to_sibling(conversation_id: str, message_id: str) -> ConversationView:
    """Show the branch through `message_id` (its newest continuation), and read it back."""
    with closing(open_default_database()) as db:
        convs.set_leaf(db, conversation_id, convs.latest_leaf(db, message_id))
    return read_conversation(conversation_id)


def rename_conversation(conversation_id: str, title: str) -> str:
    with closing(open_default_database()) as db:
        convs.rename_conversation(db, conversation_id, title.strip() or "New chat")
    return conversation_id


def delete_conversation(conversation_id: str) -> str:
    with closing(open_default_database()) as db:
        convs.delete_conversation(db, conversation_id)
    return conversation_id


def export_conversation(conversation_id: str, path: Path) -> Path:
    """Write the conversation's current branch as Markdown (`.md`) or JSON (`.json`)."""
    with closing(open_default_database()) as db:
        if path.suffix.lower() == ".json":
            text = json.dumps(convs.export_json(db, conversation_id), indent=2, ensure_ascii=False)
        else:
            text = convs.export_markdown(db, conversation_id)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def save_conversation_settings(
    conversation_id: str, system_prompt: str, settings: dict[str, Any]
) -> str:
    """Keep the side panel's choices with the conversation (the next turn uses them)."""
    with closing(open_default_database()) as db:
        convs.update_conversation(
            db, conversation_id, system_prompt=system_prompt or None, settings=settings
        )
    return conversation_id


def read_presets() -> dict[str, str]:
    """The saved system prompts, name -> prompt."""
    with closing(open_default_database()) as db:
        value = get_setting(db, SETTING_PRESETS, {})
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def save_presets(presets: dict[str, str]) -> dict[str, str]:
    with closing(open_default_database()) as db:
        set_setting(db, SETTING_PRESETS, presets)
    return presets


# --- date groups ---------------------------------------------------------------------------


def date_group(updated_at: str, today: date | None = None) -> str:
    """The heading a conversation last touched at `updated_at` (UTC ISO) goes under, in the
    local time zone: Today, Yesterday, Previous 7 days, Previous 30 days, or the month."""
    try:
        when = datetime.fromisoformat(updated_at.replace("Z", "+00:00"))
    except ValueError:
        return "Older"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    day = when.astimezone().date()
    today = today or datetime.now().astimezone().date()
    age = (today - day).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    if age <= 7:
        return "Previous 7 days"
    if age <= 30:
        return "Previous 30 days"
    if day.year == today.year:
        return day.strftime("%B")
    return day.strftime("%B %Y")


class ConversationListModel(QAbstractListModel):
    """The recent conversations, newest first, in date groups (or search hits, ungrouped);
    the chat page's list view observes it. Editing a title asks the page to rename."""

    rename_requested = Signal(str, str)  # conversation id, new title

    items: tuple[ConversationSummary, ...] = ()
    groups: tuple[str, ...] = ()
    searching = False

    def set_conversations(
        self, items: tuple[ConversationSummary, ...], *, searching: bool = False
    ) -> None:
        self.beginResetModel()
        self.items = items
        self.searching = searching
        today = datetime.now().astimezone().date()
        self.groups = tuple("" if searching else date_group(i.updated_at, today) for i in items)
        self.endResetModel()

    def row_of(self, conversation_id: str | None) -> int | None:
        """The row showing `conversation_id`, or None."""
        for i, item in enumerate(self.items):
            if item.id == conversation_id:
                return i
        return None

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.items)

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsEditable if index.isValid() else base

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row = index.row()
        item = self.items[row]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return item.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{item.title}\n{item.snippet}" if item.snippet else item.title
        if role == CONVERSATION_ID_ROLE:
            return item.id
        if role == GROUP_ROLE:
            return self.groups[row]
        if role == GROUP_START_ROLE:
            return bool(self.groups[row]) and (row == 0 or self.groups[row - 1] != self.groups[row])
        if role == SNIPPET_ROLE:
            return item.snippet
        return None

    def setData(self, index: AnyIndex, value: object, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or role != Qt.ItemDataRole.EditRole:
            return False
        title = str(value).strip()
        item = self.items[index.row()]
        if not title or title == item.title:
            return False
        items = list(self.items)
        items[index.row()] = ConversationSummary(item.id, title, item.updated_at, item.snippet)
        self.items = tuple(items)
        self.dataChanged.emit(index, index)
        self.rename_requested.emit(item.id, title)
        return True


__all__ = [
    "CONVERSATION_ID_ROLE",
    "ChatLists",
    "ConversationListModel",
    "ConversationSummary",
    "ConversationView",
    "TranscriptEntry",
    "date_group",
    "read_chat_lists",
    "read_conversation",
    "read_transcript",
]
