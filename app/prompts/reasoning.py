"""Split a streamed reply into reasoning (`<think>…</think>`) and the answer, tag-safe."""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


class ReasoningSplitter:
    """Feed text pieces as they stream; get back (answer, reasoning) pieces.

    Tags may arrive split across pieces ("<thi" + "nk>"), so a possible tag prefix at the
    end of a piece is held back until the next piece decides it.

    >>> s = ReasoningSplitter()
    >>> s.feed("<thi"), s.feed("nk>plan</think>Hi"), s.finish()
    (('', ''), ('Hi', 'plan'), ('', ''))
    """

    def __init__(self, *, starts_in_reasoning: bool = False) -> None:
        # Some templates open <think> in the generation prompt, so the model starts inside.
        self.in_reasoning = starts_in_reasoning
        self.seen_answer_text = False
        self._held = ""
        self._leading_ws = ""  # whitespace before the answer, kept until we know it is one
        self.answer = ""
        self.reasoning = ""

    def feed(self, text: str) -> tuple[str, str]:
        buf = self._held + text
        self._held = ""
        answer_out: list[str] = []
        reasoning_out: list[str] = []
        while buf:
            tag = CLOSE if self.in_reasoning else OPEN
            idx = buf.find(tag)
            if idx >= 0:
                self._emit(buf[:idx], answer_out, reasoning_out)
                buf = buf[idx + len(tag) :]
                if self.in_reasoning:
                    self.in_reasoning = False
                    buf = buf.lstrip("\n") if not self.seen_answer_text else buf
                elif not self.seen_answer_text:
                    self.in_reasoning = True  # <think> only counts before the answer begins
                else:
                    self._emit(tag, answer_out, reasoning_out)
                continue
            keep = _partial_tag_suffix(buf, tag)
            self._emit(buf[: len(buf) - keep], answer_out, reasoning_out)
            self._held = buf[len(buf) - keep :]
            break
        return "".join(answer_out), "".join(reasoning_out)

    def finish(self) -> tuple[str, str]:
        """Flush what was held back (an unfinished tag is just text)."""
        held, self._held = self._held, ""
        answer_out: list[str] = []
        reasoning_out: list[str] = []
        self._emit(held, answer_out, reasoning_out)
        return "".join(answer_out), "".join(reasoning_out)

    def _emit(self, text: str, answer_out: list[str], reasoning_out: list[str]) -> None:
        if not text:
            return
        if self.in_reasoning:
            reasoning_out.append(text)
            self.reasoning += text
        else:
            if not self.seen_answer_text and not text.strip():
                # Leading whitespace before a possible <think> is not the answer yet.
                self._leading_ws += text
                return
            if not self.seen_answer_text:
                text = text.lstrip() if self.reasoning else self._leading_ws + text
            self.seen_answer_text = True
            answer_out.append(text)
            self.answer += text


def _partial_tag_suffix(buf: str, tag: str) -> int:
    """Length of the longest suffix of `buf` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(buf)), 0, -1):
        if buf.endswith(tag[:n]):
            return n
    return 0
