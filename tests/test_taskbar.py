"""Windows taskbar: Hearth's window carries its AppUserModelID and a relaunch command.

There is no Windows here, so the property store is a real in-memory COM object built by
the test: a vtable of C callbacks that decode what `set_window_relaunch` passes through
ctypes, byte for byte as shell32's IPropertyStore would read it (the PROPERTYKEY and
PROPVARIANT layouts, the vtable slots, the order of SetValue, Commit and Release).
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest

from app.gui import taskbar


class FakePropertyStore:
    """An IPropertyStore in memory: records SetValue, Commit and Release."""

    def __init__(self, *, fail_on_pid: int | None = None) -> None:
        self.values: list[tuple[str, int, int, str]] = []
        self.commits = 0
        self.releases = 0
        self.fail_on_pid = fail_on_pid
        # Keep the callbacks alive as long as the object: the vtable only holds addresses.
        self._callbacks = {
            taskbar._SET_VALUE: taskbar._SetValue(self._set_value),
            taskbar._COMMIT: taskbar._Commit(self._commit),
            taskbar._RELEASE: taskbar._Release(self._release),
        }
        self._vtable = (ctypes.c_void_p * 8)()
        for slot, callback in self._callbacks.items():
            self._vtable[slot] = ctypes.cast(callback, ctypes.c_void_p).value
        self._object = (ctypes.c_void_p * 1)(ctypes.addressof(self._vtable))
        self.pointer = ctypes.addressof(self._object)

    def _set_value(self, this: int, key: ctypes._Pointer, value: ctypes._Pointer) -> int:
        assert this == self.pointer, "SetValue must be called on the store itself"
        k, v = key.contents, value.contents
        self.values.append((str(k.fmtid), k.pid, v.vt, v.pwszVal))
        return 0x80004005 - (1 << 32) if k.pid == self.fail_on_pid else 0  # E_FAIL

    def _commit(self, this: int) -> int:
        assert this == self.pointer
        self.commits += 1
        return 0

    def _release(self, this: int) -> int:
        assert this == self.pointer
        self.releases += 1
        return 0


LAUNCHER = Path("C:/Users/Jane Doe/AppData/Local/Programs/Hearth/hearthw.exe")
APP_USER_MODEL = "{9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3}"


def test_the_window_gets_hearths_id_and_a_relaunch_command_for_hearthw() -> None:
    store = FakePropertyStore()
    opened: list[int] = []

    def open_store(hwnd: int) -> int:
        opened.append(hwnd)
        return store.pointer

    assert taskbar.set_window_relaunch(0x1234, LAUNCHER, open_store=open_store)
    assert opened == [0x1234]
    assert store.values == [
        # The ID first: Windows ignores the relaunch properties of a window without one.
        (APP_USER_MODEL, 5, 31, "Hearth.Hearth"),
        # Quoted: the install folder is under the user's profile, which may hold spaces.
        (APP_USER_MODEL, 2, 31, f'"{LAUNCHER}"'),
        (APP_USER_MODEL, 4, 31, "Hearth"),
        (APP_USER_MODEL, 3, 31, f"{LAUNCHER},0"),
    ]
    assert (store.commits, store.releases) == (1, 1)


def test_a_refused_property_is_not_committed_and_the_store_is_still_released() -> None:
    store = FakePropertyStore(fail_on_pid=taskbar.PKEY_RELAUNCH_COMMAND)
    assert not taskbar.set_window_relaunch(1, LAUNCHER, open_store=lambda hwnd: store.pointer)
    assert [pid for _, pid, _, _ in store.values] == [5, 2]  # stopped at the refusal
    assert (store.commits, store.releases) == (0, 1)


def test_a_store_that_cannot_be_opened_leaves_the_window_as_it_is() -> None:
    def no_store(hwnd: int) -> int:
        raise OSError("SHGetPropertyStoreForWindow failed: 0x80070578")

    assert not taskbar.set_window_relaunch(1, LAUNCHER, open_store=no_store)


def test_nothing_happens_outside_a_frozen_windows_build() -> None:
    def never(hwnd: int) -> int:
        raise AssertionError("no launcher: the store must not be opened")

    assert taskbar.frozen_launcher() is None  # this test machine is not a frozen Windows build
    assert not taskbar.set_window_relaunch(1, open_store=never)
    assert not taskbar.set_process_app_id()


def test_the_launcher_is_hearthw_beside_the_frozen_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "hearth.exe"))
    assert taskbar.frozen_launcher() is None  # hearthw.exe missing: a broken install
    (tmp_path / "hearthw.exe").write_bytes(b"MZ")
    assert taskbar.frozen_launcher() == tmp_path / "hearthw.exe"


def test_the_structures_have_windows_layouts() -> None:
    pointer = ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(taskbar.GUID) == 16
    assert ctypes.sizeof(taskbar.PROPERTYKEY) == 20
    # vt and three reserved words, then a union as wide as two pointers (BLOB's cb + ptr).
    assert ctypes.sizeof(taskbar.PROPVARIANT) == 8 + 2 * pointer
    assert taskbar.PROPVARIANT.pwszVal.offset == 8
    iid = taskbar.GUID.parse(taskbar.IID_IPROPERTYSTORE)
    assert str(iid) == "{886D8EEB-8CF2-4446-8D02-CDBA1DBDCF99}"
    assert bytes(iid)[:4] == bytes.fromhex("EB8E6D88")  # Data1 little-endian, as in memory
    assert len(taskbar.APP_ID) <= 128 and " " not in taskbar.APP_ID
