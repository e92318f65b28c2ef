"""Where the Hub is, whether Hearth may reach it, and a client bound to both (with timeouts)."""

from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.hub.errors import HubUnreachableError, OfflineError, short_reason

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from sqlite_utils import Database

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Settings keys (the environment variables, when set, win over them).
SETTING_ENDPOINT = "hub.endpoint"
SETTING_OFFLINE = "hub.offline"
#: A Hub that does not answer within these is treated as unreachable: never hang.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0

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

    _bound_default_timeouts()
    return HfApi(
        endpoint=config.endpoint,
        token=config.token,
        library_name="hearth",
        library_version=__version__,
    )


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


def _bound_default_timeouts() -> None:
    """Give huggingface_hub's shared client finite timeouts (its default is none at all).

    Calls that pass their own timeout (downloads, file metadata) keep it; this bounds the
    ones that do not, such as listing models, so a dead network cannot hang Hearth.
    """
    import httpx2
    from huggingface_hub import get_session

    session = get_session()
    if session.timeout.connect is None or session.timeout.read is None:
        session.timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
