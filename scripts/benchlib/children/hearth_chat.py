"""Hearth's chat worker process, driven the way the app drives it, for one benchmark.

payload: {mode, request (a LoadRequest as a dict), ...}:
- "run": load, then one greedy generation of `text` (`prompt_tokens` long, `gen_tokens`);
- "load": load only (peak RSS while loading, load time);
- "turns": a `turns`-turn chat: each prompt is the whole history rendered with the
  template Hearth chooses for the model, so the worker may reuse the KV prefix.
Peak RSS is the worker's own (VmHWM from /proc, else the children's ru_maxrss).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

from _childio import guarded, payload, stream_numbers, vm_hwm

GREEDY: dict[str, Any] = {
    "temperature": 0.0,
    "top_k": 40,
    "top_p": 1.0,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
}
QUESTIONS = (
    "Tell me about lighthouses.",
    "Why were they painted in stripes?",
    "Who kept them running at night?",
    "What replaced the keepers?",
    "Write a short poem about the last keeper.",
)


def _generate(
    client: Any, rid: str, text: str, gen_tokens: int, stop: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    from app.engines.chat_llama.protocol import GenerateRequest, Metrics, TokenEvent

    stamps: list[float] = []
    pieces: list[str] = []
    metrics = None
    t_send = time.perf_counter()
    for event in client.generate(
        GenerateRequest(rid, text, max_tokens=gen_tokens, stop=stop, **GREEDY)
    ):
        if isinstance(event, TokenEvent):
            stamps.append(time.perf_counter())
            pieces.append(event.text)
        elif isinstance(event, Metrics):
            metrics = event
    assert metrics is not None, "the worker sent no Metrics"
    numbers = stream_numbers(t_send, stamps, metrics.prompt_tokens)
    numbers.update(
        {
            "worker_ttft_s": metrics.ttft_s,
            "worker_prompt_tps": metrics.prompt_tps,
            "worker_decode_tps": metrics.decode_tps,
            "prompt_tokens": metrics.prompt_tokens,
            "cached_tokens": metrics.cached_tokens,
            "backend": metrics.backend,
            "gpu_layers": metrics.gpu_layers,
            "threads": metrics.threads,
            "fewest_threads": metrics.fewest_threads,
        }
    )
    return numbers, "".join(pieces)


def _peak(client: Any) -> int | None:
    pid = client.pid
    return vm_hwm(pid) if pid else None


def main() -> dict[str, Any]:
    from app.engines.chat_llama.client import ChatEngineClient
    from app.engines.chat_llama.protocol import LoadRequest

    args = payload()
    request = LoadRequest(**args["request"])
    result: dict[str, Any] = {}
    with ChatEngineClient() as client:
        t0 = time.perf_counter()
        loaded = client.load(request)
        result["load_wall_s"] = time.perf_counter() - t0  # process start + import included
        result["load_s"] = loaded.load_s  # the worker's own clock, as llama_run's
        result["backend"] = loaded.backend_used
        result["settings"] = args["request"]
        if args["mode"] == "run":
            numbers, _ = _generate(client, "bench", args["text"], int(args["gen_tokens"]))
            result.update(numbers)
        elif args["mode"] == "turns":
            result["turns"] = _turns(client, args)
        result["peak_rss_bytes"] = _peak(client)
    if result["peak_rss_bytes"] is None:  # no /proc: the worker has been waited for now
        scale = 1 if sys.platform == "darwin" else 1024
        result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return result


def _turns(client: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    from app.models.gguf_header import read_gguf_header
    from app.prompts.choice import choose_template

    template = choose_template(read_gguf_header(Path(args["request"]["model_path"])).metadata)
    # A one-token generation first, so turn 1 does not pay the context's first-use costs
    # (which would flatter turn k / turn 1); its text shares nothing with the chat.
    _generate(client, "warm-up", "Warm-up.", 1)
    history: list[dict[str, str]] = []
    turns = []
    for k in range(int(args["turns"])):
        history.append({"role": "user", "content": QUESTIONS[k % len(QUESTIONS)]})
        text = template.render(history, add_generation_prompt=True)
        rid, gen = f"turn-{k + 1}", int(args["gen_tokens"])
        numbers, reply = _generate(client, rid, text, gen, template.stop_strings)
        history.append({"role": "assistant", "content": reply})
        turns.append({"turn": k + 1, **numbers})
    return turns


if __name__ == "__main__":
    guarded(main)
