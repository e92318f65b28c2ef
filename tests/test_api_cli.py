"""`hearth serve` as a user runs it: it prints the URL and the key, answers, and Ctrl-C stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx


def test_hearth_serve_prints_url_and_key_answers_and_stops_on_ctrl_c(hearth_home: Path) -> None:
    env = {**os.environ, "HEARTH_HOME": str(hearth_home), "HEARTH_NO_KEYRING": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--show-key"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        second = proc.stdout.readline().strip()
        assert first.startswith("Hearth API on http://127.0.0.1:"), first
        url = first.removeprefix("Hearth API on ")
        key = second.split()[1]
        assert second.startswith("key: hearth-") and "secrets.json" in second
        listed = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert listed.status_code == 200 and listed.json() == {"object": "list", "data": []}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err
