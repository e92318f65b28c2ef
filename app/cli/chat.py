"""`hearth chat`: one message or an interactive session, the answer streamed in the terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import fields
from typing import Any

from app.cli.common import add_command, add_load_options, load_settings_for, open_history
from app.cli.output import CtrlC, ProgressBar, Unit, print_error
from app.errors import HearthError
from app.store import MessageState
from app.store import conversations as convs


def add_commands(sub: Any) -> None:
    """Add `chat` to the top-level subparsers."""
    chat = add_command(
        sub, "chat", cmd_chat, json="print the final message and its metrics as JSON"
    )
    chat.add_argument("message", nargs="?", help="the message (omit for a session)")
    chat.add_argument(
        "--model",
        "-m",
        default="starter",
        help="library name, .gguf path, or PROVIDER/MODEL of a remote provider "
        "(`hearth remote list`; default: the starter model)",
    )
    chat.add_argument("--system", "-s", help="system prompt for a new conversation")
    chat.add_argument(
        "--conversation",
        "-c",
        metavar="ID",
        help="continue a conversation (id or prefix from `hearth history list`)",
    )
    chat.add_argument("--seed", type=int, help="sampling seed (same seed, same answer)")
    chat.add_argument("--max-tokens", type=int, default=1024, help="answer length limit")
    for option, default in (
        ("--temperature", 0.7),
        ("--top-p", 0.95),
        ("--min-p", 0.05),
        ("--repeat-penalty", 1.1),
    ):
        chat.add_argument(option, type=float, default=default, help=f"(default {default})")
    chat.add_argument("--top-k", type=int, default=40, help="(default 40)")
    add_load_options(chat, ctx="context length")
    chat.add_argument("--quiet", "-q", action="store_true", help="no progress or metrics on stderr")


def cmd_chat(args: argparse.Namespace) -> int:
    """Chat with a model: one message, or an interactive session.

    Send MESSAGE and stream the answer, or start an interactive session when no message is
    given (Ctrl-C stops an answer, Ctrl-D leaves). A message can also come on standard
    input.
    """
    from app.sessions.chat import ChatSession, Sampling

    message = args.message
    interactive = message is None and sys.stdin.isatty()
    if message is None and not interactive:
        message = sys.stdin.read()
    if message is not None and not message.strip():
        # Before the model loads (seconds) and before a conversation is made for it.
        from app.sessions.chat import EmptyMessageError

        raise EmptyMessageError("The message is empty.")
    db = open_history()
    session = ChatSession(db)
    # The sampling options are named after Sampling's fields (--top-p is top_p, ...).
    sampling = Sampling(**{field.name: getattr(args, field.name) for field in fields(Sampling)})
    try:
        _load(session, args, load_settings_for(args))
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
    from app.store.providers import split_remote_model_id

    if split_remote_model_id(session.db, args.model) is not None:
        loaded = session.load_model(args.model, settings=settings)
        if not args.quiet:
            print(
                f"{args.model}: {loaded.backend_used}, {loaded.n_ctx:,} ctx, "
                f"attached in {loaded.load_s:.1f} s",
                file=sys.stderr,
            )
            if loaded.note:
                print(f"note: {loaded.note}", file=sys.stderr)
        return
    plan = session.plan(args.model, settings)
    if not args.quiet:
        print(
            f"{plan.model}: {plan.verdict.value}, {plan.backend.value}, {plan.threads} threads, "
            f"{plan.n_ctx:,} ctx",
            file=sys.stderr,
        )
    with ProgressBar("loading", Unit.FRACTION, quiet=args.quiet) as bar:
        loaded = session.load_model(
            args.model,
            settings=settings,
            on_progress=lambda p: bar.update(p.fraction, 1.0, plan.model),
        )
    if not args.quiet:
        print(f"loaded in {loaded.load_s:.1f} s", file=sys.stderr)
        if loaded.note:
            print(f"note: {loaded.note}", file=sys.stderr)
        template_note = session.model.template.replacement_note if session.model else None
        if template_note:
            print(f"note: {template_note}", file=sys.stderr)


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

    with CtrlC(session.stop):  # Ctrl-C stops this answer; a second one leaves
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
            print_error(exc)
            continue
        if not args.quiet:
            _print_metrics(reply)


def _print_metrics(reply: Any) -> None:
    m = reply.metrics
    if reply.error:
        print_error(reply.error)
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
