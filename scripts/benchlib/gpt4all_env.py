"""The GPT4All Python bindings in their own virtual environment, made on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchlib.common import WORK_DIR, log

GPT4ALL_REQUIREMENT = "gpt4all==2.8.2"
VENV = WORK_DIR / "gpt4all-venv"


def gpt4all_python(*, create: bool = True) -> tuple[Path | None, str | None]:
    """(the venv's python, None), or (None, why the bindings are not available)."""
    python = VENV / "bin" / "python"
    if python.exists() and _imports(python):
        return python, None
    if not create:
        return None, f"no GPT4All venv at {VENV}"
    log(f"creating {VENV} with {GPT4ALL_REQUIREMENT} (needs the network, once)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", GPT4ALL_REQUIREMENT],
            check=True,
            timeout=900,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = " ".join((exc.stderr or "").strip().splitlines()[-2:])
        return None, f"pip could not install {GPT4ALL_REQUIREMENT} into {VENV}: {tail}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"could not create {VENV}: {exc}"
    if not _imports(python):
        return None, f"{GPT4ALL_REQUIREMENT} installed into {VENV} but does not import"
    return python, None


def _imports(python: Path) -> bool:
    probe = subprocess.run(
        [str(python), "-c", "import gpt4all"], capture_output=True, timeout=120, check=False
    )
    return probe.returncode == 0
