"""Choosing and rendering chat templates, safely.

A GGUF file may carry its own Jinja chat template (`tokenizer.chat_template`). It is code
from the internet, so it runs in a sandbox here: jinja2's ImmutableSandboxedEnvironment
blocks Python internals and mutation, and this module adds a budget on top of it, so a
hostile or broken template ends in a ChatTemplateError instead of a hang or a memory blow-up:

* a wall-clock deadline, checked on every call, attribute and item access, filter, operator,
  output chunk and loop iteration (every `{% for %}` is rewritten to iterate through a
  guard, so even empty nested loops stop on time);
* a cap on the rendered prompt's length (the render is consumed chunk by chunk);
* size checks *before* operations that can amplify a small template into gigabytes
  (`*`, `**`, `+`, `%`, `~`, `center`, `indent`, `replace`, `join`, `format`...), and a
  total budget on the text built along the way.

When the GGUF template is missing or fails validation, a template written here for the
model's family is used instead (`FAMILY_TEMPLATES`).

BOS handling: llama.cpp adds the BOS token itself for most models (`add_bos_token`), so
`bos_token` defaults to "" and templates must not write BOS text on their own; pass the BOS
text only when the tokenizer will not add it. EOS text *is* needed inside prompts for some
formats (after past assistant turns in Mistral, Llama 2 and DeepSeek); the family templates
fall back to the family's usual EOS text when `eos_token` is "".

This module must not import llama_cpp: it also runs in the GUI (client) process.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from jinja2 import filters as jinja_filters
from jinja2 import nodes, pass_environment, pass_eval_context
from jinja2.environment import Environment, Template
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension, loopcontrols
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, modifies_known_mutable
from jinja2.visitor import NodeTransformer

from app.errors import HearthError
from app.models.gguf_header import ArrayInfo

__all__ = [
    "FAMILY_EOS_TEXT",
    "FAMILY_TEMPLATES",
    "MAX_TEMPLATE_CHARS",
    "STOP_STRINGS",
    "ChatTemplateError",
    "ChosenTemplate",
    "FamilyMatch",
    "TemplateFamily",
    "choose_template",
    "detect_family",
    "family_for_architecture",
    "family_from_template_text",
    "render_chat",
    "validate_template",
]


# --------------------------------------------------------------------------- families


class TemplateFamily(StrEnum):
    """A prompt format shared by a group of models."""

    GEMMA = "gemma"  # <start_of_turn>user ... <end_of_turn>; no system role; "model"
    LLAMA3 = "llama3"  # <|start_header_id|>role<|end_header_id|> ... <|eot_id|>
    CHATML = "chatml"  # <|im_start|>role ... <|im_end|> (Qwen and most fine-tunes)
    MISTRAL = "mistral"  # [INST] ... [/INST] answer</s>
    PHI3 = "phi3"  # <|role|> ... <|end|>
    LLAMA2 = "llama2"  # <s>[INST] <<SYS>> ... <</SYS>> ... [/INST] answer </s>
    DEEPSEEK = "deepseek"  # <｜User｜> ... <｜Assistant｜> answer<｜end▁of▁sentence｜>


# The templates below are rendered with trim_blocks and lstrip_blocks (as Hugging Face
# renders chat templates) and use whitespace control everywhere, so all text they produce
# comes from explicit strings. Every one takes `messages`, `add_generation_prompt`,
# `bos_token` ("" when llama.cpp adds BOS itself: the usual case) and `eos_token`.

_GEMMA = r"""
{#- Gemma has no system role: by Gemma's own convention the system prompt opens the first
    user turn, separated from it by a blank line. The assistant's role is called "model". -#}
{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- set loop_messages = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set ns.system = messages[0]['content'] | trim -%}
    {%- set loop_messages = messages[1:] -%}
    {%- if not loop_messages or loop_messages[0]['role'] != 'user' -%}
        {{- '<start_of_turn>user\n' ~ ns.system ~ '<end_of_turn>\n' -}}
        {%- set ns.system = '' -%}
    {%- endif -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {{- '<start_of_turn>' ~ ('model' if message['role'] == 'assistant' else 'user') ~ '\n' -}}
    {%- if loop.first and ns.system -%}
        {{- ns.system ~ '\n\n' -}}
    {%- endif -%}
    {{- (message['content'] | trim) ~ '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}
"""

_LLAMA3 = r"""
{#- Llama 3: a header per turn, contents trimmed, every turn closed by <|eot_id|>. -#}
{{- bos_token -}}
{%- for message in messages -%}
    {{- '<|start_header_id|>' ~ message['role'] ~ '<|end_header_id|>\n\n' -}}
    {{- (message['content'] | trim) ~ '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
"""

_CHATML = r"""
{#- ChatML: <|im_start|>role, a newline, the content, <|im_end|> and a newline. -#}
{{- bos_token -}}
{%- for message in messages -%}
    {{- '<|im_start|>' ~ message['role'] ~ '\n' ~ message['content'] ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""

_MISTRAL = r"""
{#- Mistral's [INST] format (v1): "[INST] user [/INST] answer</s>[INST] user [/INST]".
    The system prompt opens the first user turn; keeping it there (rather than on the last
    turn) keeps the prompt's prefix stable, so llama.cpp can reuse its cache. The prompt
    already ends where the answer starts, so the generation prompt adds nothing. -#}
{{- bos_token -}}
{%- set eos = eos_token or '</s>' -%}
{%- set ns = namespace(system='') -%}
{%- set loop_messages = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set ns.system = messages[0]['content'] -%}
    {%- set loop_messages = messages[1:] -%}
    {%- if not loop_messages or loop_messages[0]['role'] != 'user' -%}
        {{- '[INST] ' ~ ns.system ~ ' [/INST]' -}}
        {%- set ns.system = '' -%}
    {%- endif -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if message['role'] == 'assistant' -%}
        {{- ' ' ~ message['content'] ~ eos -}}
    {%- else -%}
        {{- '[INST] ' -}}
        {%- if loop.first and ns.system -%}
            {{- ns.system ~ '\n\n' -}}
        {%- endif -%}
        {{- message['content'] ~ ' [/INST]' -}}
    {%- endif -%}
{%- endfor -%}
"""

_LLAMA2 = r"""
{#- Llama 2 chat: every exchange is its own BOS-delimited sequence,
    "<s>[INST] user [/INST] answer </s><s>[INST] user [/INST]", and the system prompt sits
    in a <<SYS>> block inside the first [INST]. The first <s> comes from bos_token (""
    when the tokenizer adds BOS itself); the later ones are part of the text. -#}
{%- set eos = eos_token or '</s>' -%}
{%- set ns = namespace(system='', turns=0) -%}
{%- set loop_messages = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set ns.system = '<<SYS>>\n' ~ (messages[0]['content'] | trim) ~ '\n<</SYS>>\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- endif -%}
{%- if ns.system and (not loop_messages or loop_messages[0]['role'] != 'user') -%}
    {{- bos_token ~ '[INST] ' ~ ns.system ~ ' [/INST]' -}}
    {%- set ns.system = '' -%}
    {%- set ns.turns = 1 -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if message['role'] == 'assistant' -%}
        {{- ' ' ~ (message['content'] | trim) ~ ' ' ~ eos -}}
    {%- else -%}
        {{- (bos_token if ns.turns == 0 else (bos_token or '<s>')) ~ '[INST] ' -}}
        {%- if loop.first and ns.system -%}
            {{- ns.system -}}
        {%- endif -%}
        {{- (message['content'] | trim) ~ ' [/INST]' -}}
        {%- set ns.turns = ns.turns + 1 -%}
    {%- endif -%}
{%- endfor -%}
"""

_PHI3 = r"""
{#- Phi-3: <|role|>, a newline, the content, <|end|> and a newline. -#}
{{- bos_token -}}
{%- for message in messages -%}
    {{- '<|' ~ message['role'] ~ '|>\n' ~ message['content'] ~ '<|end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|assistant|>\n' -}}
{%- endif -%}
"""

_DEEPSEEK = r"""
{#- DeepSeek V2.5/V3: the system prompt comes first with no tag; then <｜User｜>question and
    <｜Assistant｜>answer<｜end▁of▁sentence｜> (the bars and the "▁" are full-width and
    U+2581, as in DeepSeek's tokenizer). -#}
{{- bos_token -}}
{%- set eos = eos_token or '<｜end▁of▁sentence｜>' -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' and loop.first -%}
        {{- message['content'] -}}
    {%- elif message['role'] == 'assistant' -%}
        {{- '<｜Assistant｜>' ~ message['content'] ~ eos -}}
    {%- else -%}
        {{- '<｜User｜>' ~ message['content'] -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<｜Assistant｜>' -}}
{%- endif -%}
"""

#: A template for every family, written for Hearth (see the notes at the top of the module).
FAMILY_TEMPLATES: dict[TemplateFamily, str] = {
    TemplateFamily.GEMMA: _GEMMA.strip() + "\n",
    TemplateFamily.LLAMA3: _LLAMA3.strip() + "\n",
    TemplateFamily.CHATML: _CHATML.strip() + "\n",
    TemplateFamily.MISTRAL: _MISTRAL.strip() + "\n",
    TemplateFamily.LLAMA2: _LLAMA2.strip() + "\n",
    TemplateFamily.PHI3: _PHI3.strip() + "\n",
    TemplateFamily.DEEPSEEK: _DEEPSEEK.strip() + "\n",
}

#: Text that ends an assistant turn in each family: generation stops at any of these.
STOP_STRINGS: dict[TemplateFamily, tuple[str, ...]] = {
    TemplateFamily.GEMMA: ("<end_of_turn>", "<eos>"),
    TemplateFamily.LLAMA3: ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    TemplateFamily.CHATML: ("<|im_end|>", "<|im_start|>", "<|endoftext|>"),
    TemplateFamily.MISTRAL: ("</s>", "[INST]"),
    TemplateFamily.LLAMA2: ("</s>", "[INST]"),
    TemplateFamily.PHI3: ("<|end|>", "<|endoftext|>", "<|user|>"),
    TemplateFamily.DEEPSEEK: ("<｜end▁of▁sentence｜>", "<｜User｜>"),
}

#: The usual EOS text of each family, used when a GGUF's token list is too big to read.
FAMILY_EOS_TEXT: dict[TemplateFamily, str] = {
    TemplateFamily.GEMMA: "<eos>",
    TemplateFamily.LLAMA3: "<|eot_id|>",
    TemplateFamily.CHATML: "<|im_end|>",
    TemplateFamily.MISTRAL: "</s>",
    TemplateFamily.LLAMA2: "</s>",
    TemplateFamily.PHI3: "<|endoftext|>",
    TemplateFamily.DEEPSEEK: "<｜end▁of▁sentence｜>",
}


class FamilyMatch(NamedTuple):
    """The family for a model, whether it was a guess, and why it was chosen."""

    family: TemplateFamily
    guessed: bool
    reason: str


_GEMMA_ARCHS = frozenset({"gemma", "gemma2", "gemma3", "gemma3n"})
_CHATML_ARCHS = frozenset({"qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe"})
_PHI3_ARCHS = frozenset({"phi3", "phimoe"})
_MISTRAL_ARCHS = frozenset({"mistral", "mistral3"})
_MISTRAL_NAMES = ("mistral", "mixtral", "ministral", "codestral", "devstral", "magistral")
_LLAMA3_PRE = frozenset({"llama-bpe", "llama3"})


def _vocab_size(arch: str, metadata: Mapping[str, Any]) -> int | None:
    tokens = metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):
        return tokens.length
    if isinstance(tokens, list):
        return len(tokens)
    declared = metadata.get(f"{arch}.vocab_size")
    return declared if isinstance(declared, int) and not isinstance(declared, bool) else None


def _looks_like_mistral(metadata: Mapping[str, Any]) -> bool:
    for key in ("general.name", "general.basename"):
        value = metadata.get(key)
        if isinstance(value, str) and any(word in value.lower() for word in _MISTRAL_NAMES):
            return True
    return False


def detect_family(arch: str, metadata: Mapping[str, Any] | None = None) -> FamilyMatch:
    """The prompt format for a GGUF `general.architecture`, refined by its metadata.

    Unknown architectures get ChatML, the most common format, with `guessed` set.
    """
    meta: Mapping[str, Any] = metadata or {}
    arch = (arch or "").strip().lower()
    if arch in _GEMMA_ARCHS or arch.startswith("gemma"):
        return FamilyMatch(TemplateFamily.GEMMA, False, f"architecture {arch}")
    if arch in _CHATML_ARCHS or arch.startswith("qwen"):
        return FamilyMatch(TemplateFamily.CHATML, False, f"architecture {arch}")
    if arch in _PHI3_ARCHS:
        return FamilyMatch(TemplateFamily.PHI3, False, f"architecture {arch}")
    if arch == "deepseek2":
        return FamilyMatch(TemplateFamily.DEEPSEEK, False, "architecture deepseek2")
    if arch in _MISTRAL_ARCHS:
        return FamilyMatch(TemplateFamily.MISTRAL, False, f"architecture {arch}")
    if arch == "llama":
        pre = meta.get("tokenizer.ggml.pre")
        vocab = _vocab_size(arch, meta)
        if _looks_like_mistral(meta) or pre == "tekken" or vocab == 32768:
            return FamilyMatch(TemplateFamily.MISTRAL, False, "llama architecture, Mistral model")
        if pre in _LLAMA3_PRE or (vocab is not None and vocab >= 128000):
            return FamilyMatch(TemplateFamily.LLAMA3, False, "llama architecture, Llama 3 vocab")
        if vocab == 32000:
            return FamilyMatch(TemplateFamily.LLAMA2, False, "llama architecture, 32000 vocab")
        if vocab is None:
            return FamilyMatch(TemplateFamily.LLAMA3, True, "llama architecture, vocab unknown")
        return FamilyMatch(
            TemplateFamily.CHATML, True, f"llama architecture with an unusual vocab of {vocab}"
        )
    what = f"unknown architecture {arch!r}" if arch else "no architecture given"
    return FamilyMatch(TemplateFamily.CHATML, True, what)


def family_for_architecture(arch: str, metadata: Mapping[str, Any] | None = None) -> TemplateFamily:
    """The prompt format for an architecture (see `detect_family` for whether it guessed)."""
    return detect_family(arch, metadata).family


_TEXT_MARKERS: tuple[tuple[TemplateFamily, tuple[str, ...]], ...] = (
    (TemplateFamily.GEMMA, ("<start_of_turn>",)),
    (TemplateFamily.LLAMA3, ("<|start_header_id|>",)),
    (TemplateFamily.DEEPSEEK, ("<｜Assistant｜>", "<｜User｜>")),
    (TemplateFamily.PHI3, ("<|assistant|>",)),
    (TemplateFamily.CHATML, ("<|im_start|>",)),
    (TemplateFamily.LLAMA2, ("<<SYS>>",)),
    (TemplateFamily.MISTRAL, ("[INST]",)),
)


def family_from_template_text(text: str) -> TemplateFamily | None:
    """The family whose turn markers a template's text uses, or None when none is seen."""
    for family, markers in _TEXT_MARKERS:
        if any(marker in text for marker in markers):
            return family
    return None


# --------------------------------------------------------------------------- errors

ChatTemplateErrorKind = Literal["syntax", "unsafe", "timeout", "too_large", "refused", "failed"]


class ChatTemplateError(HearthError):
    """A chat template could not be compiled or rendered; `kind` says which way it failed."""

    default_remedy = (
        "Use the built-in template for this model's family, or try another copy of the model."
    )

    def __init__(
        self,
        cause: str,
        remedy: str | None = None,
        *,
        kind: ChatTemplateErrorKind = "failed",
        line: int | None = None,
    ) -> None:
        super().__init__(cause, remedy)
        self.kind: ChatTemplateErrorKind = kind
        self.line = line


class _TemplateRaised(TemplateError):
    """Raised by a template's own raise_exception()."""


class _Stop(Exception):
    """The render ran out of budget; `kind` is timeout, output, size or work."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Blocked(SecurityError):
    """A template reached for something the sandbox does not allow."""

    def __init__(self, message: str, *, internal: bool) -> None:
        super().__init__(message)
        self.internal = internal


# --------------------------------------------------------------------------- budget

#: Templates longer than this are refused outright (real ones are a few kB to ~30 kB).
MAX_TEMPLATE_CHARS = 512_000
#: Integers beyond this many bits are refused (`10**(10**10)` would never finish).
_MAX_INT_BITS = 100_000
#: Text built along the way may total this many times the output limit.
_WORK_FACTOR = 64
#: A single value may always be this long, however small the output limit.
_MIN_VALUE_CAP = 1_000_000


@dataclass
class _Budget:
    deadline: float
    max_chars: int  # the longest output
    max_value: int  # the longest single string or list built along the way
    work_left: int  # characters (or items) all operations together may still build

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Stop("timeout")

    def check_size(self, n: int) -> None:
        if n > self.max_value:
            raise _Stop("size")

    def charge(self, n: int) -> None:
        self.work_left -= n
        if self.work_left < 0:
            raise _Stop("work")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "hearth_template_budget", default=None
)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # fail closed: also stops jinja from folding constants at compile time
        raise RuntimeError("sandboxed templates only run inside render_chat")
    return budget


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sized(value: object) -> bool:
    return isinstance(value, str | bytes | list | tuple)


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def _spec_number(digits: str) -> int:
    return 10**12 if len(digits) > 12 else int(digits)


def _check_percent_format(fmt: str, args: object, budget: _Budget) -> None:
    """Refuse `fmt % args` when its widths and precisions would build a huge string."""
    total = 0
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group == "*":
                values = args if isinstance(args, tuple) else (args,)
                total += sum(abs(v) for v in values if _is_int(v))
            elif group:
                total += _spec_number(group)
    budget.check_size(total)


def _check_brace_format(fmt: str, budget: _Budget) -> None:
    """Refuse `fmt.format(...)` when its format specs would build a huge string."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format will raise the same error itself
    total = 0
    for _literal, _field, spec, _conversion in parsed:
        if not spec:
            continue
        if "{" in spec:  # a width computed at run time: not worth the risk
            raise _Stop("size")
        total += sum(_spec_number(d) for d in _DIGITS.findall(spec))
    budget.check_size(total)


def _replace_bound(s: str, old: str, new: str, count: Any = None) -> int:
    times = len(s) + 1 if old == "" else s.count(old)
    if _is_int(count) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(len(new) - len(old), 0)


def _join_bound(items: Sequence[Any], separator: str) -> int:
    return sum(len(x) if isinstance(x, str) else 20 for x in items) + len(separator) * max(
        len(items) - 1, 0
    )


def _checked_add(left: Any, right: Any, budget: _Budget) -> Any:
    if _sized(left) and _sized(right):
        budget.check_size(len(left) + len(right))
        budget.charge(len(left) + len(right))
    return left + right


class _Guarded:
    """An iterable whose every step checks the render's deadline (wraps `{% for %}`)."""

    __slots__ = ("_iterable",)

    def __init__(self, iterable: Any) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        budget = _budget()
        for item in self._iterable:
            budget.tick()
            yield item

    def __len__(self) -> int:
        return len(self._iterable)  # TypeError when unsized: jinja's LoopContext expects that


# --------------------------------------------------------------------------- filters


def _loop_guard(value: Any) -> _Guarded:
    return _Guarded(value)


def _concat(parts: tuple[Any, ...]) -> str:
    budget = _budget()
    texts = [str(part) for part in parts]
    total = sum(len(text) for text in texts)
    budget.check_size(total)
    budget.charge(total)
    return "".join(texts)


def _center(value: Any, width: int = 80) -> str:
    if _is_int(width):
        _budget().check_size(width)
    return jinja_filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    step = width if isinstance(width, int) else len(str(width))
    _budget().check_size(len(text) + (text.count("\n") + 1) * max(step, 0))
    return jinja_filters.do_indent(text, width, first, blank)


@pass_environment
def _wordwrap(
    environment: Environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = str(s)
    sep = wrapstring if wrapstring is not None else environment.newline_sequence
    lines = len(text) // max(width if _is_int(width) else 1, 1) + text.count("\n") + 1
    _budget().check_size(len(text) + lines * len(str(sep)))
    return jinja_filters.do_wordwrap(
        environment, text, width, break_long_words, wrapstring, break_on_hyphens
    )


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    _budget().check_size(_replace_bound(str(s), str(old), str(new), count))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value), kwargs or args, _budget())
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    items = list(value)
    if attribute is None:
        _budget().check_size(_join_bound(items, str(d)))
    return jinja_filters.do_join(eval_ctx, items, d, attribute)


@pass_environment
def _sum(
    environment: Environment,
    iterable: Iterable[Any],
    attribute: str | int | None = None,
    start: Any = 0,
) -> Any:
    budget = _budget()
    if attribute is not None:
        iterable = map(jinja_filters.make_attrgetter(environment, attribute), iterable)
    total = start
    for item in iterable:
        budget.tick()
        total = _checked_add(total, item, budget)
    return total


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's tojson: plain json.dumps (no HTML escaping), with a sane indent."""
    if isinstance(indent, int) and not 0 <= indent <= 64:
        raise _Stop("size")
    if isinstance(indent, str) and len(indent) > 64:
        raise _Stop("size")
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
    )


def _metered(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so it checks the deadline and counts the text it returns."""

    @functools.wraps(func)  # also copies jinja's pass_context/pass_environment marks
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        result = func(*args, **kwargs)
        if isinstance(result, str):
            budget.charge(len(result))
        return result

    return wrapper


# --------------------------------------------------------------------------- globals


def _raise_exception(message: str = "") -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(format: str = "%Y-%m-%d") -> str:
    return datetime.now().strftime(str(format))


def _finalize(value: Any) -> Any:
    """Called on every `{{ ... }}` the template prints, including into `{% set %}` blocks."""
    budget = _budget()
    budget.tick()
    text = value if isinstance(value, str) else str(value)
    budget.charge(len(text))
    return text


# --------------------------------------------------------------------------- environment

_STR_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class _GenerationTag(Extension):
    """Accept `{% generation %}...{% endgeneration %}` (HF's assistant-mask marker) as-is."""

    tags = {"generation"}  # noqa: RUF012 - jinja's Extension API

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _GuardLoops(NodeTransformer):
    """Make every loop step through `_Guarded` and every `~` go through size checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.For)
        visited.iter = nodes.Filter(
            visited.iter, "_hearth_loop", [], [], None, None, lineno=visited.lineno
        )
        return visited

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Concat)
        parts = nodes.Tuple(list(visited.nodes), "load", lineno=visited.lineno)
        return nodes.Filter(parts, "_hearth_concat", [], [], None, None, lineno=visited.lineno)


class _HearthSandbox(ImmutableSandboxedEnvironment):
    """jinja's immutable sandbox plus Hearth's budget (deadline, sizes, total work)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
            extensions=[loopcontrols, _GenerationTag],
            finalize=_finalize,
        )
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) would run for ever
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters.update(
            center=_center,
            indent=_indent,
            wordwrap=_wordwrap,
            replace=_replace,
            format=_format,
            join=_join,
            sum=_sum,
            tojson=_tojson,
            _hearth_loop=_loop_guard,
            _hearth_concat=_concat,
        )
        for name, func in list(self.filters.items()):
            self.filters[name] = _metered(func)

    # -- attribute access -------------------------------------------------------------

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # jinja returns an Undefined that only fails when used further; fail at once.
        internal = not modifies_known_mutable(obj, attribute)
        raise _Blocked(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} is unsafe",
            internal=internal,
        )

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)
        inner = wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(fmt, _budget())
            return inner(*args, **kwargs)

        return checked

    # -- calls and operators ----------------------------------------------------------

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        args = self._precheck_str_method(obj, args, kwargs, budget)
        result = super().call(context, obj, *args, **kwargs)
        if isinstance(result, str):
            budget.charge(len(result))
        return result

    @staticmethod
    def _precheck_str_method(
        obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], budget: _Budget
    ) -> tuple[Any, ...]:
        """Size-check str methods that can amplify (`'x'.center(10**9)`, `sep.join`...)."""
        if not isinstance(obj, types.BuiltinMethodType):
            return args
        owner = getattr(obj, "__self__", None)
        if not isinstance(owner, str | bytes):
            return args
        name = obj.__name__
        if name in _STR_WIDTH_METHODS:
            width = args[0] if args else kwargs.get("width", 0)
            if _is_int(width):
                budget.check_size(width)
        elif name == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            if _is_int(tabsize):
                budget.check_size(len(owner) * max(tabsize, 1))
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            if isinstance(owner, str) and isinstance(old, str) and isinstance(new, str):
                count = args[2] if len(args) > 2 else kwargs.get("count")
                budget.check_size(_replace_bound(owner, old, new, count))
        elif name == "join" and args:
            items = list(args[0])
            budget.check_size(_join_bound(items, str(owner)))
            return (items, *args[1:])
        return args

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        if operator == "+":
            return _checked_add(left, right, budget)
        if operator == "*":
            if _sized(left) and _is_int(right):
                budget.check_size(len(left) * right)
            elif _sized(right) and _is_int(left):
                budget.check_size(len(right) * left)
            elif (
                _is_int(left)
                and _is_int(right)
                and left.bit_length() + right.bit_length() > _MAX_INT_BITS
            ):
                raise _Stop("size")
        elif operator == "**":
            if (
                _is_int(left)
                and _is_int(right)
                and right > 1
                and abs(left) > 1
                and left.bit_length() * right > _MAX_INT_BITS
            ):
                raise _Stop("size")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left, right, budget)
        result = super().call_binop(context, operator, left, right)
        if _sized(result):
            budget.charge(len(result))
        return result


_ENV = _HearthSandbox()


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> Template:
    tree = _ENV.parse(source)
    guarded = _GuardLoops().visit(tree)
    assert isinstance(guarded, nodes.Template)
    guarded.set_environment(_ENV)
    return _ENV.from_string(guarded)


# --------------------------------------------------------------------------- rendering

_SAMPLE_SYSTEM = "You are a helpful assistant."
_SAMPLE_USER = "Hello from Hearth."
_SAMPLE_ASSISTANT = "Hello! How can I help?"


def _template_line(exc: BaseException) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _sentence(text: str) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    first = first.rstrip()
    return first if first.endswith((".", "!", "?")) else f"{first}."


def _compile_or_raise(template: str) -> Template:
    if not isinstance(template, str):
        raise ChatTemplateError("The model's chat template is not text.", kind="syntax")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(
            f"The model's chat template is {len(template):,} characters long, more than the "
            f"{MAX_TEMPLATE_CHARS:,} Hearth accepts.",
            kind="too_large",
        )
    try:
        return _compile(template)
    except TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"The model's chat template has a syntax error on line {exc.lineno}: "
            f"{_sentence(exc.message or str(exc))}",
            kind="syntax",
            line=exc.lineno,
        ) from exc
    except RecursionError as exc:
        raise ChatTemplateError(
            "The model's chat template is nested too deeply to read.", kind="syntax"
        ) from exc
    except Exception as exc:  # anything else the parser or compiler trips on
        raise ChatTemplateError(
            f"The model's chat template could not be compiled: {_sentence(str(exc))}",
            kind="syntax",
        ) from exc


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    timeout_s: float = 2.0,
    max_output_chars: int = 1_000_000,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render a chat `template` for `messages` ({role, content} dicts) in the sandbox.

    `bos_token` stays "" when llama.cpp adds BOS itself (most models). `extra` adds
    variables (`tools`, `documents`... default to None as under Hugging Face). Raises
    ChatTemplateError on a syntax error, a blocked access, a template's own
    raise_exception(), a render over `timeout_s` seconds or `max_output_chars` characters,
    or any other failure.
    """
    if timeout_s <= 0 or max_output_chars <= 0:
        raise ValueError("timeout_s and max_output_chars must be positive")
    compiled = _compile_or_raise(template)
    context: dict[str, Any] = {
        "messages": [dict(message) for message in messages],
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "tools": None,
        "documents": None,
    }
    if extra:
        context.update(extra)
    budget = _Budget(
        deadline=time.monotonic() + timeout_s,
        max_chars=max_output_chars,
        max_value=max(max_output_chars, _MIN_VALUE_CAP),
        work_left=max(_WORK_FACTOR * max_output_chars, 16_000_000),
    )
    token = _BUDGET.set(budget)
    try:
        return _consume(compiled, context, budget)
    except _Stop as exc:
        error = _stop_error(exc, timeout_s, max_output_chars)
        error.line = _template_line(exc)
        raise error from None
    except _TemplateRaised as exc:
        raise ChatTemplateError(
            f"The model's chat template refused the conversation: {_sentence(exc.message or '')}",
            "Change the conversation to follow the model's rules (for example, alternate user "
            "and assistant turns), or use the built-in template for this model's family.",
            kind="refused",
            line=_template_line(exc),
        ) from None
    except _Blocked as exc:
        cause = (
            "The model's chat template tried to reach Python internals and was blocked."
            if exc.internal
            else "The model's chat template tried to change data it may only read and was blocked."
        )
        raise ChatTemplateError(cause, kind="unsafe", line=_template_line(exc)) from None
    except SecurityError as exc:
        raise ChatTemplateError(
            "The model's chat template tried to reach Python internals and was blocked.",
            kind="unsafe",
            line=_template_line(exc),
        ) from None
    except RecursionError:
        raise ChatTemplateError(
            "The model's chat template called itself too deeply and was stopped.",
            kind="too_large",
        ) from None
    except MemoryError:
        raise ChatTemplateError(
            "The model's chat template ran this computer out of memory and was stopped.",
            kind="too_large",
        ) from None
    except Exception as exc:
        line = _template_line(exc)
        where = f" on line {line}" if line else ""
        detail = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
        raise ChatTemplateError(
            f"The model's chat template failed{where} ({type(exc).__name__}: "
            f"{_sentence(detail).rstrip('.')}).",
            kind="failed",
            line=line,
        ) from exc
    finally:
        _BUDGET.reset(token)


def _consume(compiled: Template, context: dict[str, Any], budget: _Budget) -> str:
    parts: list[str] = []
    length = 0
    chunks = compiled.generate(context)
    try:
        for chunk in chunks:
            length += len(chunk)
            if length > budget.max_chars:
                raise _Stop("output")
            budget.tick()
            parts.append(chunk)
    finally:
        close = getattr(chunks, "close", None)  # a generator: end it inside the budget
        if close is not None:
            close()
    return "".join(parts)


def _stop_error(exc: _Stop, timeout_s: float, max_output_chars: int) -> ChatTemplateError:
    if exc.kind == "timeout":
        return ChatTemplateError(
            f"The model's chat template took longer than {timeout_s:g} seconds to render "
            "and was stopped.",
            kind="timeout",
        )
    if exc.kind == "output":
        return ChatTemplateError(
            f"The model's chat template produced more than {max_output_chars:,} characters "
            "and was stopped.",
            kind="too_large",
        )
    return ChatTemplateError(
        "The model's chat template tried to build text or numbers far larger than any "
        "prompt and was stopped.",
        kind="too_large",
    )


# --------------------------------------------------------------------------- choosing


def validate_template(
    template: str, *, bos_token: str = "", eos_token: str = "", timeout_s: float = 2.0
) -> bool:
    """Check a template renders a short sample conversation; return whether it takes a
    system message. Raises ChatTemplateError when it cannot be used at all.

    The sample is [system, user] with a generation prompt; a template that refuses the
    system role through raise_exception() (Gemma 2's does) is retried with
    [user, assistant, user] and counts as usable without a system role.
    """

    def attempt(messages: list[dict[str, str]]) -> str:
        text = render_chat(
            template,
            messages,
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
            timeout_s=timeout_s,
            max_output_chars=100_000,
        )
        if _SAMPLE_USER not in text:
            raise ChatTemplateError(
                "The model's chat template leaves the conversation out of the prompt.",
                kind="failed",
            )
        return text

    try:
        text = attempt(
            [
                {"role": "system", "content": _SAMPLE_SYSTEM},
                {"role": "user", "content": _SAMPLE_USER},
            ]
        )
    except ChatTemplateError as exc:
        if exc.kind != "refused":
            raise
        attempt(
            [
                {"role": "user", "content": "Hi."},
                {"role": "assistant", "content": _SAMPLE_ASSISTANT},
                {"role": "user", "content": _SAMPLE_USER},
            ]
        )
        return False
    return _SAMPLE_SYSTEM in text


def _token_text(metadata: Mapping[str, Any], which: str) -> str | None:
    tokens = metadata.get("tokenizer.ggml.tokens")
    token_id = metadata.get(f"tokenizer.ggml.{which}_token_id")
    if (
        isinstance(tokens, list)
        and isinstance(token_id, int)
        and not isinstance(token_id, bool)
        and 0 <= token_id < len(tokens)
    ):
        text = tokens[token_id]
        return text if isinstance(text, str) else None
    return None  # absent, or an ArrayInfo: the header reader skips big token lists


@dataclass(frozen=True)
class ChosenTemplate:
    """The chat template to use for a model, where it came from, and how to stop."""

    source: Literal["gguf", "family"]
    family: TemplateFamily
    template: str
    stop_strings: tuple[str, ...]
    bos_token: str | None = None  # text of the BOS token, when the metadata says
    eos_token: str | None = None  # text of the EOS token, when the metadata says
    add_bos_token: bool | None = None  # whether llama.cpp's tokenizer adds BOS itself
    fallback_reason: str | None = None  # why the GGUF's own template was not used
    family_guessed: bool = False  # the family is a guess (unknown architecture)
    supports_system_role: bool = True  # False: fold the system prompt into the first turn
    notes: tuple[str, ...] = field(default_factory=tuple)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        bos_token: str = "",
        timeout_s: float = 2.0,
        max_output_chars: int = 1_000_000,
    ) -> str:
        """Render `messages` with this template (see render_chat).

        A system message is folded into the first user turn when the template has no system
        role; the EOS text is the metadata's, else the family's usual one.
        """
        prepared = [dict(m) for m in messages]
        if not self.supports_system_role and prepared and prepared[0].get("role") == "system":
            system = str(prepared.pop(0).get("content", ""))
            if prepared and prepared[0].get("role") == "user":
                prepared[0]["content"] = f"{system}\n\n{prepared[0].get('content', '')}"
            else:
                prepared.insert(0, {"role": "user", "content": system})
        return render_chat(
            self.template,
            prepared,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=self.eos_token or FAMILY_EOS_TEXT[self.family],
            timeout_s=timeout_s,
            max_output_chars=max_output_chars,
        )


def _stops(family: TemplateFamily, eos: str | None) -> tuple[str, ...]:
    stops = list(STOP_STRINGS[family])
    if eos and eos not in stops:
        stops.append(eos)
    return tuple(stops)


def choose_template(metadata: Mapping[str, Any]) -> ChosenTemplate:
    """Pick the chat template for a model from its GGUF metadata.

    The GGUF's own `tokenizer.chat_template` wins when it passes `validate_template`;
    otherwise the family template is used, and `fallback_reason` says why the GGUF's was
    rejected (it stays None when the file simply has none).
    """
    arch = metadata.get("general.architecture")
    match = detect_family(arch if isinstance(arch, str) else "", metadata)
    bos = _token_text(metadata, "bos")
    eos = _token_text(metadata, "eos")
    add_bos = metadata.get("tokenizer.ggml.add_bos_token")
    add_bos = add_bos if isinstance(add_bos, bool) else None
    gguf_template = metadata.get("tokenizer.chat_template")
    notes = [f"family from {match.reason}"]
    fallback_reason: str | None = None
    family = match.family
    guessed = match.guessed

    if isinstance(gguf_template, str) and gguf_template.strip():
        text_family = family_from_template_text(gguf_template)
        if text_family is not None:
            if text_family != family:
                notes.append(f"the template's turn markers are {text_family.value}'s")
            family, guessed = text_family, False
        try:
            supports_system = validate_template(
                gguf_template,
                bos_token="" if add_bos is not False else (bos or ""),
                eos_token=eos or FAMILY_EOS_TEXT[family],
            )
        except ChatTemplateError as exc:
            fallback_reason = exc.cause
        else:
            return ChosenTemplate(
                source="gguf",
                family=family,
                template=gguf_template,
                stop_strings=_stops(family, eos),
                bos_token=bos,
                eos_token=eos,
                add_bos_token=add_bos,
                family_guessed=guessed,
                supports_system_role=supports_system,
                notes=tuple(notes),
            )
    elif gguf_template is not None and not isinstance(gguf_template, str):
        fallback_reason = "The model's chat template is not text."

    return ChosenTemplate(
        source="family",
        family=family,
        template=FAMILY_TEMPLATES[family],
        stop_strings=_stops(family, eos),
        bos_token=bos,
        eos_token=eos,
        add_bos_token=add_bos,
        fallback_reason=fallback_reason,
        family_guessed=guessed,
        supports_system_role=True,
        notes=tuple(notes),
    )
