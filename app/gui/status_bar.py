"""The window's status bar: the chat and image models loaded, where the chat model runs (backend,
GPU layers, threads), RAM and VRAM in use, a load's progress with its time left and a cancel
button, and the local API's state.

It only observes: the chat worker's and the image worker's signals, and a cheap memory reading
every few seconds on its own pool thread (psutil; nvidia-ml-py when it is installed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import colours
from app.humanize import format_duration, format_gib

#: How often the memory reading is refreshed.
FIRST_READING_MS = 300
MEMORY_REFRESH_MS = 3_000
#: Longest model name shown in full; longer ones are cut (the tooltip has the whole name).
NAME_CHARS = 28


@dataclass(frozen=True)
class MemoryUse:
    """RAM and (NVIDIA) VRAM in use on this machine, in bytes."""

    ram_used: int
    ram_total: int
    vram_used: int | None = None  # None: no NVIDIA GPU, or nvidia-ml-py is not installed
    vram_total: int | None = None

    def describe(self) -> str:
        text = f"RAM {format_gib(self.ram_used)} / {format_gib(self.ram_total)}"
        if self.vram_used is not None and self.vram_total:
            text += f" · VRAM {format_gib(self.vram_used)} / {format_gib(self.vram_total)}"
        return text


_nvml_lock = threading.Lock()
_nvml_state: dict[str, Any] = {"ready": None}  # None: not tried yet; False: not available


def read_memory() -> MemoryUse:
    """This machine's memory in use now (cheap: one psutil call, one NVML query per GPU)."""
    import psutil

    vm = psutil.virtual_memory()
    used, total = _nvidia_memory()
    return MemoryUse(int(vm.total - vm.available), int(vm.total), used, total)


def _nvidia_memory() -> tuple[int | None, int | None]:
    with _nvml_lock:
        if _nvml_state["ready"] is False:
            return None, None
        try:
            import pynvml

            if not _nvml_state["ready"]:
                pynvml.nvmlInit()
                _nvml_state["ready"] = True
            used = total = 0
            for i in range(int(pynvml.nvmlDeviceGetCount())):
                info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i))
                used += int(info.used)
                total += int(info.total)
        except Exception:  # no driver, no GPU, or no nvidia-ml-py: never ask again
            _nvml_state["ready"] = False
            return None, None
    return (used, total) if total else (None, None)


def short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


class WindowStatus(QObject):
    """Adds its labels to `bar` (left of any permanent widget added later) and keeps them true."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.bar = bar
        self.chat_label = QLabel("No chat model loaded")
        self.backend_label = QLabel("")
        self.image_label = QLabel("")
        self.memory_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFixedWidth(120)
        self.progress.setTextVisible(False)
        self.eta_label = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop loading the model (Esc)")
        self.cancel_button.clicked.connect(self.cancel_load)
        for widget in (
            self.progress,
            self.eta_label,
            self.cancel_button,
            self.chat_label,
            self.backend_label,
            self.image_label,
            self.memory_label,
        ):
            bar.addPermanentWidget(widget)
        self.image_label.hide()
        self.backend_label.hide()
        self._show_loading(False)
        self.loading: str | None = None  # "chat" | "image" while one loads
        self.chat_model: str | None = None
        self.image_model: str | None = None
        self.backend_text = ""
        self.memory: MemoryUse | None = None
        self._chat_runner: Any = None
        self._image_runner: Any = None
        self._reading = False
        self.reader = BackgroundRunner(self, max_threads=1)  # never waits behind page work
        self.timer = QTimer(self)
        self.timer.setInterval(MEMORY_REFRESH_MS)
        self.timer.timeout.connect(self.refresh_memory)
        self.timer.start()
        # The first reading imports psutil and NVML on a pool thread: after the first paint,
        # not competing with it.
        QTimer.singleShot(FIRST_READING_MS, self, self.refresh_memory)
        self.restyle()

    def restyle(self) -> None:
        muted = f"color: {colours().muted};"
        for label in (self.backend_label, self.memory_label, self.eta_label):
            label.setStyleSheet(muted)

    # --- what it watches --------------------------------------------------------------------

    def watch_chat(self, chat_runner: Any) -> None:
        """Follow a ChatRunner's worker: its load progress, the model loaded, failures."""
        self._chat_runner = chat_runner
        worker = chat_runner.worker
        worker.load_progress.connect(self.on_chat_progress)
        worker.loaded.connect(self.on_chat_loaded)
        worker.failed.connect(self.on_chat_failed)
        worker.busy.connect(self.on_chat_busy)

    def watch_images(self, image_runner: Any) -> None:
        """Follow an ImageRunner's worker: the plan (model and device), its load, the end."""
        self._image_runner = image_runner
        worker = image_runner.worker
        worker.planned.connect(self.on_image_planned)
        worker.load_progress.connect(self.on_image_progress)
        worker.step.connect(self.on_image_step)
        worker.busy.connect(self.on_image_busy)

    # --- chat -------------------------------------------------------------------------------

    @Slot(float, object)
    def on_chat_progress(self, fraction: float, eta_s: object) -> None:
        self.loading = "chat"
        eta = format_duration(float(eta_s)) if isinstance(eta_s, (int, float)) else "?"
        self._progress(fraction, f"Loading {fraction:.0%} · {eta} left", "the chat model")

    @Slot(str, str)
    def on_chat_loaded(self, name: str, how: str) -> None:
        self.chat_model = name
        self.chat_label.setText(f"Chat: {short(name)}")
        self.chat_label.setToolTip(f"{name}: {how}")
        self.backend_text = self._backend_of_loaded(how)
        self.backend_label.setText(self.backend_text)
        self.backend_label.setVisible(bool(self.backend_text))
        if self.loading == "chat":
            self._end_loading()

    def _backend_of_loaded(self, how: str) -> str:
        """E.g. "CUDA · 27/27 GPU layers · 8 threads" from the plan (remote: its backend)."""
        worker = getattr(self._chat_runner, "worker", None)
        model = getattr(getattr(worker, "session", None), "model", None)
        plan = getattr(model, "plan", None)
        if plan is None:
            return how.split(",")[0] if how else ""
        backend = str(plan.backend.value).upper() if plan.backend.value != "metal" else "Metal"
        if plan.gpu_layers_mode == "none" or plan.backend.value == "cpu":
            layers = "no GPU layers"
        else:
            layers = f"{min(plan.gpu_layers, plan.total_layers)}/{plan.total_layers} GPU layers"
        return f"{backend} · {layers} · {plan.threads} threads"

    @Slot(str)
    def on_chat_failed(self, _message: str) -> None:
        if self.loading == "chat":
            self._end_loading()

    @Slot(bool)
    def on_chat_busy(self, busy: bool) -> None:
        if not busy and self.loading == "chat":
            self._end_loading()

    # --- images -----------------------------------------------------------------------------

    @Slot(str)
    def on_image_planned(self, line: str) -> None:
        name, _, rest = line.partition(": ")
        self.image_model = name
        device = rest.split(" — ")[0].split(" ")[0]  # "cuda", "mps", "cpu"
        self.image_label.setText(f"Image: {short(name)} ({device})")
        self.image_label.setToolTip(line)
        self.image_label.show()

    @Slot(float, str)
    def on_image_progress(self, fraction: float, component: str) -> None:
        self.loading = "image"
        self._progress(fraction, f"Loading {fraction:.0%} · {component}", "the image model")

    @Slot(int, int, int, int, float, float)
    def on_image_step(self, *_args: object) -> None:
        if self.loading == "image":
            self._end_loading()

    @Slot(bool)
    def on_image_busy(self, busy: bool) -> None:
        if not busy and self.loading == "image":
            self._end_loading()

    # --- loading ----------------------------------------------------------------------------

    def _progress(self, fraction: float, text: str, what: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.eta_label.setText(text)
        self.eta_label.setToolTip(f"Loading {what}")
        self._show_loading(True)

    def _end_loading(self) -> None:
        self.loading = None
        self._show_loading(False)

    def _show_loading(self, on: bool) -> None:
        for widget in (self.progress, self.eta_label, self.cancel_button):
            widget.setVisible(on)
        # Room for the progress at 1024 px: the backend line returns with the loaded model.
        self.backend_label.setVisible(not on and bool(self.backend_label.text()))

    def cancel_load(self) -> None:
        """Stop the load in progress (the worker gives the memory back)."""
        runner = self._chat_runner if self.loading == "chat" else self._image_runner
        if runner is not None:
            runner.stop()
        self.eta_label.setText("Cancelling…")

    # --- memory -----------------------------------------------------------------------------

    def refresh_memory(self) -> None:
        if self._reading:
            return  # the last reading has not come back yet: never pile them up
        self._reading = True
        job = self.reader.submit(read_memory)
        job.done.connect(self._show_memory)
        job.failed.connect(self._memory_failed)

    def _show_memory(self, memory: MemoryUse) -> None:
        self._reading = False
        self.memory = memory
        self.memory_label.setText(memory.describe())

    def _memory_failed(self, _message: str) -> None:
        self._reading = False
        self.timer.stop()  # psutil cannot read this machine: keep the bar quiet
        self.memory_label.clear()

    def stop(self) -> None:
        self.timer.stop()
        self.reader.wait(5_000)
