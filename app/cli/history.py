"""`hearth history`: list, show, export, search, rename and delete saved conversations."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.common import add_command, open_history
from app.cli.output import confirm, print_table
from app.errors import HearthError


def add_commands(sub: Any) -> None:
    """Add `history` and its subcommands to the top-level subparsers."""
    history = sub.add_parser("history", help="saved conversations")
    hsub = history.add_subparsers(dest="history_command", metavar="SUBCOMMAND", required=True)
    add_command(hsub, "list", cmd_list, json="")
    add_command(hsub, "show", cmd_show).add_argument("id")
    export = add_command(hsub, "export", cmd_export)
    export.add_argument("id")
    export.add_argument("--format", choices=["md", "json"], default="md")
    export.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    add_command(hsub, "delete", cmd_delete, yes=True).add_argument("id")
    add_command(hsub, "search", cmd_search).add_argument("query")
    rename = add_command(hsub, "rename", cmd_rename)
    rename.add_argument("id")
    rename.add_argument("title")


def cmd_list(args: argparse.Namespace) -> int:
    """Recent conversations."""
    from app.store import conversations

    rows = conversations.list_conversations(open_history())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print('No conversations yet. Start one with `hearth chat "Hello"`.')
        return 0
    print_table(
        ["ID", "UPDATED", "MESSAGES", "TITLE"],
        (
            [r["id"][:8], r["updated_at"][:16].replace("T", " "), str(r["messages"]), r["title"]]
            for r in rows
        ),
        right={"MESSAGES"},
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a conversation."""
    from app.store import conversations

    print(conversations.export_markdown(open_history(), args.id))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a conversation to Markdown or JSON."""
    from app.store import conversations

    db = open_history()
    text = (
        conversations.export_markdown(db, args.id)
        if args.format == "md"
        else json.dumps(conversations.export_json(db, args.id), indent=2)
    )
    if args.out:
        args.out.write_text(text)
        print(f"Wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a conversation."""
    from app.store import conversations

    db = open_history()
    conv = conversations.get_conversation(db, args.id)
    question = f"Delete '{conv['title']}' and all its messages? [y/N] "
    refusal = HearthError("Deleting needs confirmation.", "Pass --yes to delete without asking.")
    if not args.yes and not confirm(question, refuse_without_terminal=refusal):
        print("Kept it.")
        return 1
    conversations.delete_conversation(db, conv["id"])
    print(f"Deleted '{conv['title']}'.")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Full-text search over messages."""
    from app.store import conversations

    hits = conversations.search_messages(open_history(), args.query)
    if not hits:
        print("No messages match.")
    for h in hits:
        print(f"{h['conversation_id'][:8]}  {h['title']}  ({h['role']}): {h['snippet']}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    """Rename a conversation."""
    from app.store import conversations

    conversations.rename_conversation(open_history(), args.id, args.title)
    return 0
