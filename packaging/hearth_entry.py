"""The frozen executable's entry point: the same command line as `hearth` and `python -m app`.

On Windows this is hearth.exe, the console program. The shortcuts start hearthw.exe, a stub
of its own (hearthw_entry.py) that starts hearth.exe here without a console window.
Standard streams missing all the same (a start with its handles closed) are replaced by
ensure_standard_streams.
"""

import multiprocessing
import sys

from app.startup import ensure_standard_streams

if __name__ == "__main__":
    ensure_standard_streams()
    # Workers are spawned: the frozen executable is started again as the worker, and
    # freeze_support() turns that start into the worker instead of a second window.
    multiprocessing.freeze_support()
    from app.cli.main import main

    sys.exit(main())
