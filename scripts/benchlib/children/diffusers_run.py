"""One run of plain diffusers: `DiffusionPipeline.from_pretrained`, then one image.

payload: {folder, device, dtype, memory_mode, vae_tiling, prompt, steps, guidance, width,
height, seed}. The clock starts after the imports; the first denoising step is the
UNet's first call (a forward pre-hook), s/step runs from there to the last step's end.
"""

from __future__ import annotations

import os
import time

from _childio import guarded, payload, peak_rss_self


def main() -> dict[str, object]:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    args = payload()
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    pipe = diffusers.DiffusionPipeline.from_pretrained(
        args["folder"],
        local_files_only=True,
        use_safetensors=True,
        dtype=getattr(torch, args["dtype"]),
        safety_checker=None,
        requires_safety_checker=False,
    )
    mode, device = args["memory_mode"], args["device"]
    if mode == "model_cpu_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential_cpu_offload":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if mode == "attention_slicing":
        pipe.enable_attention_slicing()
    if args["vae_tiling"] or mode == "vae_tiling":
        pipe.vae.enable_tiling()
    if mode == "vae_tiling":
        pipe.vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    marks["load_s"] = time.perf_counter() - t0

    def first_call(_module: object, _args: object) -> None:
        marks.setdefault("unet_first", time.perf_counter())

    def step_end(_pipe: object, _i: int, _t: object, tensors: dict) -> dict:
        marks["last_step_end"] = time.perf_counter()
        return tensors

    pipe.unet.register_forward_pre_hook(first_call)
    with torch.inference_mode():
        pipe(
            args["prompt"],
            num_inference_steps=int(args["steps"]),
            guidance_scale=float(args["guidance"]),
            width=int(args["width"]),
            height=int(args["height"]),
            generator=torch.Generator("cpu").manual_seed(int(args["seed"])),
            callback_on_step_end=step_end,
        )
    total = time.perf_counter() - t0
    return {
        "load_s": marks["load_s"],
        "first_step_s": marks["unet_first"] - t0,
        "s_per_step": (marks["last_step_end"] - marks["unet_first"]) / int(args["steps"]),
        "total_s": total,
        "peak_rss_bytes": peak_rss_self(),
        "scheduler": type(pipe.scheduler).__name__,
        "pipeline": type(pipe).__name__,
    }


if __name__ == "__main__":
    guarded(main)
