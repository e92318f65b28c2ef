"""The welcome: shown instead of an empty window while the library has no models, with this
machine's facts, and three ways to a first model (the starter, a download that fits, an
import from a folder), each ending in a refreshed window whose chat can use the model."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pytestqt.qtbot import QtBot

from app.hardware.profile import HardwareProfile, load_simulated_machines
from app.models.gguf import read_gguf_facts
from app.models.library import register_model
from app.store import open_default_database
from app.store.library import ModelSource, find_model, list_models
from tests.conftest import LAPTOP

if TYPE_CHECKING:
    from app.gui.main_window import MainWindow

CPU_BOX = "airgapped-lab-cpu-32gb"


@pytest.fixture
def window_factory(window_factory: Callable[..., MainWindow]) -> Callable[..., MainWindow]:
    """conftest's, leaving window.ini as it was (the welcome tests close many windows)."""
    return functools.partial(window_factory, remember_state=False)


def test_an_empty_library_opens_on_the_welcome_with_this_machines_facts(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], laptop: HardwareProfile
) -> None:
    window = window_factory(laptop)
    window.show()
    qtbot.waitUntil(window.welcome_shown, timeout=20_000)
    welcome = window.welcome
    qtbot.waitUntil(lambda: welcome.facts is not None, timeout=60_000)
    assert "RTX 3060 Laptop GPU" in welcome.machine.text()
    assert "16.0 GiB of RAM" in welcome.machine.text()
    facts = welcome.facts
    assert facts is not None and facts.models == 0
    assert f"Chat runs on: {facts.backend}." in welcome.backend.text()
    assert welcome.starter_button.isEnabled()
    assert welcome.import_folder_button.isEnabled() and welcome.import_file_button.isEnabled()
    # The tests run offline (HF_HUB_OFFLINE=1): the download choice is off, and says why.
    assert facts.recommendation is not None
    assert not welcome.download_button.isEnabled()
    assert not welcome.offline_note.isHidden()
    assert "HF_HUB_OFFLINE=1" in welcome.offline_note.text()
    # Any page leaves it, and it stays away until Help ▸ Welcome.
    window.show_page(window.page_names().index("models"))
    assert not window.welcome_shown() and window.pages.currentWidget() is window.models
    window.refresh()
    qtbot.waitUntil(lambda: window.runner.pool.activeThreadCount() == 0, timeout=20_000)
    assert not window.welcome_shown()
    window.show_welcome()
    assert window.welcome_shown()


def test_the_first_start_welcomes_even_with_models_and_later_starts_open_on_the_pages(
    qtbot: QtBot,
    window_factory: Callable[..., MainWindow],
    laptop: HardwareProfile,
    tiny_gguf: Callable[..., Path],
) -> None:
    """./scripts/run installs the starter before the window opens: the first start still
    shows the welcome (what this machine has, how to get more); once left, it stays away."""
    from app.gui.pages.welcome import SETTING_WELCOME_SEEN
    from app.store.settings import get_setting

    path = tiny_gguf()
    db = open_default_database()
    register_model(db, "tiny", path, read_gguf_facts(path), source=ModelSource.IMPORT, sha256=None)
    first = window_factory(laptop)
    first.show()
    qtbot.waitUntil(first.welcome_shown, timeout=20_000)
    first.welcome.skip_button.click()
    assert not first.welcome_shown()
    qtbot.waitUntil(lambda: bool(get_setting(db, SETTING_WELCOME_SEEN)), timeout=20_000)
    db.close()
    first.close()

    window = window_factory(laptop)
    window.show()
    qtbot.waitUntil(lambda: window.library_models == 1, timeout=20_000)
    assert not window.welcome_shown()


def test_with_the_starter_installed_the_welcome_offers_to_start_chatting(
    qtbot: QtBot,
    window_factory: Callable[..., MainWindow],
    laptop: HardwareProfile,
    tiny_gguf: Callable[..., Path],
) -> None:
    from app.models.starter import STARTER

    path = tiny_gguf()
    db = open_default_database()
    register_model(
        db, STARTER.name, path, read_gguf_facts(path), source=ModelSource.IMPORT, sha256=None
    )
    db.close()
    window = window_factory(laptop)
    window.show()
    qtbot.waitUntil(window.welcome_shown, timeout=20_000)
    welcome = window.welcome
    qtbot.waitUntil(lambda: welcome.facts is not None, timeout=20_000)
    assert welcome.starter_button.text() == "Start chatting" and welcome.starter_button.isEnabled()
    welcome.starter_button.click()
    assert not window.welcome_shown() and window.pages.currentWidget() is window.chat
    qtbot.waitUntil(lambda: window.chat.model_box.currentData() == STARTER.name, timeout=20_000)


def test_importing_a_gguf_from_a_folder_puts_it_in_chat(
    qtbot: QtBot,
    window_factory: Callable[..., MainWindow],
    laptop: HardwareProfile,
    tiny_gguf: Callable[..., Path],
    tmp_path: Path,
) -> None:
    usb = tmp_path / "usb"
    tiny_gguf("usb/Tiny-Chat-Q4_K_M.gguf")
    window = window_factory(laptop)
    window.show()
    qtbot.waitUntil(window.welcome_shown, timeout=20_000)
    with qtbot.waitSignal(window.welcome.model_added, timeout=60_000) as added:
        window.welcome.import_path(usb)  # what "Choose a folder…" does with the folder
    name = added.args[0]
    model = find_model(open_default_database(), name)
    assert model is not None and model.source is ModelSource.IMPORT
    assert model.path.is_relative_to(Path(window_hearth_models()))  # copied, not linked
    # The window refreshed: the chat page offers the model, and the welcome made way.
    qtbot.waitUntil(lambda: window.chat.model_box.findData(name) >= 0, timeout=20_000)
    assert not window.welcome_shown() and window.pages.currentWidget() is window.chat


def window_hearth_models() -> Path:
    from app.paths import hearth_paths

    return hearth_paths().models


def test_a_failed_import_is_one_sentence_and_nothing_changes(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], tmp_path: Path
) -> None:
    window = window_factory(load_simulated_machines()[CPU_BOX])
    (tmp_path / "empty").mkdir()
    with qtbot.waitSignal(window.welcome.work_failed, timeout=30_000) as failed:
        window.welcome.import_path(tmp_path / "empty")
    assert failed.args[0] and failed.args[0] in window.welcome.result.text()
    assert list_models(open_default_database()) == []
    assert window.welcome.import_folder_button.isEnabled()  # ready for another try


def test_the_starter_install_can_be_cancelled_and_then_installed(
    qtbot: QtBot,
    window_factory: Callable[..., MainWindow],
    tiny_gguf: Callable[..., Path],
    tmp_path: Path,
) -> None:
    from app.paths import hearth_paths
    from tests.test_starter import _make_parts

    spec = _make_parts(tiny_gguf(), tmp_path / "wheels", parts=3)
    window = window_factory(load_simulated_machines()[CPU_BOX])
    window.show()
    qtbot.waitUntil(window.welcome_shown, timeout=20_000)
    welcome = window.welcome
    welcome.starter_parts_dir = tmp_path / "wheels"
    welcome.starter_model = spec

    # Hold the page's worker so Cancel lands before the first byte is written.
    gate = threading.Event()
    welcome.worker.submit(gate.wait)
    welcome.install_starter()
    assert not welcome.work_box.isHidden() and welcome.cancel_button.isEnabled()
    assert not welcome.starter_button.isEnabled()  # one install at a time
    welcome.cancel()
    with qtbot.waitSignal(welcome.work_failed, timeout=30_000) as failed:
        gate.set()
    assert "cancelled" in failed.args[0]
    target = spec.target(hearth_paths())
    assert not target.exists() and not target.with_name(target.name + ".partial").exists()
    assert find_model(open_default_database(), spec.name) is None
    # The button comes back once the page has re-read what is installed (in the background).
    qtbot.waitUntil(
        lambda: welcome.work_box.isHidden() and welcome.starter_button.isEnabled(), timeout=20_000
    )

    moved: list[int] = []
    gate = threading.Event()
    welcome.worker.submit(gate.wait)
    welcome.install_starter()
    assert welcome.progress is not None
    welcome.progress.moved.connect(lambda done, total, what: moved.append(done))
    with qtbot.waitSignal(welcome.model_added, timeout=60_000):
        gate.set()
    assert moved and moved[-1] == spec.size
    assert find_model(open_default_database(), spec.name) is not None
    qtbot.waitUntil(lambda: window.chat.model_box.findData(spec.name) >= 0, timeout=20_000)
    assert not window.welcome_shown()


def test_the_recommended_download_goes_to_the_downloads_queue_and_then_to_chat(
    qtbot: QtBot, window_factory: Callable[..., MainWindow], hub: object
) -> None:
    from dataclasses import replace

    from app.gui.pages.welcome import Recommendation
    from app.store.downloads import DownloadState

    window = window_factory(load_simulated_machines()[CPU_BOX])
    window.show()
    welcome = window.welcome
    qtbot.waitUntil(lambda: welcome.facts is not None, timeout=60_000)
    facts = welcome.facts
    assert facts is not None and not facts.offline  # the test Hub is online
    # The catalog's repos are not on the test Hub: recommend one that is.
    rec = Recommendation(
        title="Tiny Chat",
        repo="hearth-test/Tiny-Chat-GGUF",
        quant="Q4_K_M",
        size=1,
        verdict="fits in RAM",
        library_name="tiny-chat-q4_k_m",
        summary="",
    )
    welcome._show(replace(facts, recommendation=rec))
    assert welcome.download_button.isEnabled()
    downloads = window.downloads
    welcome.download_recommended()
    qtbot.waitUntil(lambda: downloads.jobs.rowCount() == 1, timeout=30_000)
    assert window.pages.currentWidget() is downloads and not window.welcome_shown()
    qtbot.waitUntil(lambda: downloads.jobs.jobs[0].state == DownloadState.COMPLETE, timeout=60_000)
    assert find_model(open_default_database(), "tiny-chat-q4_k_m") is not None
    qtbot.waitUntil(lambda: window.chat.model_box.findData("tiny-chat-q4_k_m") >= 0, timeout=20_000)


@pytest.mark.parametrize(
    ("machine", "most_parameters"),
    [(LAPTOP, 8_300_000_000), (CPU_BOX, 4_200_000_000)],
)
def test_the_recommended_first_model_runs_well_on_the_machine(
    machine: str, most_parameters: int
) -> None:
    from app.gui.pages.welcome import recommend_download
    from app.hub.catalog import catalog_entries

    rec = recommend_download(load_simulated_machines()[machine])
    assert rec is not None
    entry = next(e for e in catalog_entries("chat") if e.repo == rec.repo)
    assert entry.parameters is not None and entry.parameters <= most_parameters
    assert rec.verdict in ("fits on GPU", "fits in RAM", "fits split GPU+CPU")
