"""The main window shows the machine and the library with fit verdicts (real Qt, offscreen)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.models.gguf_info import read_gguf_facts
from app.models.library import register_chat_model
from app.store import open_default_database


def test_main_window_lists_models_with_verdicts(
    qtbot: QtBot, tiny_gguf: Callable[..., Path]
) -> None:
    path = tiny_gguf()
    register_chat_model(
        open_default_database(), "tiny", path, read_gguf_facts(path), source="import", sha256=None
    )
    from app.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.table.rowCount() == 1, timeout=20_000)
    assert window.table.item(0, 0).text() == "tiny"
    assert window.table.item(0, 3).text() == "fits in RAM"
    assert "cores" in window.machine.text()
    # The GUI process must never load the inference libraries (DESIGN.md, Processes).
    assert "llama_cpp" not in sys.modules and "torch" not in sys.modules


def test_missing_x11_libraries_are_named_with_the_install_command(monkeypatch) -> None:
    import ctypes.util

    from app.gui import launch

    monkeypatch.setattr(
        ctypes.util, "find_library", lambda name: None if name == "xcb-cursor" else f"lib{name}.so"
    )
    problem = launch.display_problem({"DISPLAY": ":0"}, platform="linux")
    assert problem is not None
    assert "sudo apt install libxcb-cursor0)" in problem
    assert launch.display_problem({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}) is None
    assert launch.display_problem({}, platform="darwin") is None


def test_chat_page_queues_a_message_typed_while_loading_and_streams_the_answer(
    qtbot: QtBot, gemma_gguf: Path
) -> None:
    from app.engine.chat import Sampling
    from app.gui.main_window import MainWindow
    from app.store import conversations as convs

    db = open_default_database()
    register_chat_model(
        db, "gemma", gemma_gguf, read_gguf_facts(gemma_gguf), source="import", sha256=None
    )
    window = MainWindow()
    qtbot.addWidget(window)
    chat = window.chat
    chat.controller.worker.sampling = Sampling(temperature=0.0, max_tokens=12)
    assert chat.model_box.currentText() == "gemma"
    tokens: list[str] = []
    chat.controller.worker.token.connect(lambda a, r: tokens.append(a))
    chat.input.setPlainText("Write a sentence about the sea.")
    with qtbot.waitSignal(chat.controller.worker.reply_done, timeout=120_000) as done:
        chat.send()  # no model loaded yet: the message waits, the load starts
        assert "queued" in chat.status.text()
    reply = done.args[0]
    assert reply.state.value == "complete" and tokens
    assert reply.content.strip() in chat.transcript.toPlainText()
    assert "gemma" in chat.status.text() and "loaded in" in chat.status.text()
    assert "tok/s" in chat.metrics.text()
    stored = convs.branch(db, chat.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert chat.conversations.count() == 1
    pid = chat.controller.worker.session.client.pid
    window.close()
    import psutil

    if psutil.pid_exists(pid):  # closing the window ends the worker: memory goes back
        _gone, alive = psutil.wait_procs([psutil.Process(pid)], timeout=30)
        assert not alive or alive[0].status() == psutil.STATUS_ZOMBIE
    assert "llama_cpp" not in sys.modules
