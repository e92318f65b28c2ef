"""Keep the Hub access token: in the OS keyring when one works, else a file only you can read."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.paths import hearth_paths
from app.store.secrets import keyring_name, usable_keyring

KEYRING_SERVICE = "Hearth"
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
    ring = _usable_keyring()
    if ring is not None:
        try:
            ring.set_password(KEYRING_SERVICE, KEYRING_USER, token)
        except Exception:  # a locked or broken keyring: fall back to the file
            pass
        else:
            _token_file().unlink(missing_ok=True)  # never two copies
            return SavedToken(mask_token(token), f"the OS keyring ({_keyring_name(ring)})")
    path = _write_private_file(token)
    return SavedToken(mask_token(token), str(path))


def load_token() -> str | None:
    """The saved token, from the keyring or the file, or None."""
    ring = _usable_keyring()
    if ring is not None:
        try:
            value = ring.get_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:
            value = None
        if value:
            return str(value)
    try:
        value = _token_file().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def delete_token() -> bool:
    """Forget the saved token everywhere; True if there was one."""
    removed = False
    ring = _usable_keyring()
    if ring is not None:
        with contextlib.suppress(Exception):  # no entry, or the keyring refused
            ring.delete_password(KEYRING_SERVICE, KEYRING_USER)
            removed = True
    path = _token_file()
    if path.exists():
        path.unlink()
        removed = True
    return removed


def token_file() -> Path:
    """Where the token file lives when there is no usable keyring."""
    return _token_file()


def _token_file() -> Path:
    return hearth_paths().token_file


def _write_private_file(token: str) -> Path:
    """Write the token to a 0600 file atomically: never readable by others, not even briefly."""
    path = _token_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.chmod(tmp, 0o600)  # in case the umask or the OS ignored the mode
        os.replace(tmp, path)
    except OSError as exc:
        raise TokenStoreError(f"Hearth could not save the token in {path} ({exc}).") from exc
    return path


def _usable_keyring() -> Any | None:
    """The keyring backend if there is a real one (the rule every Hearth secret follows)."""
    return usable_keyring()


def _keyring_name(ring: Any) -> str:
    return keyring_name(ring)
