"""A disk that fills during a download: one sentence naming the disk, the partial kept for
resume, nothing registered, and the failure path itself survives the full disk (issue 10,
case 2). Real tmpfs mounts, filled while the test Hub holds the transfer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.hub.downloads import DownloadQueue
from app.humanize import MiB
from app.models.files import is_disk_full
from app.paths import hearth_paths
from app.store import open_default_database
from app.store.downloads import DownloadState
from app.store.library import find_model
from tests.hubserver import (
    HubFile,
    HubRepo,
    HubServer,
    tiny_gguf_bytes,
)
from tests.test_downloads import TINY, served_file, variant

CHUNK = 16 * 1024
WAIT_S = 60
F16 = "tiny-chat-F16.gguf"


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `where` for the length of the block."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"these tests mount a tmpfs, which needs root ({mounted.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the disk holding `folder`; delete the file to give them back."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with filler.open("wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, free)
    assert shutil.disk_usage(folder).free < CHUNK
    return filler


def hold(served: HubFile) -> None:
    """Let 3 chunks through, then hold the transfer until `served.release` is set."""
    served.hold_at = 3 * CHUNK


def wait_for_bytes_on_disk(folder: Path, at_least: int) -> None:
    """Wait (bounded) until the partial file under `folder` holds `at_least` bytes: the Hub
    holding the transfer does not mean the client has written what it sent yet."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        partials = list(folder.rglob("*.incomplete"))
        if partials and partials[0].stat().st_size >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError(f"no partial file of {at_least} bytes under {folder}")


def test_a_full_download_cache_names_the_disk_not_the_hub_and_resumes_once_freed(
    hub: HubServer, make_queue: Callable[..., DownloadQueue]
) -> None:
    staging = hearth_paths().download_staging
    with tmpfs(staging, "1m"):
        served = served_file(hub, TINY, F16)
        hold(served)
        queue = make_queue(disk_margin=0)
        job = queue.enqueue(variant(TINY, "F16"))
        queue.start()
        assert served.reached_hold.wait(WAIT_S)
        wait_for_bytes_on_disk(staging, 3 * CHUNK)
        filler = fill(staging)
        served.release.set()
        job = queue.wait(job.id, timeout=WAIT_S)

        assert job.state == DownloadState.FAILED
        assert job.error is not None
        assert job.error.startswith(f"The disk holding {staging} is full (")
        assert job.error.endswith(
            "Free some space and run the same command again: the download resumes where it stopped."
        )
        assert "Hub" not in job.error
        partial = next(staging.rglob("*.incomplete"))
        kept = partial.read_bytes()
        assert len(kept) >= 3 * CHUNK and served.data.startswith(kept)
        assert find_model(open_default_database(), "tiny-chat-f16") is None

        filler.unlink()
        served.hold_at = None
        queue.resume(job.id)
        job = queue.wait(job.id, timeout=WAIT_S)
        assert job.state == DownloadState.COMPLETE, job.error
        assert hub.downloads_of(F16)[-1].range == f"bytes={len(kept)}-"
        assert find_model(open_default_database(), "tiny-chat-f16") is not None


def test_pull_with_the_whole_data_folder_on_a_disk_that_fills_exits_with_one_sentence(
    hub: HubServer, tmp_path: Path
) -> None:
    """Database, logs and staging all on the full disk: the failure cannot be written to
    SQLite, and `hearth models pull` still ends, saying why, and resumes next time."""
    # The CLI reads 1 MiB at a time: a model of a few MiB, held after the first MiB.
    big = HubFile("big-chat-F16.gguf", tiny_gguf_bytes(tmp_path, "big.gguf", n_embd=512))
    hub.add(HubRepo("hearth-test/Big-Chat-GGUF", [big]))
    assert big.size > 3 * MiB
    home = tmp_path / "full-home"
    with tmpfs(home, "300m"):  # room for the 256 MiB margin a pull keeps free, and a bit
        env = dict(os.environ, HEARTH_HOME=str(home))
        pull = [sys.executable, "-m", "app", "models", "pull", "hearth-test/Big-Chat-GGUF"]
        served = big
        served.hold_at = MiB + CHUNK
        running = subprocess.Popen(
            pull, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert served.reached_hold.wait(WAIT_S)
            wait_for_bytes_on_disk(home / "cache" / "downloads", MiB)
            filler = fill(home)
            served.release.set()
            _out, err = running.communicate(timeout=WAIT_S)
        finally:
            running.kill()
        assert running.returncode == 1, err
        staging = home / "cache" / "downloads"
        assert f"The disk holding {staging} is full (" in err
        assert "the download resumes where it stopped" in err
        assert "Traceback" not in err and "Hub" not in err.split("is full")[1]
        kept = next(staging.rglob("*.incomplete")).read_bytes()
        assert len(kept) >= MiB and big.data.startswith(kept)

        filler.unlink()
        served.hold_at = None
        again = subprocess.run(pull, env=env, capture_output=True, text=True, timeout=WAIT_S)
        assert again.returncode == 0, again.stderr
        assert "resuming at" in again.stderr
        assert "Added big-chat-f16 to the library" in again.stdout
        assert hub.downloads_of("big-chat-F16.gguf")[-1].range == f"bytes={len(kept)}-"


def test_is_disk_full_knows_both_kinds_of_full() -> None:
    import errno
    import sqlite3

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
