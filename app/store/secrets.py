"""Secrets Hearth keeps: in the OS keyring when one works, else in a file only you can read.

Named secrets (API keys) share one JSON file; the Hub token (`app.hub.credentials`) keeps
its own file but follows the same rule through `keyring_get`, `keyring_set`,
`keyring_delete` and `write_private_file`.

>>> set_secret("api-server-key", "hk-example")  # doctest: +SKIP
'/home/me/.config/Hearth/secrets.json'
>>> get_secret("api-server-key")  # doctest: +SKIP
'hk-example'
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.paths import hearth_paths

#: The keyring "service" every Hearth secret is filed under; the secret's name is the user.
KEYRING_SERVICE = "Hearth"

# Two threads of one process (the GUI's server and a settings page) must not interleave
# their read-modify-write of the file.
_file_lock = threading.Lock()


class SecretStoreError(HearthError):
    default_remedy = "Check that you can write to Hearth's config folder."


def get_secret(name: str) -> str | None:
    """The secret saved under `name`, from the keyring or the file, or None."""
    _check_name(name)
    value = keyring_get(name)
    if value:
        return value
    value = _read_file().get(name)
    return value if isinstance(value, str) and value else None


def set_secret(name: str, value: str) -> str:
    """Save `value` under `name` (replacing any old one); returns where it went, for people.

    The answer is "the OS keyring (<backend>)" or the path of the private file.
    """
    _check_name(name)
    if not value:
        raise SecretStoreError(f"Hearth will not save an empty secret for {name!r}.")
    where = keyring_set(name, value)
    if where is not None:
        _remove_from_file(name)  # never two copies
        return where
    with _file_lock:
        values = _read_file()
        values[name] = value
        _write_file(values)
    return str(secrets_file())


def delete_secret(name: str) -> None:
    """Forget the secret `name` everywhere; no error when there was none."""
    _check_name(name)
    keyring_delete(name)
    _remove_from_file(name)


def secrets_file() -> Path:
    """Where secrets live when there is no usable keyring."""
    return hearth_paths().secrets_file


def secrets_place() -> str:
    """Where `set_secret` puts a secret now, for people: the OS keyring (…) or the file."""
    ring = usable_keyring()
    return _keyring_place(ring) if ring is not None else str(secrets_file())


# --- the rule for every secret: the keyring when it works, else a private file -----------------


def keyring_get(user: str) -> str | None:
    """The keyring's entry `user` (Hearth's service), or None: no keyring, no entry, or failed."""
    ring = usable_keyring()
    if ring is None:
        return None
    try:
        value = ring.get_password(KEYRING_SERVICE, user)
    except Exception:  # a locked or broken keyring: the caller's file may still have it
        return None
    return str(value) if value else None


def keyring_set(user: str, value: str) -> str | None:
    """Save `value` as the keyring's entry `user`; returns "the OS keyring (<backend>)".

    None when there is no usable keyring or it refused: the caller writes its file instead.
    """
    ring = usable_keyring()
    if ring is None:
        return None
    try:
        ring.set_password(KEYRING_SERVICE, user, value)
    except Exception:  # a locked or refusing keyring: fall back to the file
        return None
    return _keyring_place(ring)


def keyring_delete(user: str) -> bool:
    """Remove the keyring's entry `user`; True if the keyring did (False: none, or it refused)."""
    ring = usable_keyring()
    if ring is None:
        return False
    try:
        ring.delete_password(KEYRING_SERVICE, user)
    except Exception:  # no entry, or the keyring refused
        return False
    return True


def write_private_file(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file of `text`: never readable by others, not even
    briefly. Raises OSError; each caller says what it was saving."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # in case the umask or the OS ignored the mode
    os.replace(tmp, path)


def usable_keyring() -> Any | None:
    """The keyring backend if the `keyring` package is installed and has a real backend.

    HEARTH_NO_KEYRING=1 forces the file (tests, and machines whose keyring prompts).
    """
    if os.environ.get("HEARTH_NO_KEYRING"):
        return None
    try:
        import keyring
        from keyring.backends import fail
    except Exception:  # not installed, or broken
        return None
    try:
        ring = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(ring, fail.Keyring) or getattr(ring, "priority", 0) <= 0:
        return None
    # The chainer reports a priority even when it holds nothing usable.
    backends = getattr(ring, "backends", None)
    if backends is not None and not backends:
        return None
    return ring


def keyring_name(ring: Any) -> str:
    """The backend's own name, for "the OS keyring (…)"."""
    return str(getattr(ring, "name", type(ring).__name__))


def _keyring_place(ring: Any) -> str:
    return f"the OS keyring ({keyring_name(ring)})"


def _check_name(name: str) -> None:
    if not name or not name.strip() or len(name) > 200:
        raise SecretStoreError(f"{name!r} is not a usable secret name.")


def _read_file() -> dict[str, Any]:
    try:
        text = secrets_file().read_text(encoding="utf-8")
    except OSError:
        return {}
    try:
        values = json.loads(text)
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def _remove_from_file(name: str) -> None:
    with _file_lock:
        values = _read_file()
        if name in values:
            del values[name]
            _write_file(values)


def _write_file(values: dict[str, Any]) -> None:
    path = secrets_file()
    try:
        write_private_file(path, json.dumps(values, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise SecretStoreError(f"Hearth could not save a secret in {path} ({exc}).") from exc
