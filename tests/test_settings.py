"""Settings: the load defaults (backend, GPU layers, threads, context), the models folder, the
Hub token and offline mode; stored once, used by the window and the command line alike
(flags win), and bad values refused with one sentence of cause and what to do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pytestqt.qtbot import QtBot

from app.cli.main import build_parser, main
from app.hardware.profile import Backend, load_simulated_machines
from app.sessions.preferences import (
    SETTING_THREADS,
    LoadPreferences,
    PreferenceError,
    load_settings,
    read_load_preferences,
    save_load_preferences,
)
from app.store import open_default_database
from app.store.settings import set_setting

if TYPE_CHECKING:
    from app.gui.main_window import MainWindow
    from tests.conftest import FakeKeyring

MODEL = "qwen2.5-1.5b-instruct-q4_k_m"  # a reference model: plans without a file
LAPTOP = "windows-laptop-rtx3060-6gb-16gb"
CPU_BOX = "airgapped-lab-cpu-32gb"


def store(prefs: LoadPreferences) -> LoadPreferences:
    db = open_default_database()
    try:
        return save_load_preferences(db, prefs)
    finally:
        db.close()


def plan_output(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["plan", MODEL, *args]) == 0
    return capsys.readouterr().out


# --- the store and the one conversion --------------------------------------------------------


def test_load_defaults_round_trip_through_the_store() -> None:
    assert read_load_preferences() == LoadPreferences()  # nothing chosen: all automatic
    saved = store(LoadPreferences(backend=Backend.CPU, gpu_layers=0, threads=3, n_ctx=8192))
    assert saved == read_load_preferences()
    assert saved == LoadPreferences(Backend.CPU, 0, 3, 8192)
    settings = load_settings()
    assert (settings.backend, settings.gpu_layers, settings.threads, settings.n_ctx) == (
        Backend.CPU,
        0,
        3,
        8192,
    )
    # What the face passes (a flag) wins over the stored default.
    assert load_settings(threads=7, n_ctx=4096).threads == 7
    assert load_settings(threads=7, n_ctx=4096).n_ctx == 4096
    assert load_settings(backend="cuda").backend is Backend.CUDA


@pytest.mark.parametrize(
    ("prefs", "words"),
    [
        (LoadPreferences(threads=0), "Threads must be between 1 and 512; 0 is not."),
        (LoadPreferences(n_ctx=10), "Context size must be between 256"),
        (LoadPreferences(gpu_layers=-1), "GPU layers must be between 0 and 999"),
    ],
)
def test_bad_load_defaults_are_refused_and_nothing_is_saved(
    prefs: LoadPreferences, words: str
) -> None:
    store(LoadPreferences(threads=4))
    with pytest.raises(PreferenceError) as refused:
        store(prefs)
    assert words in str(refused.value)
    assert refused.value.remedy  # and what to do
    assert read_load_preferences().threads == 4


def test_a_damaged_stored_value_counts_as_automatic() -> None:
    db = open_default_database()
    with db.conn:
        set_setting(db, SETTING_THREADS, "lots")
    assert read_load_preferences(db).threads is None
    db.close()


# --- the command line honours them -------------------------------------------------------------


def test_hearth_plan_uses_the_stored_threads_and_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = plan_output(capsys, "--machine", CPU_BOX)
    assert "threads:     3\n" not in before
    store(LoadPreferences(threads=3, n_ctx=2048))
    out = plan_output(capsys, "--machine", CPU_BOX)
    assert "threads:     3\n" in out
    assert "context:     2,048 tokens" in out


def test_flags_win_over_the_stored_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    store(LoadPreferences(backend=Backend.CPU, threads=3, n_ctx=2048))
    laptop = plan_output(capsys, "--machine", LAPTOP)
    assert "backend:     cpu" in laptop  # the stored backend keeps it off the GPU
    flagged = plan_output(
        capsys, "--machine", LAPTOP, "--threads", "5", "--ctx", "4096", "--backend", "auto"
    )
    assert "threads:     5\n" in flagged
    assert "context:     4,096 tokens" in flagged
    assert "backend:     cuda" in flagged  # auto: the planner's choice again


def test_hearth_doctor_shows_the_load_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    store(LoadPreferences(threads=3, n_ctx=2048))
    assert main(["doctor", "--machine", CPU_BOX]) == 0
    assert "Load defaults" in (out := capsys.readouterr().out)
    assert "3 threads, 2,048 tokens of context" in out
    assert main(["doctor", "--machine", CPU_BOX, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["load_defaults"] == {
        "backend": None,
        "gpu_layers": None,
        "threads": 3,
        "n_ctx": 2048,
    }


def test_a_bad_flag_is_one_sentence_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", MODEL, "--machine", CPU_BOX, "--threads", "0"]) == 1
    err = capsys.readouterr().err
    assert "Threads must be between 1 and 512; 0 is not." in err
    assert "--threads" in err and "Traceback" not in err


def test_hearth_chat_builds_its_load_settings_from_flags_then_settings() -> None:
    from app.cli.common import load_settings_for

    store(LoadPreferences(gpu_layers=0, threads=3, n_ctx=2048))
    args = build_parser().parse_args(["chat", "hello", "--ctx", "1024"])
    settings = load_settings_for(args)
    assert (settings.n_ctx, settings.threads, settings.gpu_layers) == (1024, 3, 0)
    args = build_parser().parse_args(["chat", "hello", "--gpu-layers", "12", "--threads", "2"])
    settings = load_settings_for(args)
    assert (settings.n_ctx, settings.threads, settings.gpu_layers) == (2048, 2, 12)


# --- the models folder ---------------------------------------------------------------------------


def test_the_chosen_models_folder_receives_new_imports(
    tmp_path: Path, tiny_gguf: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.models.portable import import_model
    from app.paths import default_models_folder, hearth_paths, save_models_folder

    big = tmp_path / "big-disk" / "models"
    save_models_folder(big)
    assert hearth_paths().models == big.resolve()
    [imported] = import_model(tiny_gguf())
    assert imported.path.is_relative_to(big.resolve())
    monkeypatch.setenv("HEARTH_MODELS", str(tmp_path / "env"))  # the variable wins
    assert hearth_paths().models == (tmp_path / "env").resolve()
    monkeypatch.delenv("HEARTH_MODELS")
    save_models_folder(None)
    assert hearth_paths().models == default_models_folder()


# --- the Settings page ---------------------------------------------------------------------------


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    from app.gui.main_window import MainWindow

    made = MainWindow(hardware=load_simulated_machines()[CPU_BOX])
    made.remember_state = False
    qtbot.addWidget(made)
    qtbot.waitUntil(lambda: made.settings_page.current is not None, timeout=20_000)
    yield made
    made.close()


def save_page(qtbot: QtBot, window: MainWindow) -> Any:
    page = window.settings_page
    with qtbot.waitSignal(page.saved, timeout=20_000) as saved:
        page.save()
    return saved.args[0]


def test_the_settings_page_saves_the_load_defaults_the_cli_uses(
    qtbot: QtBot, window: MainWindow, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from app.paths import hearth_paths

    page = window.settings_page
    page.backend.setCurrentIndex(page.backend.findData("cpu"))
    page.gpu_layers.setText("0")
    page.threads.setText("3")
    page.context.setText("2,048")
    page.models_folder.setText(str(tmp_path / "models-here"))
    saved = save_page(qtbot, window)
    assert saved.load == LoadPreferences(Backend.CPU, 0, 3, 2048)
    assert read_load_preferences() == saved.load
    assert hearth_paths().models == (tmp_path / "models-here").resolve()
    out = plan_output(capsys, "--machine", CPU_BOX)
    assert "threads:     3\n" in out and "context:     2,048 tokens" in out
    # Empty fields are "automatic" again.
    for field in (page.gpu_layers, page.threads, page.context):
        field.clear()
    page.backend.setCurrentIndex(page.backend.findData("auto"))
    page.models_folder.clear()
    assert save_page(qtbot, window).load == LoadPreferences()


@pytest.mark.parametrize(
    ("field", "text", "words"),
    [
        ("threads", "0", "Threads must be between 1 and 512; 0 is not."),
        ("context", "lots", "Context size must be a whole number, not 'lots'."),
        ("gpu_layers", "-3", "GPU layers must be between 0 and 999"),
    ],
)
def test_the_settings_page_refuses_a_bad_value_in_one_sentence(
    qtbot: QtBot, window: MainWindow, field: str, text: str, words: str
) -> None:
    page = window.settings_page
    page.threads.setText("4")
    save_page(qtbot, window)
    page.threads.clear()
    getattr(page, field).setText(text)
    page.save()
    assert words in page.error.text()
    assert "leave the field empty for automatic" in page.error.text()
    assert not page.error.isHidden()
    assert read_load_preferences().threads == 4  # nothing was saved


def test_a_relative_models_folder_is_refused(qtbot: QtBot, window: MainWindow) -> None:
    page = window.settings_page
    page.models_folder.setText("models")
    page.save()
    qtbot.waitUntil(lambda: bool(page.error.text()), timeout=20_000)
    assert "must be a full path" in page.error.text()


def test_the_hub_token_goes_to_the_keyring_and_is_only_shown_masked(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, fake_keyring: FakeKeyring
) -> None:
    from app.hub import credentials

    monkeypatch.delenv("HF_TOKEN", raising=False)
    ring = fake_keyring
    token = "hf_abcdefghijklmnopqrstuvwxyz"
    page = window.settings_page
    assert page.token.echoMode() == page.token.EchoMode.Password
    page.token.setText(token)
    saved = save_page(qtbot, window)
    assert ring.values[("Hearth", "huggingface-hub-token")] == token
    assert not credentials.token_file().exists()  # never a second copy
    assert saved.token.masked == "hf_…wxyz"
    assert "hf_…wxyz" in page.token_note.text() and token not in page.token_note.text()
    assert page.token.text() == ""  # the field does not keep it
    assert page.forget_token_button.isEnabled()
    page.forget_token()
    assert save_page(qtbot, window).token.masked is None
    assert ring.values == {}


def test_offline_mode_turns_hub_search_off_with_a_note_on_the_downloads_page(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the tests' default is offline
    page = window.settings_page
    save_page(qtbot, window)
    downloads = window.downloads
    assert downloads.offline_note.isHidden() and downloads.search_button.isEnabled()
    page.offline.setChecked(True)
    save_page(qtbot, window)
    assert not downloads.offline_note.isHidden()
    assert "Offline mode is on in Settings" in downloads.offline_note.text()
    assert "Turn it off in Settings" in downloads.offline_note.text()
    assert not downloads.search_button.isEnabled() and not downloads.query.isEnabled()
    page.offline.setChecked(False)
    save_page(qtbot, window)
    assert downloads.offline_note.isHidden() and downloads.search_button.isEnabled()
    # The environment wins over Settings, and the note says what to do about that.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_page(qtbot, window)
    assert "(HF_HUB_OFFLINE=1)" in downloads.offline_note.text()
    assert "Unset HF_HUB_OFFLINE" in downloads.offline_note.text()
    assert "HF_HUB_OFFLINE=1 is set" in page.overrides.text()
