"""hearthw.exe: Hearth's window on Windows without a console window, for the shortcuts.

A stub, frozen from an analysis of its own (packaging/hearth.spec): it starts hearth.exe,
the console program beside it, with the same arguments and no console window
(CREATE_NO_WINDOW), waits for it and exits with its status. hearth.exe holds Hearth; this
program holds only the standard library these lines and PyInstaller's bootstrap need, about
1.5 MB, instead of a second copy of Hearth's Python archive (docs/packaging.md, "The Windows
programs and icon").

Standard library only, and nothing here may import Hearth (`app`) or anything heavy:
tests/test_release_workflows.py checks that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

PROGRAM = "hearth.exe"
TITLE = "Hearth"
# MessageBoxW's style: an OK button and the error icon.
MB_OK = 0x0
MB_ICONERROR = 0x10


def show_error(text: str) -> None:
    """Tell the user `text` in a message box: a windowed program has no console to print to."""
    if sys.platform == "win32":
        import ctypes

        ctypes.windll.user32.MessageBoxW(None, text, TITLE, MB_OK | MB_ICONERROR)
    elif sys.stderr is not None:  # only ever run like this by the tests
        print(text, file=sys.stderr)


def main(argv: Sequence[str] | None = None, program: str | None = None) -> int:
    """Run `program` (hearth.exe beside this executable) with `argv` (this program's
    arguments); its exit status, or 1 when it could not be started."""
    args = list(sys.argv[1:] if argv is None else argv)
    if program is None:
        program = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), PROGRAM)
    if not os.path.isfile(program):
        show_error(
            f"Hearth cannot start because {program} is missing.\n\nReinstall Hearth to put it back."
        )
        return 1
    try:
        # hearth.exe gets a console of its own, never shown: where its output goes, and the
        # console its workers and the console programs it starts share, so none of them
        # opens a window either. No stdin, stdout or stderr of ours to pass on: there are
        # none.
        started = subprocess.Popen(
            [program, *args], creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0)
        )
    except OSError as exc:
        show_error(
            f"Hearth cannot start {program}: {exc.strerror or exc}.\n\n"
            "Reinstall Hearth to repair it."
        )
        return 1
    # Waiting costs a sleeping process of a few MB while Hearth runs, and keeps the status:
    # `hearthw.exe --screenshot ...` in the release job, and scripts, read it.
    return started.wait()


if __name__ == "__main__":
    sys.exit(main())
