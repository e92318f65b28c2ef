"""llama.cpp's threads give way to other programs' busy cores, and come back after them.

The rule and the governor are checked on made-up CPU readings; the real chat worker on
Gemma is checked with a real busy neighbour process (a Python busy loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engines.chat_llama import protocol as chat
from app.engines.chat_llama.client import ChatEngineClient
from app.engines.chat_llama.cpu_share import (
    FIXED_THREADS_ENV,
    RAISE_AFTER,
    CpuReading,
    ThreadGovernor,
    others_busy_cores,
    threads_for,
)


def test_one_thread_fewer_for_every_core_other_programs_keep_busy() -> None:
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, 0.3) == 2  # a window drawing now and then takes no core
    assert threads_for(2, 0.67) == 1  # a busy loop sharing two cores with us
    assert threads_for(2, 1.0) == 1
    assert threads_for(2, 3.0) == 1  # never below one
    assert threads_for(8, 1.0) == 7
    assert threads_for(8, 2.6) == 5
    assert threads_for(1, 0.0) == 1


def test_others_busy_cores_is_the_machine_less_this_process() -> None:
    before = CpuReading(wall_s=10.0, machine_busy_s=100.0, own_s=5.0)
    after = CpuReading(wall_s=11.0, machine_busy_s=102.0, own_s=6.2)  # 2 cores busy, 1.2 ours
    assert others_busy_cores(before, after) == pytest.approx(0.8)
    # Rounding in the counters can make "others" negative for a moment: never below 0.
    assert others_busy_cores(before, CpuReading(11.0, 101.0, 6.5)) == 0.0
    assert others_busy_cores(before, before) == 0.0


def test_the_governor_gives_threads_up_at_once_and_back_only_after_calm_readings() -> None:
    applied: list[int] = []
    governor = ThreadGovernor(4, applied.append)
    governor.observe(2.0)  # two cores taken by others
    assert governor.update() == 2 and applied == [2]
    assert governor.update() == 2 and applied == [2]  # unchanged advice: nothing applied
    for _ in range(RAISE_AFTER - 1):
        governor.observe(0.0)
        assert governor.update() == 2
    governor.observe(2.0)  # the neighbours are back before the calm lasted: no bounce
    governor.observe(0.0)
    assert governor.update() == 2
    for _ in range(RAISE_AFTER):
        governor.observe(0.0)
    assert governor.update() == 4 and applied == [2, 4]


def test_fixed_threads_keeps_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FIXED_THREADS_ENV, "1")
    applied: list[int] = []
    governor = ThreadGovernor(4, applied.append)
    governor.observe(3.0)
    assert governor.update() == 4 and applied == []
    assert not ThreadGovernor(1, applied.append).enabled  # one thread has nothing to give up


def _generate(client: ChatEngineClient, n: int) -> chat.Metrics:
    prompt = "<start_of_turn>user\nCount from one to fifty.<end_of_turn>\n<start_of_turn>model\n"
    request = chat.GenerateRequest(f"r{n}", prompt, max_tokens=24, temperature=0.0)
    metrics = [e for e in client.generate(request) if isinstance(e, chat.Metrics)]
    assert len(metrics) == 1
    return metrics[0]


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to give one up")
def test_the_worker_gives_a_thread_to_a_busy_neighbour_and_takes_it_back(
    gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FIXED_THREADS_ENV, raising=False)
    with ChatEngineClient() as client:
        client.load(chat.LoadRequest(str(gemma_gguf), n_ctx=512, n_gpu_layers=0, n_threads=2))
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            # The worker reads the machine's CPU use four times a second: answers go on
            # until one was decoded with a thread given up (bounded, not timed).
            seen = [_generate(client, 0)]
            while seen[-1].fewest_threads != 1 and len(seen) < 40:
                seen.append(_generate(client, len(seen)))
            assert seen[-1].fewest_threads == 1, [m.fewest_threads for m in seen]
            assert all(m.threads >= 1 for m in seen)
        finally:
            neighbour.kill()
            neighbour.wait()
        back = [_generate(client, 100)]
        while back[-1].threads != 2 and len(back) < 40:
            back.append(_generate(client, 100 + len(back)))
        assert back[-1].threads == 2, [m.threads for m in back]
