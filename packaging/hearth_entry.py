"""The frozen executable's entry point: the same command line as `hearth` and `python -m app`."""

import multiprocessing
import sys

if __name__ == "__main__":
    # Workers are spawned: the frozen executable is started again as the worker, and
    # freeze_support() turns that start into the worker instead of a second window.
    multiprocessing.freeze_support()
    from app.cli.main import main

    sys.exit(main())
