"""Read a GGUF file's header and metadata into ChatModelFacts, with clear errors for bad files."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.hardware.builds import llama_supports_architecture
from app.models.gguf_header import ArrayInfo, GgufFormatError, GgufHeader, read_gguf_header
from app.planner.facts import ChatModelFacts

GGUF_MAGIC = b"GGUF"
_SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
# Blocks that use sliding-window attention, by architecture, when the file does not say
# (llama.cpp hard-codes the same patterns): n means "every n-th block is global".
#: ggml types llama.cpp's CPU backend repacks into an interleaved copy: Q4_0, Q4_K, IQ4_NL.
REPACKED_TYPES = frozenset({2, 12, 20})
_SWA_GLOBAL_EVERY = {"gemma2": 2, "gemma3": 6, "cohere2": 4}
#: `{arch}.pooling_type` values that make a GGUF an embedding model (llama.cpp's
#: `llama_pooling_type`); 0 (none: one vector per token) and 4 (rank: rerankers) do not.
POOLING_NAMES = {1: "mean", 2: "cls", 3: "last"}
#: Architectures llama.cpp runs only as embedding models (bidirectional encoders without
#: an output head to generate with); mean pooling when the file names none, as
#: sentence-transformers does by default.
EMBEDDING_ARCHS = frozenset(
    {
        "bert",
        "eurobert",
        "gemma-embedding",
        "jina-bert-v2",
        "jina-bert-v3",
        "llama-embed",
        "modern-bert",
        "neo-bert",
        "nomic-bert",
        "nomic-bert-moe",
    }
)


class ModelFileError(HearthError):
    """A model file that cannot be used as it is."""

    default_remedy = "Download or copy the model again, or pick another file."


class ModelNotFoundError(ModelFileError):
    default_remedy = "Check the path, or run `hearth models list` to see the models you have."


class NotGgufError(ModelFileError):
    default_remedy = "Chat models must be .gguf files: pick a GGUF build of this model."


class TruncatedGgufError(ModelFileError):
    default_remedy = "The download or copy stopped early: fetch the file again."


class UnsupportedArchitectureError(ModelFileError):
    default_remedy = (
        "Pick a GGUF of an architecture llama.cpp runs (Llama, Qwen, Gemma, Mistral, Phi and "
        "most others); an update of Hearth may add this one."
    )


def split_parts(path: Path) -> list[Path]:
    """All files of a split GGUF (`name-00001-of-00003.gguf`), or just `[path]`."""
    m = _SPLIT_RE.match(path.name)
    if not m:
        return [path]
    count = int(m["count"])
    parts = [
        path.with_name(f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ModelNotFoundError(
            f"The split model {m['stem']} is missing {len(missing)} of its {count} parts "
            f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}).",
            "Put all parts in the same folder, then try again.",
        )
    return parts


def check_gguf_header(path: Path) -> None:
    """Raise a ModelFileError unless `path` exists and starts like a GGUF file."""
    if not path.exists():
        raise ModelNotFoundError(f"There is no file at {path}.")
    if path.is_dir():
        raise NotGgufError(f"{path} is a folder, not a GGUF file.")
    with path.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8:
        raise TruncatedGgufError(f"{path.name} is only {len(head)} bytes long.")
    if head[:4] != GGUF_MAGIC:
        what = _sniff(head)
        raise NotGgufError(f"{path.name} is not a GGUF model file{what}.")


def read_gguf_facts(path: Path | str) -> ChatModelFacts:
    """Read the facts the planner needs from a .gguf file (the first part of a split set).

    >>> facts = read_gguf_facts("gemma-3-270m-q4_k_m.gguf")  # doctest: +SKIP
    >>> facts.arch, facts.block_count
    ('gemma3', 18)
    """
    path = Path(path)
    parts = split_parts(path)
    first = parts[0]
    header = read_header(first)
    fields = header.metadata

    arch = str(fields.get("general.architecture") or "")
    if not arch:
        raise NotGgufError(f"{first.name} has no general.architecture: it is not a model file.")
    check_architecture(arch, first.name)

    def key(suffix: str, default: Any = None) -> Any:
        return fields.get(f"{arch}.{suffix}", default)

    block_count = int(key("block_count", 0))
    n_embd = int(key("embedding_length", 0))
    n_head = _first_int(key("attention.head_count", 0))
    n_head_kv = _first_int(key("attention.head_count_kv", n_head))
    head_dim = n_embd // n_head if n_head else 0
    key_length = int(key("attention.key_length", head_dim))
    value_length = int(key("attention.value_length", head_dim))
    sliding_window = key("attention.sliding_window")
    swa_layers = _swa_layer_count(arch, block_count, key("attention.sliding_window_pattern"))
    if not sliding_window:
        swa_layers = 0

    # The output head as the first part's tensor table gives it; tied embeddings (no
    # output.weight) mean the head reuses token_embd.
    sizes = {t.name: t.n_bytes for t in header.tensors}
    output_bytes = sizes.get("output.weight") or sizes.get("token_embd.weight") or 0
    tokens = fields.get("tokenizer.ggml.tokens")
    vocab = _length(tokens)

    # Each part has its own tensor table: count the tensors of every part.
    file_size = header.file_size
    tensors = list(header.tensors)
    for p in parts[1:]:
        part = read_header(p)
        file_size += part.file_size
        tensors += part.tensors
    layer_total = other = n_params = repack = 0
    for t in tensors:
        n_params += t.n_elements
        if t.name.startswith("blk."):
            layer_total += t.n_bytes
            if t.ggml_type in REPACKED_TYPES and len(t.shape) == 2:
                repack += t.n_bytes
        else:
            other += t.n_bytes

    return ChatModelFacts(
        name=str(fields.get("general.name") or path.stem),
        arch=arch,
        file_size=file_size,
        block_count=block_count,
        embedding_length=n_embd,
        head_count=n_head,
        head_count_kv=n_head_kv,
        key_length=key_length,
        value_length=value_length,
        context_length=int(key("context_length", 2048)),
        vocab_size=vocab,
        sliding_window=int(sliding_window) if sliding_window else None,
        swa_layers=swa_layers,
        layer_bytes=layer_total // block_count if block_count else None,
        non_layer_bytes=other,
        output_bytes=output_bytes,
        repack_bytes=repack,
        quantization=_file_type_name(fields.get("general.file_type")),
        parameters=n_params or None,
        has_chat_template=bool(fields.get("tokenizer.chat_template")),
        split_files=tuple(p.name for p in parts) if len(parts) > 1 else (),
        pooling=embedding_pooling(arch, key("pooling_type")),
    )


def embedding_pooling(arch: str, pooling_type: Any) -> str | None:
    """How an embedding model pools its token vectors ("mean", "cls", "last"), from its
    architecture and `{arch}.pooling_type`; None for a chat model.

    >>> [embedding_pooling(*a) for a in (("qwen3", 3), ("bert", None), ("llama", None))]
    ['last', 'mean', None]
    """
    try:
        named = POOLING_NAMES.get(int(pooling_type)) if pooling_type is not None else None
    except (TypeError, ValueError):
        named = None
    if named is None and arch in EMBEDDING_ARCHS:
        return "mean"
    return named


def check_architecture(arch: str, name: str) -> None:
    """Raise UnsupportedArchitectureError when the installed llama.cpp cannot load `arch`
    (a model named `name`); let it through when that cannot be told."""
    if llama_supports_architecture(arch) is False:
        version = importlib.metadata.version("llama-cpp-python")
        raise UnsupportedArchitectureError(
            f"{name} is a '{arch}' model, an architecture the installed llama.cpp "
            f"(llama-cpp-python {version}) cannot run."
        )


def read_header(path: Path) -> GgufHeader:
    """The parsed header of one GGUF file, checked to be whole, or a ModelFileError."""
    check_gguf_header(path)
    try:
        header = read_gguf_header(path)
    except GgufFormatError as exc:
        raise TruncatedGgufError(
            f"{path.name} has a GGUF header but it is damaged or cut short ({exc})."
        ) from exc
    end = max((t.offset + t.n_bytes for t in header.tensors), default=header.data_offset)
    if end > header.file_size:
        raise TruncatedGgufError(
            f"{path.name} is truncated: its tensors need {end:,} bytes but the file has "
            f"{header.file_size:,}."
        )
    return header


def read_gguf_metadata(path: Path | str) -> dict[str, Any]:
    """All metadata key/values of a GGUF file; big arrays appear as `<N entries>`."""
    header = read_header(Path(path))
    return {
        k: (f"<{v.length} entries>" if isinstance(v, ArrayInfo) else v)
        for k, v in header.metadata.items()
    }


def _length(value: Any) -> int | None:
    if isinstance(value, ArrayInfo):
        return value.length
    if isinstance(value, list):
        return len(value)
    return None


def _first_int(value: Any) -> int:
    # Some architectures store head counts per layer as an array.
    if isinstance(value, list | tuple):
        return int(max(value)) if value else 0
    return int(value or 0)


def _swa_layer_count(arch: str, block_count: int, pattern: Any) -> int:
    if isinstance(pattern, list | tuple) and pattern:
        return sum(1 for p in pattern if p)
    if isinstance(pattern, int) and pattern > 1:
        return block_count - block_count // pattern
    every = _SWA_GLOBAL_EVERY.get(arch)
    if every:
        return block_count - block_count // every
    return 0


def _file_type_name(value: Any) -> str | None:
    if value is None:
        return None
    try:
        from gguf import LlamaFileType

        name = LlamaFileType(int(value)).name
    except Exception:
        return str(value)
    return name.removeprefix("MOSTLY_")


def _sniff(head: bytes) -> str:
    if head.startswith(b"PK"):
        return " (it is a zip archive, perhaps a PyTorch checkpoint)"
    if head[:1] == b"\x80":
        return " (it looks like a Python pickle, which Hearth never loads)"
    if head.lstrip()[:1] in (b"<", b"{"):
        return " (it is a text/HTML page, perhaps an error page saved instead of the model)"
    return ""
