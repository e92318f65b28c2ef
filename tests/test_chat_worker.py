"""The chat worker process and its client, on the real Gemma 3 270M model (llama.cpp, CPU).

The model is a base model: prompts are raw Gemma turn text, and greedy decoding (or a
fixed seed) keeps the answers reproducible. No test asserts a duration: "stops soon" is
measured in tokens.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engines.chat_llama import protocol as chat
from app.engines.chat_llama.client import ChatEngineClient, ContextOverflowError, ModelLoadError
from app.engines.chat_llama.worker import FAKE_GPU_FAILURE_ENV, StopMatcher
from app.engines.errors import LoadCancelledError, NotLoadedError
from app.engines.worker.process import WorkerCrashedError, describe_exit
from app.errors import HearthError
from tests.engine_checks import CancelAtFirstReport, assert_unload_ends_the_worker

pytestmark = pytest.mark.slow

SEA = "<start_of_turn>user\nWrite a sentence about the sea.<end_of_turn>\n<start_of_turn>model\n"
# Greedy Gemma 3 270M continues these hieroglyphs with characters outside its vocabulary,
# spelled as one byte token each: 4 tokens per character.
HIEROGLYPHS = "古代文字：𓀀𓀁𓀂𓀃"


def load_request(path: Path, **kw: object) -> chat.LoadRequest:
    args: dict[str, object] = {"n_ctx": 1024, "n_gpu_layers": 0, "n_threads": 2}
    args.update(kw)
    return chat.LoadRequest(str(path), **args)  # type: ignore[arg-type]


def run(client: ChatEngineClient, prompt: str = SEA, **kw: object) -> list[object]:
    req = chat.GenerateRequest(
        request_id=str(kw.pop("request_id", f"r{id(kw)}-{os.urandom(4).hex()}")),
        prompt=prompt,
        **kw,  # type: ignore[arg-type]
    )
    return list(client.generate(req))


def text_of(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, chat.TokenEvent))


@pytest.fixture(scope="module")
def client(gemma_gguf: Path) -> Iterator[ChatEngineClient]:
    """One worker with Gemma loaded (n_ctx 1024), shared by the generation tests."""
    c = ChatEngineClient()
    c.load(load_request(gemma_gguf))
    yield c
    c.unload()


# --- loading ----------------------------------------------------------------------------


def test_load_reports_real_progress_and_the_parent_never_imports_llama_cpp(
    gemma_gguf: Path,
) -> None:
    progress: list[chat.LoadProgress] = []
    with ChatEngineClient() as c:
        loaded = c.load(load_request(gemma_gguf), on_progress=progress.append)
        events = run(c, max_tokens=8, temperature=0)
        pid = c.pid

    fractions = [p.fraction for p in progress]
    assert len(fractions) >= 3
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in fractions)
    assert any(0.0 < f < 1.0 for f in fractions)  # llama.cpp's own steps, not just 0 and 1
    elapsed = [p.elapsed_s for p in progress]
    assert elapsed == sorted(elapsed)
    assert isinstance(loaded, chat.Loaded) and loaded.n_ctx == 1024
    assert loaded.backend_used == "cpu" and loaded.gpu_layers_used == 0
    assert isinstance(events[-1], chat.Done)
    assert pid is not None and pid != os.getpid()
    assert "llama_cpp" not in sys.modules


def test_a_file_that_is_not_gguf_gives_a_clear_load_error(gemma_gguf: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.gguf"
    with gemma_gguf.open("rb") as f:
        truncated.write_bytes(f.read(8 * 1024 * 1024))

    with ChatEngineClient() as c:
        with pytest.raises(ModelLoadError) as junk_error:
            c.load(load_request(junk))
        pid = c.pid
        with pytest.raises(ModelLoadError) as truncated_error:
            c.load(load_request(truncated))
        c.load(load_request(gemma_gguf))  # the same worker still loads a good file
        assert c.pid == pid
        assert isinstance(run(c, max_tokens=4, temperature=0)[-1], chat.Done)

    assert "junk.gguf is not a GGUF model file" in str(junk_error.value)
    # llama.cpp's own reason, captured from its log.
    message = str(truncated_error.value)
    assert "truncated.gguf" in message and "corrupted or incomplete" in message
    assert isinstance(truncated_error.value, HearthError) and truncated_error.value.remedy


def test_cancel_during_load_raises_load_cancelled(gemma_gguf: Path) -> None:
    stopper = CancelAtFirstReport[chat.LoadProgress]()

    with ChatEngineClient() as c:
        with pytest.raises(LoadCancelledError):
            # use_mmap=False: weights are read, not mapped, so the load lasts a little longer.
            c.load(load_request(gemma_gguf, use_mmap=False), stopper, stopper.cancel)
        assert stopper.seen and c.loaded is None
        with pytest.raises(NotLoadedError):
            run(c, max_tokens=4)
        assert c.is_alive()  # the worker survives a cancelled load...
        assert c.load(load_request(gemma_gguf)).n_ctx == 1024  # ...and loads again


def test_a_cancel_sent_with_the_load_aborts_llama_cpp_before_the_weights_are_in(
    gemma_gguf: Path,
) -> None:
    cancel = threading.Event()
    cancel.set()
    seen: list[float] = []
    with ChatEngineClient() as c:
        with pytest.raises(LoadCancelledError):
            c.load(load_request(gemma_gguf), lambda p: seen.append(p.fraction), cancel)
        assert c.is_alive()
    # The progress callback returned False at its first call: llama.cpp stopped loading.
    assert all(f < 1.0 for f in seen)


def test_gpu_load_failure_is_retried_on_cpu_and_says_so(
    gemma_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAKE_GPU_FAILURE_ENV, "1")  # the worker inherits it when spawned
    with ChatEngineClient() as c:
        loaded = c.load(load_request(gemma_gguf, n_gpu_layers=99))
        events = run(c, max_tokens=4, temperature=0)
    assert loaded.note is not None
    assert loaded.note.startswith("GPU load failed (") and "running on CPU" in loaded.note
    assert "out of device memory" in loaded.note
    assert loaded.backend_used == "cpu" and loaded.gpu_layers_used == 0
    assert isinstance(events[-1], chat.Done)


# --- generation -------------------------------------------------------------------------


def test_generation_streams_tokens_then_metrics_then_done(client: ChatEngineClient) -> None:
    events = run(client, max_tokens=40, temperature=0)
    tokens = [e for e in events if isinstance(e, chat.TokenEvent)]
    metrics, done = events[-2], events[-1]

    assert len(tokens) > 1 and all(isinstance(e, chat.TokenEvent) for e in events[:-2])
    assert isinstance(metrics, chat.Metrics) and isinstance(done, chat.Done)
    assert done.reason in ("stop", "length")
    assert metrics.decode_tps > 0 and metrics.prompt_tps > 0 and metrics.ttft_s > 0
    assert metrics.prompt_tokens == client.count_tokens(SEA)
    assert len(tokens) - 1 <= metrics.generated_tokens <= len(tokens) + 2
    assert metrics.generated_tokens <= 40
    assert metrics.context_used == metrics.prompt_tokens + metrics.generated_tokens
    assert metrics.n_ctx == 1024 and metrics.backend == "cpu" and metrics.gpu_layers == 0
    # Greedy decoding is deterministic, and the second run reuses the cached prompt.
    again = run(client, max_tokens=40, temperature=0)
    assert text_of(again) == text_of(events)
    again_metrics = again[-2]
    assert isinstance(again_metrics, chat.Metrics)
    assert again_metrics.cached_tokens == metrics.prompt_tokens - 1


def test_characters_split_across_byte_tokens_arrive_whole(client: ChatEngineClient) -> None:
    events = run(client, HIEROGLYPHS, max_tokens=24, temperature=0)
    metrics = events[-2]
    assert isinstance(metrics, chat.Metrics)
    text = text_of(events)
    astral = [ch for ch in text if ord(ch) > 0xFFFF]
    assert len(astral) >= 2, text
    assert "\ufffd" not in text
    # Byte tokens that only complete a character later send nothing on their own.
    pieces = [e for e in events if isinstance(e, chat.TokenEvent)]
    assert len(pieces) < metrics.generated_tokens


def test_same_seed_gives_the_same_text(client: ChatEngineClient) -> None:
    first = text_of(run(client, max_tokens=30, temperature=0.8, seed=1234))
    second = text_of(run(client, max_tokens=30, temperature=0.8, seed=1234))
    assert first and first == second
    others = {text_of(run(client, max_tokens=30, temperature=0.8, seed=s)) for s in (5, 6, 7)}
    assert others - {first}  # the seed is used, not ignored


def test_stop_strings_end_the_reply_before_them(client: ChatEngineClient) -> None:
    reference = text_of(run(client, max_tokens=40, temperature=0))
    words = reference.split()
    stop = words[len(words) // 2]
    events = run(client, max_tokens=40, temperature=0, stop=("zzz-never", stop))
    done = events[-1]
    assert isinstance(done, chat.Done) and done.reason == "stop"
    assert text_of(events) == reference[: reference.index(stop)]


def test_cancel_from_another_thread_stops_within_a_few_tokens(client: ChatEngineClient) -> None:
    req = chat.GenerateRequest(request_id="to-cancel", prompt=SEA, max_tokens=400, temperature=0)
    received = 0
    events: list[object] = []
    for event in client.generate(req):
        events.append(event)
        if isinstance(event, chat.TokenEvent):
            received += 1
            if received == 5:
                canceller = threading.Thread(target=client.cancel, args=("to-cancel",))
                canceller.start()
                canceller.join()
    metrics, done = events[-2], events[-1]
    assert isinstance(done, chat.Done) and done.reason == "cancelled"
    assert isinstance(metrics, chat.Metrics)
    assert 5 <= metrics.generated_tokens < 100  # far below max_tokens
    # The worker is free again at once.
    assert isinstance(run(client, max_tokens=4, temperature=0)[-1], chat.Done)


def test_leaving_the_loop_early_cancels_the_generation(
    client: ChatEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = client._worker
    assert worker is not None
    sent: list[object] = []
    real_send = worker.send

    def recording_send(message: object) -> bool:
        sent.append(message)
        return real_send(message)

    monkeypatch.setattr(worker, "send", recording_send)
    stream = client.generate(chat.GenerateRequest("abandoned", SEA, max_tokens=400, temperature=0))
    for _ in range(3):
        next(stream)
    stream.close()
    assert chat.CancelRequest("abandoned") in sent
    events = run(client, max_tokens=4, temperature=0)
    assert isinstance(events[-1], chat.Done) and events[-1].reason in ("stop", "length")


def test_token_counts_are_answered_in_the_middle_of_a_generation(
    client: ChatEngineClient,
) -> None:
    req = chat.GenerateRequest(request_id="busy", prompt=SEA, max_tokens=400, temperature=0)
    counts: list[int] = []
    events: list[object] = []
    for event in client.generate(req):
        events.append(event)
        if isinstance(event, chat.TokenEvent) and not counts:
            counts.append(client.count_tokens(SEA))
            client.cancel("busy")
    # Had the count waited for the end of the reply, the cancel would have come too late.
    assert counts == [16]  # <bos> + 15 tokens of the rendered turn
    done = events[-1]
    assert isinstance(done, chat.Done) and done.reason == "cancelled"


def test_a_prompt_longer_than_the_context_is_refused_and_the_worker_carries_on(
    gemma_gguf: Path,
) -> None:
    long_prompt = SEA.replace("the sea.", "the sea. " + "The sea is blue and wide. " * 60)
    with ChatEngineClient() as c:
        c.load(load_request(gemma_gguf, n_ctx=256))
        pid = c.pid
        with pytest.raises(ContextOverflowError) as error:
            run(c, long_prompt, max_tokens=8)
        events = run(c, max_tokens=8, temperature=0)
        assert c.pid == pid
    assert "256" in str(error.value) and "context" in error.value.remedy
    assert isinstance(events[-1], chat.Done) and text_of(events)


def test_the_reply_stops_at_the_end_of_the_context(gemma_gguf: Path) -> None:
    with ChatEngineClient() as c:
        c.load(load_request(gemma_gguf, n_ctx=256))
        events = run(c, max_tokens=1000, temperature=0, repeat_penalty=1.0)
    metrics, done = events[-2], events[-1]
    assert isinstance(metrics, chat.Metrics) and isinstance(done, chat.Done)
    if done.reason == "length":  # (a base model might also stop by itself)
        assert metrics.context_used == 256
        # Every cell holds a token, and one more was sampled from the last one's logits.
        assert metrics.prompt_tokens + metrics.generated_tokens == 257


# --- the process ------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_worker_is_reported_and_the_next_load_starts_a_fresh_one(
    gemma_gguf: Path,
) -> None:
    with ChatEngineClient() as c:
        c.load(load_request(gemma_gguf))
        old_pid = c.pid
        assert old_pid is not None
        received = 0
        with pytest.raises(WorkerCrashedError) as error:
            for event in c.generate(chat.GenerateRequest("doomed", SEA, max_tokens=400)):
                if isinstance(event, chat.TokenEvent):
                    received += 1
                    if received == 3:
                        os.kill(old_pid, signal.SIGKILL)
        assert received >= 3
        assert "signal 9" in str(error.value) and "SIGKILL" in str(error.value)
        assert "out-of-memory" in str(error.value)
        assert error.value.exitcode == -signal.SIGKILL
        assert not c.is_alive() and c.pid is None
        with pytest.raises(NotLoadedError):
            run(c, max_tokens=4)

        c.load(load_request(gemma_gguf))
        assert c.pid is not None and c.pid != old_pid
        events = run(c, max_tokens=8, temperature=0)
        assert isinstance(events[-1], chat.Done) and text_of(events)


def test_unload_ends_the_worker_process(gemma_gguf: Path) -> None:
    c = ChatEngineClient()
    c.load(load_request(gemma_gguf))
    assert_unload_ends_the_worker(c, lambda: run(c, max_tokens=4))


# --- small pure parts -------------------------------------------------------------------


def test_describe_exit_names_the_signal_and_the_likely_cause() -> None:
    assert describe_exit(-9) == (
        "The chat worker was killed by signal 9 (SIGKILL — often the out-of-memory killer)."
    )
    assert "SIGSEGV" in describe_exit(-11)
    assert "0xc0000005" in describe_exit(0xC0000005)
    assert "code 3" in describe_exit(3)


@pytest.mark.parametrize("chunk", [1, 2, 3, 50])
def test_stop_matcher_finds_stops_across_chunks(chunk: int) -> None:
    text = "Hello there.<|end|> and more"
    matcher = StopMatcher(["<|end|>", "zz"])
    shown, hit = "", False
    for i in range(0, len(text), chunk):
        out, hit = matcher.feed(text[i : i + chunk])
        shown += out
        if hit:
            break
    assert hit and shown == "Hello there."
    matcher = StopMatcher(["<|end|>"])
    out, hit = matcher.feed("a <|en")
    assert (out, hit) == ("a ", False)
    assert matcher.flush() == "<|en"  # held back, then given when the reply ends
