"""What the planner needs to know about a model: read from its files or a catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.hardware.profile import read_simulation_file


@dataclass(frozen=True)
class ChatModelFacts:
    """Facts about one GGUF chat model that decide how much memory it needs.

    Sizes are bytes. `layer_bytes` is the size of one repeating block (the part that moves
    to the GPU layer by layer); `non_layer_bytes` is embeddings, output head and norms.
    """

    name: str
    arch: str
    file_size: int
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    context_length: int
    vocab_size: int | None = None
    sliding_window: int | None = None
    swa_layers: int = 0  # how many blocks use sliding-window attention
    layer_bytes: int | None = None
    non_layer_bytes: int | None = None
    output_bytes: int | None = None  # the output head (llama.cpp offloads it with layer n+1)
    #: Bytes of block tensors llama.cpp's CPU backend copies into a faster layout ("repack",
    #: Q4_0 / Q4_K / IQ4_NL on AVX2 or ARM dot-product CPUs). None: not known (estimated).
    repack_bytes: int | None = None
    quantization: str | None = None
    parameters: int | None = None
    has_chat_template: bool = False
    split_files: tuple[str, ...] = ()
    #: An embedding model's pooling of its token vectors into one ("mean", "cls" or
    #: "last"): it turns text into vectors and cannot write replies. None: a chat model.
    pooling: str | None = None

    @property
    def is_embedding(self) -> bool:
        return self.pooling is not None

    def block_bytes(self) -> int:
        if self.layer_bytes is not None:
            return self.layer_bytes
        # Catalog entries give only the file size: blocks hold nearly all of it.
        return int(self.file_size * 0.92 / max(self.block_count, 1))

    def outside_blocks_bytes(self) -> int:
        if self.non_layer_bytes is not None:
            return self.non_layer_bytes
        return max(self.file_size - self.block_bytes() * self.block_count, 0)

    def repackable_bytes(self) -> int:
        if self.repack_bytes is not None:
            return self.repack_bytes
        # Catalog entries: the share of repackable tensors typical for each quant type.
        share = {"Q4_0": 0.9, "IQ4_NL": 0.9, "Q4_K_M": 0.55, "Q4_K_S": 0.85}
        return int(self.block_bytes() * self.block_count * share.get(self.quantization or "", 0))

    def kv_bytes_per_token(self, kv_elem_bytes: float = 2.0) -> float:
        """K and V for one token across all blocks (full-attention layout)."""
        per_layer = self.head_count_kv * (self.key_length + self.value_length)
        return per_layer * self.block_count * kv_elem_bytes


@dataclass(frozen=True)
class ImageModelFacts:
    """Facts about one diffusers pipeline folder (or catalog entry)."""

    name: str
    family: str  # "sd15" | "sd2" | "sdxl" | "sd3" | ... ("unknown" when not recognised)
    component_bytes: dict[str, int] = field(default_factory=dict)  # as stored on disk
    stored_dtype: str = "float16"
    native_resolution: int = 512
    pipeline_class: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(self.component_bytes.values())

    def bytes_as(self, dtype: str) -> int:
        """Weights size once loaded in `dtype`."""
        scale = _dtype_size(dtype) / _dtype_size(self.stored_dtype)
        return int(self.total_bytes * scale)

    def largest_component_as(self, dtype: str) -> int:
        if not self.component_bytes:
            return 0
        scale = _dtype_size(dtype) / _dtype_size(self.stored_dtype)
        return int(max(self.component_bytes.values()) * scale)


def _dtype_size(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2}.get(dtype, 2)


def facts_from_reference(name: str, data: dict[str, Any]) -> ChatModelFacts | ImageModelFacts:
    """Facts for a model known only by its published numbers (hardware-profiles.json, catalog)."""
    if data["kind"] == "gguf":
        n_embd = int(data["embedding_length"])
        n_head = int(data["head_count"])
        return ChatModelFacts(
            name=name,
            arch=data["arch"],
            file_size=int(data["file_size"]),
            block_count=int(data["block_count"]),
            embedding_length=n_embd,
            head_count=n_head,
            head_count_kv=int(data.get("head_count_kv", n_head)),
            key_length=int(data.get("key_length", n_embd // n_head)),
            value_length=int(data.get("value_length", n_embd // n_head)),
            context_length=int(data.get("context_length", 4096)),
            vocab_size=data.get("vocab_size"),
            sliding_window=data.get("sliding_window"),
            quantization=_quant_from_name(name),
        )
    components = data.get("bytes_fp16") or data.get("bytes", {})
    return ImageModelFacts(
        name=name,
        family=data.get("family", "unknown"),
        component_bytes={k: int(v) for k, v in components.items()},
        stored_dtype="float16" if "bytes_fp16" in data else data.get("dtype", "float32"),
        native_resolution=int(data.get("native_resolution", 512)),
    )


def _quant_from_name(name: str) -> str | None:
    import re

    m = re.search(r"(i?q\d_[a-z0-9_]+|f16|bf16|f32)$", name.lower())
    return m.group(1).upper() if m else None


def load_reference_models(path: Path | None = None) -> dict[str, ChatModelFacts | ImageModelFacts]:
    """The reference models (published sizes and shapes) shipped next to the simulated machines."""
    data = read_simulation_file(path)
    return {name: facts_from_reference(name, m) for name, m in data["models"].items()}
