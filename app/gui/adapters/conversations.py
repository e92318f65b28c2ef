"""Conversations for the chat page: the reads it runs off the UI thread, and a list model."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from app.store import conversations as convs
from app.store import open_default_database
from app.store.library import ModelKind, list_models
from app.store.providers import list_providers

AnyIndex = QModelIndex | QPersistentModelIndex

#: The conversation id of a row (Qt.UserRole), for the page to open it.
CONVERSATION_ID_ROLE = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list."""

    id: str
    title: str  # "New chat" until the first message names it


@dataclass(frozen=True)
class ChatLists:
    """What the chat page lists: the chat models to pick from and the recent conversations."""

    chat_models: tuple[str, ...]
    conversations: tuple[ConversationSummary, ...]
    #: `PROVIDER/MODEL` ids of the models remote providers reported (`hearth remote test`).
    remote_models: tuple[str, ...] = ()


def read_chat_lists() -> ChatLists:
    """Read the chat models and conversations (a pool thread job: its own connection)."""
    with closing(open_default_database()) as db:
        models = tuple(m.name for m in list_models(db, ModelKind.CHAT))
        rows = convs.list_conversations(db)
        remote = tuple(f"{p.name}/{m.id}" for p in list_providers(db) for m in p.models)
    return ChatLists(
        models,
        tuple(ConversationSummary(r["id"], r["title"] or "New chat") for r in rows),
        remote,
    )


def read_transcript(conversation_id: str) -> tuple[convs.Message, ...]:
    """The messages of a conversation's current branch (a pool thread job)."""
    with closing(open_default_database()) as db:
        return tuple(convs.branch(db, conversation_id))


class ConversationListModel(QAbstractListModel):
    """The recent conversations, newest first; the chat page's list view observes it."""

    items: tuple[ConversationSummary, ...] = ()

    def set_conversations(self, items: tuple[ConversationSummary, ...]) -> None:
        self.beginResetModel()
        self.items = items
        self.endResetModel()

    def row_of(self, conversation_id: str | None) -> int | None:
        """The row showing `conversation_id`, or None."""
        for i, item in enumerate(self.items):
            if item.id == conversation_id:
                return i
        return None

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.items)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        item = self.items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.title
        if role == CONVERSATION_ID_ROLE:
            return item.id
        return None
