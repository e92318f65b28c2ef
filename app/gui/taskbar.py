"""Windows: a taskbar button that pins to hearthw.exe, not to the console hearth.exe.

On Windows the shortcuts start `hearthw.exe`, a small windowed stub, which starts the
console program `hearth.exe` with its console hidden (packaging/hearthw_entry.py). The
window belongs to `hearth.exe`, so by default Windows groups its taskbar button under
`hearth.exe`, and "Pin to taskbar" pins `hearth.exe`: started from the pin, Hearth comes
with a console window.

Two things fix that, both documented by Microsoft for exactly this case (a launcher that
starts the real program):

- `SetCurrentProcessExplicitAppUserModelID` gives the process Hearth's application ID
  (`APP_ID`), before any window exists, so every Hearth window is grouped as Hearth's.
- The window's property store gets the same ID and a *relaunch command*: the program a pin
  starts (`hearthw.exe`), with its display name and icon. Windows reads these when the
  person pins the button.

Everything here is a no-op off Windows and outside a frozen build (no `hearthw.exe` beside
the program), and never stops Hearth from starting: a failure is logged and ignored.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: Hearth's AppUserModelID: CompanyName.ProductName, no spaces, at most 128 characters.
APP_ID = "Hearth.Hearth"
DISPLAY_NAME = "Hearth"
LAUNCHER = "hearthw.exe"

VT_LPWSTR = 31
S_OK = 0


class GUID(ctypes.Structure):
    _fields_ = [
        ("Data1", ctypes.c_uint32),
        ("Data2", ctypes.c_uint16),
        ("Data3", ctypes.c_uint16),
        ("Data4", ctypes.c_ubyte * 8),
    ]

    @classmethod
    def parse(cls, text: str) -> GUID:
        """'{9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3}' as a GUID structure."""
        parts = text.strip("{}").split("-")
        tail = bytes.fromhex(parts[3] + parts[4])
        return cls(
            int(parts[0], 16),
            int(parts[1], 16),
            int(parts[2], 16),
            (ctypes.c_ubyte * 8)(*tail),
        )

    def __str__(self) -> str:
        tail = bytes(self.Data4).hex().upper()
        return f"{{{self.Data1:08X}-{self.Data2:04X}-{self.Data3:04X}-{tail[:4]}-{tail[4:]}}}"


class PROPERTYKEY(ctypes.Structure):
    _fields_ = [("fmtid", GUID), ("pid", ctypes.c_uint32)]


class PROPVARIANT(ctypes.Structure):
    """The VT_LPWSTR case of PROPVARIANT: 16 bytes on 32-bit Windows, 24 on 64-bit."""

    _fields_ = [
        ("vt", ctypes.c_uint16),
        ("wReserved1", ctypes.c_uint16),
        ("wReserved2", ctypes.c_uint16),
        ("wReserved3", ctypes.c_uint16),
        ("pwszVal", ctypes.c_wchar_p),
        ("_pad", ctypes.c_void_p),  # the union's second pointer-sized half (e.g. BLOB)
    ]


IID_IPROPERTYSTORE = "{886D8EEB-8CF2-4446-8D02-CDBA1DBDCF99}"
_APP_USER_MODEL = "{9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3}"
#: PKEY_AppUserModel_* (propkey.h): the property id of each within _APP_USER_MODEL.
PKEY_RELAUNCH_COMMAND = 2
PKEY_RELAUNCH_ICON_RESOURCE = 3
PKEY_RELAUNCH_DISPLAY_NAME_RESOURCE = 4
PKEY_ID = 5

# IPropertyStore's vtable: IUnknown's three, then GetCount, GetAt, GetValue, SetValue, Commit.
_RELEASE, _SET_VALUE, _COMMIT = 2, 6, 7
_FUNCTYPE = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)  # one convention on x64
_Release = _FUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)
_SetValue = _FUNCTYPE(
    ctypes.c_long, ctypes.c_void_p, ctypes.POINTER(PROPERTYKEY), ctypes.POINTER(PROPVARIANT)
)
_Commit = _FUNCTYPE(ctypes.c_long, ctypes.c_void_p)

#: Given a window handle, an IPropertyStore pointer (or raises OSError).
StoreOpener = Callable[[int], int]


def relaunch_properties(launcher: Path) -> list[tuple[int, str]]:
    """What the window's property store gets: (property id, value), ID first."""
    return [
        (PKEY_ID, APP_ID),
        (PKEY_RELAUNCH_COMMAND, f'"{launcher}"'),
        (PKEY_RELAUNCH_DISPLAY_NAME_RESOURCE, DISPLAY_NAME),
        (PKEY_RELAUNCH_ICON_RESOURCE, f"{launcher},0"),
    ]


def frozen_launcher() -> Path | None:
    """hearthw.exe beside the frozen hearth.exe, or None (a source checkout, other OSes)."""
    if sys.platform != "win32" or not getattr(sys, "frozen", False):
        return None
    launcher = Path(sys.executable).with_name(LAUNCHER)
    return launcher if launcher.is_file() else None


def set_process_app_id() -> bool:
    """Give this process Hearth's AppUserModelID (Windows, before the first window)."""
    if sys.platform != "win32":
        return False
    try:
        shell32 = ctypes.windll.shell32
        result = shell32.SetCurrentProcessExplicitAppUserModelID(ctypes.c_wchar_p(APP_ID))
    except (AttributeError, OSError) as exc:
        log.info("no AppUserModelID set: %s", exc)
        return False
    return int(result) == S_OK


def set_window_relaunch(
    hwnd: int, launcher: Path | None = None, *, open_store: StoreOpener | None = None
) -> bool:
    """Write Hearth's ID and relaunch command into the window's property store.

    `launcher` defaults to `frozen_launcher()`; with none, nothing is done. `open_store`
    defaults to shell32's SHGetPropertyStoreForWindow (tests hand in their own store).
    Returns whether every property was written and committed.
    """
    launcher = launcher or frozen_launcher()
    if launcher is None:
        return False
    opener = open_store or _shell_property_store
    try:
        store = opener(hwnd)
    except OSError as exc:
        log.info("the window's property store could not be opened: %s", exc)
        return False
    vtable = ctypes.cast(
        ctypes.cast(store, ctypes.POINTER(ctypes.c_void_p))[0], ctypes.POINTER(ctypes.c_void_p)
    )
    set_value = _SetValue(vtable[_SET_VALUE])
    commit = _Commit(vtable[_COMMIT])
    release = _Release(vtable[_RELEASE])
    fmtid = GUID.parse(_APP_USER_MODEL)
    try:
        for pid, text in relaunch_properties(launcher):
            value = PROPVARIANT(vt=VT_LPWSTR, pwszVal=text)  # SetValue copies the string
            result = set_value(store, ctypes.byref(PROPERTYKEY(fmtid, pid)), ctypes.byref(value))
            if result != S_OK:
                log.info(
                    "setting AppUserModel property %d failed: 0x%08x", pid, result & 0xFFFFFFFF
                )
                return False
        return commit(store) == S_OK
    finally:
        release(store)


def _shell_property_store(hwnd: int) -> int:
    shell32 = ctypes.windll.shell32  # type: ignore[attr-defined]
    store = ctypes.c_void_p()
    iid = GUID.parse(IID_IPROPERTYSTORE)
    result = shell32.SHGetPropertyStoreForWindow(
        ctypes.c_void_p(hwnd), ctypes.byref(iid), ctypes.byref(store)
    )
    if result != S_OK or not store.value:
        raise OSError(f"SHGetPropertyStoreForWindow failed: 0x{result & 0xFFFFFFFF:08x}")
    return int(store.value)
