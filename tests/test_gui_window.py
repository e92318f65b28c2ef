"""The window's shell: sidebar pages and their shortcuts, themes, remembered state, the
System and Settings pages, and `hearth --screenshot` (real Qt, offscreen)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QGuiApplication, QKeySequence, QPalette
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from app.hardware.profile import HardwareProfile, load_simulated_machines
from app.hub.config import hub_config

if TYPE_CHECKING:
    from app.gui.main_window import MainWindow

SIZE = ("--size", "1024x640", "--theme")


@pytest.fixture
def window_factory(
    window_factory: Callable[..., MainWindow],
) -> Iterator[Callable[..., MainWindow]]:
    """conftest's, and the light theme back afterwards (a test may switch to dark)."""
    yield window_factory
    from app.gui.theme import Theme, apply_theme

    app = QGuiApplication.instance()
    apply_theme(app, Theme.LIGHT)  # type: ignore[arg-type]


def test_the_sidebar_has_every_page_and_ctrl_number_opens_each(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    window = window_factory(laptop)
    with qtbot.waitActive(window):  # window shortcuts need the active window
        window.show()
        window.activateWindow()
    assert window.page_names() == [
        "chat",
        "images",
        "models",
        "downloads",
        "system",
        "settings",
        "server",
    ]
    pages = (
        window.chat,
        window.images,
        window.models,
        window.downloads,
        window.system,
        window.settings_page,
        window.server,
    )
    for n, page in enumerate(pages):
        QTest.keySequence(window, QKeySequence(f"Ctrl+{n + 1}"))
        assert window.pages.currentWidget() is page
    QTest.keySequence(window, QKeySequence("Ctrl+1"))
    QTest.keySequence(window, QKeySequence("Ctrl+,"))
    assert window.pages.currentWidget() is window.settings_page
    dialog = window.show_shortcuts()
    assert dialog.isVisible()
    dialog.close()


def test_every_page_fits_the_smallest_window_people_use(
    window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    """1024x640 (a netbook, or a window beside another): no page asks for more."""
    window = window_factory(laptop)
    wanted = window.minimumSizeHint()
    assert wanted.width() <= 1024 and wanted.height() <= 640, wanted


def test_size_and_last_page_are_remembered(
    window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    window = window_factory(laptop)
    window.show()
    window.resize(900, 560)
    window.show_page(4)
    window.close()
    again = window_factory(laptop)
    again.show()
    assert again.pages.currentWidget() is again.system
    # (The offscreen screen is 800 wide, so Qt clamps the width on restore: the height says.)
    assert again.height() == 560


def test_the_system_page_shows_the_doctor_report_and_copies_it_for_a_bug_report(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    window = window_factory(laptop)
    with qtbot.waitSignal(window.system.shown, timeout=60_000):
        window.show_page(4)  # the report is made when the page is first shown
    text = window.system.text.toPlainText()
    assert "RTX 3060 Laptop GPU" in text and "Builds" in text
    window.system.copy_report()
    copied = QGuiApplication.clipboard().text()
    assert copied.startswith("Hearth 0.1.0 on ") and "logs: " in copied and text in copied


def test_settings_are_stored_where_the_cli_reads_them(
    qtbot: QtBot,
    window_factory: Callable[..., MainWindow],
    laptop: HardwareProfile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    window = window_factory(laptop)
    page = window.settings_page
    qtbot.waitUntil(lambda: page.current is not None, timeout=20_000)
    page.offline.setChecked(True)
    page.endpoint.setText("http://mirror.lab:8080/")
    with qtbot.waitSignal(page.saved, timeout=20_000):
        page.save()
    config = hub_config()
    assert config.offline and config.offline_reason == "offline mode is on in Settings"
    assert config.endpoint == "http://mirror.lab:8080"


def test_switching_themes_repaints_everything_from_the_theme(
    window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    from app.gui.adapters.library_table import verdict_colour
    from app.gui.theme import DARK, LIGHT, colours
    from app.planner import FitVerdict

    window = window_factory(laptop)
    app = QGuiApplication.instance()
    assert app is not None
    window.set_theme("dark")
    assert QGuiApplication.palette().color(QPalette.ColorRole.Window).name() == DARK.window
    assert colours() is DARK and verdict_colour(FitVerdict.WONT_FIT) == DARK.bad
    assert DARK.muted in window.chat.metrics.styleSheet()
    window.set_theme("light")
    assert QGuiApplication.palette().color(QPalette.ColorRole.Base).name() == LIGHT.base
    assert LIGHT.muted in window.chat.metrics.styleSheet()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshot_renders_a_page_to_a_png_and_exits(tmp_path: Path, theme: str) -> None:
    out = tmp_path / f"models-{theme}.png"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    done = subprocess.run(
        [sys.executable, "-m", "app", "--screenshot", str(out), "--page", "models", *SIZE, theme],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert png_size(out) == (1024, 640)
    assert not (Path(os.environ["HEARTH_HOME"]) / "config" / "window.ini").exists()


def test_the_images_page_makes_an_image_and_the_gallery_grows(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], tiny_pipeline: Path
) -> None:
    from app.models.diffusers_folder import read_diffusers_facts
    from app.models.library import register_model
    from app.store import open_default_database
    from app.store.library import ModelSource

    db = open_default_database()
    facts = read_diffusers_facts(tiny_pipeline)
    register_model(db, "tiny-sd", tiny_pipeline, facts, source=ModelSource.IMPORT, sha256=None)
    window = window_factory(load_simulated_machines()["airgapped-lab-cpu-32gb"])
    window.show()
    window.show_page(1)
    page = window.images
    assert window.pages.currentWidget() is page
    qtbot.waitUntil(lambda: page.model_box.count() == 1, timeout=20_000)
    assert page.size_box.currentData() == (64, 64)  # the tiny model's native size
    page.prompt.setPlainText("a red square")
    page.steps.setValue(2)
    seed = page.seed.value()
    steps: list[tuple[int, float]] = []
    page.image_runner.worker.step.connect(lambda i, n, s, total, sps, eta: steps.append((s, sps)))
    with qtbot.waitSignal(page.finished_shown, timeout=300_000) as done:
        page.generate()
    assert done.args == ["complete"]
    assert [s for s, _ in steps] == [1, 2] and all(sps > 0 for _, sps in steps)
    assert page.gallery.rowCount() == 1
    assert page.seed.value() != seed  # a new seed for the next image (not kept)
    qtbot.waitUntil(lambda: page.gallery.thumbnails_loaded == 1, timeout=20_000)
    made = page.selected
    assert made is not None and made.params.prompt == "a red square"
    assert made.params.seed == seed and "a red square" in page.details.text()

    page.prompt.setPlainText("something else")
    page.use_again()
    assert page.prompt.toPlainText() == "a red square"
    assert page.seed.value() == seed and page.seed_lock.isChecked()

    page.delete(confirm=False)
    qtbot.waitUntil(lambda: page.gallery.rowCount() == 0, timeout=20_000)
    assert not made.path.exists()


def test_the_downloads_page_finds_downloads_pauses_resumes_and_cancels(
    qtbot: QtBot,
    window_factory: Callable[..., MainWindow],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.store import open_default_database
    from app.store.downloads import DownloadState
    from app.store.library import find_model
    from tests.hubserver import point_hub_client_at, running_hub

    cpu = load_simulated_machines()["airgapped-lab-cpu-32gb"]
    with running_hub(tmp_path / "hub-files", lifetime_s=180) as hub:
        point_hub_client_at(hub, monkeypatch, tmp_path)
        window = window_factory(cpu)
        page = window.downloads
        assert page.service.queue is None  # nothing to resume: no queue threads yet
        window.show()
        window.show_page(window.page_names().index("downloads"))
        qtbot.waitUntil(lambda: page.service.queue is not None, timeout=20_000)
        page.query.setText("tiny-chat")
        with qtbot.waitSignal(page.results_shown, timeout=30_000) as found:
            page.search()
        repos = [m.repo for m in found.args[0]]
        assert "hearth-test/Tiny-Chat-GGUF" in repos
        with qtbot.waitSignal(page.variants_shown, timeout=30_000) as listed:
            page.results.setCurrentRow(repos.index("hearth-test/Tiny-Chat-GGUF"))
        variants = listed.args[0]
        [suggested] = [v for v in variants if v.suggested]
        assert page.variant_table.currentRow() == variants.index(suggested)
        assert "suggested" in page.variant_table.item(variants.index(suggested), 0).text()

        # Hold the transfer mid-file so pause and resume act on a moving download.
        served = hub.repos["hearth-test/Tiny-Chat-GGUF"].file(suggested.files[0].path)
        assert served is not None
        served.hold_at = 32 * 1024
        page.download_selected()
        qtbot.waitUntil(lambda: page.jobs.rowCount() == 1, timeout=20_000)
        page.table.selectRow(0)
        assert served.reached_hold.wait(30)
        page.pause_button.click()
        # The pause is applied on a pool thread: let it land before the Hub lets go.
        qtbot.waitUntil(lambda: window.runner.pool.activeThreadCount() == 0, timeout=20_000)
        served.release.set()
        qtbot.waitUntil(lambda: page.jobs.jobs[0].state == DownloadState.PAUSED, timeout=30_000)
        assert page.resume_button.isEnabled() and not page.pause_button.isEnabled()
        served.hold_at = None
        page.resume_button.click()
        qtbot.waitUntil(lambda: page.jobs.jobs[0].state == DownloadState.COMPLETE, timeout=60_000)
        assert find_model(open_default_database(), suggested.name) is not None

        # A second one, cancelled while it waits: its partial files go.
        other = next(v for v in variants if not v.suggested)
        served_other = hub.repos["hearth-test/Tiny-Chat-GGUF"].file(other.files[0].path)
        assert served_other is not None
        served_other.hold_at = 16 * 1024
        page.variant_table.selectRow(variants.index(other))
        page.download_selected()
        qtbot.waitUntil(lambda: page.jobs.rowCount() == 2, timeout=20_000)
        assert served_other.reached_hold.wait(30)
        page.table.selectRow(1)
        page.cancel_button.click()
        qtbot.waitUntil(lambda: window.runner.pool.activeThreadCount() == 0, timeout=20_000)
        served_other.release.set()
        qtbot.waitUntil(lambda: page.jobs.jobs[1].state == DownloadState.CANCELLED, timeout=30_000)
        assert find_model(open_default_database(), other.name) is None


def test_answers_render_as_markdown_with_code_to_copy_and_no_raw_html(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    from app.store import conversations as convs
    from app.store import open_default_database

    answer = (
        "Here is **bold** and `inline`.\n\n```python\nprint('hi')\n```\n\n"
        "<img src=x onerror=alert(1)> <script>alert(2)</script>"
    )
    db = open_default_database()
    cid = convs.create_conversation(db, model="tiny", title="Code")
    user = convs.add_message(db, cid, "user", "Show me **code**", parent_id=None)
    convs.add_message(db, cid, "assistant", answer, parent_id=user)
    db.close()
    window = window_factory(laptop)
    chat = window.chat
    # On start the window reopens the chat last used (a click on it shows nothing new).
    qtbot.waitUntil(lambda: "Here is bold" in chat.transcript.toPlainText(), timeout=20_000)
    assert chat.conversation_list.rowCount() == 1
    text = chat.transcript.toPlainText()
    assert "Here is bold and inline." in text  # Markdown, not asterisks
    assert "Show me **code**" in text  # what the person typed stays as typed
    assert "print('hi')" in text and "Copy" in text
    assert "<script>alert(2)</script>" in text  # raw HTML is shown as text, never run
    assert chat.code_blocks == ["print('hi')\n"]
    chat._on_link(QUrl("copy:0"))
    assert QGuiApplication.clipboard().text() == "print('hi')\n"


def test_the_status_bar_shows_the_loaded_model_where_it_runs_and_the_memory(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], tiny_gguf: Callable[..., Path]
) -> None:
    """A real llama.cpp load of a tiny GGUF: progress while it loads, then model and backend."""
    from app.models.gguf import read_gguf_facts
    from app.models.library import register_model
    from app.sessions.preferences import LoadPreferences, save_load_preferences
    from app.store import open_default_database
    from app.store.library import ModelSource

    path = tiny_gguf()
    db = open_default_database()
    register_model(db, "tiny", path, read_gguf_facts(path), source=ModelSource.IMPORT, sha256=None)
    save_load_preferences(db, LoadPreferences(threads=1))  # chosen in Settings: the GUI obeys
    db.close()
    window = window_factory(load_simulated_machines()["airgapped-lab-cpu-32gb"])
    status = window.status
    assert status.chat_label.text() == "No chat model loaded"
    assert status.progress.isHidden() and status.cancel_button.isHidden()
    qtbot.waitUntil(lambda: status.memory is not None, timeout=20_000)
    assert status.memory_label.text().startswith("RAM ") and " / " in status.memory_label.text()
    assert window.api_label.parent() is window.statusBar()  # the API label is still there

    class Recorder(QObject):  # lives in the UI thread: called after the status bar's slot
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[bool] = []

        @Slot(float, object)
        def record(self, _fraction: float, _eta: object) -> None:
            self.seen.append(status.progress.isVisible())

    recorder = Recorder()
    worker = window.chat.chat_runner.worker
    worker.load_progress.connect(recorder.record)
    window.show()
    with qtbot.waitSignal(worker.loaded, timeout=120_000):
        window.chat.chat_runner.load("tiny")
    assert recorder.seen and all(recorder.seen)  # the bar showed while it loaded
    qtbot.waitUntil(lambda: status.chat_label.text() == "Chat: tiny", timeout=20_000)
    assert status.backend_label.text().startswith("CPU · no GPU layers · ")
    assert status.backend_label.text().endswith(" 1 threads") and status.backend_label.isVisible()
    assert status.progress.isHidden() and status.cancel_button.isHidden()

    # The Models page knows what is loaded: deleting it is refused, with the reason.
    assert window.models_in_use() == {"tiny"}
    qtbot.waitUntil(lambda: window.models.library.row_named("tiny") >= 0, timeout=30_000)
    with qtbot.waitSignal(window.models.refused, timeout=5_000) as refused:
        assert window.models.delete_model("tiny") is None
    assert "tiny" in refused.args[0] and path.exists()
    # "Chat with it" opens the Chat page with that model picked.
    window.chat.model_box.setCurrentIndex(-1)
    window.chat_with("tiny")
    assert window.pages.currentWidget() is window.chat
    qtbot.waitUntil(lambda: window.chat.model_box.currentData() == "tiny", timeout=20_000)


def test_the_status_bar_cancel_button_cancels_the_chat_load(
    window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    window = window_factory(laptop)
    status = window.status
    status.on_chat_progress(0.25, 12.0)
    assert not status.progress.isHidden() and "25%" in status.eta_label.text()
    assert "12 s left" in status.eta_label.text()
    status.cancel_button.click()
    assert window.chat.chat_runner.worker.cancel_load.is_set()
    status.on_chat_failed("The load was cancelled.")
    assert status.progress.isHidden()


def test_screenshot_of_the_welcome(tmp_path: Path) -> None:
    out = tmp_path / "welcome.png"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    done = subprocess.run(
        [sys.executable, "-m", "app", "--screenshot", str(out), "--page", "welcome", *SIZE, "dark"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert png_size(out) == (1024, 640)
