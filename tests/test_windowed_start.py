"""A start without a console window: Hearth copes with no standard streams, and hearthw.exe
(the stub Windows' shortcuts start) starts hearth.exe with no console window.

A program with no console (pythonw, a windowed program, one started with its standard
handles closed) starts with sys.stdin, sys.stdout and sys.stderr set to None. Here the same
happens to a real process started with descriptors 0-2 closed, which runs the frozen
executable's entry point (packaging/hearth_entry.py). The stub
(packaging/hearthw_entry.py) is run against a stand-in hearth.exe.
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from app.startup import ensure_standard_streams
from tests.gguf_factory import write_tiny_gguf

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "packaging" / "hearth_entry.py"
STUB = ROOT / "packaging" / "hearthw_entry.py"


def run_without_streams(*args: str, timeout: float = 180) -> int:
    """Run `python ARGS...` with stdin, stdout and stderr closed; its exit status."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh", sys.executable, *args],
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )
    return done.returncode


def test_a_process_started_with_closed_descriptors_has_none_streams(tmp_path: Path) -> None:
    # The condition the other tests recreate: what Python gives a program with no console.
    seen = tmp_path / "streams.txt"
    code = f"import sys; open({str(seen)!r}, 'w').write(repr((sys.stdin, sys.stdout, sys.stderr)))"
    assert run_without_streams("-c", code) == 0
    assert seen.read_text() == "(None, None, None)"


def test_a_command_that_shows_progress_runs_without_a_console(
    hearth_home: Path, tmp_path: Path
) -> None:
    # `models import` draws a progress bar on stderr (it asks stderr.isatty() first): with
    # None there, it failed as "an unexpected error" before the streams were replaced.
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert run_without_streams(str(ENTRY), "models", "import", str(model), "--name", "tiny") == 0
    listed = subprocess.run(
        [sys.executable, str(ENTRY), "models", "list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "tiny" in listed
    log = (hearth_home / "logs" / "hearth.log").read_text()
    assert "command models import ended with status 0" in log


def test_the_window_starts_without_a_console(hearth_home: Path, tmp_path: Path) -> None:
    # What the Start menu shortcut does: no command, so the window (drawn offscreen into a
    # PNG here, then closed), with nowhere to print the PNG's path.
    out = tmp_path / "welcome.png"
    assert run_without_streams(str(ENTRY), "--screenshot", str(out), "--page", "welcome") == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "command: gui" in (hearth_home / "logs" / "hearth.log").read_text()


def test_missing_streams_are_pointed_at_the_null_device(monkeypatch: pytest.MonkeyPatch) -> None:
    present = io.StringIO()
    monkeypatch.setattr(sys, "stdin", None)
    monkeypatch.setattr(sys, "stdout", present)
    monkeypatch.setattr(sys, "stderr", None)
    assert ensure_standard_streams() is True
    try:
        assert sys.stdout is present  # a stream that is there is left alone
        assert sys.stdin is not None and sys.stdin.readline() == ""
        assert sys.stderr is not None and not sys.stderr.isatty()
        assert sys.stderr.write("lost, as on a console nobody sees") > 0
        assert ensure_standard_streams() is False
    finally:
        sys.stdin.close()
        sys.stderr.close()


# hearthw.exe: the stub the shortcuts start, which starts hearth.exe without a console window


def load_stub() -> types.ModuleType:
    """packaging/hearthw_entry.py, imported as PyInstaller's hearthw.exe runs it."""
    spec = importlib.util.spec_from_file_location("hearthw_entry", STUB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stub() -> types.ModuleType:
    return load_stub()


def fake_hearth(path: Path, status: int) -> Path:
    """A stand-in for hearth.exe: writes its arguments, one a line, beside itself."""
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\nexit {status}\n')
    path.chmod(0o755)
    return path


def test_the_stub_passes_its_arguments_on_and_exits_with_hearths_status(
    stub: types.ModuleType, tmp_path: Path
) -> None:
    program = fake_hearth(tmp_path / "hearth.exe", status=3)
    args = ["--screenshot", "C:\\a folder\\welcome.png", "", "--page", "welcome"]
    assert stub.main(args, program=str(program)) == 3
    assert Path(f"{program}.args").read_text().split("\n")[:-1] == args


def test_the_stub_starts_the_hearth_exe_beside_it(
    stub: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As frozen, sys.executable is hearthw.exe and sys.argv its command line.
    program = fake_hearth(tmp_path / "hearth.exe", status=0)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "hearthw.exe"))
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "hearthw.exe"), "doctor"])
    assert stub.main() == 0
    assert Path(f"{program}.args").read_text() == "doctor\n"


def test_the_stub_starts_hearth_without_a_console_window(
    stub: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], dict[str, object]]] = []

    class Started:
        def __init__(self, command: list[str], **options: object) -> None:
            started.append((command, options))

        def wait(self) -> int:
            return 0

    program = fake_hearth(tmp_path / "hearth.exe", status=0)
    # Windows' value; Linux's subprocess has no such flag (and refuses creationflags).
    monkeypatch.setattr(subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    monkeypatch.setattr(stub.subprocess, "Popen", Started)
    assert stub.main([], program=str(program)) == 0
    # No standard streams handed over: hearth.exe gets those of its hidden console.
    assert started == [([str(program)], {"creationflags": 0x08000000})]


@pytest.mark.parametrize("problem", ["missing", "not a program"])
def test_the_stub_says_why_hearth_did_not_start_in_a_message_box(
    problem: str, stub: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []
    monkeypatch.setattr(stub, "show_error", shown.append)
    program = tmp_path / "hearth.exe"
    if problem == "not a program":
        program.write_bytes(b"MZ, but not executable here")
    assert stub.main(["--version"], program=str(program)) == 1
    (text,) = shown
    cause, remedy = text.split("\n\n")
    assert str(program) in cause
    assert "missing" in cause if problem == "missing" else "Permission denied" in cause
    assert remedy.startswith("Reinstall Hearth")


def test_the_stubs_message_box_is_windows_own(
    stub: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[tuple[object, ...]] = []
    user32 = types.SimpleNamespace(MessageBoxW=lambda *args: shown.append(args) or 1)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(user32=user32), raising=False)
    stub.show_error("Hearth cannot start.")
    # No owner window, the text, the title, an OK button and the error icon.
    assert shown == [(None, "Hearth cannot start.", "Hearth", 0x10)]


def test_the_stub_without_streams_fails_quietly_off_windows(tmp_path: Path) -> None:
    # Beside this Python there is no hearth.exe: the stub reports that (on stderr here, which
    # is closed) and exits with 1 instead of raising.
    assert run_without_streams(str(STUB)) == 1
