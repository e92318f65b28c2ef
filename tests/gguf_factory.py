"""Write small, structurally valid GGUF files with the gguf package (for bad-input tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter


def write_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    n_layers: int = 2,
    n_embd: int = 32,
    n_head: int = 4,
    n_head_kv: int = 2,
    context_length: int = 2048,
    vocab: int = 64,
    chat_template: str | None = None,
    name: str = "Tiny Test Model",
    chat_ready: bool = False,
) -> Path:
    """A GGUF with a llama-shaped tensor table filled with small random float32 weights.

    `chat_ready` gives it a vocabulary llama.cpp can tokenize any text with (`<unk>`, `<s>`,
    `</s>` and the 256 byte tokens of SentencePiece's byte fallback), so it can be loaded and
    chatted with (nonsense, quickly); the default 64 `tN` tokens only load.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_block_count(n_layers)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_embd * 2)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    if chat_ready:
        tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
        vocab = len(tokens)
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * vocab)
        writer.add_token_types([2, 3, 3] + [6] * 256)  # unknown, control x2, byte
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
    else:
        writer.add_token_list([f"t{i}".encode() for i in range(vocab)])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    rng = np.random.default_rng(0)
    head_dim = n_embd // n_head

    def tensor(tname: str, *shape: int) -> None:
        writer.add_tensor(tname, rng.standard_normal(shape).astype(np.float32) * 0.02)

    tensor("token_embd.weight", vocab, n_embd)
    for i in range(n_layers):
        tensor(f"blk.{i}.attn_norm.weight", n_embd)
        tensor(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        tensor(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd)
        tensor(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd)
        tensor(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        tensor(f"blk.{i}.ffn_norm.weight", n_embd)
        tensor(f"blk.{i}.ffn_gate.weight", n_embd * 2, n_embd)
        tensor(f"blk.{i}.ffn_up.weight", n_embd * 2, n_embd)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_embd * 2)
    tensor("output_norm.weight", n_embd)
    tensor("output.weight", vocab, n_embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
