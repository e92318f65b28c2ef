"""Write tiny diffusers-shaped pipeline folders (safetensors via the safetensors package)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

#: Component folder → weight file name, as diffusers and transformers write them.
WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
}


def write_tiny_pipeline(
    folder: Path,
    *,
    pickle_only: Iterable[str] = (),
    missing: Iterable[str] = (),
    extras: bool = False,
    seed: int = 0,
) -> Path:
    """A StableDiffusionPipeline folder with small fp16 safetensors in unet/vae/text_encoder.

    `pickle_only` components get only a pickle `.bin` (what old checkpoints ship);
    `missing` components are listed in model_index.json but have no folder; `extras` adds
    the clutter Hub folders carry (a pickle and a flax copy next to the safetensors).
    """
    pickle_only, missing = set(pickle_only), set(missing)
    folder.mkdir(parents=True, exist_ok=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.32.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    rng = np.random.default_rng(seed)
    for component, stem in WEIGHT_FILES.items():
        if component in missing:
            continue
        sub = folder / component
        sub.mkdir(exist_ok=True)
        config = {"sample_size": 64, "cross_attention_dim": 768} if component == "unet" else {}
        (sub / "config.json").write_text(json.dumps(config))
        if component in pickle_only:
            (sub / f"{stem}.bin").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
            continue
        tensors = {"weight": rng.standard_normal((32, 32)).astype(np.float16)}
        save_file(tensors, str(sub / f"{stem}.safetensors"))
        if extras:
            (sub / f"{stem}.bin").write_bytes(pickle.dumps({"weight": [1.0]}))
            (sub / "flax_model.msgpack").write_bytes(b"\x80flax")
    for component, name, text in (
        ("tokenizer", "vocab.json", '{"a": 0}'),
        ("scheduler", "scheduler_config.json", '{"_class_name": "PNDMScheduler"}'),
    ):
        if component in missing:
            continue
        (folder / component).mkdir(exist_ok=True)
        (folder / component / name).write_text(text)
    return folder
