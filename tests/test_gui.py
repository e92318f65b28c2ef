"""The main window shows the machine and the library with fit verdicts (real Qt, offscreen)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pytestqt.qtbot import QtBot

from app.hardware.profile import HardwareProfile, load_simulated_machines
from app.models.diffusers_folder import read_diffusers_facts
from app.models.gguf import read_gguf_facts
from app.models.library import register_model
from app.planner import FitVerdict, plan_image_load, plan_load
from app.store import open_default_database
from app.store.library import ModelSource
from tests.conftest import LAPTOP
from tests.pipeline_factory import write_tiny_pipeline

NETBOOK = "netbook-4gb"

if TYPE_CHECKING:
    from app.gui.main_window import MainWindow

    OpenWindow = Callable[..., MainWindow]


@pytest.fixture
def library(tiny_gguf: Callable[..., Path], tmp_path: Path) -> dict[str, Path]:
    """A chat model (a tiny GGUF) and an image model (a tiny diffusers folder) in the library."""
    gguf = tiny_gguf()
    pipeline = write_tiny_pipeline(tmp_path / "tiny-sd")
    db = open_default_database()
    try:
        register_model(
            db, "tiny", gguf, read_gguf_facts(gguf), source=ModelSource.IMPORT, sha256=None
        )
        register_model(
            db,
            "tiny-sd",
            pipeline,
            read_diffusers_facts(pipeline),
            source=ModelSource.IMPORT,
            sha256=None,
        )
    finally:
        db.close()
    return {"tiny": gguf, "tiny-sd": pipeline}


def shown_library(qtbot: QtBot, window: MainWindow) -> dict[str, tuple[str, str, str]]:
    """Wait for the Models page to show the library: name -> (kind, verdict, plan) texts."""
    from app.gui.adapters.library_table import Column

    with qtbot.waitSignal(window.models.library_shown, timeout=60_000):
        pass
    model = window.models.library
    cells = {}
    for row in range(model.rowCount()):

        def text(column: Column, row: int = row) -> str:
            return str(model.data(model.index(row, column)))

        cells[text(Column.MODEL)] = (text(Column.KIND), text(Column.VERDICT), text(Column.PLAN))
    return cells


def test_models_page_plans_chat_and_image_models_on_the_given_machine(
    qtbot: QtBot, window_factory: OpenWindow, library: dict[str, Path], laptop: HardwareProfile
) -> None:
    window = window_factory(laptop)
    cells = shown_library(qtbot, window)
    chat_plan = plan_load(laptop, read_gguf_facts(library["tiny"]))
    image_plan = plan_image_load(laptop, read_diffusers_facts(library["tiny-sd"]))
    assert chat_plan.verdict == image_plan.verdict == FitVerdict.FITS_GPU  # the laptop's GPU
    assert cells["tiny"][:2] == ("chat", "fits on GPU")
    assert cells["tiny"][2].startswith("cuda, ")
    # An image model is planned as an image model, not read as a (broken) GGUF file.
    assert cells["tiny-sd"][:2] == ("image", "fits on GPU")
    assert cells["tiny-sd"][2].startswith("cuda (float16)")
    assert "RTX 3060 Laptop GPU" in window.models.machine.text()
    assert "cores" in window.models.machine.text()
    assert "2 models in the library" in window.statusBar().currentMessage()


def test_verdicts_follow_the_machine_the_window_is_given(
    qtbot: QtBot, window_factory: OpenWindow, library: dict[str, Path]
) -> None:
    netbook = load_simulated_machines()[NETBOOK]
    window = window_factory(netbook)
    cells = shown_library(qtbot, window)
    expected = plan_load(netbook, read_gguf_facts(library["tiny"])).verdict.value
    assert cells["tiny"][1] == expected == "fits in RAM"  # no GPU on the netbook
    assert cells["tiny-sd"][2].startswith("cpu ")
    assert "GPUs: none" in window.models.machine.text()


def test_a_model_whose_file_is_gone_shows_why(
    qtbot: QtBot, window_factory: OpenWindow, library: dict[str, Path], laptop: HardwareProfile
) -> None:
    library["tiny"].unlink()
    window = window_factory(laptop)
    cells = shown_library(qtbot, window)
    assert cells["tiny"][1] == "unusable"
    assert str(library["tiny"]) in cells["tiny"][2]
    assert cells["tiny-sd"][1] == "fits on GPU"  # one bad row does not hide the others


def test_window_and_cli_give_the_same_verdicts_on_this_machine(
    qtbot: QtBot, window_factory: OpenWindow, library: dict[str, Path]
) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "app", "models", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert listed.returncode == 0, listed.stderr
    cli = {row["name"]: row["verdict"] for row in json.loads(listed.stdout)}
    window = window_factory()  # this machine, detected the way the CLI detects it
    cells = shown_library(qtbot, window)
    assert {name: cell[1] for name, cell in cells.items()} == cli
    assert set(cli) == {"tiny", "tiny-sd"}


def test_the_window_reads_the_database_only_off_the_ui_thread_and_closes_it(
    qtbot: QtBot,
    window_factory: OpenWindow,
    library: dict[str, Path],
    laptop: HardwareProfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.store import conversations as convs

    db = open_default_database()
    try:
        cid = convs.create_conversation(db, model="tiny", title="About the sea")
        convs.add_message(db, cid, "user", "Tell me about the sea.", parent_id=None)
    finally:
        db.close()

    class TrackedConnection(sqlite3.Connection):
        closed = False

        def close(self) -> None:
            self.closed = True
            super().close()

    opened: list[tuple[threading.Thread, TrackedConnection]] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, factory=TrackedConnection, **kwargs)
        assert isinstance(conn, TrackedConnection)
        opened.append((threading.current_thread(), conn))
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    window = window_factory(laptop)
    chat = window.chat
    shown_library(qtbot, window)
    qtbot.waitUntil(lambda: chat.conversation_list.rowCount() == 1, timeout=20_000)
    # open_conversation, not a click: the start may already have made this row current (it
    # reopens the latest chat), and a click on the current row changes nothing.
    with qtbot.waitSignal(chat.transcript_shown, timeout=20_000) as shown:
        chat.open_conversation(cid)
    assert shown.args == [cid]
    assert "Tell me about the sea." in chat.transcript.toPlainText()
    with qtbot.waitSignal(chat.lists_shown, timeout=20_000):
        window.refresh()
    assert chat.model_box.currentText() == "tiny"  # image models are not offered for chat
    window.close()

    assert opened, "the window never opened the database"
    on_ui_thread = [t for t, _ in opened if t is threading.main_thread()]
    assert not on_ui_thread, "the UI thread opened the database"
    assert all(conn.closed for _, conn in opened), "a connection was left open"


def test_the_window_process_never_imports_the_inference_libraries(
    library: dict[str, Path],
) -> None:
    """Built in a fresh interpreter, so other tests' imports cannot hide (or fake) one."""
    script = f"""
import sys
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.gui.main_window import MainWindow
from app.hardware.profile import load_simulated_machines
window = MainWindow(hardware=load_simulated_machines()[{LAPTOP!r}])
shown = []
window.models.library_shown.connect(lambda planned: (shown.append(planned), app.quit()))
app.exec()
window.close()
assert len(shown[0].models) == 2
forbidden = ("llama_cpp", "torch", "diffusers", "app.engines.chat_llama.worker",
             "app.engines.image_diffusers.worker")
print(sorted(m for m in forbidden if m in sys.modules))
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_missing_x11_libraries_are_named_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes.util

    from app.gui import app as launch

    monkeypatch.setattr(
        ctypes.util, "find_library", lambda name: None if name == "xcb-cursor" else f"lib{name}.so"
    )
    problem = launch.display_problem({"DISPLAY": ":0"}, platform="linux")
    assert problem is not None
    assert "sudo apt install libxcb-cursor0)" in problem
    assert launch.display_problem({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}) is None
    assert launch.display_problem({}, platform="darwin") is None


def test_chat_page_queues_a_message_typed_while_loading_and_streams_the_answer(
    qtbot: QtBot, window_factory: OpenWindow, gemma_gguf: Path
) -> None:
    from app.sessions.chat import Sampling
    from app.store import conversations as convs

    db = open_default_database()
    register_model(
        db,
        "gemma",
        gemma_gguf,
        read_gguf_facts(gemma_gguf),
        source=ModelSource.IMPORT,
        sha256=None,
    )
    window = window_factory()
    chat = window.chat
    worker = chat.chat_runner.worker
    worker.sampling = Sampling(temperature=0.0, max_tokens=12)
    qtbot.waitUntil(lambda: chat.model_box.currentText() == "gemma", timeout=20_000)
    tokens: list[str] = []
    worker.token.connect(lambda a, r: tokens.append(a))
    chat.input.setPlainText("Write a sentence about the sea.")
    with qtbot.waitSignal(chat.reply_shown, timeout=120_000) as done:
        chat.send()  # no model loaded yet: the message waits, the load starts
        assert "queued" in chat.status.text()
    reply = done.args[0]
    assert reply.state.value == "complete" and tokens
    assert reply.content.strip() in chat.transcript.toPlainText()
    assert "gemma" in chat.status.text() and "loaded in" in chat.status.text()
    assert "tok/s" in chat.metrics.text()
    assert chat.conversation_id is not None
    stored = convs.branch(db, chat.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    qtbot.waitUntil(lambda: chat.conversation_list.rowCount() == 1, timeout=20_000)
    assert worker.session is not None
    pid = worker.session.client.pid
    window.close()
    import psutil

    if psutil.pid_exists(pid):  # closing the window ends the worker: memory goes back
        _gone, alive = psutil.wait_procs([psutil.Process(pid)], timeout=30)
        assert not alive or alive[0].status() == psutil.STATUS_ZOMBIE
    assert "llama_cpp" not in sys.modules
