"""The Models page: import (file, folder, manifest, drag and drop), refusals that say why,
delete with a question and an in-use check, export with a manifest and cancel, details, and
the catalog's fit badges and offline mode (real Qt offscreen, real store, real files)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDropEvent
from pytestqt.qtbot import QtBot

from app.errors import HearthError
from app.gui.adapters.library_actions import LibraryTask, TaskProgress
from app.gui.adapters.library_table import PLANNED_ROLE, Column, verdict_colour
from app.gui.adapters.models_catalog import CatalogColumn
from app.gui.adapters.runner import BackgroundRunner
from app.gui.pages.models import ModelsPage
from app.hardware.profile import HardwareProfile, load_simulated_machines
from app.hub.catalog import catalog_entries, fit_variants
from app.models.portable import MANIFEST_NAME, import_model
from app.paths import hearth_paths
from app.store import open_default_database
from app.store.library import list_models


@pytest.fixture
def page(qtbot: QtBot, laptop: HardwareProfile) -> Iterator[ModelsPage]:
    """A Models page on the simulated laptop, its first planning done; its jobs end with it."""
    open_default_database().close()  # migrated before the page's first read
    runner = BackgroundRunner()
    models = ModelsPage(runner, hardware=laptop)
    qtbot.addWidget(models)
    models.resize(1100, 700)
    with qtbot.waitSignal(models.library_shown, timeout=60_000):
        models.refresh()
    yield models
    runner.wait()


def library_names() -> set[str]:
    with closing(open_default_database()) as db:
        return {m.name for m in list_models(db)}


def model_files() -> list[Path]:
    root = hearth_paths().models
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def run_task(qtbot: QtBot, page: ModelsPage, start: Callable[[], LibraryTask | None]) -> str:
    """Start a library task and wait for the page's line about how it ended; when it changed
    the library, wait for the re-planned library too."""
    with qtbot.waitSignal(page.task_ended, timeout=60_000) as ended:
        task = start()
        assert task is not None
    qtbot.waitUntil(lambda: {r.model.name for r in page.library.rows} == library_names())
    return str(ended.args[0])


def shown_names(page: ModelsPage) -> list[str]:
    """The names in the view, in the order shown (sorted and filtered)."""
    view = page.sorted
    return [str(view.index(r, Column.MODEL).data()) for r in range(view.rowCount())]


def import_one(qtbot: QtBot, page: ModelsPage, path: Path) -> str:
    line = run_task(qtbot, page, lambda: page.import_paths([path]))
    qtbot.waitUntil(lambda: bool(page.library.rows), timeout=30_000)
    return line


def test_import_a_gguf_from_a_folder_copies_it_into_the_library(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    source = tiny_gguf("usb/Tiny-Chat-Q8_0.gguf")
    line = import_one(qtbot, page, usb)
    assert line.startswith("Imported tiny-chat-q8_0 (chat,")
    assert library_names() == {"tiny-chat-q8_0"}
    [copied] = model_files()
    assert copied.read_bytes() == source.read_bytes() and source.exists()  # a copy, not a move
    qtbot.waitUntil(lambda: page.selected_name() == "tiny-chat-q8_0")  # the new one is shown
    assert page.details.title.text() == "<b>tiny-chat-q8_0</b>"
    assert "cuda" in page.details.plan_text  # the laptop's GPU plan, not this machine's


def test_dropping_a_gguf_file_on_the_page_imports_it(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path]
) -> None:
    path = tiny_gguf("Dropped-Model-Q4_K_M.gguf")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(page.task_ended, timeout=60_000) as ended:
        page.dropEvent(event)
    assert event.isAccepted()
    assert "Imported dropped-model-q4_k_m" in str(ended.args[0])
    qtbot.waitUntil(lambda: shown_names(page) == ["dropped-model-q4_k_m"], timeout=30_000)


def test_a_drag_of_web_links_is_not_accepted(page: ModelsPage) -> None:
    from app.gui.pages.models import dropped_paths

    mime = QMimeData()
    mime.setUrls([QUrl("https://huggingface.co/x/y")])
    event = QDropEvent(
        QPointF(5, 5),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    assert dropped_paths(event) == []


def _library_error(path: Path) -> str:
    """The sentence the library itself gives for `path` (what `hearth models import` prints)."""
    with closing(open_default_database()) as db, pytest.raises(HearthError) as refused:
        import_model(path, db=db)
    return str(refused.value)


@pytest.mark.parametrize("kind", ["fake", "truncated", "pickle", "unsupported-architecture"])
def test_bad_input_is_refused_with_the_librarys_sentence_and_nothing_registered(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    if kind == "fake":
        path = tmp_path / "fake.gguf"
        path.write_bytes(b"this is not a model, only text pretending to be one\n" * 20)
    elif kind == "truncated":
        whole = tiny_gguf("whole.gguf").read_bytes()
        path = tmp_path / "cut.gguf"
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "pickle":
        path = tmp_path / "model.ckpt"
        path.write_bytes(b"PK\x03\x04" + b"\0" * 512)
    else:
        path = tiny_gguf("alien.gguf", arch="no-such-architecture")
    expected = _library_error(path)
    with qtbot.waitSignal(page.refused, timeout=60_000) as refused:
        assert page.import_paths([path]) is not None
    assert expected in str(refused.args[0])
    assert page.alert.isVisibleTo(page) and expected in page.alert.text()
    qtbot.waitUntil(lambda: not page.busy)
    assert library_names() == set() and model_files() == []
    assert path.exists()  # the person's file is left as it was
    assert {"fake": "not a GGUF", "truncated": "truncated", "pickle": "pickle"}.get(
        kind, "cannot run"
    ) in expected


def test_delete_asks_naming_the_size_frees_the_file_and_is_refused_while_in_use(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path]
) -> None:
    import_one(qtbot, page, tiny_gguf("Keep-Me-Q8_0.gguf"))
    [copied] = model_files()
    questions: list[str] = []
    answers = [False, True]

    def confirm(_title: str, question: str) -> bool:
        questions.append(question)
        return answers.pop(0)

    page.confirm = confirm
    page.set_in_use_check(lambda: {"keep-me-q8_0"})
    with qtbot.waitSignal(page.refused) as refused:
        assert page.delete_model("keep-me-q8_0") is None
    assert "keep-me-q8_0 is loaded right now" in str(refused.args[0])
    assert "Unload it first" in str(refused.args[0])
    assert questions == [] and copied.exists()  # refused before asking

    page.set_in_use_check(set)
    assert page.delete_model("keep-me-q8_0") is None  # the person said no
    from app.humanize import format_size

    assert format_size(copied.stat().st_size) in questions[0] and copied.exists()

    line = run_task(qtbot, page, lambda: page.delete_model("keep-me-q8_0"))
    assert line.startswith("Deleted keep-me-q8_0 and freed ")
    assert not copied.exists() and library_names() == set()
    qtbot.waitUntil(lambda: page.library.rowCount() == 0)


def test_export_writes_the_manifest_and_files_and_the_export_imports_back(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    source = tiny_gguf("Travel-Q8_0.gguf")
    import_one(qtbot, page, source)
    usb = tmp_path / "usb-stick"
    line = run_task(qtbot, page, lambda: page.export_to(["travel-q8_0"], usb))
    assert line.startswith("Exported 1 model") and str(usb) in line
    manifest = json.loads((usb / MANIFEST_NAME).read_text())
    [entry] = manifest["models"]
    assert entry["name"] == "travel-q8_0"
    exported = usb / entry["files"][0]["path"]
    assert exported.read_bytes() == source.read_bytes()
    assert not list(usb.rglob("*.partial"))

    page.confirm = lambda _title, _question: True
    run_task(qtbot, page, lambda: page.delete_model("travel-q8_0"))
    assert library_names() == set()
    line = import_one(qtbot, page, usb)  # the manifest folder, every sha256 checked
    assert line.startswith("Imported travel-q8_0 (chat,")
    assert library_names() == {"travel-q8_0"}
    assert [p.read_bytes() for p in model_files()] == [source.read_bytes()]


def test_cancelling_an_export_leaves_no_half_file(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    # Large enough for several 4 MiB blocks, so the cancel lands in the middle of the copy.
    big = tiny_gguf("Big-F32.gguf", n_embd=512, vocab=8192)
    assert big.stat().st_size > 3 * 4 * 1024 * 1024
    import_one(qtbot, page, big)
    usb = tmp_path / "usb"
    seen: list[TaskProgress] = []

    def start() -> LibraryTask | None:
        task = page.export_to(["big-f32"], usb)
        assert task is not None

        def cancel_at_first_block(progress: TaskProgress) -> None:
            seen.append(progress)
            task.cancel()  # from the worker thread, as the first block is reported

        task.progress.connect(cancel_at_first_block, Qt.ConnectionType.DirectConnection)
        return task

    line = run_task(qtbot, page, start)
    assert "cancelled" in line
    assert seen and seen[0].done < seen[0].total  # it was stopped part way
    assert not usb.exists() or not any(usb.rglob("*"))  # no half file, no manifest
    assert not page.progress_box.isVisibleTo(page)
    assert library_names() == {"big-f32"}  # the library's own copy is untouched


def test_details_pane_and_buttons_for_chat_and_image_models(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tiny_pipeline: Path
) -> None:
    import_one(qtbot, page, tiny_gguf("Talky-Q8_0.gguf"))
    run_task(qtbot, page, lambda: page.import_paths([tiny_pipeline]))
    qtbot.waitUntil(lambda: page.library.rowCount() == 2, timeout=30_000)

    assert page.select("talky-q8_0")
    assert page.details.chat_button.isVisibleTo(page.details)
    assert not page.details.images_button.isVisibleTo(page.details)
    with qtbot.waitSignal(page.chat_requested) as chat:
        page.details.chat_button.click()
    assert chat.args == ["talky-q8_0"]
    row = page.selected_row()
    assert row is not None
    assert page.details.field("Path") == str(row.model.path)
    assert page.details.field("Architecture") == "llama"
    assert (page.details.field("Context length") or "").startswith("2,048 tokens")
    shown = page.details.view.toPlainText()
    assert str(row.model.path) in shown and page.details.plan_text in shown
    assert "GPU" in page.details.plan_text and "context" in page.details.plan_text

    assert page.select("tiny-sd")
    assert page.details.images_button.isVisibleTo(page.details)
    with qtbot.waitSignal(page.images_requested) as images:
        page.details.images_button.click()
    assert images.args == ["tiny-sd"]
    assert "cuda (float16)" in page.details.plan_text


def test_the_table_sorts_by_size_and_the_filter_box_narrows_it(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    tiny_gguf("two/Small-Q4_K_M.gguf")
    tiny_gguf("one/Wide-Q8_0.gguf", n_embd=128)
    run_task(qtbot, page, lambda: page.import_paths([tmp_path / "two", tmp_path / "one"]))
    qtbot.waitUntil(lambda: page.library.rowCount() == 2, timeout=30_000)
    page.table.sortByColumn(Column.SIZE, Qt.SortOrder.DescendingOrder)
    assert shown_names(page) == ["wide-q8_0", "small-q4_k_m"]
    page.table.sortByColumn(Column.SIZE, Qt.SortOrder.AscendingOrder)
    assert shown_names(page) == ["small-q4_k_m", "wide-q8_0"]
    page.filter.setText("WIDE")
    assert shown_names(page) == ["wide-q8_0"]
    page.filter.setText("")
    assert len(shown_names(page)) == 2
    rows = [page.sorted.index(r, 0).data(PLANNED_ROLE) for r in range(2)]
    assert [r.model.last_used_at for r in rows] == [None, None]
    assert page.sorted.index(0, Column.LAST_USED).data() == "never"


def test_catalog_shows_fit_badges_for_the_machine_and_offline_mode_disables_download(
    qtbot: QtBot, laptop: HardwareProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_default_database().close()
    runner = BackgroundRunner()
    netbook = load_simulated_machines()["netbook-4gb"]
    page = ModelsPage(runner, hardware=netbook)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.catalog_shown, timeout=60_000):
        page.refresh()  # tests run with HF_HUB_OFFLINE=1
    model = page.catalog.catalog
    entries = catalog_entries()
    assert model.rowCount() == len(entries)
    verdicts = set()
    for row, e in enumerate(entries):
        fits = fit_variants(e, netbook)
        offered = next((f for f in fits if f.suggested), None) or min(
            fits, key=lambda f: f.variant.size_bytes
        )
        cell = model.index(row, CatalogColumn.VERDICT)
        assert cell.data() == offered.verdict.value
        badge = cell.data(Qt.ItemDataRole.BackgroundRole)
        assert isinstance(badge, QColor) and badge.name() == verdict_colour(offered.verdict)
        assert model.index(row, CatalogColumn.VARIANT).data().startswith(offered.variant.quant)
        assert model.index(row, CatalogColumn.LICENCE).data() == e.license
        verdicts.add(offered.verdict.value)
    assert "won't fit" in verdicts and len(verdicts) > 1  # a 4 GB netbook tells them apart

    page.tabs.setCurrentIndex(1)
    page.catalog.table.selectRow(0)  # a chat model
    assert page.catalog.offline_note.isVisibleTo(page) and "Offline mode" in (
        page.catalog.offline_note.text()
    )
    assert not page.catalog.download_button.isEnabled()

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with qtbot.waitSignal(page.catalog_shown, timeout=60_000):
        page.refresh()
    page.catalog.table.selectRow(0)
    assert not page.catalog.offline_note.isVisibleTo(page)
    assert page.catalog.download_button.isEnabled()
    first = page.catalog.selected()
    assert first is not None
    with qtbot.waitSignal(page.download_requested) as asked:
        page.catalog.download_button.click()
    assert asked.args == [first.entry.repo, first.offered.variant.files[0]]
    image_row = next(i for i, e in enumerate(entries) if e.kind == "image")
    page.catalog.table.selectRow(image_row)
    assert not page.catalog.download_button.isEnabled()  # the queue fetches GGUF files only
    runner.wait()


def test_a_page_is_freed_as_soon_as_it_is_dropped(qtbot: QtBot, laptop: HardwareProfile) -> None:
    """No reference cycle keeps a page: the cycle collector would free it later on whatever
    thread it happens to run, and a worker thread deleting widgets crashes Qt."""
    import gc
    import weakref

    open_default_database().close()
    runner = BackgroundRunner()
    page = ModelsPage(runner, hardware=laptop)
    with qtbot.waitSignal(page.catalog_shown, timeout=60_000):
        page.refresh()
    runner.wait()
    gone = weakref.ref(page)
    gc.disable()
    try:
        del page
        assert gone() is None
    finally:
        gc.enable()


def test_a_refused_item_in_a_drop_does_not_stop_the_others(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("shopping list\n" * 50)
    good = tiny_gguf("Fine-Q8_0.gguf")
    line = run_task(qtbot, page, lambda: page.import_paths([bad, good]))
    assert line.startswith("Imported fine-q8_0")
    assert "notes.gguf is not a GGUF model file" in page.alert.text()
    assert library_names() == {"fine-q8_0"}


def test_cancelling_an_import_leaves_nothing_in_the_models_folder(
    qtbot: QtBot, page: ModelsPage, tiny_gguf: Callable[..., Path]
) -> None:
    big = tiny_gguf("Huge-F32.gguf", n_embd=512, vocab=8192)

    def start() -> LibraryTask | None:
        task = page.import_paths([big])
        assert task is not None
        task.progress.connect(lambda _p: task.cancel(), Qt.ConnectionType.DirectConnection)
        return task

    line = run_task(qtbot, page, start)
    assert "cancelled" in line
    assert model_files() == [] and library_names() == set()
    assert big.exists()
