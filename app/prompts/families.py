"""Chat template families: the built-in template per family and telling a model's family.

A GGUF file may carry no chat template, or one that fails validation; a template written
here for the model's family is used instead (`FAMILY_TEMPLATES`).

BOS handling: llama.cpp adds the BOS token itself for most models (`add_bos_token`), so
`bos_token` defaults to "" and templates must not write BOS text on their own; pass the BOS
text only when the tokenizer will not add it. EOS text *is* needed inside prompts for some
formats (after past assistant turns in Mistral, Llama 2 and DeepSeek); the family templates
fall back to the family's usual EOS text when `eos_token` is "".
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from app.models.gguf_header import ArrayInfo

__all__ = [
    "FAMILY_EOS_TEXT",
    "FAMILY_TEMPLATES",
    "STOP_STRINGS",
    "FamilyMatch",
    "TemplateFamily",
    "detect_family",
    "family_for_architecture",
    "family_from_template_text",
]


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
