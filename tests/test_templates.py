"""Chat templates: the exact prompt per family, choosing a template, and the sandbox."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from app.models.gguf_header import ArrayInfo
from app.prompts.choice import choose_template
from app.prompts.families import (
    FAMILY_TEMPLATES,
    STOP_STRINGS,
    TemplateFamily,
    detect_family,
    family_for_architecture,
    family_from_template_text,
)
from app.prompts.sandbox import ChatTemplateError, render_chat

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there."},
    {"role": "user", "content": "What is 2+2?"},
]

# Written out by hand from each family's published format.
EXPECTED = {
    TemplateFamily.GEMMA: (
        "<start_of_turn>user\nYou are terse.\n\nHello<end_of_turn>\n"
        "<start_of_turn>model\nHi there.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    ),
    TemplateFamily.LLAMA3: (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    TemplateFamily.CHATML: (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nHi there.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    TemplateFamily.MISTRAL: (
        "[INST] You are terse.\n\nHello [/INST] Hi there.</s>[INST] What is 2+2? [/INST]"
    ),
    TemplateFamily.PHI3: (
        "<|system|>\nYou are terse.<|end|>\n"
        "<|user|>\nHello<|end|>\n"
        "<|assistant|>\nHi there.<|end|>\n"
        "<|user|>\nWhat is 2+2?<|end|>\n"
        "<|assistant|>\n"
    ),
    TemplateFamily.LLAMA2: (
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHello [/INST] Hi there. </s>"
        "<s>[INST] What is 2+2? [/INST]"
    ),
    TemplateFamily.DEEPSEEK: (
        "You are terse.<｜User｜>Hello<｜Assistant｜>Hi there.<｜end▁of▁sentence｜>"
        "<｜User｜>What is 2+2?<｜Assistant｜>"
    ),
}


# --------------------------------------------------------------------------- formats


def test_every_family_has_a_template_stop_strings_and_an_expected_prompt() -> None:
    assert set(FAMILY_TEMPLATES) == set(TemplateFamily)
    assert set(STOP_STRINGS) == set(TemplateFamily)
    assert set(EXPECTED) == set(TemplateFamily)


@pytest.mark.parametrize("family", list(TemplateFamily), ids=str)
def test_family_template_renders_the_exact_prompt(family: TemplateFamily) -> None:
    assert render_chat(FAMILY_TEMPLATES[family], CONVERSATION) == EXPECTED[family]


@pytest.mark.parametrize(
    ("family", "stop"),
    [
        (TemplateFamily.GEMMA, "<end_of_turn>"),
        (TemplateFamily.CHATML, "<|im_end|>"),
        (TemplateFamily.LLAMA3, "<|eot_id|>"),
        (TemplateFamily.PHI3, "<|end|>"),
        (TemplateFamily.MISTRAL, "</s>"),
        (TemplateFamily.LLAMA2, "</s>"),
        (TemplateFamily.DEEPSEEK, "<｜end▁of▁sentence｜>"),
    ],
)
def test_stop_strings(family: TemplateFamily, stop: str) -> None:
    assert STOP_STRINGS[family][0] == stop


def test_bos_text_only_when_asked() -> None:
    gemma = FAMILY_TEMPLATES[TemplateFamily.GEMMA]
    assert render_chat(gemma, CONVERSATION, bos_token="<bos>") == "<bos>" + EXPECTED["gemma"]
    # Llama 2: the first <s> is the caller's (usually the tokenizer's), later ones are text.
    llama2 = render_chat(FAMILY_TEMPLATES[TemplateFamily.LLAMA2], CONVERSATION, bos_token="<s>")
    assert llama2 == "<s>" + EXPECTED[TemplateFamily.LLAMA2]
    for family in TemplateFamily:
        assert not render_chat(FAMILY_TEMPLATES[family], CONVERSATION).startswith(
            ("<bos>", "<s>", "<|begin_of_text|>", "<｜begin▁of▁sentence｜>")
        )


def test_generation_prompt_can_be_left_off() -> None:
    text = render_chat(
        FAMILY_TEMPLATES[TemplateFamily.CHATML], CONVERSATION, add_generation_prompt=False
    )
    assert text == EXPECTED[TemplateFamily.CHATML].removesuffix("<|im_start|>assistant\n")


def test_gemma_without_system_and_with_only_a_system_prompt() -> None:
    gemma = FAMILY_TEMPLATES[TemplateFamily.GEMMA]
    assert render_chat(gemma, [{"role": "user", "content": "  Hi  "}]) == (
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert render_chat(gemma, [{"role": "system", "content": "Be kind."}]) == (
        "<start_of_turn>user\nBe kind.<end_of_turn>\n<start_of_turn>model\n"
    )


def test_mistral_uses_the_eos_given() -> None:
    text = render_chat(FAMILY_TEMPLATES[TemplateFamily.MISTRAL], CONVERSATION, eos_token="<E>")
    assert "Hi there.<E>[INST]" in text


# --------------------------------------------------------------------------- families


@pytest.mark.parametrize(
    ("arch", "metadata", "family"),
    [
        ("gemma", {}, TemplateFamily.GEMMA),
        ("gemma2", {}, TemplateFamily.GEMMA),
        ("gemma3", {}, TemplateFamily.GEMMA),
        ("gemma3n", {}, TemplateFamily.GEMMA),
        ("llama", {"tokenizer.ggml.tokens": ArrayInfo(8, 128256)}, TemplateFamily.LLAMA3),
        ("llama", {"tokenizer.ggml.pre": "llama-bpe"}, TemplateFamily.LLAMA3),
        ("llama", {"tokenizer.ggml.pre": "llama3"}, TemplateFamily.LLAMA3),
        ("llama", {"tokenizer.ggml.tokens": ArrayInfo(8, 32000)}, TemplateFamily.LLAMA2),
        (
            "llama",
            {"tokenizer.ggml.tokens": ArrayInfo(8, 32000), "general.name": "Mistral 7B v0.2"},
            TemplateFamily.MISTRAL,
        ),
        (
            "llama",
            {"tokenizer.ggml.tokens": ArrayInfo(8, 32000), "general.basename": "mistral"},
            TemplateFamily.MISTRAL,
        ),
        ("llama", {"tokenizer.ggml.pre": "tekken"}, TemplateFamily.MISTRAL),
        ("qwen", {}, TemplateFamily.CHATML),
        ("qwen2", {}, TemplateFamily.CHATML),
        ("qwen2moe", {}, TemplateFamily.CHATML),
        ("qwen3", {}, TemplateFamily.CHATML),
        ("qwen3moe", {}, TemplateFamily.CHATML),
        ("phi3", {}, TemplateFamily.PHI3),
        ("deepseek2", {}, TemplateFamily.DEEPSEEK),
        ("some-new-arch", {}, TemplateFamily.CHATML),
    ],
)
def test_family_for_architecture(arch: str, metadata: dict[str, object], family: str) -> None:
    assert family_for_architecture(arch, metadata) == family


def test_unknown_architectures_are_flagged_as_guesses() -> None:
    assert detect_family("some-new-arch").guessed
    assert not detect_family("gemma3").guessed
    assert not detect_family("llama", {"tokenizer.ggml.tokens": ArrayInfo(8, 32000)}).guessed


def test_family_from_template_text() -> None:
    assert family_from_template_text("{{ '<|im_start|>' }}") == TemplateFamily.CHATML
    assert family_from_template_text("<start_of_turn>") == TemplateFamily.GEMMA
    assert family_from_template_text("[INST] <<SYS>>") == TemplateFamily.LLAMA2
    assert family_from_template_text("[INST]") == TemplateFamily.MISTRAL
    assert family_from_template_text("{{ messages }}") is None


# --------------------------------------------------------------------------- choosing

CHATML_GGUF_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_real_gemma_metadata_uses_the_gemma_family_template() -> None:
    chosen = choose_template({"general.architecture": "gemma3"})
    assert chosen.source == "family"
    assert chosen.family == TemplateFamily.GEMMA
    assert chosen.template == FAMILY_TEMPLATES[TemplateFamily.GEMMA]
    assert chosen.fallback_reason is None
    assert "<end_of_turn>" in chosen.stop_strings
    assert chosen.render(CONVERSATION) == EXPECTED[TemplateFamily.GEMMA]


def test_real_gemma_fixture_header(gemma_gguf: Path) -> None:
    from app.models.gguf_header import read_gguf_header

    metadata = read_gguf_header(gemma_gguf).metadata
    chosen = choose_template(metadata)
    assert chosen.family == TemplateFamily.GEMMA
    assert chosen.source == "family"  # the fixture carries no chat template
    assert chosen.bos_token is None and chosen.eos_token is None  # 262k tokens: not read
    assert chosen.add_bos_token is True


def test_gguf_template_is_preferred_when_present() -> None:
    chosen = choose_template(
        {"general.architecture": "qwen2", "tokenizer.chat_template": CHATML_GGUF_TEMPLATE}
    )
    assert chosen.source == "gguf"
    assert chosen.template == CHATML_GGUF_TEMPLATE
    assert chosen.family == TemplateFamily.CHATML
    assert chosen.fallback_reason is None
    assert chosen.supports_system_role
    assert "<|im_end|>" in chosen.stop_strings
    assert chosen.render(CONVERSATION) == EXPECTED[TemplateFamily.CHATML]


def test_gguf_template_markers_override_a_guessed_family() -> None:
    chosen = choose_template(
        {"general.architecture": "brand-new", "tokenizer.chat_template": "<start_of_turn>"}
    )
    assert chosen.family == TemplateFamily.GEMMA  # from the markers, even though it is broken
    assert chosen.source == "family"
    assert chosen.fallback_reason is not None


def test_bos_and_eos_text_come_from_a_small_token_list() -> None:
    small = {
        "general.architecture": "qwen2",
        "tokenizer.ggml.tokens": ["<unk>", "<|im_end|>", "<|endoftext|>", "a"],
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
    }
    chosen = choose_template(small)
    assert (chosen.bos_token, chosen.eos_token) == ("<|endoftext|>", "<|im_end|>")
    big = dict(small, **{"tokenizer.ggml.tokens": ArrayInfo(8, 151936)})
    chosen = choose_template(big)
    assert (chosen.bos_token, chosen.eos_token) == (None, None)


def test_hostile_gguf_template_falls_back_with_a_reason() -> None:
    chosen = choose_template(
        {
            "general.architecture": "qwen3",
            "tokenizer.chat_template": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        }
    )
    assert chosen.source == "family"
    assert chosen.family == TemplateFamily.CHATML
    assert chosen.template == FAMILY_TEMPLATES[TemplateFamily.CHATML]
    assert chosen.fallback_reason is not None
    assert "Python internals" in chosen.fallback_reason


def test_broken_gguf_template_falls_back_naming_the_line() -> None:
    chosen = choose_template(
        {"general.architecture": "phi3", "tokenizer.chat_template": "ok\n{% for m in %}\n"}
    )
    assert chosen.source == "family"
    assert chosen.family == TemplateFamily.PHI3
    assert chosen.fallback_reason is not None and "line 2" in chosen.fallback_reason


def test_gguf_template_that_drops_the_conversation_is_rejected() -> None:
    chosen = choose_template({"general.architecture": "qwen2", "tokenizer.chat_template": "hi"})
    assert chosen.source == "family"
    assert chosen.fallback_reason is not None


def test_gguf_template_without_a_system_role_gets_it_folded_in() -> None:
    no_system = (
        "{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}"
        "{{ '<start_of_turn>' + m['role'] + '\\n' + m['content'] + '<end_of_turn>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    )
    chosen = choose_template(
        {"general.architecture": "gemma2", "tokenizer.chat_template": no_system}
    )
    assert chosen.source == "gguf"
    assert not chosen.supports_system_role
    text = chosen.render(CONVERSATION[:2])
    assert (
        text == "<start_of_turn>user\nYou are terse.\n\nHello<end_of_turn>\n<start_of_turn>model\n"
    )


# --------------------------------------------------------------------------- HF templates

HF_STYLE = """\
{%- set ns = namespace(system='', turns=0) -%}
{%- if messages[0]['role'] == 'system' -%}
    {%- set ns.system = messages[0]['content'] -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set ns.system = 'You are a helpful assistant. Today is ' + strftime_now('%Y') + '.' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n' -}}
{%- for message in loop_messages -%}
    {%- if message['role'] not in ['user', 'assistant'] -%}
        {{- raise_exception('Unexpected role ' + message['role']) -}}
    {%- endif -%}
    {%- set ns.turns = ns.turns + 1 -%}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' -}}
    {%- if not loop.last %}{{ '\\n' }}{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '\\n<|im_start|>assistant\\n' -}}
{%- endif -%}
{{- '' if ns.turns else raise_exception('No messages') -}}
"""


def test_hf_style_template_features_work() -> None:
    assert render_chat(HF_STYLE, CONVERSATION) == EXPECTED[TemplateFamily.CHATML]
    years = {str(datetime.now().year - 1), str(datetime.now().year), str(datetime.now().year + 1)}
    text = render_chat(HF_STYLE, CONVERSATION[1:2])
    assert any(f"Today is {year}." in text for year in years)
    assert text.endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    chosen = choose_template({"general.architecture": "qwen2", "tokenizer.chat_template": HF_STYLE})
    assert chosen.source == "gguf"


def test_hf_style_helpers() -> None:
    text = render_chat(
        "{{ messages | tojson }}|{{ tools is none }}|"
        "{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}|"
        "{% generation %}kept{% endgeneration %}",
        [{"role": "user", "content": "<é>"}],
    )
    assert text == '[{"role": "user", "content": "<é>"}]|True|01|kept'


def test_raise_exception_message_is_kept() -> None:
    with pytest.raises(ChatTemplateError) as info:
        render_chat(HF_STYLE, [{"role": "tool", "content": "x"}])
    assert "Unexpected role tool" in str(info.value)
    assert info.value.kind == "refused"


# --------------------------------------------------------------------------- hostile


def refusal(template: str, **limits: float) -> ChatTemplateError:
    """Render `template` over CONVERSATION; the error it must be refused with."""
    with pytest.raises(ChatTemplateError) as info:
        render_chat(template, CONVERSATION, **limits)
    return info.value


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ ''.__class__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ ''|attr('__class__') }}",
        "{{ messages|map(attribute='__class__')|list }}",
    ],
)
def test_python_internals_are_blocked(template: str) -> None:
    error = refusal(template)
    assert error.cause == (
        "The model's chat template tried to reach Python internals and was blocked."
    )
    assert error.kind == "unsafe"


def test_changing_the_messages_is_blocked() -> None:
    assert refusal("{{ messages.append(1) }}").kind == "unsafe"


@pytest.mark.parametrize(
    "template",
    [
        # Output grows without end: stopped by the output cap.
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        # No output and no calls in the loop body: stopped by the deadline.
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(100000)|list %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
        # Exponential recursion.
        "{% macro d(n) %}{% if n < 60 %}{{ d(n+1) }}{{ d(n+1) }}{% endif %}{% endmacro %}"
        "{{ d(0) }}",
    ],
)
def test_runaway_loops_are_stopped(template: str) -> None:
    started = time.monotonic()
    error = refusal(template, timeout_s=1.0)
    assert error.kind in ("timeout", "too_large")
    assert time.monotonic() - started < 30  # generous: the machine is shared


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 10**(10**10) }}",
        "{{ 'a'|center(10**9) }}",
        "{{ 'a'.ljust(10**9) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set t %}{{ ns.s }}{{ ns.s }}"
        "{% endset %}{% set ns.s = t %}{% endfor %}{{ ns.s|length }}",
        "{{ ('x' * 100000)|replace('', 'y' * 100000) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    ],
)
def test_memory_bombs_are_refused(template: str) -> None:
    assert refusal(template).kind == "too_large"


def test_output_is_capped() -> None:
    with pytest.raises(ChatTemplateError, match="more than 100 characters"):
        render_chat(
            FAMILY_TEMPLATES[TemplateFamily.CHATML],
            [{"role": "user", "content": "x" * 500}],
            max_output_chars=100,
        )


def test_syntax_error_names_the_line() -> None:
    error = refusal("line one\nline two\n{% if %}\n")
    assert error.kind == "syntax"
    assert error.line == 3
    assert "line 3" in str(error)


def test_runtime_error_names_the_line() -> None:
    error = refusal("fine\n{{ 1 + 'a' }}")
    assert error.line == 2
    assert "line 2" in str(error)


def test_module_does_not_import_llama_cpp() -> None:
    code = "import sys, app.prompts.choice; sys.exit('llama_cpp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
