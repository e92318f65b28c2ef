"""Hearth's image worker for one image, loading progressively or first and apart.

payload: {load (an ImageLoadRequest as a dict), request (an ImageGenerateRequest as a
dict), progressive}. progressive: load and generate sent together, as the app does (the
prompt is encoded while the UNet loads); otherwise the load, and then the generate.
Times are the worker's own clocks from its load's start (the process start and imports
are not counted, as in diffusers_run).
"""

from __future__ import annotations

import time
from typing import Any

from _childio import guarded, payload, vm_hwm


def main() -> dict[str, Any]:
    from app.engines.image_diffusers.client import ImageEngineClient
    from app.engines.image_diffusers.protocol import (
        ImageGenerateRequest,
        ImageLoaded,
        ImageLoadRequest,
        ImageMetrics,
    )

    args = payload()
    load = ImageLoadRequest(**args["load"])
    req = ImageGenerateRequest(**args["request"])
    loaded: ImageLoaded | None = None
    metrics: ImageMetrics | None = None
    with ImageEngineClient() as client:
        t0 = time.perf_counter()
        if args["progressive"]:
            for event in client.generate(req, load=load):
                if isinstance(event, ImageLoaded):
                    loaded = event
                elif isinstance(event, ImageMetrics):
                    metrics = event
        else:
            loaded = client.load(load)
            for event in client.generate(req):
                if isinstance(event, ImageMetrics):
                    metrics = event
        wall = time.perf_counter() - t0
        peak = vm_hwm(client.pid) if client.pid else None
    assert loaded is not None and metrics is not None, "the worker sent no ImageLoaded/Metrics"
    if args["progressive"]:
        assert metrics.load_to_first_step_s is not None
        first = metrics.load_to_first_step_s
        total = first - metrics.first_step_s + metrics.total_s
    else:
        first = loaded.load_s + metrics.first_step_s
        total = loaded.load_s + metrics.total_s
    return {
        "load_s": loaded.load_s,
        "first_step_s": first,
        "s_per_step": metrics.s_per_step,
        "total_s": total,
        "wall_s": wall,
        "peak_rss_bytes": peak,
        "scheduler": loaded.default_scheduler,
        "pipeline": loaded.pipeline,
    }


if __name__ == "__main__":
    guarded(main)
