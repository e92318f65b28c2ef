"""The background runner runs work off the UI thread and answers on it (real Qt, offscreen)."""

from __future__ import annotations

import threading

from pytestqt.qtbot import QtBot

from app.errors import HearthError
from app.gui.adapters.runner import BackgroundRunner


def test_work_runs_on_a_pool_thread_and_its_result_arrives_on_the_ui_thread(
    qtbot: QtBot,
) -> None:
    runner = BackgroundRunner()
    delivered_on: list[threading.Thread] = []
    job = runner.submit(lambda: threading.current_thread())
    job.done.connect(lambda _result: delivered_on.append(threading.current_thread()))
    with qtbot.waitSignal(job.done, timeout=10_000) as done:
        pass
    worked_on = done.args[0]
    assert worked_on is not threading.main_thread()
    assert delivered_on == [threading.main_thread()]
    assert runner.wait(1_000)


def test_a_hearth_error_arrives_as_its_sentence_and_a_bug_names_its_type(qtbot: QtBot) -> None:
    runner = BackgroundRunner()

    def refuse() -> None:
        raise HearthError("The model file is gone.", "Import it again.")

    def crash() -> None:
        raise KeyError("path")

    with qtbot.waitSignal(runner.submit(refuse).failed, timeout=10_000) as refused:
        pass
    assert refused.args[0] == str(HearthError("The model file is gone.", "Import it again."))
    with qtbot.waitSignal(runner.submit(crash).failed, timeout=10_000) as crashed:
        pass
    assert "KeyError" in crashed.args[0] and "log" in crashed.args[0]


def test_a_job_that_fails_does_not_report_success(qtbot: QtBot) -> None:
    runner = BackgroundRunner()
    results: list[object] = []

    def fail() -> object:
        raise HearthError("No.")

    job = runner.submit(fail)
    job.done.connect(results.append)
    with qtbot.waitSignal(job.failed, timeout=10_000):
        pass
    assert results == []
