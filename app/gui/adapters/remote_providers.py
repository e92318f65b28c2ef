"""Adding a remote provider from the window: save it, test it, keep the models it lists."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.store import open_default_database
from app.store import providers as store
from app.store.secrets import delete_secret, set_secret

if TYPE_CHECKING:  # the probe brings httpx: imported when a provider is tested, not at start
    from app.engines.chat_remote.probe import ConnectionReport


@dataclass(frozen=True)
class NewProvider:
    """What the Add remote dialog asks for."""

    name: str
    url: str
    api_key: str = ""
    context_window: int | None = None


def add_and_test_provider(new: NewProvider) -> ConnectionReport:
    """Save the provider (its key in the keyring), test it, and store the models it lists.

    A pool thread job: it opens and closes its own connection. Raises ProviderError for a
    bad name or address, before anything is saved or sent.
    """
    from app.engines.chat_remote.probe import check_connection

    provider = store.Provider(
        name=store.check_name(new.name.strip()),
        base_url=store.normalise_base_url(new.url),
        context_window=new.context_window or None,
    )
    secret = store.provider_secret_name(provider.name)
    with closing(open_default_database()) as db:
        store.add_provider(db, provider)
        if new.api_key.strip():
            set_secret(secret, new.api_key.strip())
        else:
            delete_secret(secret)
        report = check_connection(provider, new.api_key.strip() or None)
        if report.models:
            store.update_provider(db, provider.name, models=report.models)
    return report


def report_text(report: ConnectionReport) -> str:
    """The checks as the lines the dialog's caller shows (one sentence each)."""
    lines = [f"warning: {w}" for w in report.warnings]
    lines += [f"{'ok' if c.ok else 'failed'}: {c.sentence}" for c in report.checks]
    return "\n".join(lines)
