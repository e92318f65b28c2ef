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
