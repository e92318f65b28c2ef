"""Choosing a model's chat template: its own when it renders safely, else its family's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.prompts.families import (
    FAMILY_EOS_TEXT,
    FAMILY_TEMPLATES,
    STOP_STRINGS,
    TemplateFamily,
    detect_family,
    family_from_template_text,
)
from app.prompts.sandbox import ChatTemplateError, render_chat

__all__ = ["ChosenTemplate", "choose_template", "validate_template"]

_SAMPLE_SYSTEM = "You are a helpful assistant."
_SAMPLE_USER = "Hello from Hearth."
_SAMPLE_ASSISTANT = "Hello! How can I help?"


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

    @property
    def replacement_note(self) -> str | None:
        """One sentence for the user when the model's own template was replaced, else None.

        >>> chosen = ChosenTemplate("family", TemplateFamily.GEMMA, "", (),
        ...     fallback_reason="The template has a syntax error on line 1.")
        >>> chosen.replacement_note
        'The template has a syntax error on line 1, so Hearth uses the standard gemma template...'
        """
        if self.fallback_reason is None:
            return None
        reason = self.fallback_reason.rstrip(". ")
        return f"{reason}, so Hearth uses the standard {self.family.value} template for it instead."

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
    own_template: str | None = None  # set when the GGUF's own template passes
    supports_system = True  # the family templates all take a system message

    if isinstance(gguf_template, str) and gguf_template.strip():
        text_family = family_from_template_text(gguf_template)
        if text_family is not None:
            if text_family != family:
                notes.append(f"the template's turn markers are {text_family.value}'s")
            family, guessed = text_family, False
        try:
            takes_system = validate_template(
                gguf_template,
                bos_token="" if add_bos is not False else (bos or ""),
                eos_token=eos or FAMILY_EOS_TEXT[family],
            )
        except ChatTemplateError as exc:
            fallback_reason = exc.cause
        else:
            own_template, supports_system = gguf_template, takes_system
    elif gguf_template is not None and not isinstance(gguf_template, str):
        fallback_reason = "The model's chat template is not text."

    return ChosenTemplate(
        source="family" if own_template is None else "gguf",
        family=family,
        template=FAMILY_TEMPLATES[family] if own_template is None else own_template,
        stop_strings=_stops(family, eos),
        bos_token=bos,
        eos_token=eos,
        add_bos_token=add_bos,
        fallback_reason=fallback_reason,
        family_guessed=guessed,
        supports_system_role=supports_system,
        notes=tuple(notes),
    )
