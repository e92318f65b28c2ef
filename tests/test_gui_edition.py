"""The chat-only edition's window: the Images page says image generation is not in this
edition and what to do, in the theme's colours; the window never imports the Images page or
the image runner; the Models page and the welcome offer no images (real Qt, offscreen)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app.hardware.profile import HardwareProfile

if TYPE_CHECKING:
    from app.gui.main_window import MainWindow


@pytest.fixture
def chat_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This Hearth is the chat-only edition (as an installer without torch writes it)."""
    from app import edition

    monkeypatch.setattr(edition, "images_available", lambda: False)


@pytest.fixture
def window(qtbot: QtBot, laptop: HardwareProfile, chat_only: None) -> Iterator[MainWindow]:
    from app.gui.main_window import MainWindow
    from app.gui.theme import Theme, apply_theme

    made = MainWindow(hardware=laptop)
    made.remember_state = False
    qtbot.addWidget(made)
    yield made
    made.close()
    apply_theme(QGuiApplication.instance(), Theme.LIGHT)  # type: ignore[arg-type]


def test_the_images_page_says_images_are_not_in_this_edition_and_what_to_do(
    window: MainWindow,
) -> None:
    from app.gui.pages.not_in_edition import NotInEditionPage
    from app.gui.theme import DARK, LIGHT

    window.show()
    window.show_page(window.page_names().index("images"))  # still in the sidebar, Ctrl+2
    page = window.pages.currentWidget()
    assert isinstance(page, NotInEditionPage) and page is window.images
    assert "Image generation is not in this edition of Hearth" in page.headline.text()
    assert "torch" in page.detail.text()
    assert "Install the full edition" in page.remedy.text()
    assert LIGHT.muted in page.detail.styleSheet()
    window.set_theme("dark")
    assert DARK.muted in page.detail.styleSheet() and DARK.text in page.remedy.styleSheet()

    # What would reach the Images page elsewhere leaves this one on screen, no error.
    window.refresh()
    window.show_page(0)
    window.open_in_images("tiny-sd")
    assert window.pages.currentWidget() is page
    assert window.status.image_model is None and window.models_in_use() == set()


def test_the_chat_only_window_never_imports_the_images_page_or_the_image_runner() -> None:
    """In a fresh process, every page built (as a moment after start): none of the image
    modules; the full edition's window, the same way, has them (so this check can fail)."""
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import app.edition\n"
        "if sys.argv[1] == 'chat':\n"
        "    app.edition.images_available = lambda: False\n"
        "qt = QApplication([])\n"
        "from app.gui.app import open_main_window\n"
        "from app.gui.main_window import PAGE_KEYS\n"
        "window = open_main_window(qt)\n"
        "def check():\n"
        "    if all(window.built(key) is not None for key in PAGE_KEYS):\n"
        "        gone = [m for m in ('app.gui.pages.images', 'app.gui.adapters.image_runner')\n"
        "                if m not in sys.modules]\n"
        "        print('not imported:', gone); window.close(); qt.quit()\n"
        "timer = QTimer(); timer.timeout.connect(check); timer.start(50)\n"
        "QTimer.singleShot(90_000, qt.quit)\n"
        "qt.exec()\n"
    )
    for edition, expected in (
        ("chat", "['app.gui.pages.images', 'app.gui.adapters.image_runner']"),
        ("full", "[]"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, edition],
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"not imported: {expected}" in done.stdout, (edition, done.stdout + done.stderr)


def test_the_models_page_lists_an_image_model_but_open_in_images_is_off_and_says_why(
    qtbot: QtBot, laptop: HardwareProfile, chat_only: None, tiny_pipeline: Path
) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.models import ModelsPage
    from app.models.diffusers_folder import read_diffusers_facts
    from app.models.library import register_model
    from app.store import open_default_database
    from app.store.library import ModelSource

    db = open_default_database()
    facts = read_diffusers_facts(tiny_pipeline)
    register_model(db, "tiny-sd", tiny_pipeline, facts, source=ModelSource.IMPORT, sha256=None)
    db.close()
    runner = BackgroundRunner()
    page = ModelsPage(runner, hardware=laptop)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.library_shown, timeout=60_000):
        page.refresh()
    assert page.select("tiny-sd")
    button = page.details.images_button
    assert button.isVisibleTo(page.details) and not button.isEnabled()
    assert "not in this edition" in button.toolTip() and "full edition" in button.toolTip()
    runner.wait()


def test_the_welcome_of_the_chat_only_edition_offers_chat_not_images(
    qtbot: QtBot, chat_only: None
) -> None:
    from app.gui.adapters.runner import BackgroundRunner
    from app.gui.pages.welcome import WelcomePage

    runner = BackgroundRunner()
    page = WelcomePage(runner)
    qtbot.addWidget(page)
    assert page.intro.text().startswith("Chat with AI models")
    assert "images" not in page.intro.text()
    page.shutdown()
    runner.wait()
