"""`python -m app` runs the same command line as `hearth`."""

import multiprocessing

from app.cli.main import main
from app.startup import ensure_standard_streams

if __name__ == "__main__":
    # `pythonw -m app` has no console: its standard streams are None (app/startup.py).
    ensure_standard_streams()
    # Worker processes are started with "spawn"; under PyInstaller the frozen executable
    # re-enters here and freeze_support() turns it into the worker instead of a 2nd app.
    multiprocessing.freeze_support()
    raise SystemExit(main())
