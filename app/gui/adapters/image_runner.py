"""Makes images off the UI thread (an ImageSession in its own QThread), reported as signals;
and reads the image models and the gallery for the Images page."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.errors import HearthError
from app.gui.adapters.session_thread import close_session_thread, end_session
from app.hardware.profile import HardwareProfile
from app.store import Database, open_default_database
from app.store.gallery import GalleryImage, list_images
from app.store.library import ModelKind, list_models

if TYPE_CHECKING:
    from app.sessions.image import ImageSession, ImageSettings


@dataclass(frozen=True)
class ImageModelChoice:
    """An image model of the library, with what the size presets need."""

    name: str
    family: str  # "sd15", "sdxl", ...
    native: int  # its native width and height
    problem: str | None = None  # why it cannot be used (a damaged folder), else None


@dataclass(frozen=True)
class ImageLists:
    models: tuple[ImageModelChoice, ...]
    gallery: tuple[GalleryImage, ...]


def read_image_lists() -> ImageLists:
    """The image models (with family and native size) and the gallery, newest first."""
    from app.models.diffusers_folder import read_diffusers_facts

    with closing(open_default_database()) as db:
        library = [m for m in list_models(db) if m.kind is ModelKind.IMAGE]
        gallery = tuple(list_images(db))
    models = []
    for model in library:
        try:
            facts = read_diffusers_facts(model.path)
        except HearthError as exc:
            models.append(ImageModelChoice(model.name, "unknown", 512, str(exc)))
        else:
            models.append(ImageModelChoice(model.name, facts.family, facts.native_resolution))
    return ImageLists(tuple(models), gallery)


def size_presets(family: str, native: int) -> list[tuple[int, int]]:
    """Square, portrait and landscape sizes near the model's native one (all multiples of 8
    within the family's limits, so every preset passes the size rule)."""
    from app.planner.image_size import check_size

    def snap(value: float) -> int:
        return max(64, round(value / 64) * 64)

    candidates = [
        (native, native),
        (snap(native * 0.75), snap(native * 1.25)),
        (snap(native * 1.25), snap(native * 0.75)),
        (snap(native * 0.875), snap(native * 1.125)),
        (snap(native * 1.125), snap(native * 0.875)),
        (snap(native * 0.75), snap(native * 0.75)),
        (snap(native * 0.5), snap(native * 0.5)),
    ]
    out: list[tuple[int, int]] = []
    for size in candidates:
        if size not in out and check_size(*size, family) is None:
            out.append(size)
    return out


class ImageWorker(QObject):
    """Lives in the image QThread; owns the ImageSession (and its database connection)."""

    planned = Signal(str)  # one line: device, dtype, memory mode and why
    load_progress = Signal(float, str)  # fraction of the pipeline, component
    step = Signal(int, int, int, int, float, float)  # image, n, step, steps, s/step, eta s
    preview = Signal(bytes)
    image_saved = Signal(object)  # GalleryImage
    finished = Signal(str)  # "complete" | "cancelled"
    failed = Signal(str)
    busy = Signal(bool)

    def __init__(self, hardware: HardwareProfile | None = None) -> None:
        super().__init__()
        self.hardware = hardware
        self.db: Database | None = None
        self.session: ImageSession | None = None

    def _session(self) -> ImageSession:
        if self.session is None:
            from app.sessions.image import ImageSession

            self.db = open_default_database()
            self.session = ImageSession(self.db, hardware=self.hardware)
        return self.session

    @Slot(str, object)
    def generate(self, model: str, settings: ImageSettings) -> None:
        from app.engines.image_diffusers.protocol import ImageLoadProgress, Preview, StepProgress
        from app.store.gallery import GalleryImage as Saved

        self.busy.emit(True)
        try:
            session = self._session()
            job = session.prepare(model or None, settings)
            plan = job.plan
            self.planned.emit(
                f"{job.model}: {plan.device.value} ({plan.dtype.value}), {plan.memory_mode.value}"
                + (f" — {plan.reasons[0]}" if plan.reasons else "")
            )

            def on_event(event: object) -> None:
                if isinstance(event, ImageLoadProgress):
                    self.load_progress.emit(event.fraction, event.component)
                elif isinstance(event, StepProgress):
                    self.step.emit(
                        event.image_index,
                        event.n_images,
                        event.step,
                        event.steps,
                        event.s_per_step,
                        event.eta_s,
                    )
                elif isinstance(event, Preview):
                    self.preview.emit(event.png)
                elif isinstance(event, Saved):
                    self.image_saved.emit(event)

            result = session.run(job, on_event=on_event)
            self.finished.emit(result.reason)
        except HearthError as exc:
            self.failed.emit(str(exc))
        finally:
            self.busy.emit(False)

    @Slot()
    def shutdown(self) -> None:
        end_session(self)


class ImageRunner(QObject):
    """The Images page's handle on its thread: generate, stop (from the UI thread), close."""

    request_generate = Signal(str, object)
    request_shutdown = Signal()

    def __init__(
        self, parent: QObject | None = None, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__(parent)
        self.worker_thread = QThread()
        self.worker = ImageWorker(hardware)
        self.worker.moveToThread(self.worker_thread)
        self.request_generate.connect(self.worker.generate)
        self.request_shutdown.connect(self.worker.shutdown)
        self.worker_thread.start()

    def generate(self, model: str, settings: ImageSettings) -> None:
        self.request_generate.emit(model, settings)

    def stop(self) -> None:
        session = self.worker.session
        if session is not None:
            session.stop()

    def close(self) -> None:
        self.stop()
        close_session_thread(self.worker_thread, self.worker, self.request_shutdown)


def thumbnail(path: Path, size: int) -> object:
    """A QImage of `path` scaled to fit `size` (QImage, unlike QPixmap, is made off-thread)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    if image.isNull():
        return image
    return image.scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
