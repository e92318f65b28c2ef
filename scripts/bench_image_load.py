#!/usr/bin/env python3
"""How much sooner the first denoising step starts with Hearth's progressive load.

    .venv/bin/python scripts/bench_image_load.py [FOLDER] [--rounds 3] [--size 256]

Both sides load the same diffusers folder on the CPU in the same dtype and make one image
(1 step) from the same prompt, each in a fresh process whose imports (torch, diffusers,
transformers) are done before the clock starts:

- plain: `StableDiffusionPipeline.from_pretrained(...)` (every component, one after the
  other), then `pipe(prompt, ...)`, which encodes the prompt and starts denoising;
- Hearth: the image worker, sent the load and the generate request together
  (`ImageEngineClient.generate(req, load=...)`): components load one by one and the
  prompt is encoded while the UNet loads; denoising starts once the VAE is in (the CPU
  default), or, in a third variant (`overlap_vae=True`, the GPU default), as soon as the
  UNet is in, while the VAE loads.

The clock runs from the load request to the first UNet call (a forward pre-hook on both
sides). Rounds alternate (plain, Hearth, ...). By default the files are in the OS cache
before each run, so both read from memory; `--cold` evicts them (posix_fadvise, only this
folder's files) before each run, as for the first load after a boot.

Without FOLDER, an SD 1.5-shaped random-weights pipeline (~2 GB, float16, built once by
scripts/make_tiny_pipeline.py --preset sd15) is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
DEFAULT_FOLDER = Path("/tmp/hearth-bench-sd15")

PLAIN = r"""
import json, os, sys, time
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
import torch, diffusers, transformers
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.disable_progress_bar()
folder, dtype, size, prompt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
marks = {}
t0 = time.perf_counter()
pipe = diffusers.StableDiffusionPipeline.from_pretrained(
    folder, local_files_only=True, use_safetensors=True, dtype=getattr(torch, dtype),
    safety_checker=None, requires_safety_checker=False,
)
pipe.set_progress_bar_config(disable=True)
marks["loaded"] = time.perf_counter() - t0
def first_call(module, args):
    marks.setdefault("first_step", time.perf_counter() - t0)  # returns None: args unchanged
pipe.unet.register_forward_pre_hook(first_call)
pipe(prompt, num_inference_steps=1, guidance_scale=7.0, width=size, height=size,
     generator=torch.Generator("cpu").manual_seed(1))
marks["image"] = time.perf_counter() - t0
print(json.dumps(marks))
"""


def evict_cache(folder: Path) -> None:
    """Drop this folder's files (only these) from the OS cache: a first load after a boot."""
    import os

    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm_cache(folder: Path) -> None:
    """Read every file once so both sides start with the weights in the OS cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(16 * 1024 * 1024):
                    pass


def plain_run(folder: Path, dtype: str, size: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, str(folder), dtype, str(size), PROMPT],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def hearth_run(folder: Path, dtype: str, size: int, overlap_vae: bool) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from app.engines.image_diffusers.client import ImageEngineClient
    from app.engines.image_diffusers.protocol import (
        ImageGenerateRequest,
        ImageLoaded,
        ImageLoadProgress,
        ImageLoadRequest,
        ImageMetrics,
        PromptEncoded,
    )

    marks: dict[str, float] = {}
    with ImageEngineClient() as client:
        req = ImageGenerateRequest(
            f"bench-{uuid.uuid4().hex[:6]}",
            PROMPT,
            steps=1,
            guidance=7.0,
            width=size,
            height=size,
            seed=1,
            preview_every=0,
        )
        load = ImageLoadRequest(str(folder), device="cpu", dtype=dtype, overlap_vae=overlap_vae)
        for event in client.generate(req, load=load):
            if isinstance(event, ImageLoadProgress) and event.ready:
                marks[f"{event.component}_in"] = event.elapsed_s
            elif isinstance(event, PromptEncoded):
                marks["encode_s"] = event.encode_s
            elif isinstance(event, ImageLoaded):
                marks["loaded"] = event.load_s
            elif isinstance(event, ImageMetrics):
                assert event.load_to_first_step_s is not None
                marks["first_step"] = event.load_to_first_step_s
                marks["image"] = event.load_to_first_step_s - event.first_step_s + event.total_s
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a diffusers SD 1.x folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="image width and height")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--cold", action="store_true", help="evict the model's files from the OS cache each run"
    )
    args = parser.parse_args()

    folder = args.folder or DEFAULT_FOLDER
    if not (folder / "model_index.json").is_file():
        print(f"building an SD 1.5-shaped random pipeline in {folder} ...", file=sys.stderr)
        script = ROOT / "scripts" / "make_tiny_pipeline.py"
        subprocess.run([sys.executable, str(script), str(folder), "--preset", "sd15"], check=True)
    prepare = evict_cache if args.cold else warm_cache
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "hearth": [], "hearth_overlap": []}
    for i in range(args.rounds):
        prepare(folder)
        runs["plain"].append(plain_run(folder, args.dtype, args.size))
        prepare(folder)
        runs["hearth"].append(hearth_run(folder, args.dtype, args.size, overlap_vae=False))
        prepare(folder)
        runs["hearth_overlap"].append(hearth_run(folder, args.dtype, args.size, overlap_vae=True))
        for name, done in runs.items():
            print(f"round {i + 1} {name}: {json.dumps(done[-1])}", file=sys.stderr)

    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[name]), 2)

    report: dict[str, object] = {
        "folder": str(folder),
        "dtype": args.dtype,
        "size": args.size,
        "rounds": args.rounds,
        "cache": "cold" if args.cold else "warm",
    }
    plain_first = median("plain", "first_step")
    for name in runs:
        first = median(name, "first_step")
        numbers = {
            "first_step_s": first,
            "sooner_s": round(plain_first - first, 2),
            "sooner_pct": round(100 * (plain_first - first) / plain_first, 1),
            "all_loaded_s": median(name, "loaded"),
            "image_s": median(name, "image"),
        }
        if name != "plain":
            for key in ("encode_s", "text_encoder_in", "unet_in", "vae_in"):
                numbers[key] = median(name, key)
        report[name] = numbers
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
