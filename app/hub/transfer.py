"""One file from the Hub into a staging file: ranged, resumable, retried, verified by sha256.

huggingface_hub's own functions find the file: `hf_hub_url` and `get_hf_file_metadata` give
its size, sha256 and where the bytes are. The bytes come with one `Range` GET per attempt,
on a client made like huggingface_hub's (its request hook and redirects, Hearth's timeouts),
into a `.incomplete` staging file; Hearth's retry loop resumes after a drop or a stall and
says so. (`hf_hub_download` is not used: since 2.x it writes to a per-call temporary file and
deletes it on any failure, so it cannot resume after a pause, a crash or a restart.)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from app.errors import HearthError
from app.hub.config import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    HubConfig,
    api_deadline_s,
    bound_timeouts,
    bounded_client,
)
from app.hub.errors import HubError, HubUnreachableError, OfflineError, hub_error, short_reason
from app.humanize import MiB, format_size
from app.models.files import disk_full_error, is_disk_full, sha256_file

log = logging.getLogger(__name__)

#: Bytes per read from the network. huggingface_hub's default (10 MiB) makes progress and
#: pause jump in 10 MiB steps and loses up to 10 MiB on a dropped connection.
CHUNK_SIZE = 1 * MiB
VERIFYING = "verifying sha256"


class DownloadIntegrityError(HearthError):
    default_remedy = (
        "Run the same pull again to download it afresh; if it fails twice, the mirror or a "
        "proxy on the way is serving damaged files."
    )


class StopReason(StrEnum):
    """Why a transfer was asked to stop."""

    PAUSE = "pause"  # keep the partial file; resume continues it
    CANCEL = "cancel"  # the partial file is to be deleted
    CLOSE = "close"  # the queue is shutting down: queue it again for next time


class TransferStopped(Exception):
    """Raised inside a transfer (from its progress hook) to stop it; not a network error."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class FileRequest:
    """What to fetch and where its bytes go."""

    repo: str
    revision: str
    filename: str  # path in the repo
    size: int  # from the listing; the Hub's metadata has the last word
    sha256: str | None  # what the listing promised (None: take the Hub's ETag, if it is one)
    partial: Path  # bytes so far (`.incomplete`), appended to on resume
    staged: Path  # the verified file, waiting to go into the library


@dataclass(frozen=True)
class FetchedFile:
    """A file that arrived whole and matched its sha256 (or had none to match)."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a dropped connection is tried again."""

    retries: int = 5
    base_s: float = 1.0  # the first wait; it doubles each time
    max_s: float = 30.0


@dataclass(frozen=True)
class TransferHooks:
    """What the queue wants to hear while a file moves (all called from the worker thread)."""

    reserve: Callable[[int, str], None]  # (bytes still to come, file name): raise if no room
    sized: Callable[[int, int], None]  # (bytes already here, size) before the bytes flow
    advanced: Callable[[int, int, int], None]  # (new bytes, done, size) per chunk
    noted: Callable[[], None]  # `note` changed: report it now


class FileTransfer:
    """The live state of one file being fetched: bytes so far, a note, a stop request."""

    def __init__(self, row_id: str, job_id: str, request: FileRequest) -> None:
        self.row_id = row_id
        self.job_id = job_id
        self.request = request
        self.stop_event = threading.Event()
        self.reason: StopReason | None = None
        self.done = partial_size(request.partial)
        self.size = request.size  # the Hub's metadata has the last word once it answered
        self.note: str | None = None

    def stop(self, reason: StopReason) -> None:
        # A cancel outranks a pause or a close requested earlier.
        if self.reason is not StopReason.CANCEL:
            self.reason = reason
        self.stop_event.set()

    def check(self) -> None:
        """Raise TransferStopped if a stop was asked for."""
        if self.stop_event.is_set():
            raise TransferStopped(self.reason or StopReason.CLOSE)


def partial_size(path: Path) -> int:
    """Bytes of a staging file so far (0 when there is none)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def fetch_with_retries(
    transfer: FileTransfer,
    config: Callable[[], HubConfig],
    hooks: TransferHooks,
    *,
    policy: RetryPolicy = RetryPolicy(),
    chunk_size: int = CHUNK_SIZE,
) -> FetchedFile:
    """Fetch the file, trying again with backoff when the network drops.

    `config` is asked at each attempt, so a token saved or a mirror set mid-way is used at
    the next try. A clear refusal (404, gated, offline) is raised at once as a HubError; a
    drop that keeps happening without progress gives up after `policy.retries` tries.
    """
    request = transfer.request
    attempt = 0
    while True:
        before = partial_size(request.partial)
        try:
            return fetch_once(transfer, config(), hooks, chunk_size=chunk_size)
        except (TransferStopped, HearthError):
            raise
        except Exception as exc:
            if is_disk_full(exc):
                raise disk_full_error(
                    request.partial.parent,
                    "Free some space and run the same command again: the download resumes "
                    "where it stopped.",
                ) from exc
            hub = config()
            if not _retryable(exc):
                raise hub_error(
                    exc,
                    hub,
                    repo=request.repo,
                    revision=request.revision,
                    filename=request.filename,
                ) from exc
            if partial_size(request.partial) > before:
                attempt = 0  # it was moving: a fresh drop, not the same failure again
            if attempt >= policy.retries:
                raise _gave_up(exc, hub, request, policy.retries) from exc
            delay = min(policy.base_s * 2**attempt, policy.max_s)
            attempt += 1
            done, size = partial_size(request.partial), transfer.size or request.size
            transfer.note = (
                f"connection lost ({_drop_reason(exc)}); retrying in {delay:.0f} s, resuming "
                f"at {format_size(done)} of {format_size(size)} (attempt {attempt} of "
                f"{policy.retries})"
            )
            log.info("%s: %s", request.filename, transfer.note)
            hooks.noted()
            if transfer.stop_event.wait(delay):
                transfer.check()
            transfer.note = None


def fetch_once(
    transfer: FileTransfer, config: HubConfig, hooks: TransferHooks, *, chunk_size: int = CHUNK_SIZE
) -> FetchedFile:
    """One attempt: ask the Hub where the file is, fetch what is missing, verify it, and move
    it to `request.staged`."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from app import __version__

    request = transfer.request
    config.require_online()
    bound_timeouts()
    name = PurePosixPath(request.filename).name
    url = hf_hub_url(
        request.repo, request.filename, revision=request.revision, endpoint=config.endpoint
    )
    meta = get_hf_file_metadata(
        url,
        token=config.token,
        timeout=min(READ_TIMEOUT_S, api_deadline_s()),
        library_name="hearth",
        library_version=__version__,
    )
    size = int(meta.size if meta.size is not None else request.size or 0)
    transfer.size = size
    expected = request.sha256 or _sha256_or_none(meta.etag)
    partial = request.partial
    partial.parent.mkdir(parents=True, exist_ok=True)
    if request.staged.exists() and not partial.exists():
        os.replace(request.staged, partial)  # complete but never registered: verify it again
    done = partial_size(partial)
    if size and done > size:
        partial.unlink()
        done = 0
    hooks.reserve(size - done, name)
    transfer.done = done
    hooks.sized(done, size)
    if not size or done < size:
        headers = build_hf_headers(
            token=config.token, library_name="hearth", library_version=__version__
        )
        if _origin(meta.location) != _origin(url):
            headers.pop("authorization", None)  # never send the token to a CDN
        _get_range(meta.location, headers, transfer, hooks, size, chunk_size)
    transfer.note = VERIFYING
    hooks.noted()
    actual = sha256_file(partial, lambda _n: transfer.check())
    transfer.note = None
    if expected and actual != expected:
        partial.unlink(missing_ok=True)
        raise DownloadIntegrityError(
            f"{name} from {request.repo} does not match the sha256 the Hub gives (got "
            f"{actual[:12]}…, expected {expected[:12]}…); Hearth deleted the damaged file."
        )
    transfer.check()  # a cancel that arrived while verifying still wins
    os.replace(partial, request.staged)
    return FetchedFile(request.staged, size, actual)


def _drop_reason(exc: BaseException) -> str:
    """What happened to the connection, in a few words."""
    import httpx2
    from huggingface_hub import constants

    if isinstance(exc, httpx2.ReadTimeout):
        return f"no data for {constants.HF_HUB_DOWNLOAD_TIMEOUT} s"
    return short_reason(exc, 100)


class ShortTransferError(OSError):
    """The server ended the body before the size it announced (a cut connection)."""


def _get_range(
    url: str,
    headers: dict[str, str],
    transfer: FileTransfer,
    hooks: TransferHooks,
    size: int,
    chunk_size: int,
) -> None:
    """Append the bytes from `transfer.done` on to the partial file with one ranged GET.

    One attempt only: a drop or a stall (no data for HF_HUB_DOWNLOAD_TIMEOUT seconds)
    raises, and `fetch_with_retries` decides, says so and resumes. (huggingface_hub's
    `http_get` would resume on its own, silently, up to five times after each chunk.)
    Each chunk is reported, and a stop request honoured, before it is written, so the file
    stays a clean prefix of the real one.
    """
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import hf_raise_for_status

    request = transfer.request
    start = transfer.done
    wanted = dict(headers, Range=f"bytes={start}-") if start else dict(headers)
    timeout = httpx2.Timeout(float(constants.HF_HUB_DOWNLOAD_TIMEOUT), connect=CONNECT_TIMEOUT_S)
    # A client of its own, not huggingface_hub's shared one: huggingface_hub closes that on
    # any connection error of any call (a search in another thread), under a running transfer.
    with (
        bounded_client() as client,
        client.stream("GET", url, headers=wanted, timeout=timeout) as response,
    ):
        hf_raise_for_status(response)
        mode = "ab"
        if start and response.status_code != 206:  # the server ignored the Range: start over
            mode, start, transfer.done = "wb", 0, 0
            hooks.sized(0, size)
        with request.partial.open(mode) as fh:
            for chunk in response.iter_bytes(chunk_size=chunk_size):
                if not chunk:
                    continue
                transfer.check()
                transfer.done += len(chunk)
                hooks.advanced(len(chunk), transfer.done, size)
                fh.write(chunk)
    if size and partial_size(request.partial) < size:
        raise ShortTransferError(
            f"the server sent {format_size(partial_size(request.partial))} of {format_size(size)}"
        )


def _sha256_or_none(etag: str | None) -> str | None:
    if etag and len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
        return etag
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _retryable(exc: BaseException) -> bool:
    """Network trouble worth another try (with backoff), as opposed to a clear refusal."""
    import httpx2
    from huggingface_hub import errors as hf

    if isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status in (408, 429, 500, 502, 503, 504)
    return isinstance(exc, ShortTransferError)


def _gave_up(
    exc: BaseException, config: HubConfig, request: FileRequest, retries: int
) -> HearthError:
    error = hub_error(exc, config, repo=request.repo, filename=request.filename)
    cause = error.cause.rstrip(".")
    if isinstance(error, OfflineError | HubUnreachableError) or not isinstance(error, HubError):
        cause = f"The connection to {config.endpoint} kept failing ({short_reason(exc, 100)})"
    return HubError(
        f"{cause}; Hearth gave up after {retries} retries and kept what had arrived.",
        "Run the same pull again (or press Resume) when the network is back; it continues "
        "where it stopped.",
    )
