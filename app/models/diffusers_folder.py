"""Inspect a diffusers pipeline folder: family, component sizes and stored dtype (safetensors)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from app.models.gguf import ModelFileError, ModelNotFoundError
from app.planner.facts import ImageModelFacts

#: Components that hold weights; tokenizers, schedulers and feature extractors do not.
WEIGHT_COMPONENTS = (
    "unet",
    "transformer",
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
    "vae",
    "prior",
    "decoder",
)
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
_FAMILIES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "LatentConsistencyModelPipeline": "sd15",
}
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


class PickleWeightsError(ModelFileError):
    default_remedy = (
        "Hearth loads image weights from .safetensors only, because pickle files can run code: "
        "get the safetensors version of this model."
    )


class IncompletePipelineError(ModelFileError):
    default_remedy = "Copy or download the whole model folder again."


def read_diffusers_facts(folder: Path | str) -> ImageModelFacts:
    """Read a diffusers folder's `model_index.json` and weight files."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelNotFoundError(f"There is no folder at {folder}.")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise IncompletePipelineError(
            f"{folder} has no model_index.json, so it is not a diffusers model folder."
        )
    try:
        index: dict[str, Any] = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IncompletePipelineError(f"{index_path} is not valid JSON ({exc}).") from exc

    sizes: dict[str, int] = {}
    dtypes: set[str] = set()
    for name, spec in index.items():
        if name.startswith("_") or name not in WEIGHT_COMPONENTS or not spec or spec[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise IncompletePipelineError(
                f"The pipeline lists a '{name}' component but {sub} is missing."
            )
        weights = pick_weight_files(sub)
        if not weights:
            pickles = [p.name for p in sub.iterdir() if p.suffix in PICKLE_SUFFIXES]
            if pickles:
                raise PickleWeightsError(
                    f"The '{name}' component has only pickle weights ({pickles[0]})."
                )
            raise IncompletePipelineError(f"The '{name}' component in {sub} has no weight file.")
        sizes[name] = sum(p.stat().st_size for p in weights)
        dtypes |= {_safetensors_dtype(p) for p in weights}

    if not sizes:
        raise IncompletePipelineError(f"{folder} lists no weight components in model_index.json.")
    class_name = str(index.get("_class_name", ""))
    family = _FAMILIES.get(class_name, "unknown")
    if family == "sd15" and _unet_cross_attention(folder) == 1024:
        family = "sd2"
    stored = (
        "float16" if "float16" in dtypes else ("bfloat16" if "bfloat16" in dtypes else "float32")
    )
    return ImageModelFacts(
        name=folder.name,
        family=family,
        component_bytes=sizes,
        stored_dtype=stored,
        native_resolution=_native_resolution(folder, family),
        pipeline_class=class_name or None,
    )


def pick_weight_files(sub: Path) -> list[Path]:
    """The safetensors weights diffusers loads from a component folder (fp16 if present)."""
    files = sorted(sub.glob("*.safetensors"))
    fp16 = [p for p in files if ".fp16." in p.name]
    return fp16 or files  # diffusers prefers the fp16 variant when one is present


def _safetensors_dtype(path: Path) -> str:
    """The dominant dtype in a safetensors header (reads the JSON header only)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise IncompletePipelineError(f"{path} is truncated ({len(raw)} bytes).")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise IncompletePipelineError(f"{path} is not a valid safetensors file.")
        header_bytes = fh.read(n)
    try:
        header = json.loads(header_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IncompletePipelineError(f"{path} has a damaged safetensors header.") from exc
    counts: dict[str, int] = {}
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, dict):
            continue
        start, end = info.get("data_offsets", [0, 0])
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype", ""), "float32")
        counts[dtype] = counts.get(dtype, 0) + (end - start)
    return max(counts, key=lambda k: counts[k]) if counts else "float32"


def _unet_cross_attention(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    value = config.get("cross_attention_dim")
    return int(value) if isinstance(value, int) else None


def _native_resolution(folder: Path, family: str) -> int:
    try:
        config = json.loads((folder / "unet" / "config.json").read_text())
        return int(config["sample_size"]) * 8
    except (OSError, KeyError, ValueError, TypeError):
        return {"sdxl": 1024, "sd2": 768, "sd3": 1024}.get(family, 512)
