"""No Hub call waits for ever: a server that accepts and never answers, a transfer that
stalls mid-file (issue 10, case 1), and a resumed download says so (case 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from app.hub import config as hub_config_module
from app.hub.config import HubConfig, bound_timeouts, within_deadline
from app.hub.downloads import DownloadQueue
from app.hub.errors import HubNotAnsweringError
from app.hub.search import list_gguf_files, search_models
from app.store.downloads import DownloadState
from tests.hubserver import ALWAYS, SilentServer, point_hub_client_at, running_hub
from tests.test_downloads import (
    TINY,
    Progress,
    pull,
    served_file,
    staged_files,
    variant,
)

HANG_GUARD_S = 120  # a call that has not returned by then is taken to hang


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """The silent server, with this process's huggingface_hub online (conftest sets it
    offline for every test)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with SilentServer() as server:
        yield server


def hearth(*args: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0", HEARTH_HUB_TIMEOUT="2")
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env=env,
    )


@pytest.mark.parametrize(
    "command",
    [("models", "search", "gemma"), ("models", "files", "google/gemma-3-1b-it-GGUF")],
    ids=["search", "files"],
)
def test_a_hub_that_never_answers_is_one_sentence_in_seconds(
    silent: SilentServer, command: tuple[str, ...]
) -> None:
    done = hearth(*command, endpoint=silent.url)
    assert done.returncode == 1, done.stderr
    assert (
        f"The Hub at {silent.url} accepted the connection but sent no answer within 2 s."
        in done.stderr
    )
    assert "captive" not in done.stderr.lower() or "sign-in page" in done.stderr
    assert "Wi-Fi sign-in page" in done.stderr and "Traceback" not in done.stderr
    assert silent.accepted >= 1


def test_search_and_files_in_process_raise_the_not_answering_error(
    silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_HUB_TIMEOUT", "1")
    config = HubConfig(endpoint=silent.url)
    with pytest.raises(HubNotAnsweringError, match="within 1 s"):
        search_models("gemma", config=config)
    with pytest.raises(HubNotAnsweringError, match="within 1 s"):
        list_gguf_files("google/gemma-3-1b-it-GGUF", config=config)


def test_a_request_sent_with_timeout_none_still_times_out(
    silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub lists models with an explicit timeout=None (no timeout at all)."""
    from huggingface_hub import get_session

    monkeypatch.setitem(hub_config_module._TIMEOUT_DEFAULTS, "read", 0.5)
    bound_timeouts()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            get_session().get(silent.url + "/api/models", timeout=None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_S)
    assert not worker.is_alive(), "the request without a timeout hung"
    assert isinstance(outcome[0], httpx2.ReadTimeout)


def test_within_deadline_passes_results_and_errors_through() -> None:
    config = HubConfig(endpoint="http://127.0.0.1:9")
    assert within_deadline(lambda: 42, config, deadline_s=5) == 42
    with pytest.raises(KeyError):
        within_deadline(lambda: {}["missing"], config, deadline_s=5)
    stuck = threading.Event()
    with pytest.raises(HubNotAnsweringError, match="no answer within 0 s"):
        within_deadline(lambda: stuck.wait(HANG_GUARD_S), config, deadline_s=0.05)
    stuck.set()


# --- downloads that stall mid-file --------------------------------------------------------


@pytest.fixture
def stalling_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # read timeout, seconds
    with running_hub(tmp_path / "hub-files", lifetime_s=180) as server:
        point_hub_client_at(server, monkeypatch, tmp_path)
        yield server


def test_a_download_that_stalls_mid_file_is_resumed_and_says_so(
    stalling_hub: object, make_queue: Callable[..., DownloadQueue]
) -> None:
    served = served_file(stalling_hub, TINY, "tiny-chat-Q8_0.gguf")  # type: ignore[arg-type]
    served.stall_at = 48 * 1024  # the line goes quiet 48 KiB in, once
    progress = Progress()
    queue = make_queue(on_progress=progress)

    job = pull(queue, variant(TINY, "Q8_0"))

    assert job.state == DownloadState.COMPLETE, job.error
    gets = stalling_hub.downloads_of("tiny-chat-Q8_0.gguf")  # type: ignore[attr-defined]
    assert len(gets) == 2 and gets[1].range == "bytes=49152-"
    notes = [j.note for j in progress.seen if j.note and j.note.startswith("connection lost")]
    assert notes and notes[0].startswith(
        "connection lost (no data for 1 s); retrying in 0 s, resuming at 48 KiB of 128 KiB "
    )
    assert notes[0].endswith("(attempt 1 of 5)")


def test_a_download_that_keeps_stalling_is_reported_and_keeps_the_partial(
    stalling_hub: object, make_queue: Callable[..., DownloadQueue]
) -> None:
    served = served_file(stalling_hub, TINY, "tiny-chat-Q8_0.gguf")  # type: ignore[arg-type]
    served.stall_at, served.stalls = 32 * 1024, ALWAYS
    queue = make_queue(retries=2)

    job = pull(queue, variant(TINY, "Q8_0"))

    assert job.state == DownloadState.FAILED
    assert job.error and "gave up after 2 retries and kept what had arrived" in job.error
    partials = [p for p in staged_files() if p.name.endswith(".incomplete")]
    assert [p.stat().st_size for p in partials] == [32 * 1024]
    assert len(stalling_hub.downloads_of("tiny-chat-Q8_0.gguf")) == 3  # type: ignore[attr-defined]
