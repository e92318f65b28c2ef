"""The chat transcript: a conversation's branch as HTML (Markdown answers, reasoning folded
under a "Thought for N s" line, numbers under each answer, actions as links), and the
streaming answer appended in place while it is written."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QColor, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

from app.gui.adapters.conversations import ConversationView, TranscriptEntry
from app.gui.markdown import COPY_SCHEME, render_markdown
from app.gui.theme import Colours, colours
from app.store import MessageState

#: Links in the transcript that ask the page to act on a message: `act:KIND:MESSAGE_ID`.
ACTION_SCHEME = "act"
ACTIONS = ("edit", "copy", "regenerate", "retry", "prev", "next", "think")


@dataclass
class TranscriptHtml:
    html: str
    code_blocks: list[str] = field(default_factory=list)


def _text(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _link(kind: str, message_id: str, label: str, c: Colours) -> str:
    return (
        f'<a href="{ACTION_SCHEME}:{kind}:{message_id}" '
        f'style="color:{c.link}; text-decoration:none">{label}</a>'
    )


def _siblings(entry: TranscriptEntry, c: Colours) -> str:
    count = len(entry.sibling_ids)
    if count < 2:
        return ""
    mid = entry.message.id
    pos = entry.position
    prev = _link("prev", mid, "&lsaquo;", c) if pos > 0 else "&lsaquo;"
    nxt = _link("next", mid, "&rsaquo;", c) if pos < count - 1 else "&rsaquo;"
    return f"{prev} {pos + 1}/{count} {nxt}"


def answer_numbers(metrics: dict[str, object]) -> str:
    """The line under an answer: tokens, speed, time to first token, context used."""
    parts = []
    tokens = metrics.get("generated_tokens")
    if isinstance(tokens, int):
        parts.append(f"{tokens:,} tokens")
    tps = metrics.get("decode_tps")
    if isinstance(tps, int | float) and tps > 0:
        parts.append(f"{tps:.1f} tok/s")
    ttft = metrics.get("ttft_s")
    if isinstance(ttft, int | float):
        parts.append(f"first token {ttft:.2f} s")
    used, n_ctx = metrics.get("context_used"), metrics.get("n_ctx")
    if isinstance(used, int) and isinstance(n_ctx, int) and n_ctx:
        parts.append(f"context {used:,}/{n_ctx:,}")
    return " · ".join(parts)


def dropped_note(metrics: dict[str, object]) -> str:
    dropped = metrics.get("dropped_messages")
    if isinstance(dropped, int) and dropped > 0:
        return (
            f"{dropped} earlier message{'s' if dropped != 1 else ''} left out so the "
            "conversation fits the model's context."
        )
    return ""


def error_sentence(entry: TranscriptEntry) -> str:
    """What went wrong with an answer, for a person ("" when nothing did)."""
    msg = entry.message
    if msg.state == MessageState.FAILED:
        return msg.error or "The answer failed. Try again."
    if msg.state == MessageState.INTERRUPTED:
        return msg.error or "The answer was cut off when Hearth or its worker stopped."
    return ""


def thought_label(metrics: dict[str, object]) -> str:
    seconds = metrics.get("reasoning_s")
    if isinstance(seconds, int | float):
        return f"Thought for {max(seconds, 0.1):.0f} s" if seconds >= 1 else "Thought briefly"
    return "Reasoning"


def transcript_html(
    view: ConversationView,
    c: Colours,
    *,
    expanded: frozenset[str] = frozenset(),
    stop_before: str | None = None,
    busy: bool = False,
    note: str = "",
) -> TranscriptHtml:
    """The branch as HTML; `stop_before` ends it before that message (an edit in progress),
    `expanded` names the answers whose reasoning is unfolded, `note` is a failure shown
    last (with Retry)."""
    out: list[str] = []
    blocks: list[str] = []
    entries = view.entries
    last_answer = next((e for e in reversed(entries) if e.message.role == "assistant"), None)
    for entry in entries:
        msg = entry.message
        if msg.id == stop_before:
            break
        if msg.role == "user":
            actions = [_link("edit", msg.id, "Edit", c), _link("copy", msg.id, "Copy", c)]
            out.append(
                f'<table width="100%" cellspacing="0" cellpadding="8" '
                f'style="background-color:{c.alternate}; margin-top:10px">'
                f"<tr><td><b>You</b><br>{_text(msg.content)}</td></tr></table>"
            )
        else:
            who = "Assistant"
            model = msg.model or msg.metrics.get("model")
            label = f"<b>{who}</b>"
            if model:
                label += f' <span style="color:{c.muted}">· {html.escape(str(model))}</span>'
            out.append(f'<p style="margin-top:12px; margin-bottom:4px">{label}</p>')
            if msg.reasoning:
                opened = msg.id in expanded
                arrow = "&#9662;" if opened else "&#9656;"
                action = "Hide reasoning" if opened else "Show reasoning"
                out.append(
                    f'<p style="margin:2px 0px; color:{c.muted}">'
                    + _link("think", msg.id, f"{arrow} {thought_label(msg.metrics)} · {action}", c)
                    + "</p>"
                )
                if opened:
                    out.append(
                        f'<table width="100%" cellspacing="0" cellpadding="6" '
                        f'style="background-color:{c.alternate}; margin:2px 0px">'
                        f'<tr><td style="color:{c.muted}">{_text(msg.reasoning)}</td></tr></table>'
                    )
            if msg.content:
                rendered = render_markdown(msg.content, c, first_block=len(blocks))
                blocks.extend(rendered.code_blocks)
                out.append(rendered.html)
            if msg.state == MessageState.STOPPED:
                out.append(f'<p style="color:{c.muted}"><i>Stopped.</i></p>')
            problem = error_sentence(entry)
            is_last = entry is last_answer
            if problem:
                retry = (
                    f" {_link('retry', msg.id, '<b>Retry</b>', c)}" if is_last and not busy else ""
                )
                out.append(f'<p style="color:{c.bad}">{html.escape(problem)}{retry}</p>')
            small = [answer_numbers(msg.metrics), dropped_note(msg.metrics)]
            numbers = " · ".join(s for s in small if s)
            actions = [_link("copy", msg.id, "Copy", c)]
            if is_last and not busy:
                actions.append(_link("regenerate", msg.id, "Regenerate", c))
            if numbers:
                out.append(
                    f'<p style="color:{c.muted}; margin:2px 0px"><small>{numbers}</small></p>'
                )
        siblings = _siblings(entry, c)
        line = " &nbsp;·&nbsp; ".join(([siblings] if siblings else []) + actions)
        out.append(f'<p style="color:{c.muted}; margin:2px 0px"><small>{line}</small></p>')
    if note:
        retry = "" if busy else f" {_link('retry', '', '<b>Retry</b>', c)}"
        out.append(f'<p style="color:{c.bad}">{html.escape(note)}{retry}</p>')
    return TranscriptHtml("".join(out), blocks)


class TranscriptView(QTextBrowser):
    """Shows a conversation and appends a streaming answer without re-laying out the rest;
    follows the bottom unless the reader scrolled up. Action links come out as `action`."""

    action = Signal(str, str)  # kind (ACTIONS), message id

    def __init__(self) -> None:
        super().__init__()
        self.setOpenExternalLinks(False)
        self.setOpenLinks(False)  # every click comes to the page
        self.setAccessibleName("Conversation")
        self.code_blocks: list[str] = []  # what each code block's Copy link copies
        self._in_reasoning = False
        self._answer_started = False

    # --- whole conversations --------------------------------------------------------------

    def following(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def show_html(self, rendered: TranscriptHtml) -> None:
        """Replace the content, keeping the reader's place unless they followed the bottom."""
        bar = self.verticalScrollBar()
        follow = self.following()
        place = bar.value()
        self.code_blocks = rendered.code_blocks
        self.setHtml(rendered.html)
        bar.setValue(bar.maximum() if follow else place)

    # --- a turn as it streams -------------------------------------------------------------

    def begin_answer(self, question: str | None, model: str = "") -> None:
        """Append the question (when there is a new one) and the answer's heading."""
        c = colours()
        parts = []
        if question is not None:
            parts.append(
                f'<table width="100%" cellspacing="0" cellpadding="8" '
                f'style="background-color:{c.alternate}; margin-top:10px">'
                f"<tr><td><b>You</b><br>{_text(question)}</td></tr></table>"
            )
        label = "<b>Assistant</b>"
        if model:
            label += f' <span style="color:{c.muted}">· {html.escape(model)}</span>'
        parts.append(f'<p style="margin-top:12px">{label}</p>')
        follow = self.following()
        cursor = self._end()
        cursor.insertHtml("".join(parts))
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        self._in_reasoning = False
        self._answer_started = False
        self._follow(follow)

    def append_stream(self, answer: str, reasoning: str) -> None:
        """Add a piece of the answer (plain text now; Markdown once the answer is done)."""
        c = colours()
        follow = self.following()
        cursor = self._end()
        muted = QTextCharFormat()
        muted.setForeground(QColor(c.muted))
        if reasoning:
            if not self._in_reasoning and not self._answer_started:
                italic = QTextCharFormat(muted)
                italic.setFontItalic(True)
                cursor.insertText("Thinking…\n", italic)
                self._in_reasoning = True
            cursor.insertText(reasoning, muted)
        if answer:
            if self._in_reasoning:
                cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
                self._in_reasoning = False
            self._answer_started = True
            plain = QTextCharFormat()
            plain.setForeground(QColor(c.text))
            cursor.insertText(answer, plain)
        self._follow(follow)

    def append_note(self, sentence: str, *, retry: bool) -> None:
        """Add a failure at the end (in the error colour), with a Retry link."""
        c = colours()
        follow = self.following()
        link = f" {_link('retry', '', '<b>Retry</b>', c)}" if retry else ""
        cursor = self._end()
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        cursor.insertHtml(f'<span style="color:{c.bad}">{html.escape(sentence)}</span>{link}')
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        self._follow(follow)

    def _end(self) -> QTextCursor:
        cursor = QTextCursor(self.document())  # not the view's own: a selection stays put
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _follow(self, follow: bool) -> None:
        if follow:
            bar = self.verticalScrollBar()
            bar.setValue(bar.maximum())

    # --- links ----------------------------------------------------------------------------

    def action_for(self, url: QUrl) -> tuple[str, str] | None:
        """(kind, message id) of an action link, or None for any other link."""
        if url.scheme() != ACTION_SCHEME:
            return None
        kind, _, message_id = url.path().partition(":")
        return (kind, message_id) if kind in ACTIONS else None


__all__ = ["ACTION_SCHEME", "COPY_SCHEME", "TranscriptView", "transcript_html"]
