"""Conversations in SQLite: branches, crash recovery, search, export."""

from __future__ import annotations

import pytest

from app.store import MessageState, open_default_database
from app.store.conversations import (
    add_message,
    branch,
    create_conversation,
    delete_conversation,
    export_json,
    export_markdown,
    get_conversation,
    list_conversations,
    recover_interrupted,
    rename_conversation,
    search_messages,
    set_leaf,
    siblings,
    update_message,
)
from app.store.errors import ConversationNotFoundError


def test_branches_keep_every_edit_and_regeneration() -> None:
    db = open_default_database()
    cid = create_conversation(db, model="m", system_prompt="Be brief.")
    u1 = add_message(db, cid, "user", "What is a tide?", parent_id=None)
    a1 = add_message(db, cid, "assistant", "The sea rising.", parent_id=u1)
    # Regenerate: a sibling answer; edit: a sibling question with its own answer.
    a1b = add_message(db, cid, "assistant", "Gravity of the moon.", parent_id=u1)
    assert [m.id for m in branch(db, cid)] == [u1, a1b]
    u1b = add_message(db, cid, "user", "What is a wave?", parent_id=None)
    a2 = add_message(db, cid, "assistant", "Moving energy.", parent_id=u1b)
    assert [m.content for m in branch(db, cid)] == ["What is a wave?", "Moving energy."]
    assert [m.id for m in siblings(db, a1)] == [a1, a1b]
    assert [m.id for m in siblings(db, u1)] == [u1, u1b]
    set_leaf(db, cid, a1)  # nothing was lost: the old branch comes back
    assert [m.content for m in branch(db, cid)] == ["What is a tide?", "The sea rising."]
    assert a2 in {m.id for m in siblings(db, a2)}


def test_streaming_answer_left_by_a_crash_becomes_interrupted() -> None:
    db = open_default_database()
    cid = create_conversation(db, model="m")
    u = add_message(db, cid, "user", "Tell me a story.", parent_id=None)
    a = add_message(db, cid, "assistant", "", parent_id=u, state=MessageState.STREAMING)
    update_message(db, a, content="Once upon a")
    db.conn.close()  # the app dies here
    db = open_default_database()
    assert recover_interrupted(db) == 1
    last = branch(db, cid)[-1]
    assert last.state == MessageState.INTERRUPTED and last.content == "Once upon a"
    assert recover_interrupted(db) == 0


def test_search_rename_list_delete() -> None:
    db = open_default_database()
    cid = create_conversation(db, model="m", title="Sea")
    other = create_conversation(db, model="m", title="Land")
    u = add_message(db, cid, "user", "Why is the ocean salty?", parent_id=None)
    add_message(db, other, "user", "Why are mountains high?", parent_id=None)
    hits = search_messages(db, "ocean")
    assert [h["id"] for h in hits] == [u] and hits[0]["title"] == "Sea"
    assert search_messages(db, '"; DROP TABLE messages; --') == []
    rename_conversation(db, cid[:8], "Salt")
    assert get_conversation(db, cid)["title"] == "Salt"
    assert {c["id"] for c in list_conversations(db)} == {cid, other}
    delete_conversation(db, cid)
    assert [c["id"] for c in list_conversations(db)] == [other]
    assert search_messages(db, "ocean") == []
    with pytest.raises(ConversationNotFoundError):
        get_conversation(db, cid)


def test_export_markdown_and_json_follow_the_shown_branch() -> None:
    db = open_default_database()
    cid = create_conversation(db, model="qwen", system_prompt="Be kind.", title="Kind")
    u = add_message(db, cid, "user", "Hi", parent_id=None)
    a = add_message(db, cid, "assistant", "Hello!", parent_id=u, state=MessageState.STREAMING)
    update_message(
        db, a, reasoning="greet back", state=MessageState.STOPPED, metrics={"decode_tps": 30.0}
    )
    md = export_markdown(db, cid)
    assert md.startswith("# Kind")
    assert "Be kind." in md and "**You**" in md and "Hello!" in md
    assert "*(stopped)*" in md and "greet back" in md
    data = export_json(db, cid)
    assert [m["content"] for m in data["messages"]] == ["Hi", "Hello!"]
    assert data["messages"][1]["metrics"] == {"decode_tps": 30.0}
    assert data["system_prompt"] == "Be kind."


def test_answers_a_live_process_is_still_writing_are_left_alone() -> None:
    import json
    import os

    db = open_default_database()
    cid = create_conversation(db, model="m")
    u = add_message(db, cid, "user", "Hi", parent_id=None)
    a = add_message(db, cid, "assistant", "", parent_id=u, state=MessageState.STREAMING)
    # Pretend the GUI (a live process: our parent) is writing this answer.
    db.execute(
        "UPDATE messages SET metrics = ? WHERE id = ?",
        [json.dumps({"writer_pid": os.getppid()}), a],
    )
    db.conn.commit()
    assert recover_interrupted(db) == 0
    assert branch(db, cid)[-1].state == MessageState.STREAMING
