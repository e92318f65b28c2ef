"""One run of the GPT4All Python bindings (in their own venv): load on CPU, stream greedily.

payload: {model, n_ctx, text (the prompt), prompt_tokens, gen_tokens}. Only n_ctx and the
device are set; everything else is the bindings' default, as a Python user gets it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from _childio import guarded, payload, peak_rss_self, stream_numbers


def main() -> dict[str, object]:
    from gpt4all import GPT4All

    args = payload()
    path = Path(args["model"])
    t0 = time.perf_counter()
    model = GPT4All(
        model_name=path.name,
        model_path=str(path.parent),
        allow_download=False,
        device="cpu",
        n_ctx=int(args["n_ctx"]),
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    stamps: list[float] = []
    t_send = time.perf_counter()
    for piece in model.generate(
        args["text"],
        max_tokens=int(args["gen_tokens"]),
        temp=0.0,
        top_k=1,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.0,
        streaming=True,
    ):
        if piece:
            stamps.append(time.perf_counter())
    result: dict[str, object] = {
        "load_s": load_s,
        **stream_numbers(t_send, stamps, int(args["prompt_tokens"])),
        "peak_rss_bytes": peak_rss_self(),
        "settings": {"n_ctx": int(args["n_ctx"]), "device": "cpu"},
    }
    with contextlib.suppress(Exception):  # older bindings do not say
        result["settings"]["n_threads"] = int(model.model.thread_count())  # type: ignore[index]
    return result


if __name__ == "__main__":
    guarded(main)
