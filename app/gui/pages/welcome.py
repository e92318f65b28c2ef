"""The welcome: what this machine has and where chat will run, and three ways to a first model
(the starter assistant, a download that fits here, or files from a folder or USB drive).

The window shows it instead of an empty chat when the library has no models, and from
Help ▸ Welcome. Installs and imports run on the page's own pool thread, with progress, time
left and Cancel; when a model arrives, `model_added` tells the window to refresh.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app import edition
from app.errors import HearthError
from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import colours, icon
from app.hardware.profile import HardwareProfile
from app.humanize import format_duration, format_gib, format_size

if TYPE_CHECKING:
    from app.hub.quants import GgufVariant
    from app.models.starter import StarterModel

#: Below this many parameters a CPU-only machine still answers at reading speed.
CPU_FRIENDLY_PARAMETERS = 4_200_000_000
#: The largest first download suggested even on a big GPU (a first model should arrive soon).
FIRST_MODEL_PARAMETERS = 8_300_000_000


class CancelledError(HearthError):
    """The person pressed Cancel."""

    default_remedy = "Nothing was added to the library; start again when you like."


# --- what the page shows (read off the UI thread) -----------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """The catalog model suggested as a first download on this machine."""

    title: str
    repo: str
    quant: str
    size: int
    verdict: str
    library_name: str
    summary: str


@dataclass(frozen=True)
class WelcomeFacts:
    models: int  # how many models the library has
    machine: str  # one short paragraph: CPU, RAM, GPUs
    backend: str  # "CUDA", "Metal" or "CPU"
    backend_reason: str
    warnings: tuple[str, ...]
    recommendation: Recommendation | None
    offline: bool
    offline_reason: str
    starter_size: int
    starter_installed: bool


#: Set once the person has left the welcome: it shows on the first start, and after that
#: only while the library is empty.
SETTING_WELCOME_SEEN = "gui.welcome_seen"


@dataclass(frozen=True)
class LibraryState:
    """What decides whether the window opens on the welcome."""

    models: int  # how many models the library holds
    welcome_seen: bool  # the person left the welcome before (any earlier start)


def library_state() -> LibraryState:
    """The library's size and whether the welcome was seen (a pool thread job)."""
    from app.store import open_default_database
    from app.store.library import list_models
    from app.store.settings import get_setting

    with closing(open_default_database()) as db:
        return LibraryState(len(list_models(db)), bool(get_setting(db, SETTING_WELCOME_SEEN)))


def mark_welcome_seen() -> None:
    """Remember that the welcome was seen (a pool thread job)."""
    from app.store import open_default_database
    from app.store.settings import set_setting

    with closing(open_default_database()) as db, db.conn:
        set_setting(db, SETTING_WELCOME_SEEN, True)


def read_welcome_facts(hardware: HardwareProfile | None) -> WelcomeFacts:
    """Everything the welcome shows (slow the first time: it looks at the machine)."""
    from app.hardware.detect import this_machine
    from app.hardware.doctor import doctor_warnings, recommend_backend
    from app.hub.config import hub_config
    from app.models.starter import STARTER
    from app.store import open_default_database
    from app.store.library import find_model, list_models

    hw = hardware or this_machine()
    backend, reason = recommend_backend(hw)
    cores = hw.cpu.physical_cores or hw.cpu.logical_cores
    lines = [f"{hw.cpu.name} ({cores} cores), {format_gib(hw.ram_total)} of RAM"]
    for gpu in hw.gpus:
        memory = "shared memory" if gpu.unified else f"{format_gib(gpu.vram_total)} of VRAM"
        lines.append(f"{gpu.name} ({memory})")
    with closing(open_default_database()) as db:
        models = len(list_models(db))
        starter = find_model(db, STARTER.name)
        config = hub_config(db)
    return WelcomeFacts(
        models=models,
        machine=" · ".join(lines),
        backend={"cuda": "CUDA", "metal": "Metal", "cpu": "CPU"}[backend.value],
        backend_reason=reason,
        warnings=tuple(doctor_warnings(hw)),
        recommendation=recommend_download(hw),
        offline=config.offline,
        offline_reason=config.offline_reason,
        starter_size=STARTER.size,
        starter_installed=starter is not None,
    )


def recommend_download(hw: HardwareProfile) -> Recommendation | None:
    """The catalog chat model to suggest first: the largest general one whose suggested quant
    runs well here (on the GPU up to ~8B parameters, on a CPU up to ~4B), else the smallest
    that runs at all; None when nothing in the catalog fits."""
    from app.hub.catalog import catalog_entries, fit_variants

    candidates = []
    for entry in catalog_entries("chat"):
        if "reasoning" in entry.tags or "large" in entry.tags or not entry.parameters:
            continue  # a first model should answer plainly and arrive soon
        fit = next((f for f in fit_variants(entry, hw) if f.suggested), None)
        if fit is not None:
            candidates.append((entry, fit))
    if not candidates:
        return None
    gpu_ok = [(e, f) for e, f in candidates if f.verdict.rank == 0]
    cpu_ok = [(e, f) for e, f in candidates if f.verdict.rank <= 1]
    good = [(e, f) for e, f in gpu_ok if (e.parameters or 0) <= FIRST_MODEL_PARAMETERS] or [
        (e, f) for e, f in cpu_ok if (e.parameters or 0) <= CPU_FRIENDLY_PARAMETERS
    ]
    if good:
        entry, fit = max(good, key=lambda ef: (ef[0].parameters or 0, -ef[1].verdict.rank))
    else:
        entry, fit = min(candidates, key=lambda ef: ef[0].parameters or 0)
    return Recommendation(
        title=entry.title,
        repo=entry.repo,
        quant=fit.quant,
        size=fit.size,
        verdict=fit.verdict.value,
        library_name=fit.variant.library_name,
        summary=fit.summary,
    )


def find_recommended_variant(rec: Recommendation, hardware: HardwareProfile | None) -> GgufVariant:
    """The Hub's listing of the recommended quant (exact files and sizes), to download."""
    from app.hub.search import list_gguf_files

    variants = list_gguf_files(rec.repo, hardware=hardware)
    for variant in variants:
        if variant.name == rec.library_name or (variant.quant or "").upper() == rec.quant.upper():
            return variant
    raise HearthError(
        f"{rec.repo} on the Hub no longer has the {rec.quant} file Hearth suggests.",
        "Pick another quant on the Downloads page.",
    )


# --- long work on the page's own thread ----------------------------------------------------------


class Progress(QObject):
    """Bytes done of a total, from the work thread; raises CancelledError once cancelled."""

    moved = Signal(int, int, str)  # done, total, what

    def __init__(self) -> None:
        super().__init__()
        self.cancel = threading.Event()

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.cancel.is_set():
            raise CancelledError("Cancelled.")
        self.moved.emit(done, total, what)


def install_starter_model(
    progress: Progress, parts_dir: Path | None = None, model: StarterModel | None = None
) -> str:
    """Install the starter assistant (or `model`); a cancel removes the half-written file."""
    from app.models.starter import STARTER, install_starter
    from app.paths import hearth_paths
    from app.store import open_default_database

    spec = model or STARTER
    paths = hearth_paths().ensure()
    target = spec.target(paths)
    try:
        with closing(open_default_database()) as db:
            install_starter(db, paths, parts_dir=parts_dir, progress=progress, model=spec)
    except CancelledError:
        target.with_name(target.name + ".partial").unlink(missing_ok=True)
        raise CancelledError("The starter model was not installed: you cancelled it.") from None
    return spec.name


def import_models(path: Path, progress: Progress) -> str:
    """Copy the model(s) at `path` into the library; the names, joined."""
    from app.models.portable import import_model
    from app.store import open_default_database

    try:
        with closing(open_default_database()) as db:
            imported = import_model(path, progress=progress, db=db)
    except CancelledError:
        raise CancelledError(f"Nothing was imported from {path}: you cancelled it.") from None
    return ", ".join(m.name for m in imported)


# --- the page -----------------------------------------------------------------------------------


class WelcomePage(QWidget):
    status = Signal(str)
    facts_shown = Signal(object)  # the WelcomeFacts on screen
    model_added = Signal(str)  # the name(s) of what just arrived in the library
    work_failed = Signal(str)
    skipped = Signal()  # "Not now": the window shows its pages
    download_wanted = Signal(object)  # a GgufVariant for the Downloads page's queue

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.hardware = hardware
        self.facts: WelcomeFacts | None = None
        self.worker = BackgroundRunner(self, max_threads=1)  # installs and imports
        self.progress: Progress | None = None
        self.working: str | None = None  # "starter" | "import" while one runs
        self._started = 0.0
        self._stage = ""
        self.starter_parts_dir: Path | None = None  # tests and USB sticks: the part wheels
        self.starter_model: StarterModel | None = None  # None: the shipped starter

        self.title = QLabel("<h1>Welcome to Hearth</h1>")
        does = "Chat and make images" if edition.images_available() else "Chat"  # chat-only
        self.intro = QLabel(
            f"{does} with AI models that run on this computer: nothing you type leaves it. "
            "First, a model."
        )
        self.machine = QLabel("Looking at this machine…")
        self.backend = QLabel("")
        self.warnings = QLabel("")
        for label in (self.intro, self.machine, self.backend, self.warnings):
            label.setWordWrap(True)
        self.warnings.hide()

        # (a) the starter model
        self.starter_text = QLabel("")
        self.starter_button = QPushButton(icon("chat"), "Install the starter")
        self.starter_button.clicked.connect(self.install_starter)
        # (b) a download that fits
        self.download_text = QLabel("Finding a model that fits this machine…")
        self.download_button = QPushButton(icon("downloads"), "Download")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download_recommended)
        self.offline_note = QLabel("")
        self.offline_note.hide()
        # (c) from a folder or a USB drive
        self.import_text = QLabel(
            "Already have a model? Import a .gguf file, a diffusers folder or a Hearth export "
            "from a folder or USB drive. No network needed."
        )
        self.import_file_button = QPushButton(icon("folder"), "Choose a file…")
        self.import_file_button.clicked.connect(self.choose_file)
        self.import_folder_button = QPushButton(icon("folder"), "Choose a folder…")
        self.import_folder_button.clicked.connect(self.choose_folder)

        cards = QHBoxLayout()
        cards.setSpacing(12)
        cards.addWidget(
            self._card("Start in one click", self.starter_text, [self.starter_button]),
            1,
        )
        cards.addWidget(
            self._card(
                "Download one that fits",
                self.download_text,
                [self.download_button],
                extra=self.offline_note,
            ),
            1,
        )
        cards.addWidget(
            self._card(
                "From a folder or USB drive",
                self.import_text,
                [self.import_file_button, self.import_folder_button],
            ),
            1,
        )

        # progress of an install or import
        self.work_label = QLabel("")
        self.work_label.setWordWrap(True)
        self.work_bar = QProgressBar()
        self.work_bar.setRange(0, 1000)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        work_row = QHBoxLayout()
        work_row.addWidget(self.work_bar, 1)
        work_row.addWidget(self.cancel_button)
        self.work_box = QWidget()
        work_col = QVBoxLayout(self.work_box)
        work_col.setContentsMargins(0, 0, 0, 0)
        work_col.addWidget(self.work_label)
        work_col.addLayout(work_row)
        self.work_box.hide()
        self.result = QLabel("")
        self.result.setWordWrap(True)

        self.skip_button = QPushButton("Not now")
        self.skip_button.setToolTip("Go to the pages; Help ▸ Welcome brings this back")
        self.skip_button.clicked.connect(self.skipped)
        bottom = QHBoxLayout()
        bottom.addWidget(self.result, 1)
        bottom.addWidget(self.skip_button, 0, Qt.AlignmentFlag.AlignBottom)

        body = QWidget()
        column = QVBoxLayout(body)
        column.addWidget(self.title)
        column.addWidget(self.intro)
        column.addWidget(self._heading("This machine"))
        column.addWidget(self.machine)
        column.addWidget(self.backend)
        column.addWidget(self.warnings)
        column.addWidget(self._heading("Your first model"))
        column.addLayout(cards)
        column.addWidget(self.work_box)
        column.addStretch(1)
        column.addLayout(bottom)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        self.restyle()

    def _card(
        self, title: str, text: QLabel, buttons: list[QPushButton], extra: QLabel | None = None
    ) -> QFrame:
        card = QFrame()
        card.setObjectName("welcomeCard")
        card.setFrameShape(QFrame.Shape.StyledPanel)
        col = QVBoxLayout(card)
        col.addWidget(QLabel(f"<b>{title}</b>"))
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        col.addWidget(text, 1)
        if extra is not None:
            extra.setWordWrap(True)
            col.addWidget(extra)
        for button in buttons:
            col.addWidget(button)
        return card

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = QLabel(f"<b>{text}</b>")
        label.setContentsMargins(0, 10, 0, 0)
        return label

    def restyle(self) -> None:
        c = colours()
        self.setStyleSheet(
            f"QFrame#welcomeCard {{ background: {c.base}; border: 1px solid {c.alternate};"
            " border-radius: 8px; }"
        )
        for label in (self.intro, self.backend):
            label.setStyleSheet(f"color: {c.muted};")
        self.warnings.setStyleSheet(f"color: {c.warn};")
        self.offline_note.setStyleSheet(f"color: {c.warn};")

    # --- facts ------------------------------------------------------------------------------

    def refresh(self) -> None:
        hardware = self.hardware
        job = self.runner.submit(lambda: read_welcome_facts(hardware))
        job.done.connect(self._show)
        job.failed.connect(self._facts_failed)

    def _facts_failed(self, message: str) -> None:
        self.machine.setText(message)
        self.status.emit(message)

    def _show(self, facts: WelcomeFacts) -> None:
        self.facts = facts
        self.machine.setText(facts.machine)
        self.backend.setText(f"Chat runs on: {facts.backend}. {facts.backend_reason}")
        self.warnings.setText(" ".join(facts.warnings))
        self.warnings.setVisible(bool(facts.warnings))
        if facts.starter_installed:
            self.starter_text.setText("The starter assistant is installed and ready.")
            self.starter_button.setText("Start chatting")
        else:
            self.starter_button.setText("Install the starter")
            self.starter_text.setText(
                f"The starter assistant: a small model that helps with code and questions "
                f"({format_size(facts.starter_size, digits=1)}, installed once)."
            )
        rec = facts.recommendation
        if rec is None:
            self.download_text.setText(
                "Nothing in Hearth's catalog fits this machine's memory; the starter or a "
                "smaller file of your own will."
            )
        else:
            self.download_text.setText(
                f"{rec.title}, {rec.quant} ({format_size(rec.size, digits=1)}): {rec.verdict} "
                f"here. {rec.summary}"
            )
        if "Settings" in facts.offline_reason:
            note = (
                "Downloads are off: offline mode is on in Settings. Turn it off there to download."
            )
        else:  # the environment wins over Settings
            note = (
                f"Downloads are off: offline mode is on ({facts.offline_reason}). Unset it and "
                "restart Hearth to download."
            )
        self.offline_note.setText(note if facts.offline else "")
        self.offline_note.setVisible(facts.offline)
        self._enable()
        self.facts_shown.emit(facts)

    def _enable(self) -> None:
        facts = self.facts
        idle = self.working is None
        self.starter_button.setEnabled(idle and facts is not None)
        self.download_button.setEnabled(
            idle and facts is not None and facts.recommendation is not None and not facts.offline
        )
        self.import_file_button.setEnabled(idle)
        self.import_folder_button.setEnabled(idle)

    # --- (a) the starter model ------------------------------------------------------------

    def install_starter(self) -> None:
        """Install the starter; once it is in, the same button opens Chat with it."""
        if self.facts is not None and self.facts.starter_installed:
            from app.models.starter import STARTER

            self.model_added.emit((self.starter_model or STARTER).name)
            return
        parts, model = self.starter_parts_dir, self.starter_model
        self._start(
            "starter",
            "Getting the starter assistant's parts…",
            lambda progress: install_starter_model(progress, parts, model),
        )

    # --- (b) the recommended download -------------------------------------------------------

    def download_recommended(self) -> None:
        facts = self.facts
        if facts is None or facts.recommendation is None or facts.offline:
            return
        rec = facts.recommendation
        self.download_button.setEnabled(False)
        self._show_result(f"Asking the Hub for {rec.repo}…")
        hardware = self.hardware
        job = self.runner.submit(lambda: find_recommended_variant(rec, hardware))
        job.done.connect(self._download_found)
        job.failed.connect(self._download_failed)

    def _download_found(self, variant: GgufVariant) -> None:
        self._show_result(
            f"{variant.name} is downloading: follow it on the Downloads page. It appears in "
            "Chat when it is done."
        )
        self._enable()
        self.download_wanted.emit(variant)

    def _download_failed(self, message: str) -> None:
        self._enable()
        self._show_error(message)

    # --- (c) import ---------------------------------------------------------------------------

    def choose_file(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Import a model", "", "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.import_path(Path(path))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import the model in this folder")
        if folder:
            self.import_path(Path(folder))

    def import_path(self, path: Path) -> None:
        """Import a .gguf file, a split GGUF, a diffusers folder or a Hearth export."""
        self._start(
            "import", f"Importing from {path}…", lambda progress: import_models(path, progress)
        )

    # --- the work in progress ---------------------------------------------------------------

    def _start(self, kind: str, text: str, work: object) -> None:
        if self.working is not None:
            return
        self.working = kind
        self.progress = Progress()
        self.progress.moved.connect(self._moved)
        self._started = time.monotonic()
        self._stage = ""
        self.work_label.setText(text)
        self.work_bar.setValue(0)
        self.cancel_button.setEnabled(True)
        self.work_box.show()
        self.result.clear()
        self._enable()
        progress = self.progress
        job = self.worker.submit(lambda: work(progress))  # type: ignore[operator]
        job.done.connect(self._work_done)
        job.failed.connect(self._work_failed)

    def _moved(self, done: int, total: int, what: str) -> None:
        if not total:
            return
        if what != self._stage:  # downloading, then assembling, then verifying: each its ETA
            self._stage, self._started = what, time.monotonic()
        fraction = min(done / total, 1.0)
        self.work_bar.setValue(int(fraction * 1000))
        elapsed = time.monotonic() - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        self.work_label.setText(
            f"{what.capitalize()}: {format_size(done, digits=1)} of "
            f"{format_size(total, digits=1)}, {format_duration(eta)} left"
        )

    def cancel(self) -> None:
        if self.progress is not None:
            self.progress.cancel.set()
            self.cancel_button.setEnabled(False)
            self.work_label.setText("Cancelling…")

    def _work_done(self, names: str) -> None:
        self._finish()
        self._show_result(f"{names} is in the library: it is ready in Chat.")
        self.status.emit(f"{names} is in the library.")
        self.model_added.emit(names)
        self.refresh()

    def _work_failed(self, message: str) -> None:
        self._finish()
        self._show_error(message)
        self.work_failed.emit(message)

    def _finish(self) -> None:
        self.working = None
        self.progress = None
        self.work_box.hide()
        self._enable()

    def _show_result(self, text: str) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("")

    def _show_error(self, message: str) -> None:
        self.result.setText(message)
        self.result.setStyleSheet(f"color: {colours().bad};")
        self.status.emit(message)

    def shutdown(self) -> None:
        """Cancel an install or import still running and wait for it (the window closes)."""
        if self.progress is not None:
            self.progress.cancel.set()
        self.worker.wait(30_000)
