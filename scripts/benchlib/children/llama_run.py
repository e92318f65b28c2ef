"""One run of llama-cpp-python called directly: load, then stream a greedy completion.

payload: {model, kwargs (Llama keyword arguments; {} for its defaults), model_params
(optional: llama_model_params fields Llama() does not take), tokens (the prompt),
gen_tokens}. The clock starts after `import llama_cpp`.
"""

from __future__ import annotations

import time
from typing import Any

from _childio import guarded, payload, peak_rss_self, stream_numbers


def main() -> dict[str, object]:
    import llama_cpp

    args = payload()
    kwargs = dict(args["kwargs"])
    model_params = dict(args.get("model_params") or {})
    if model_params:  # fields Llama() does not take (e.g. use_extra_bufts: repacking)
        import llama_cpp.llama_cpp as lc  # the module Llama() reads its defaults from

        defaults = lc.llama_model_default_params

        def patched() -> Any:
            params = defaults()
            for name, value in model_params.items():
                setattr(params, name, value)
            return params

        lc.llama_model_default_params = patched
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(args["model"], verbose=False, **kwargs)
    load_s = time.perf_counter() - t0
    tokens = list(args["tokens"])
    greedy: dict[str, Any] = {
        "temperature": 0.0,
        "top_k": 40,
        "top_p": 1.0,
        "min_p": 0.0,
        "repeat_penalty": 1.0,
    }
    stamps: list[float] = []
    t_send = time.perf_counter()
    chunk: Any
    for chunk in llm.create_completion(
        tokens, max_tokens=int(args["gen_tokens"]), stream=True, **greedy
    ):
        if chunk["choices"][0]["text"]:  # the last chunk only says why it ended
            stamps.append(time.perf_counter())
    result: dict[str, object] = {"load_s": load_s, **stream_numbers(t_send, stamps, len(tokens))}
    result["peak_rss_bytes"] = peak_rss_self()
    result["settings"] = {
        "n_ctx": int(llm.n_ctx()),
        "n_batch": int(llm.n_batch),
        "n_threads": int(llm.n_threads),
        "n_threads_batch": int(llm.n_threads_batch),
        **{k: v for k, v in kwargs.items() if k not in ("n_ctx", "n_batch", "n_threads")},
    }
    return result


if __name__ == "__main__":
    guarded(main)
