"""A worker that dies natively leaves a trace in the logs folder, and the error names the file.

These run the real chat worker process (it imports llama.cpp) but load no model: the crash
is asked for, on the arrival of the load request, by the test-only SEGFAULT_ENV.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from app.engines.chat_llama.client import CHAT_WORKER, ChatEngineClient, ModelLoadError
from app.engines.chat_llama.protocol import LoadRequest
from app.engines.worker.process import WorkerCrashedError
from app.engines.worker.serve import SEGFAULT_ENV
from app.startup import crash_file, log_file

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

LOG_NAME = CHAT_WORKER.log_name  # "chat-worker"


def load_request(tmp_path: Path) -> LoadRequest:
    return LoadRequest(str(tmp_path / "absent.gguf"), n_ctx=256, n_gpu_layers=0, n_threads=1)


def test_a_segfault_leaves_a_trace_in_the_crash_log_and_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SEGFAULT_ENV, "LoadRequest")  # the worker inherits it when spawned
    with ChatEngineClient() as c:
        with pytest.raises(WorkerCrashedError) as error:
            c.load(load_request(tmp_path))
        assert error.value.exitcode == -signal.SIGSEGV
        assert not c.is_alive() and c.pid is None

        monkeypatch.delenv(SEGFAULT_ENV)
        with pytest.raises(ModelLoadError, match="There is no model file"):
            c.load(load_request(tmp_path))  # a fresh worker answers again
        assert c.is_alive()

    trace = crash_file(LOG_NAME)
    message = str(error.value)
    assert "chat worker was killed by signal 11 (SIGSEGV" in message
    assert f"Its crash trace is in {trace}." in message
    text = trace.read_text()
    assert "Segmentation fault" in text
    assert "app/engines/worker/serve.py" in text  # the Python frames at the moment of the crash
    assert "LoadRequest" in log_file(LOG_NAME).read_text()  # and the worker's log says what ran


def test_a_killed_worker_leaves_no_trace_and_the_error_names_its_log(tmp_path: Path) -> None:
    with ChatEngineClient() as c:
        with pytest.raises(ModelLoadError):
            c.load(load_request(tmp_path))  # the worker runs, with nothing loaded
        pid = c.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError) as error:
            c.count_tokens("hello")
    message = str(error.value)
    assert "SIGKILL" in message and f"Its log is {log_file(LOG_NAME)}." in message
    assert "chat-worker started" in log_file(LOG_NAME).read_text()
