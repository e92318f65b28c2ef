"""Where the Hub is, whether Hearth may reach it, and a client bound to both (with timeouts)."""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from app.hub.errors import HubNotAnsweringError, HubUnreachableError, OfflineError, short_reason

if TYPE_CHECKING:
    import httpx2
    from huggingface_hub import HfApi
    from sqlite_utils import Database

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Settings keys (the environment variables, when set, win over them).
SETTING_ENDPOINT = "hub.endpoint"
SETTING_OFFLINE = "hub.offline"
#: A Hub that does not answer within these is treated as unreachable: never hang. Every
#: request huggingface_hub makes for Hearth gets them when its caller set none (see
#: `_finite_timeouts`); downloads read with huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT (10 s).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0
#: A search or metadata call (listing models, a repo's files) gives up after this long in
#: all, retries included: a proxy or captive portal that accepts the connection and never
#: answers costs seconds, not minutes. HEARTH_HUB_TIMEOUT (seconds) changes it for slow links.
API_DEADLINE_S = 8.0

_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubConfig:
    """Where the Hub is, whether Hearth may reach it, and the token to send."""

    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    offline_reason: str = ""  # "HF_HUB_OFFLINE=1" or "offline mode is on in Settings"
    token: str | None = field(default=None, repr=False)

    def require_online(self) -> None:
        """Raise OfflineError, before any network access, when offline mode is on."""
        if self.offline:
            raise OfflineError(
                f"Hearth is in offline mode ({self.offline_reason}), so it did not contact the "
                f"Hub at {self.endpoint}."
            )


def hub_config(db: Database | None = None, environ: dict[str, str] | None = None) -> HubConfig:
    """Resolve the endpoint, offline mode and token: environment first, then Settings.

    `HF_ENDPOINT` and `HF_HUB_OFFLINE` (the variables huggingface_hub itself reads) win over
    the `hub.endpoint` / `hub.offline` settings, so a lab can pin a mirror for everyone.
    The token is `HF_TOKEN` or the one saved by `hearth models login` (app.hub.credentials):
    this is the only place Hearth reads it.

    >>> hub_config(environ={"HF_ENDPOINT": "http://mirror.lab:8080/", "HF_HUB_OFFLINE": "0"})
    HubConfig(endpoint='http://mirror.lab:8080', offline=False, offline_reason='')
    """
    from app.hub.credentials import load_token

    env = dict(os.environ) if environ is None else environ
    endpoint = (env.get("HF_ENDPOINT") or "").strip()
    offline_env = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").strip()
    offline, reason = False, ""
    if offline_env:
        offline = offline_env.upper() in _TRUE
        reason = "HF_HUB_OFFLINE=1" if offline else ""
    if not endpoint or not offline_env:
        from app.store import open_default_database
        from app.store.settings import get_setting

        database = db if db is not None else open_default_database()
        if not endpoint:
            endpoint = str(get_setting(database, SETTING_ENDPOINT, "") or "")
        if not offline_env and get_setting(database, SETTING_OFFLINE, False):
            offline, reason = True, "offline mode is on in Settings"
    token = env.get("HF_TOKEN") or load_token()
    return HubConfig(
        endpoint=(endpoint or DEFAULT_ENDPOINT).rstrip("/"),
        offline=offline,
        offline_reason=reason,
        token=token or None,
    )


def save_hub_settings(
    db: Database, *, endpoint: str | None = None, offline: bool | None = None
) -> None:
    """Store the Settings values (`endpoint=""` returns to the public Hub)."""
    from app.store.settings import set_setting

    with db.conn:
        if endpoint is not None:
            set_setting(db, SETTING_ENDPOINT, endpoint.strip().rstrip("/"))
        if offline is not None:
            set_setting(db, SETTING_OFFLINE, bool(offline))


def hub_api(config: HubConfig) -> HfApi:
    """A huggingface_hub client for `config`'s endpoint and token, with bounded timeouts."""
    from huggingface_hub import HfApi

    from app import __version__

    bound_timeouts()
    return HfApi(
        endpoint=config.endpoint,
        token=config.token,
        library_name="hearth",
        library_version=__version__,
    )


def api_deadline_s(environ: dict[str, str] | None = None) -> float:
    """API_DEADLINE_S, or HEARTH_HUB_TIMEOUT when it is a positive number of seconds."""
    raw = (os.environ if environ is None else environ).get("HEARTH_HUB_TIMEOUT", "")
    try:
        value = float(raw)
    except ValueError:
        return API_DEADLINE_S
    return value if value > 0 else API_DEADLINE_S


def within_deadline(call: Callable[[], T], config: HubConfig, deadline_s: float | None = None) -> T:
    """Run one Hub call, giving up after `deadline_s` (default: `api_deadline_s()`) in all.

    huggingface_hub retries timed-out requests up to five times, so its own timeouts add up
    to minutes; the call runs in a daemon thread that is left to end on its own read timeout
    when it overruns. Raises HubNotAnsweringError then.
    """
    limit = api_deadline_s() if deadline_s is None else deadline_s
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="hub-call", daemon=True).start()
    if not done.wait(limit):
        raise HubNotAnsweringError(
            f"The Hub at {config.endpoint} accepted the connection but sent no answer within "
            f"{limit:.0f} s."
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def check_reachable(endpoint: str) -> None:
    """Fail in seconds when the Hub (or the proxy in front of it) does not accept connections.

    Listing models goes through huggingface_hub's retrying helper, which would otherwise
    spend ~25 s backing off before admitting the network is down.
    """
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host = proxy_parts.hostname or host
        port = proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise HubUnreachableError(
            f"Hearth could not reach the Hub at {endpoint} ({short_reason(exc)})."
        ) from exc


def bound_timeouts() -> None:
    """Make every request huggingface_hub sends for Hearth time out (its default is never).

    Setting the shared client's timeout is not enough: some calls (listing models) pass
    `timeout=None` explicitly, which turns timeouts off for that request. So Hearth installs a
    client factory whose client also fills in any missing timeout just before each request
    is sent.
    """
    global _BOUNDED
    if _BOUNDED:
        return
    from huggingface_hub import set_client_factory

    with _BOUND_LOCK:
        if not _BOUNDED:
            set_client_factory(bounded_client)
            _BOUNDED = True


_BOUNDED = False
_BOUND_LOCK = threading.Lock()
_TIMEOUT_DEFAULTS = {
    "connect": CONNECT_TIMEOUT_S,
    "read": READ_TIMEOUT_S,
    "write": READ_TIMEOUT_S,
    "pool": CONNECT_TIMEOUT_S,
}


def bounded_client() -> httpx2.Client:
    """A client like huggingface_hub's own (its request hook, redirects) with timeouts."""
    import httpx2
    from huggingface_hub.utils._http import default_client_factory

    client = default_client_factory()
    client.timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    hooks = client.event_hooks
    client.event_hooks = {
        "request": [*hooks.get("request", []), _finite_timeouts],
        "response": list(hooks.get("response", [])),
    }
    return client


def _finite_timeouts(request: httpx2.Request) -> None:
    """Give a request Hearth's timeouts wherever it has none (a request event hook)."""
    timeout = dict(request.extensions.get("timeout") or {})
    for key, default in _TIMEOUT_DEFAULTS.items():
        if timeout.get(key) is None:
            timeout[key] = default
    request.extensions["timeout"] = timeout
