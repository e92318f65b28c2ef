"""This machine's memory read bandwidth with all threads, and the decode speed it allows.

The probe is a small C program (compiled once with `cc -O3 -march=native -pthread` into
.bench/): one thread per logical core, each summing its own slice of one buffer of
max(1 GiB, 16 × the L3 cache), so the data streams from DRAM, not a cache. The best of 5
passes counts. Without a C compiler, numpy does the same with one thread per core
(`ndarray.sum` releases the GIL), which reads a little slower.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from benchlib.common import WORK_DIR

GiB = 1024**3
PASSES = 5

C_SOURCE = r"""
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const uint64_t *p; size_t n; uint64_t sum; } job_t;

static void *reader(void *arg) {
    job_t *j = (job_t *)arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) {
        s0 += j->p[i]; s1 += j->p[i + 1]; s2 += j->p[i + 2]; s3 += j->p[i + 3];
    }
    j->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t bytes = (size_t)strtoull(argv[1], NULL, 10);
    int threads = atoi(argv[2]), passes = atoi(argv[3]);
    size_t n = bytes / 8;
    uint64_t *buf = malloc(n * 8);
    if (!buf) return 2;
    memset(buf, 1, n * 8);  /* touch every page before timing */
    pthread_t tid[256]; job_t jobs[256];
    double best = 1e30; uint64_t check = 0;
    for (int pass = 0; pass < passes; pass++) {
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            jobs[t].p = buf + n / threads * t; jobs[t].n = n / threads;
            pthread_create(&tid[t], NULL, reader, &jobs[t]);
        }
        for (int t = 0; t < threads; t++) { pthread_join(tid[t], NULL); check += jobs[t].sum; }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("%.0f %llu\n", (double)(n / threads * threads * 8) / best, (unsigned long long)check);
    return 0;
}
"""


def _l3_bytes() -> int:
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
        return int(text.rstrip("K")) * 1024 if text.endswith("K") else int(text)
    except (OSError, ValueError):
        return 32 * 1024 * 1024


def buffer_bytes() -> int:
    return max(GiB, 16 * _l3_bytes())


def measure_bandwidth(threads: int | None = None) -> dict[str, Any]:
    """{"bytes_per_s", "method", "threads", "buffer_bytes"} for a streaming read."""
    threads = threads or os.cpu_count() or 1
    size = buffer_bytes()
    cc = shutil.which("cc")
    if cc:
        WORK_DIR.mkdir(exist_ok=True)
        source, binary = WORK_DIR / "bandwidth.c", WORK_DIR / "bandwidth"
        stale = not source.exists() or source.read_text() != C_SOURCE
        if stale or not binary.exists():
            source.write_text(C_SOURCE)
            flags = ["-O3", "-march=native", "-pthread"]
            subprocess.run([cc, *flags, str(source), "-o", str(binary)], check=True)
        out = subprocess.run(
            [str(binary), str(size), str(threads), str(PASSES)],
            capture_output=True,
            text=True,
            check=True,
        )
        rate = float(out.stdout.split()[0])
        method = "C streaming read (cc -O3 -march=native, pthreads)"
    else:
        rate = _numpy_bandwidth(size, threads)
        method = "numpy streaming read (ndarray.sum, one thread per core)"
    return {"bytes_per_s": rate, "method": method, "threads": threads, "buffer_bytes": size}


def _numpy_bandwidth(size: int, threads: int) -> float:
    import numpy as np

    buf = np.ones(size // 8, dtype=np.float64)
    slices = np.array_split(buf, threads)
    best = float("inf")
    for _ in range(PASSES):
        workers = [threading.Thread(target=s.sum) for s in slices]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t0)
    return buf.nbytes / best


def bytes_per_token(model: Path, context_tokens: int, kv_type: str = "f16") -> dict[str, int]:
    """Bytes one generated token reads: the weights it touches plus the KV cache.

    Every tensor is read whole per token except the token-embedding table, of which only
    one row is gathered, unless the model ties its output head to it (no output.weight):
    then the head reads all of it. The KV cache is read for `context_tokens` positions in
    every layer (sliding-window layers within their window).
    """
    from app.models.gguf import read_gguf_facts, read_header, split_parts
    from app.planner.chat import KV_ELEMENT_BYTES

    tensors = [t for part in split_parts(model) for t in read_header(part).tensors]
    names = {t.name for t in tensors}
    tied = "output.weight" not in names
    weights = 0
    embedding = 0
    for t in tensors:
        if t.name == "token_embd.weight":
            embedding = t.n_bytes
            if not tied:
                continue
        weights += t.n_bytes
    facts = read_gguf_facts(model)
    per_layer_token = facts.head_count_kv * (facts.key_length + facts.value_length)
    per_layer_token = int(per_layer_token * KV_ELEMENT_BYTES.get(kv_type, 2.0))
    window = facts.sliding_window or context_tokens
    swa = facts.swa_layers
    full = facts.block_count - swa
    kv = per_layer_token * (full * context_tokens + swa * min(window, context_tokens))
    return {
        "weights_bytes": weights,
        "token_embd_bytes": embedding,
        "token_embd_read_whole": tied,
        "kv_cache_bytes": kv,
        "context_tokens": context_tokens,
        "total_bytes": weights + kv,
    }
