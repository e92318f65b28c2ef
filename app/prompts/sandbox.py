"""The hardened Jinja sandbox that compiles and renders chat templates.

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

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

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "ChatTemplateError",
    "ChatTemplateErrorKind",
    "render_chat",
]


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
