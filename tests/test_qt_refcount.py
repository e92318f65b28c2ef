"""PySide6 must not drop references to None (or True/False) on calls that return nothing.

PySide6 6.12.0 did, on every such call (processEvents, update, setText, ...). On Python
3.11, where None is an ordinary object, the window then crashed after a few thousand calls
with "none_dealloc", at a random moment: a test that fails cleanly instead.
"""

from __future__ import annotations

import sys

from pytestqt.qtbot import QtBot


def test_qt_calls_that_return_nothing_leave_none_alone(qtbot: QtBot) -> None:
    from PySide6.QtWidgets import QApplication, QLabel

    label = QLabel("x")
    qtbot.addWidget(label)
    label.show()
    app = QApplication.instance()
    assert app is not None
    before = sys.getrefcount(None), sys.getrefcount(False)
    for _ in range(500):
        label.setText("y")
        label.update()
        app.processEvents()
    after = sys.getrefcount(None), sys.getrefcount(False)
    # Other threads may hold or drop a few references meanwhile; 1,500 calls were -1,500.
    assert after[0] - before[0] > -100, f"None lost {before[0] - after[0]} references"
    assert after[1] - before[1] > -100, f"False lost {before[1] - after[1]} references"
