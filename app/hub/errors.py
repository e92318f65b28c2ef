"""What can go wrong talking to the Hub, one class per cause a person can fix, and the mapping
from huggingface_hub / network exceptions to them."""

from __future__ import annotations

import socket
from typing import Protocol

from app.errors import HearthError


class HubError(HearthError):
    """Something about the Hub (or the mirror in HF_ENDPOINT) stopped the request."""

    default_remedy = "Try again in a few minutes; if it keeps failing, check the Hub's status page."


class OfflineError(HubError):
    """Hearth is offline (by choice or because the network is down) and did not reach the Hub."""

    default_remedy = (
        "Models already in the library keep working, and `hearth models import` adds models "
        "from a disk. To use the Hub, unset HF_HUB_OFFLINE (or turn off offline mode in "
        "Settings)."
    )


class HubUnreachableError(OfflineError):
    default_remedy = (
        "Check the network connection (or the mirror address in HF_ENDPOINT) and try again; "
        "models already in the library keep working offline."
    )


class HubNotAnsweringError(HubUnreachableError):
    default_remedy = (
        "A proxy, firewall or Wi-Fi sign-in page may be holding the connection: check the "
        "network (or the mirror in HF_ENDPOINT) and try again; models already in the library "
        "keep working offline."
    )


class RepoNotFound(HubError):
    default_remedy = (
        "Check the name (publisher/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF) or find it with "
        "`hearth models search`. A private repo also needs a token: `hearth models login`."
    )


class RevisionNotFound(HubError):
    default_remedy = (
        "Leave out --revision to use the main branch, or check the branch, tag or commit."
    )


class FileNotOnHub(HubError):
    default_remedy = "See the repo's files with `hearth models files REPO`."


class GatedRepo(HubError):
    default_remedy = (
        "Accept the model's terms on its Hub page, then give Hearth an access token from that "
        "account with `hearth models login` (or in Settings)."
    )


class NoGgufFilesError(HubError):
    default_remedy = (
        "Hearth runs chat models from GGUF files: search for a GGUF build of this model with "
        "`hearth models search NAME`."
    )


class HubAddress(Protocol):
    """What the error mapping needs to know about the Hub asked (a `HubConfig` is one)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def token(self) -> str | None: ...


def hub_error(
    exc: BaseException,
    config: HubAddress,
    *,
    repo: str | None = None,
    revision: str | None = None,
    filename: str | None = None,
) -> HearthError:
    """Turn a huggingface_hub / network exception into the HearthError a person can act on."""
    import httpx2
    from huggingface_hub import errors as hf

    if isinstance(exc, HearthError):
        return exc
    what = repo or "the Hub"
    status = http_status(exc)
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return OfflineError(
            f"huggingface_hub is in offline mode, so Hearth did not contact {what}."
        )
    if isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError | socket.gaierror):
        return HubUnreachableError(
            f"Hearth could not reach the Hub at {config.endpoint} ({short_reason(exc)})."
        )
    if isinstance(exc, hf.GatedRepoError) or (status in (401, 403) and filename is not None):
        return _gated(what, config, status)
    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFound(f"{what} has no branch, tag or commit called '{revision}'.")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        at = f" at revision {revision}" if revision else ""
        return FileNotOnHub(f"{what} has no file called {filename}{at}.")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return RepoNotFound(f"There is no model repository called {what} on {config.endpoint}.")
    if status in (401, 403):
        return _gated(what, config, status)
    if status == 404:
        return FileNotOnHub(f"{config.endpoint} has no {filename or what} (HTTP 404).")
    if isinstance(exc, hf.HfHubHTTPError) and status is not None:
        return HubError(f"The Hub at {config.endpoint} answered HTTP {status} for {what}.")
    return HubError(f"Talking to the Hub about {what} failed ({short_reason(exc)}).")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response an exception carries, if it carries one."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its class name), cut to `limit`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:limit]


def _gated(what: str, config: HubAddress, status: int | None) -> GatedRepo:
    if config.token and status == 403:
        return GatedRepo(
            f"Your saved access token may not download {what}: it is gated or private.",
            "Accept the model's terms on its Hub page with the account the token belongs to, "
            "or save another token with `hearth models login`.",
        )
    return GatedRepo(
        f"{what} is gated or private: the Hub wants an access token before it lets you download it."
    )
