"""Reading model facts from GGUF files, and clear errors for files that are not usable."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from app.models.gguf import (
    ModelNotFoundError,
    NotGgufError,
    TruncatedGgufError,
    read_gguf_facts,
    read_gguf_metadata,
)


def test_real_gemma_facts_match_its_published_shape(gemma_gguf: Path) -> None:
    facts = read_gguf_facts(gemma_gguf)
    assert facts.arch == "gemma3"
    assert facts.block_count == 18
    assert facts.file_size == 253_113_024
    assert (facts.head_count, facts.head_count_kv, facts.key_length) == (4, 1, 256)
    assert facts.sliding_window == 512 and facts.swa_layers == 15  # 5 of every 6 blocks
    assert facts.context_length == 32768
    assert facts.vocab_size == 262_144
    assert facts.quantization == "Q4_K_M"
    assert not facts.has_chat_template  # a base model: the chat engine must pick one
    # Every byte of tensor data is attributed to blocks or to the rest.
    assert facts.block_bytes() * 18 + facts.outside_blocks_bytes() < facts.file_size
    assert facts.block_bytes() * 18 + facts.outside_blocks_bytes() > 0.95 * facts.file_size


def test_tiny_gguf_facts_and_template(tiny_gguf: Callable[..., Path]) -> None:
    path = tiny_gguf(chat_template="{{ messages }}", n_layers=3, context_length=4096)
    facts = read_gguf_facts(path)
    assert (facts.arch, facts.block_count, facts.context_length) == ("llama", 3, 4096)
    assert facts.has_chat_template
    assert facts.vocab_size == 64
    meta = read_gguf_metadata(path)
    assert meta["tokenizer.chat_template"] == "{{ messages }}"
    assert meta["tokenizer.ggml.tokens"] == [f"t{i}" for i in range(64)]


def test_random_bytes_named_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"\x13\x37" * 5000)
    with pytest.raises(NotGgufError, match="not a GGUF model file") as err:
        read_gguf_facts(fake)
    assert err.value.remedy  # every error says what to do


def test_pickle_renamed_to_gguf_is_named_as_pickle(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(NotGgufError, match="pickle"):
        read_gguf_facts(fake)


def test_html_error_page_saved_as_model_is_explained(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("<!DOCTYPE html><html><body>Rate limited</body></html>")
    with pytest.raises(NotGgufError, match="HTML"):
        read_gguf_facts(fake)


@pytest.mark.parametrize("keep", [6, 2_000, 5_000_000])
def test_truncated_real_model_is_reported_as_truncated(
    gemma_gguf: Path, tmp_path: Path, keep: int
) -> None:
    cut = tmp_path / "cut.gguf"
    with gemma_gguf.open("rb") as src:
        cut.write_bytes(src.read(keep))
    with pytest.raises(TruncatedGgufError) as err:
        read_gguf_facts(cut)
    assert "cut.gguf" in err.value.cause


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no file"):
        read_gguf_facts(tmp_path / "nope.gguf")
    with pytest.raises(NotGgufError, match="folder"):
        read_gguf_facts(tmp_path)


def test_split_model_reads_as_one_and_reports_missing_parts(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    first = tiny_gguf("big-00001-of-00002.gguf")
    with pytest.raises(ModelNotFoundError, match="missing 1 of its 2 parts"):
        read_gguf_facts(first)
    second = tiny_gguf("big-00002-of-00002.gguf")
    facts = read_gguf_facts(first)
    assert facts.split_files == ("big-00001-of-00002.gguf", "big-00002-of-00002.gguf")
    assert facts.file_size == first.stat().st_size + second.stat().st_size
