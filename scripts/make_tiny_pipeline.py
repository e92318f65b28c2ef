#!/usr/bin/env python3
"""Build a Stable-Diffusion-shaped diffusers pipeline with random weights, for tests and benchmarks.

    .venv/bin/python scripts/make_tiny_pipeline.py OUT_DIR [--preset tiny|sdxl-tiny|sd15]

No image weights reach these machines, so the tests build their own: a UNet, a VAE and a
CLIP text encoder from small configs, a CLIP tokenizer from a small written vocabulary
(model_max_length 77, like the real one) and a scheduler, saved with `save_pretrained`
as safetensors. The images it makes are noise, but every tensor goes through the same
loading and denoising code as a real model.

Presets:
- `tiny` (default): SD 1.x layout, ~1 MB, native size 64x64; 2 steps take about a second.
- `sdxl-tiny`: SDXL layout (two text encoders, pooled embeddings, size conditioning).
- `sd15`: the real SD 1.5 shapes (UNet 860M, CLIP ViT-L/14 text encoder, the SD VAE),
  saved in float16: ~2 GB, for load-time benchmarks (`scripts/bench_image_load.py`).

Importable: `make_tiny_pipeline(folder, preset="tiny")` returns the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

PRESETS = ("tiny", "sdxl-tiny", "sd15")


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte → printable character table."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))


def write_clip_tokenizer_files(folder: Path) -> tuple[Path, Path, int]:
    """A small CLIP BPE vocabulary: every byte alone and at a word's end, plus a few merges.

    Any text tokenizes (character by character, with merges for common pairs). Returns
    (vocab.json, merges.txt, vocabulary size).
    """
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("o", "f</w>")]
    tokens += [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False))
    merges_file.write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return vocab_file, merges_file, len(vocab)


def _tokenizer(scratch: Path) -> Any:
    from transformers import CLIPTokenizer

    vocab_file, merges_file, _ = write_clip_tokenizer_files(scratch)
    return CLIPTokenizer(
        str(vocab_file),
        str(merges_file),
        model_max_length=77,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def _text_config(tokenizer: Any, preset: str, *, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig

    ids = {
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    big = preset == "sd15"  # CLIP ViT-L/14's text tower; the others get a tiny one
    return CLIPTextConfig(
        vocab_size=49408 if big else 1000,
        hidden_size=768 if big else 32,
        intermediate_size=3072 if big else 37,
        num_hidden_layers=12 if big else 2,
        num_attention_heads=12 if big else 4,
        max_position_embeddings=77,
        hidden_act="quick_gelu" if big else "gelu",
        projection_dim=768 if big else (32 if projection else 512),
        **ids,
    )


def _vae(preset: str) -> Any:
    from diffusers import AutoencoderKL

    # Four blocks, three downsamplings: latents are 1/8 of the image, as in real SD.
    channels = (128, 256, 512, 512) if preset == "sd15" else (32, 32, 32, 32)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=channels,
        layers_per_block=2 if preset == "sd15" else 1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512 if preset == "sd15" else 64,
    )


def _unet(preset: str) -> Any:
    from diffusers import UNet2DConditionModel

    if preset == "sd15":
        return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    # SDXL's layout: pooled text and size conditioning ("text_time"), linear projections.
    xl = preset == "sdxl-tiny"
    sdxl_only: dict[str, Any] = {
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "transformer_layers_per_block": (1, 1),
        "projection_class_embeddings_input_dim": 6 * 8 + 32,  # time ids + pooled text
    }
    # Cross-attention on the inner level (SDXL) or the outer one (SD 1.x); up mirrors down.
    attn, plain = "CrossAttnDownBlock2D", "DownBlock2D"
    down = (plain, attn) if xl else (attn, plain)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=down,
        up_block_types=tuple(block.replace("Down", "Up") for block in reversed(down)),
        # SDXL: both text encoders' hidden states side by side.
        cross_attention_dim=64 if xl else 32,
        attention_head_dim=(2, 4) if xl else 8,
        norm_num_groups=32,
        **(sdxl_only if xl else {}),
    )


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )


def make_tiny_pipeline(folder: Path | str, preset: str = "tiny", *, seed: int = 0) -> Path:
    """Build a random-weights pipeline of `preset` and save it (safetensors) into `folder`."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no torchvision notices
    import torch
    import transformers
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    transformers.utils.logging.disable_progress_bar()
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    folder = Path(folder)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = _tokenizer(Path(scratch))
    unet, vae, scheduler = _unet(preset), _vae(preset), _scheduler()
    if preset == "sdxl-tiny":
        pipe: Any = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(_text_config(tokenizer, preset)),
            text_encoder_2=CLIPTextModelWithProjection(
                _text_config(tokenizer, preset, projection=True)
            ),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
            add_watermarker=False,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(_text_config(tokenizer, preset)),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    if preset == "sd15":
        pipe = pipe.to(torch.float16)  # what people download: the fp16 weights
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="where to write the pipeline")
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    args = parser.parse_args()
    folder = make_tiny_pipeline(args.folder, args.preset, seed=args.seed)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{args.preset} pipeline written to {folder} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
