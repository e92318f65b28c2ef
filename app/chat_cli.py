"""`hearth chat` and `hearth history`: streaming answers and saved conversations in a terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from types import FrameType
from typing import Any

from app.errors import HearthError
from app.store import MessageState, open_default_database
from app.store import conversations as convs


def _db() -> Any:
    db = open_default_database()
    convs.recover_interrupted(db)
    return db


# --- chat ---------------------------------------------------------------------------------


def cmd_chat(args: argparse.Namespace) -> int:
    from app.engine.chat import ChatSession, Sampling
    from app.hardware.planner import LoadSettings

    message = args.message
    interactive = message is None and sys.stdin.isatty()
    if message is None and not interactive:
        message = sys.stdin.read()
    db = _db()
    session = ChatSession(db)
    sampling = Sampling(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty,
        seed=args.seed,
        max_tokens=args.max_tokens,
    )
    try:
        _load(session, args, LoadSettings(n_ctx=args.ctx, gpu_layers=args.gpu_layers))
        if args.conversation:
            conversation_id = convs.get_conversation(db, args.conversation)["id"]
        else:
            conversation_id = session.new_conversation(system_prompt=args.system)
        if not interactive:
            return _one_turn(session, conversation_id, message, sampling, args)
        return _interactive(session, conversation_id, sampling, args)
    finally:
        session.unload()


def _load(session: Any, args: argparse.Namespace, settings: Any) -> None:
    from app.cli import ProgressLine

    plan = session.plan(args.model, settings)
    bar = ProgressLine("loading", in_bytes=False) if not args.quiet else None
    if bar:
        print(
            f"{plan.model}: {plan.verdict.value}, {plan.backend.value}, {plan.threads} threads, "
            f"{plan.n_ctx:,} ctx",
            file=sys.stderr,
        )

    def progress(p: Any) -> None:
        if bar:
            bar.update(int(p.fraction * 1000), 1000, plan.model)

    loaded = session.load_model(args.model, settings=settings, on_progress=progress)
    if bar:
        bar.finish()
        print(f"loaded in {loaded.load_s:.1f} s", file=sys.stderr)
        if loaded.note:
            print(f"note: {loaded.note}", file=sys.stderr)


class _StopOnInterrupt:
    """While an answer streams, Ctrl-C stops the answer; a second Ctrl-C quits."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.pressed_at = 0.0
        self.previous: Any = None

    def __enter__(self) -> _StopOnInterrupt:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - self.pressed_at < 1.0:
            raise KeyboardInterrupt
        self.pressed_at = now
        self.session.stop()


def _turn(
    session: Any,
    conversation_id: str,
    text: str,
    sampling: Any,
    args: argparse.Namespace,
    how: str = "send",
) -> Any:
    stream = not args.json
    in_reasoning = False

    def on_token(answer: str, reasoning: str) -> None:
        nonlocal in_reasoning
        if not stream:
            return
        if reasoning and not args.quiet:
            if not in_reasoning:
                sys.stderr.write("\033[2m(thinking) ")
                in_reasoning = True
            sys.stderr.write(reasoning)
            sys.stderr.flush()
        if answer:
            if in_reasoning:
                sys.stderr.write("\033[0m\n")
                in_reasoning = False
            sys.stdout.write(answer)
            sys.stdout.flush()

    with _StopOnInterrupt(session):
        if how == "regenerate":
            reply = session.regenerate(conversation_id, sampling, on_token)
        elif how == "edit":
            last_question = next(
                (
                    m
                    for m in reversed(convs.branch(session.db, conversation_id))
                    if m.role == "user"
                ),
                None,
            )
            if last_question is None:
                raise HearthError("There is no message of yours to edit yet.", "Send one first.")
            reply = session.edit(conversation_id, last_question.id, text, sampling, on_token)
        else:
            reply = session.send(conversation_id, text, sampling, on_token)
    if in_reasoning:
        sys.stderr.write("\033[0m")
    if stream:
        sys.stdout.write("\n")
        sys.stdout.flush()
    return reply


def _one_turn(
    session: Any, conversation_id: str, text: str, sampling: Any, args: argparse.Namespace
) -> int:
    reply = _turn(session, conversation_id, text, sampling, args)
    if args.json:
        print(json.dumps(_reply_json(reply, conversation_id), indent=2))
    elif not args.quiet:
        _print_metrics(reply)
    return 0 if reply.state in (MessageState.COMPLETE, MessageState.STOPPED) else 1


def _interactive(
    session: Any, conversation_id: str, sampling: Any, args: argparse.Namespace
) -> int:
    with contextlib.suppress(ImportError):  # Windows has no readline
        import readline  # noqa: F401 - line editing and history for input()
    print(
        "Hearth chat. Ctrl-C stops an answer; /help lists commands; Ctrl-D leaves.", file=sys.stderr
    )
    while True:
        try:
            text = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print("\n(Ctrl-D or /quit to leave)", file=sys.stderr)
            continue
        command = text.strip()
        if not command:
            continue
        how = "send"
        if command in ("/quit", "/exit"):
            return 0
        if command == "/help":
            print(
                "/new           start a new conversation\n"
                "/system TEXT   start a new conversation with a system prompt\n"
                "/regen         answer your last message again (the old answer is kept)\n"
                "/edit TEXT     replace your last message with TEXT and answer it\n"
                "/quit          leave (or Ctrl-D)",
                file=sys.stderr,
            )
            continue
        if command == "/new" or command.startswith("/system"):
            system = command.removeprefix("/system").strip() or None
            conversation_id = session.new_conversation(system_prompt=system)
            print("(new conversation)", file=sys.stderr)
            continue
        if command == "/regen":
            how = "regenerate"
        if command.startswith("/edit"):
            how, text = "edit", command.removeprefix("/edit").strip()
        try:
            reply = _turn(session, conversation_id, text, sampling, args, how=how)
        except HearthError as exc:
            print(f"error: {exc.cause}\n       {exc.remedy}", file=sys.stderr)
            continue
        if not args.quiet:
            _print_metrics(reply)


def _print_metrics(reply: Any) -> None:
    m = reply.metrics
    if reply.error:
        print(f"error: {reply.error}", file=sys.stderr)
        print(
            f"(answer kept as {reply.state.value}: {len(reply.content)} characters)",
            file=sys.stderr,
        )
    if reply.dropped_messages:
        print(
            f"note: the {reply.dropped_messages} oldest messages no longer fit the context "
            "and were left out of this answer's prompt",
            file=sys.stderr,
        )
    if "decode_tps" in m:
        state = "" if reply.state == MessageState.COMPLETE else f"{reply.state.value}; "
        print(
            f"— {state}{m['generated_tokens']} tokens at {m['decode_tps']:.1f} tok/s, "
            f"first token {m['ttft_s']:.2f} s, prompt {m['prompt_tokens']} tokens at "
            f"{m['prompt_tps']:.0f} tok/s, context {m['context_used']:,}/{m['n_ctx']:,}, "
            f"{m['backend']}"
            + (f" ({m['gpu_layers']} GPU layers)" if m.get("gpu_layers") else "")
            + (f"; {m['load_note']}" if m.get("load_note") else ""),
            file=sys.stderr,
        )


def _reply_json(reply: Any, conversation_id: str) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "message_id": reply.message_id,
        "role": "assistant",
        "content": reply.content,
        "reasoning": reply.reasoning or None,
        "state": reply.state.value,
        "error": reply.error,
        "dropped_messages": reply.dropped_messages,
        "metrics": reply.metrics,
    }


# --- history ------------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    db = _db()
    sub = args.history_command
    if sub == "list":
        rows = convs.list_conversations(db)
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print('No conversations yet. Start one with `hearth chat "Hello"`.')
        for r in rows if not args.json else []:
            print(
                f"{r['id'][:8]}  {r['updated_at'][:16].replace('T', ' ')}  "
                f"{r['messages']:>3} msgs  {r['title']}"
            )
        return 0
    if sub == "show":
        print(convs.export_markdown(db, args.id))
        return 0
    if sub == "export":
        text = (
            convs.export_markdown(db, args.id)
            if args.format == "md"
            else json.dumps(convs.export_json(db, args.id), indent=2)
        )
        if args.out:
            args.out.write_text(text)
            print(f"Wrote {args.out}", file=sys.stderr)
        else:
            print(text)
        return 0
    if sub == "delete":
        conv = convs.get_conversation(db, args.id)
        if not args.yes:
            if not sys.stdin.isatty():
                raise HearthError(
                    "Deleting needs confirmation.", "Pass --yes to delete without asking."
                )
            answer = input(f"Delete '{conv['title']}' and all its messages? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Kept it.")
                return 1
        convs.delete_conversation(db, conv["id"])
        print(f"Deleted '{conv['title']}'.")
        return 0
    if sub == "search":
        hits = convs.search_messages(db, args.query)
        if not hits:
            print("No messages match.")
        for h in hits:
            print(f"{h['conversation_id'][:8]}  {h['title']}  ({h['role']}): {h['snippet']}")
        return 0
    if sub == "rename":
        convs.rename_conversation(db, args.id, args.title)
        return 0
    return 2
