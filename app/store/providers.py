"""Remote providers: the OpenAI-compatible servers the user added, one row each.

A provider is never contacted unless its row is here: `hearth remote add` (or Settings)
is the only way in. Its API key is not in this table but in the keyring
(`app.store.secrets`, under `provider_secret_name(name)`).

    add_provider(db, Provider("gpu-box", normalise_base_url("http://10.0.0.5:8000")))
    get_provider(db, "gpu-box").base_url  # 'http://10.0.0.5:8000/v1'
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from sqlite_utils import Database

from app.errors import HearthError
from app.store import utc_now

TABLE = "providers"

#: A provider's name: it is the first part of a remote model id (`NAME/MODEL`), so no `/`.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: How a server wants the answer length asked: OpenAI's newer name, or the classic one.
TokenParam = Literal["max_tokens", "max_completion_tokens"]


class ProviderError(HearthError):
    default_remedy = "See `hearth remote list` for the providers you added."


class ProviderNotFoundError(ProviderError):
    default_remedy = "Add it with `hearth remote add NAME URL`, or see `hearth remote list`."


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait, per phase of a request (httpx's four): each is always finite."""

    connect_s: float = 5.0
    read_s: float = 60.0  # between two pieces of an answer, and for the first one
    write_s: float = 30.0
    pool_s: float = 5.0


@dataclass(frozen=True)
class RemoteModel:
    """What a server said about one of its models (detected by `hearth remote test`)."""

    id: str
    context_window: int | None = None


@dataclass(frozen=True)
class Provider:
    """One row of `providers`: where the server is and how to talk to it.

    `context_window` and `capabilities` set by hand win over what was detected
    (`models`); `token_param` None means `max_tokens`, switched once on a 400 naming it.
    """

    name: str
    base_url: str  # normalised: scheme://host[:port]/path ending in a version (`/v1`)
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    ca_bundle: str | None = None  # a PEM file to trust instead of the system's CAs
    timeouts: Timeouts = field(default_factory=Timeouts)
    context_window: int | None = None
    capabilities: tuple[str, ...] = ()
    token_param: TokenParam | None = None
    models: tuple[RemoteModel, ...] = ()
    added_at: str = ""

    @property
    def is_plain_http_off_machine(self) -> bool:
        """True when requests (and a key) would cross the network unencrypted."""
        parts = urlsplit(self.base_url)
        return parts.scheme == "http" and not is_loopback_host(parts.hostname or "")

    def model(self, model_id: str) -> RemoteModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def context_for(self, model_id: str) -> int | None:
        """The context window to trim history to: set by hand, else detected, else None."""
        if self.context_window:
            return self.context_window
        detected = self.model(model_id)
        return detected.context_window if detected else None


def provider_secret_name(name: str) -> str:
    """The keyring entry holding provider `name`'s API key."""
    return f"remote-provider:{name}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ProviderError(
            f"'{name}' cannot be a provider name.",
            "Use letters, digits, '.', '_' or '-' (no '/': it separates the provider from "
            "the model in `NAME/MODEL`).",
        )
    return name


_VERSION_SEGMENT = re.compile(r"^v\d+[a-z0-9]*$")
_ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")


def normalise_base_url(url: str) -> str:
    """The API root of an OpenAI-compatible server, ending in its version (usually `/v1`).

    A bare server address gets `/v1`; an endpoint pasted whole loses its endpoint; a root
    that already ends in a version segment (`/v1`, `/v1beta`) or `/openai` is kept.

    >>> normalise_base_url("http://10.0.0.5:8000")
    'http://10.0.0.5:8000/v1'
    >>> normalise_base_url("https://llm.example.org/v1/chat/completions/")
    'https://llm.example.org/v1'
    >>> normalise_base_url("localhost:11434")
    'http://localhost:11434/v1'
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderError(
            f"'{url}' is not a server address.",
            "Give it as http://HOST:PORT or https://HOST/v1.",
        )
    if parts.query or parts.fragment:
        raise ProviderError(
            f"'{url}' has a query or fragment; a server address has neither.",
            "Give the address up to its path, e.g. https://HOST/v1.",
        )
    path = parts.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    last = path.rsplit("/", 1)[-1]
    if not (_VERSION_SEGMENT.match(last) or last == "openai"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def is_loopback_host(host: str) -> bool:
    """Whether `host` is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- rows -----------------------------------------------------------------------------------


def _row(provider: Provider) -> dict[str, Any]:
    t = provider.timeouts
    return {
        "name": provider.name,
        "base_url": provider.base_url,
        "headers": json.dumps(provider.headers),
        "verify_tls": int(provider.verify_tls),
        "ca_bundle": provider.ca_bundle,
        "connect_timeout_s": t.connect_s,
        "read_timeout_s": t.read_s,
        "write_timeout_s": t.write_s,
        "pool_timeout_s": t.pool_s,
        "context_window": provider.context_window,
        "capabilities": json.dumps(list(provider.capabilities)),
        "token_param": provider.token_param,
        "models": json.dumps(
            [{"id": m.id, "context_window": m.context_window} for m in provider.models]
        ),
        "added_at": provider.added_at or utc_now(),
        "updated_at": utc_now(),
    }


def _provider(row: dict[str, Any]) -> Provider:
    return Provider(
        name=row["name"],
        base_url=row["base_url"],
        headers=dict(json.loads(row["headers"] or "{}")),
        verify_tls=bool(row["verify_tls"]),
        ca_bundle=row["ca_bundle"],
        timeouts=Timeouts(
            connect_s=row["connect_timeout_s"],
            read_s=row["read_timeout_s"],
            write_s=row["write_timeout_s"],
            pool_s=row["pool_timeout_s"],
        ),
        context_window=row["context_window"],
        capabilities=tuple(json.loads(row["capabilities"] or "[]")),
        token_param=row["token_param"],
        models=tuple(
            RemoteModel(m["id"], m.get("context_window")) for m in json.loads(row["models"] or "[]")
        ),
        added_at=row["added_at"],
    )


def add_provider(db: Database, provider: Provider, *, replace_existing: bool = False) -> Provider:
    """Record `provider` (its name checked); an existing name is an error unless replacing."""
    check_name(provider.name)
    if not replace_existing and find_provider(db, provider.name) is not None:
        raise ProviderError(
            f"A provider called '{provider.name}' is already added.",
            "Pick another name, or add it again with --replace.",
        )
    stored = replace(provider, added_at=provider.added_at or utc_now())
    with db.conn:
        db.table(TABLE).insert(_row(stored), replace=True)
    return stored


def find_provider(db: Database, name: str) -> Provider | None:
    rows = list(db.query(f"SELECT * FROM {TABLE} WHERE name = ?", [name]))
    return _provider(rows[0]) if rows else None


def get_provider(db: Database, name: str) -> Provider:
    provider = find_provider(db, name)
    if provider is None:
        raise ProviderNotFoundError(f"There is no remote provider called '{name}'.")
    return provider


def list_providers(db: Database) -> list[Provider]:
    return [_provider(r) for r in db.query(f"SELECT * FROM {TABLE} ORDER BY name")]


def remove_provider(db: Database, name: str) -> None:
    get_provider(db, name)
    with db.conn:
        db.execute(f"DELETE FROM {TABLE} WHERE name = ?", [name])


def update_provider(db: Database, name: str, **changes: Any) -> Provider:
    """Change some fields of a stored provider (e.g. detected `models`, `token_param`)."""
    updated = replace(get_provider(db, name), **changes)
    with db.conn:
        db.table(TABLE).insert(_row(updated), replace=True)
    return updated


def split_remote_model_id(db: Database, model_id: str) -> tuple[Provider, str] | None:
    """`NAME/MODEL` → (provider NAME, MODEL) when NAME is an added provider, else None.

    Only the first `/` separates: server model ids often hold one themselves
    (`gpu-box/meta-llama/Llama-3.1-8B-Instruct`).
    """
    name, sep, model = model_id.partition("/")
    if not sep or not model or not NAME_PATTERN.match(name):
        return None
    if not db.table(TABLE).exists():
        return None
    provider = find_provider(db, name)
    return (provider, model) if provider is not None else None
