"""The download queue against a real HTTP Hub on 127.0.0.1: resume, verify, pause, restart."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path

import pytest

from app.hardware.profile import load_simulated_machines
from app.hub.config import hub_config
from app.hub.credentials import save_token
from app.hub.downloads import DownloadJob, DownloadQueue
from app.hub.quants import GgufVariant
from app.hub.search import list_gguf_files
from app.models.files import NotEnoughDiskError
from app.paths import hearth_paths
from app.store import open_default_database
from app.store.downloads import DownloadState
from app.store.library import ModelSource, find_model, list_models
from tests.hubserver import ALWAYS, HubFile, HubServer

CPU_32GB = load_simulated_machines()["airgapped-lab-cpu-32gb"]
TINY = "hearth-test/Tiny-Chat-GGUF"
SPLIT = "hearth-test/Split-Chat-GGUF"
GATED = "hearth-test/Gated-Chat-GGUF"
CHUNK = 16 * 1024  # the client's read size in these tests (the app uses 1 MiB)
WAIT_S = 60  # bound on every wait: a broken queue fails the test instead of hanging it


def variant(repo: str, quant: str) -> GgufVariant:
    return next(v for v in list_gguf_files(repo, hardware=CPU_32GB) if v.quant == quant)


def served_file(hub: HubServer, repo: str, path: str) -> HubFile:
    found = hub.repos[repo].file(path)
    assert found is not None
    return found


def staged_files() -> list[Path]:
    staging = hearth_paths().download_staging
    return [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


class Progress:
    """Collects the snapshots a queue reports, and waits (bounded) for one that matches."""

    def __init__(self) -> None:
        self.seen: list[DownloadJob] = []
        self._cond = threading.Condition()

    def __call__(self, job: DownloadJob) -> None:
        with self._cond:
            self.seen.append(job)
            self._cond.notify_all()

    def wait_for(self, test: Callable[[DownloadJob], bool]) -> DownloadJob:
        with self._cond:
            found = self._cond.wait_for(
                lambda: next((j for j in self.seen if test(j)), None), WAIT_S
            )
        assert found, f"no progress report matched; last: {self.seen[-1:]}"
        return next(j for j in self.seen if test(j))


def pull(queue: DownloadQueue, wanted: GgufVariant) -> DownloadJob:
    """Enqueue `wanted`, start the queue and wait (bounded) until the job settles."""
    job = queue.enqueue(wanted)
    queue.start()
    return queue.wait(job.id, timeout=WAIT_S)


def interrupt_f16(
    hub: HubServer,
    make_queue: Callable[..., DownloadQueue],
    *,
    once_done: int,
    stop: Callable[[DownloadQueue, str], object],
) -> tuple[DownloadQueue, HubFile, DownloadJob]:
    """Pull the F16 file with the Hub holding the transfer at 3 chunks, `stop` the job
    (pause or cancel) once `once_done` bytes are in, then let the Hub go on.

    Returns the queue, the served file and the job as it settled.
    """
    served = served_file(hub, TINY, "tiny-chat-F16.gguf")
    served.hold_at = 3 * CHUNK
    progress = Progress()
    queue = make_queue(on_progress=progress)
    job = queue.enqueue(variant(TINY, "F16"))
    queue.start()
    progress.wait_for(lambda j: j.bytes_done >= once_done)
    stop(queue, job.id)
    served.release.set()
    return queue, served, queue.wait(job.id, timeout=WAIT_S)


def test_pull_completes_and_registers_with_verified_sha256(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    wanted = variant(TINY, "Q4_K_M")
    data = served_file(hub, TINY, "tiny-chat-Q4_K_M.gguf").data
    queue = make_queue()

    job = queue.enqueue(wanted)
    assert job.state == DownloadState.QUEUED and job.size == len(data)
    queue.start()
    job = queue.wait(job.id, timeout=WAIT_S)

    assert job.state == DownloadState.COMPLETE, job.error
    target = hearth_paths().models / "hearth-test" / "Tiny-Chat-GGUF" / "tiny-chat-Q4_K_M.gguf"
    assert target.read_bytes() == data
    row = find_model(open_default_database(), "tiny-chat-q4_k_m")
    assert row is not None and row.path == target
    assert row.source is ModelSource.HUB and row.repo == TINY
    assert row.revision == hub.repos[TINY].commit
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.license == "apache-2.0"
    assert row.sha256_verified is True
    assert job.files[0].sha256 == row.sha256
    assert staged_files() == []  # nothing left behind in the cache


def test_split_model_reaches_the_library_once_with_all_parts(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    queue = make_queue(max_parallel=2)
    job = pull(queue, variant(SPLIT, "Q4_K_M"))

    assert job.state == DownloadState.COMPLETE, job.error
    folder = hearth_paths().models / "hearth-test" / "Split-Chat-GGUF"
    assert sorted(p.name for p in folder.iterdir()) == [
        "split-chat-Q4_K_M-00001-of-00002.gguf",
        "split-chat-Q4_K_M-00002-of-00002.gguf",
    ]
    rows = list_models(open_default_database())
    assert [r.name for r in rows] == ["split-chat-q4_k_m"]
    assert rows[0].size_bytes == job.size == sum(f.size for f in job.files)
    assert len(rows[0].files) == 2


def test_download_resumes_with_range_after_connection_drop(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served = served_file(hub, TINY, "tiny-chat-Q8_0.gguf")
    served.drop_after = 40 * 1024  # the connection dies 40 KiB in, once
    queue = make_queue()

    job = pull(queue, variant(TINY, "Q8_0"))

    assert job.state == DownloadState.COMPLETE, job.error
    gets = hub.downloads_of("tiny-chat-Q8_0.gguf")
    assert len(gets) == 2
    assert gets[0].range is None and gets[0].body_bytes == 40 * 1024
    # The second request asked only for what was missing: whole chunks before the drop.
    assert gets[1].range == f"bytes={2 * CHUNK}-" and gets[1].status == 206
    assert hub.bytes_served("tiny-chat-Q8_0.gguf") < 2 * served.size
    target = Path(job.files[0].dest)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == served.sha256


def test_download_survives_a_line_that_drops_every_time(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served = served_file(hub, TINY, "tiny-chat-Q4_K_M.gguf")
    served.drop_after, served.drops = 40 * 1024, ALWAYS
    queue = make_queue()

    job = pull(queue, variant(TINY, "Q4_K_M"))

    assert job.state == DownloadState.COMPLETE, job.error
    gets = hub.downloads_of("tiny-chat-Q4_K_M.gguf")
    assert len(gets) >= 3 and all(g.range for g in gets[1:])
    assert hub.bytes_served("tiny-chat-Q4_K_M.gguf") < 2 * served.size


def test_wrong_bytes_fail_delete_the_file_and_stay_out_of_the_library(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served_file(hub, TINY, "tiny-chat-Q4_K_M.gguf").corrupt = True
    queue = make_queue()

    job = pull(queue, variant(TINY, "Q4_K_M"))

    assert job.state == DownloadState.FAILED
    assert job.error and "does not match the sha256" in job.error
    assert "deleted the damaged file" in job.error
    assert staged_files() == []
    assert not (hearth_paths().models / "hearth-test").exists()
    assert find_model(open_default_database(), "tiny-chat-q4_k_m") is None


def test_missing_file_is_a_clear_error(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    wanted = variant(TINY, "IQ4_XS")
    served_file(hub, TINY, "tiny-chat-IQ4_XS.gguf").status = 404
    queue = make_queue()

    job = pull(queue, wanted)

    assert job.state == DownloadState.FAILED
    assert job.error and "has no file called tiny-chat-IQ4_XS.gguf" in job.error
    assert "hearth models files" in job.error
    assert len(hub.requests("tiny-chat-IQ4_XS.gguf", method="HEAD")) == 1  # not retried


@pytest.mark.parametrize("status", [401, 403])
def test_refused_file_mentions_login(
    status: int, hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    wanted = variant(TINY, "IQ4_XS")
    served_file(hub, TINY, "tiny-chat-IQ4_XS.gguf").status = status
    queue = make_queue()

    job = pull(queue, wanted)

    assert job.state == DownloadState.FAILED
    assert job.error and "hearth models login" in job.error


def test_gated_repo_needs_a_token_which_is_sent_but_never_logged(
    hub: HubServer,
    make_queue: Callable[..., DownloadQueue],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    wanted = variant(GATED, "Q4_K_M")
    queue = make_queue()

    job = pull(queue, wanted)
    assert job.state == DownloadState.FAILED
    assert job.error and "gated" in job.error and "hearth models login" in job.error
    assert hub.requests("gated-chat", method="HEAD")[0].status == 401

    # With a token the Hub refuses: 403, and the message says the token is the problem.
    save_token("hf_" + "refused" * 4)
    queue.resume(job.id)
    job = queue.wait(job.id, timeout=WAIT_S)
    assert job.state == DownloadState.FAILED and job.error and "token" in job.error

    # With an allowed token it downloads; the token went to the Hub, not to the CDN.
    secret = "hf_" + "Allowed" * 4
    hub.repos[GATED].allowed_tokens.add(secret)
    save_token(secret)
    queue.resume(job.id)
    job = queue.wait(job.id, timeout=WAIT_S)
    assert job.state == DownloadState.COMPLETE, job.error
    assert hub.requests("gated-chat", method="HEAD")[-1].token == secret
    assert all(r.token is None for r in hub.downloads_of("gated-chat"))
    out = capsys.readouterr()
    assert secret not in caplog.text + out.out + out.err
    assert secret not in str(open_default_database().execute("SELECT * FROM downloads").fetchall())


def test_transient_hub_errors_are_retried_with_backoff(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served_file(hub, TINY, "tiny-chat-Q4_K_M.gguf").head_failures = 2  # 503, 503, then fine
    progress = Progress()
    queue = make_queue(on_progress=progress)

    job = pull(queue, variant(TINY, "Q4_K_M"))

    assert job.state == DownloadState.COMPLETE, job.error
    heads = hub.requests("tiny-chat-Q4_K_M.gguf", method="HEAD")
    assert [h.status for h in heads] == [503, 503, 302]
    notes = [j.note for j in progress.seen if j.note and "retrying" in j.note]
    assert any("attempt 1 of 5" in n for n in notes) and any("attempt 2 of 5" in n for n in notes)


def test_retries_give_up_keeping_the_partial_file(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served_file(hub, TINY, "tiny-chat-Q4_K_M.gguf").head_failures = 100
    queue = make_queue(retries=2)

    job = pull(queue, variant(TINY, "Q4_K_M"))

    assert job.state == DownloadState.FAILED
    assert job.error and "gave up after 2 retries" in job.error and "Run the same pull" in job.error
    assert len(hub.requests("tiny-chat-Q4_K_M.gguf", method="HEAD")) == 3


def test_slow_download_can_be_cancelled(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served_file(hub, TINY, "tiny-chat-F16.gguf").delay_per_chunk = 0.01  # still moving

    _, _, job = interrupt_f16(hub, make_queue, once_done=2 * CHUNK, stop=DownloadQueue.cancel)

    assert job.state == DownloadState.CANCELLED
    assert staged_files() == []
    assert find_model(open_default_database(), "tiny-chat-f16") is None
    assert not (hearth_paths().models / "hearth-test").exists()


def test_pause_keeps_the_partial_file_and_resume_continues_with_range(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    queue, served, job = interrupt_f16(
        hub, make_queue, once_done=3 * CHUNK, stop=DownloadQueue.pause
    )

    assert job.state == DownloadState.PAUSED
    partials = [p for p in staged_files() if p.name.endswith(".incomplete")]
    assert len(partials) == 1
    kept = partials[0].stat().st_size
    assert kept == job.bytes_done >= 3 * CHUNK
    assert find_model(open_default_database(), "tiny-chat-f16") is None

    served.hold_at = None
    queue.resume(job.id)
    job = queue.wait(job.id, timeout=WAIT_S)

    assert job.state == DownloadState.COMPLETE, job.error
    gets = hub.downloads_of("tiny-chat-F16.gguf")
    assert len(gets) == 2
    assert gets[-1].range == f"bytes={kept}-" and gets[-1].status == 206
    assert gets[-1].body_bytes == served.size - kept
    assert Path(job.files[0].dest).read_bytes() == served.data


def test_a_new_queue_resumes_a_download_a_killed_hearth_left_running(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    first, served, job = interrupt_f16(
        hub, make_queue, once_done=3 * CHUNK, stop=DownloadQueue.pause
    )
    first.close()
    kept = next(p for p in staged_files() if p.name.endswith(".incomplete")).stat().st_size
    # What a kill leaves behind: the row still says running, the partial file is there.
    db = open_default_database()
    with db.conn:
        db.execute("UPDATE downloads SET state = 'running'")
    served.hold_at = None

    second = make_queue()  # "Hearth starts again"
    assert second.job(job.id).state == DownloadState.QUEUED
    second.start()
    job = second.wait(job.id, timeout=WAIT_S)

    assert job.state == DownloadState.COMPLETE, job.error
    last = hub.downloads_of("tiny-chat-F16.gguf")[-1]
    assert last.range == f"bytes={kept}-" and last.body_bytes == served.size - kept
    assert hub.bytes_served("tiny-chat-F16.gguf") < 2 * served.size
    assert find_model(open_default_database(), "tiny-chat-f16") is not None


def test_not_enough_disk_is_refused_before_anything_starts(
    hub: HubServer, make_queue: Callable[..., DownloadQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = variant(TINY, "Q4_K_M")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    queue = make_queue()

    with pytest.raises(NotEnoughDiskError) as caught:
        queue.enqueue(wanted)

    assert "needs" in caught.value.cause and "free" in caught.value.cause
    assert "Free some space" in caught.value.remedy
    assert queue.jobs() == []
    assert hub.requests("tiny-chat-Q4_K_M.gguf") == []


def test_progress_reports_bytes_speed_and_eta(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    served = served_file(hub, TINY, "tiny-chat-F16.gguf")
    served.delay_per_chunk = 0.02
    progress = Progress()
    queue = make_queue(on_progress=progress)

    job = pull(queue, variant(TINY, "F16"))

    assert job.state == DownloadState.COMPLETE
    done = [j.bytes_done for j in progress.seen]
    assert done == sorted(done) and done[-1] == served.size
    moving = [j for j in progress.seen if j.speed > 0]
    assert moving and all(j.eta_s is not None for j in moving)
    assert any(j.note == "verifying sha256" for j in progress.seen)


def test_two_downloads_run_at_once_when_allowed(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    a = served_file(hub, TINY, "tiny-chat-Q4_K_M.gguf")
    b = served_file(hub, TINY, "tiny-chat-Q8_0.gguf")
    a.hold_at = b.hold_at = CHUNK
    queue = make_queue(max_parallel=2)
    jobs = [queue.enqueue(variant(TINY, "Q4_K_M")), queue.enqueue(variant(TINY, "Q8_0"))]
    queue.start()

    # Both transfers reach the middle of their file before either may finish.
    assert a.reached_hold.wait(WAIT_S) and b.reached_hold.wait(WAIT_S)
    a.release.set()
    b.release.set()

    assert [queue.wait(j.id, timeout=WAIT_S).state for j in jobs] == [DownloadState.COMPLETE] * 2


def test_a_model_already_downloaded_is_not_fetched_again(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    queue = make_queue()
    job = queue.enqueue(variant(TINY, "IQ4_XS"))
    queue.start()
    assert queue.wait(job.id, timeout=WAIT_S).state == DownloadState.COMPLETE
    gets = len(hub.downloads_of("tiny-chat-IQ4_XS.gguf"))

    again = queue.enqueue(variant(TINY, "IQ4_XS"))

    assert again.id == job.id and again.state == DownloadState.COMPLETE
    assert len(hub.downloads_of("tiny-chat-IQ4_XS.gguf")) == gets


def test_offline_mode_refuses_downloads(
    hub: HubServer, make_queue: Callable[..., DownloadQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = variant(TINY, "IQ4_XS")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    queue = make_queue()
    before = len(hub.log)

    job = pull(queue, wanted)

    assert job.state == DownloadState.FAILED and job.error and "offline mode" in job.error
    assert len(hub.log) == before
    assert hub_config().offline


def test_a_failure_to_register_keeps_the_files_and_a_retry_finishes_without_downloading(
    hub: HubServer, make_queue: Callable[..., DownloadQueue], monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.models.library as library

    real = library.register_model
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database is locked")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(library, "register_model", flaky)
    queue = make_queue()
    job = pull(queue, variant(TINY, "IQ4_XS"))
    assert job.state == DownloadState.FAILED
    assert job.error and "adding the model to the library failed" in job.error
    assert find_model(open_default_database(), "tiny-chat-iq4_xs") is None
    assert not (hearth_paths().models / "hearth-test").exists() or not any(
        (hearth_paths().models / "hearth-test").rglob("*.gguf")
    )

    queue.resume(job.id)
    job = queue.wait(job.id, timeout=WAIT_S)

    assert job.state == DownloadState.COMPLETE, job.error
    assert len(hub.downloads_of("tiny-chat-IQ4_XS.gguf")) == 1  # verified again, not fetched
    assert find_model(open_default_database(), "tiny-chat-iq4_xs") is not None
