"""Which engine runs a model id: a remote one for `PROVIDER/MODEL` when that provider was added.

Sessions call `remote_engine_for` before planning a local model: only providers the user
added (`hearth remote add`) are ever contacted, and their key comes from the keyring.
"""

from __future__ import annotations

from sqlite_utils import Database

from app.engines.chat_remote.client import RemoteChatEngine
from app.store.providers import (
    TokenParam,
    provider_secret_name,
    split_remote_model_id,
    update_provider,
)
from app.store.secrets import get_secret


def remote_engine_for(db: Database, model_id: str) -> RemoteChatEngine | None:
    """The engine for `PROVIDER/MODEL` when PROVIDER is added, else None (a local model).

    What the server teaches while answering (it wants `max_completion_tokens`) is saved
    on the provider's row, so the next session asks right the first time.
    """
    found = split_remote_model_id(db, model_id)
    if found is None:
        return None
    provider, model = found

    def remember(param: TokenParam) -> None:
        update_provider(db, provider.name, token_param=param)

    return RemoteChatEngine(
        provider,
        model,
        api_key=get_secret(provider_secret_name(provider.name)),
        on_token_param=remember,
    )
