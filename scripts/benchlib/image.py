"""`scripts/bench image`: Hearth's image worker against plain diffusers, side by side.

Same folder, pipeline class, device, dtype, memory mode (from Hearth's image plan for
this machine), the model's own scheduler, steps, guidance, size and seed; each run a
fresh process, in alternating rounds. Hearth runs twice per round: loading
progressively (load and generate sent together, as the app does) and not (the load,
then the generate), which gives the time to the first denoising step with and without
progressive loading.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchlib.common import ROOT, WORK_DIR, log, machine_facts, ratio, run_child, spread

IMAGE_ENGINES = ("hearth", "hearth_not_progressive", "diffusers")
IMAGE_METRICS = ("load_s", "first_step_s", "s_per_step", "total_s", "peak_rss_bytes")
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
TINY = WORK_DIR / "tiny-pipeline"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("image", help="image speed: hearth's worker vs plain diffusers")
    p.add_argument(
        "--model",
        type=Path,
        help="a diffusers folder (default: the tiny pipeline of scripts/make_tiny_pipeline.py)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--size", help="WxH (default: the model's native size)")
    p.add_argument("--runs", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--guidance", type=float, default=7.0)
    p.set_defaults(func=run)


def _tiny_pipeline() -> Path:
    if not (TINY / "model_index.json").is_file():
        log(f"building the tiny pipeline in {TINY}")
        script = ROOT / "scripts" / "make_tiny_pipeline.py"
        subprocess.run([sys.executable, str(script), str(TINY)], check=True, capture_output=True)
    return TINY


def run(args: argparse.Namespace) -> dict[str, Any]:
    from app.engines.image_diffusers.client import check_model_folder
    from app.engines.image_diffusers.protocol import ImageGenerateRequest, ImageLoadRequest
    from app.hardware.detect import this_machine
    from app.planner import LoadSettings, plan_image_load
    from app.planner.image_size import image_size

    folder = (args.model or _tiny_pipeline()).resolve()
    facts = check_model_folder(str(folder))
    width = height = None
    if args.size:
        w, _, h = args.size.lower().partition("x")
        width, height = int(w), int(h or w)
    width, height = image_size(width, height, facts.family, facts.native_resolution)
    plan = plan_image_load(
        this_machine(), facts, LoadSettings(image_width=width, image_height=height)
    )
    load = asdict(ImageLoadRequest.from_plan(str(folder), plan))
    request = asdict(
        ImageGenerateRequest(
            f"bench-{uuid.uuid4().hex[:8]}",
            PROMPT,
            steps=args.steps,
            guidance=args.guidance,
            width=width,
            height=height,
            seed=args.seed,
            preview_every=0,
        )
    )
    plain = {
        "folder": str(folder),
        "device": load["device"],
        "dtype": load["dtype"],
        "memory_mode": load["memory_mode"],
        "vae_tiling": load["vae_tiling"],
        "prompt": PROMPT,
        "steps": args.steps,
        "guidance": args.guidance,
        "width": width,
        "height": height,
        "seed": args.seed,
    }
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in IMAGE_ENGINES}
    for k in range(args.runs):
        order = IMAGE_ENGINES[k % 3 :] + IMAGE_ENGINES[: k % 3]
        for engine in order:
            log(f"round {k + 1}/{args.runs}: {engine}")
            if engine == "diffusers":
                result = run_child("diffusers_run.py", plain)
            else:
                progressive = engine == "hearth"
                payload = {"load": load, "request": request, "progressive": progressive}
                result = run_child("hearth_image.py", payload)
            runs[engine].append({"run": k + 1, **result})
    engines = {
        e: {m: spread([r.get(m) for r in runs[e]]) for m in IMAGE_METRICS} for e in IMAGE_ENGINES
    }
    h, hn, d = engines["hearth"], engines["hearth_not_progressive"], engines["diffusers"]
    return {
        "benchmark": "image",
        "model": {"path": str(folder), "family": facts.family},
        "machine": machine_facts(),
        "settings": {
            "runs": args.runs,
            "steps": args.steps,
            "size": f"{width}x{height}",
            "seed": args.seed,
            "guidance": args.guidance,
            "device": load["device"],
            "dtype": load["dtype"],
            "memory_mode": load["memory_mode"],
            "scheduler": runs["hearth"][0].get("scheduler") if runs["hearth"] else None,
            "order": "alternating rounds; the engine order rotates each round",
        },
        "engines": engines,
        "ratios": {
            "hearth/diffusers": {
                "s_per_step": ratio(h["s_per_step"], d["s_per_step"]),
                "first_step_s": ratio(h["first_step_s"], d["first_step_s"]),
            },
            "hearth/hearth_not_progressive": {
                "first_step_s": ratio(h["first_step_s"], hn["first_step_s"]),
            },
        },
        "runs": runs,
    }


def print_table(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(
        f"{report['model']['path']}: {s['size']}, {s['steps']} steps, {s['device']} "
        f"{s['dtype']}, {s['runs']} alternating rounds, medians"
    )
    print(f"{'engine':<26}{'load s':>10}{'first step s':>14}{'s/step':>10}{'total s':>10}")
    for name, e in report["engines"].items():
        cells = [e[m]["median"] if e[m] else float("nan") for m in IMAGE_METRICS[:4]]
        print(f"{name:<26}{cells[0]:>10.2f}{cells[1]:>14.2f}{cells[2]:>10.3f}{cells[3]:>10.2f}")
    for name, r in report["ratios"].items():
        print(name + ": " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items() if v is not None))
