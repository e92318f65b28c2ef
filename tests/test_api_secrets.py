"""Named secrets (the API key, providers' keys): the OS keyring when it works, else a 0600 file."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pytest

from app.api.security import API_KEY_SECRET, api_key
from app.store.secrets import delete_secret, get_secret, secrets_file, set_secret

if TYPE_CHECKING:
    from tests.conftest import FakeKeyring


def test_without_a_keyring_secrets_go_to_a_file_only_the_user_can_read() -> None:
    # keyring here has only its "fail" backend, which must count as no keyring.
    where = set_secret("provider:lab", "sk-one")
    set_secret("provider:other", "sk-two")
    assert where == str(secrets_file())
    assert stat.S_IMODE(secrets_file().stat().st_mode) == 0o600
    assert get_secret("provider:lab") == "sk-one"
    delete_secret("provider:lab")
    assert get_secret("provider:lab") is None
    assert get_secret("provider:other") == "sk-two"
    delete_secret("never-saved")  # no error


def test_a_working_keyring_holds_the_secret_and_no_file_copy_is_left(
    fake_keyring: FakeKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")  # no keyring yet: the old one goes to the file
    set_secret("provider:lab", "old-in-file")
    monkeypatch.delenv("HEARTH_NO_KEYRING")
    assert set_secret("provider:lab", "sk-new") == "the OS keyring (FakeRing)"
    assert fake_keyring.values[("Hearth", "provider:lab")] == "sk-new"
    assert "provider:lab" not in secrets_file().read_text()
    assert get_secret("provider:lab") == "sk-new"
    delete_secret("provider:lab")
    assert get_secret("provider:lab") is None


def test_a_locked_keyring_falls_back_to_the_file(fake_keyring: FakeKeyring) -> None:
    fake_keyring.locked = True
    assert set_secret("provider:lab", "sk-x") == str(secrets_file())
    assert fake_keyring.values == {}
    assert get_secret("provider:lab") == "sk-x"


def test_the_api_key_is_made_once_and_kept_until_replaced() -> None:
    key, where = api_key()
    assert key.startswith("hearth-") and len(key) > 40
    assert where == str(secrets_file())
    assert api_key()[0] == key
    assert get_secret(API_KEY_SECRET) == key
    new, _ = api_key(new=True)
    assert new != key and api_key()[0] == new
