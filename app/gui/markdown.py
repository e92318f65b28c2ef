"""Chat messages as HTML for the transcript: Markdown (markdown-it-py, raw HTML off) with code
blocks highlighted by Pygments in the theme's colours, each with a Copy link.

Qt's rich text understands a subset of HTML 4 and inline styles, so code blocks are rendered
with inline styles (`noclasses`) and links carry `copy:N` for the page to handle.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from app.gui.theme import DARK, Colours

COPY_SCHEME = "copy"


@dataclass
class Rendered:
    """A message's HTML and the code of its blocks (what each `copy:N` link copies)."""

    html: str
    code_blocks: list[str] = field(default_factory=list)


def render_markdown(text: str, colours: Colours, *, first_block: int = 0) -> Rendered:
    """`text` as transcript HTML; code blocks are numbered from `first_block` for copying."""
    # Imported here, not with the module: the window's first paint does not need them
    # (about 0.1 s of imports), the first answer on screen does.
    from markdown_it import MarkdownIt
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    blocks: list[str] = []
    style = "monokai" if colours is DARK else "default"
    md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(
        ["table", "strikethrough"]
    )

    def fence(_renderer: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
        token = tokens[idx]
        code = token.content
        language = (token.info or "").strip().split(" ")[0]
        try:
            lexer = get_lexer_by_name(language) if language else TextLexer()
        except ClassNotFound:
            lexer = TextLexer()
        number = first_block + len(blocks)
        blocks.append(code)
        body = highlight(code, lexer, HtmlFormatter(noclasses=True, style=style, nowrap=True))
        label = html.escape(language or "code")
        return (
            f'<table width="100%" cellspacing="0" cellpadding="6" '
            f'style="background-color:{colours.alternate}; margin: 4px 0px;">'
            f'<tr><td style="color:{colours.muted}">{label}'
            f' &nbsp; <a href="{COPY_SCHEME}:{number}">Copy</a></td></tr>'
            f'<tr><td><pre style="margin:0px">{body}</pre></td></tr></table>'
        )

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    return Rendered(md.render(text), blocks)
