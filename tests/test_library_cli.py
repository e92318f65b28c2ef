"""`hearth models list/show/rm/import/export` as a person runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.engines.chat_llama.client import ChatEngineClient
from app.engines.chat_llama.protocol import LoadRequest
from app.models.portable import import_model
from tests.pipeline_factory import write_tiny_pipeline

HEARTH = [sys.executable, "-m", "app"]


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEARTH, *args],
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin if stdin is not None else "",
        env=env or dict(os.environ),
    )


def test_import_list_show_and_rm_from_the_command_line(
    tiny_gguf: Callable[..., Path], hearth_home: Path
) -> None:
    src = tiny_gguf("Cli-Model-Q8_0.gguf")

    imported = run("models", "import", str(src))
    assert imported.returncode == 0, imported.stderr
    assert "Imported cli-model-q8_0 (chat" in imported.stdout and "sha256" in imported.stdout

    listed = run("models", "list")
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "KIND", "SIZE", "ARCH", "/"]
    assert line.split()[:2] == ["cli-model-q8_0", "chat"]
    assert "import" in line and "fits in RAM" in line and line.endswith("never")
    [row] = json.loads(run("models", "list", "--json").stdout)
    assert row["verdict"] == "fits in RAM" and row["source"] == "import"
    assert row["extra"]["imported_from"] == str(src) and len(row["sha256"]) == 64

    shown = run("models", "show", "cli-model-q8_0")
    assert shown.returncode == 0, shown.stderr
    assert row["sha256"] in shown.stdout
    assert "llama, 2 blocks" in shown.stdout and "On this machine: fits in RAM" in shown.stdout
    detail = json.loads(run("models", "show", "cli-model-q8_0", "--json").stdout)
    assert detail["facts"]["block_count"] == 2 and detail["plan"]["backend"] == "cpu"

    path = Path(row["path"])
    declined = run("models", "rm", "cli-model-q8_0", stdin="n\n")
    assert declined.returncode == 1 and "Kept cli-model-q8_0" in declined.stdout
    assert path.is_file()
    accepted = run("models", "rm", "cli-model-q8_0", stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "Removed cli-model-q8_0" in accepted.stdout
    assert not path.exists() and not (hearth_home / "models" / "imported").exists()
    assert json.loads(run("models", "list", "--json").stdout) == []
    assert src.is_file()  # the original on the "USB stick" is untouched


def test_rm_of_a_linked_model_only_forgets_it(tiny_gguf: Callable[..., Path]) -> None:
    src = tiny_gguf("linked-cli.gguf")
    assert run("models", "import", str(src), "--link", "--name", "mine").returncode == 0
    done = run("models", "rm", "mine", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"its files stay at {src}" in done.stdout
    assert src.is_file()


def test_a_linked_model_whose_file_went_or_broke_is_listed_and_shown_with_why(
    tiny_gguf: Callable[..., Path],
) -> None:
    gone, broken = tiny_gguf("gone.gguf"), tiny_gguf("broken.gguf", n_layers=3)
    for src in (gone, broken):
        assert run("models", "import", str(src), "--link").returncode == 0
    gone.unlink()
    broken.write_bytes(b"no longer a model" * 10)

    verdicts = {r["name"]: r["verdict"] for r in json.loads(run("models", "list", "--json").stdout)}
    assert verdicts == {"gone": "missing (file gone)", "broken": "damaged (see show)"}
    shown = run("models", "show", "broken")
    assert shown.returncode == 0, shown.stderr
    assert "On this machine: damaged (see show)\n" in shown.stdout
    assert "is not a GGUF model file" in shown.stdout  # the cause, in the model's own sentence
    assert f"There is no file at {gone}" in run("models", "show", "gone").stdout


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (b"definitely not a model" * 10, "random.gguf", "is not a GGUF model file"),
        (b"\x80\x04\x95pickle", "model.ckpt", "is a pickle checkpoint"),
        (None, "missing.gguf", "There is no file or folder at"),
    ],
)
def test_bad_imports_print_one_clear_error_and_no_traceback(
    tmp_path: Path, content: bytes | None, name: str, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    done = run("models", "import", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and expected in done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(run("models", "list", "--json").stdout) == []


def test_export_and_import_between_two_homes_offline(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HEARTH_HOME=str(tmp_path / "laptop"))
    # Any attempt to reach the network would go to a dead proxy and fail, not hang.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert run("models", "import", str(tiny_gguf("travel.gguf")), env=env).returncode == 0
    pipeline = write_tiny_pipeline(tmp_path / "painter")
    assert run("models", "import", str(pipeline), env=env).returncode == 0
    usb = tmp_path / "usb"

    exported = run("models", "export", "travel", "painter", "--to", str(usb), env=env)
    assert exported.returncode == 0, exported.stderr
    assert f"hearth models import {usb}" in exported.stdout

    env["HEARTH_HOME"] = str(tmp_path / "lab")
    imported = run("models", "import", str(usb), env=env)
    assert imported.returncode == 0, imported.stderr
    lab = {r["name"]: r for r in json.loads(run("models", "list", "--json", env=env).stdout)}
    env["HEARTH_HOME"] = str(tmp_path / "laptop")
    laptop = {r["name"]: r for r in json.loads(run("models", "list", "--json", env=env).stdout)}
    assert set(lab) == {"travel", "painter"}
    for name in lab:
        assert lab[name]["sha256"] == laptop[name]["sha256"]
        assert lab[name]["path"].startswith(str(tmp_path / "lab"))
    assert lab["painter"]["kind"] == "image" and lab["painter"]["verdict"] != "missing"


def test_unknown_model_names_are_clear_errors() -> None:
    for args in (("show", "ghost"), ("rm", "ghost", "--yes"), ("export", "ghost", "--to", "x")):
        done = run("models", *args)
        assert done.returncode == 1
        assert "No model named 'ghost'" in done.stderr and "hearth models list" in done.stderr


@pytest.mark.slow
def test_rm_refuses_while_the_model_is_loaded_and_works_after_unload(gemma_gguf: Path) -> None:
    [model] = import_model(gemma_gguf)
    client = ChatEngineClient()
    client.load(LoadRequest(str(model.path), n_ctx=512, n_gpu_layers=0, n_threads=2))
    try:
        refused = run("models", "rm", model.name, "--yes")
        assert refused.returncode == 1
        assert f"{model.name} is loaded by a Hearth chat worker (pid" in refused.stderr
        assert "Unload it first" in refused.stderr
        assert model.path.is_file()
        assert [r["name"] for r in json.loads(run("models", "list", "--json").stdout)] == [
            model.name
        ]
    finally:
        client.unload()

    done = run("models", "rm", model.name, "--yes")
    assert done.returncode == 0, done.stderr
    assert not model.path.exists()
    assert gemma_gguf.is_file()
