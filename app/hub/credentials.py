"""Keep the Hub access token: in the OS keyring when one works, else a file only you can read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import HearthError
from app.paths import hearth_paths
from app.store.secrets import keyring_delete, keyring_get, keyring_set, write_private_file

KEYRING_USER = "huggingface-hub-token"


class TokenStoreError(HearthError):
    default_remedy = (
        "Check that you can write to Hearth's config folder, or set the HF_TOKEN "
        "environment variable instead."
    )


@dataclass(frozen=True)
class SavedToken:
    """Where a token was saved; never holds the token itself, only its masked form."""

    masked: str
    where: str  # "the OS keyring (…)" or the file's path


def mask_token(token: str) -> str:
    """The first 3 and last 4 characters, enough to recognise a token and useless to steal it.

    >>> mask_token("hf_abcdefghijklmnopqrstuvwxyz")
    'hf_…wxyz'
    """
    if len(token) < 12:
        return "…" * 3
    return f"{token[:3]}…{token[-4:]}"


def save_token(token: str) -> SavedToken:
    """Store `token` (replacing any old one) and say where it went."""
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise TokenStoreError(
            "That does not look like an access token (it is empty or contains spaces).",
            "Copy the token from your Hub account's Access Tokens page and try again.",
        )
    where = keyring_set(KEYRING_USER, token)
    if where is not None:
        token_file().unlink(missing_ok=True)  # never two copies
        return SavedToken(mask_token(token), where)
    path = token_file()
    try:
        write_private_file(path, token + "\n")
    except OSError as exc:
        raise TokenStoreError(f"Hearth could not save the token in {path} ({exc}).") from exc
    return SavedToken(mask_token(token), str(path))


def load_token() -> str | None:
    """The saved token, from the keyring or the file, or None."""
    value = keyring_get(KEYRING_USER)
    if value:
        return value
    try:
        value = token_file().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def delete_token() -> bool:
    """Forget the saved token everywhere; True if there was one."""
    removed = keyring_delete(KEYRING_USER)
    path = token_file()
    if path.exists():
        path.unlink()
        removed = True
    return removed


def token_file() -> Path:
    """Where the token file lives when there is no usable keyring."""
    return hearth_paths().token_file
