"""The Images page: prompt and settings, progress with s/step and ETA, live previews, cancel;
and the gallery: thumbnails, one image large with its settings and what can be done with it."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from PySide6.QtCore import QModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.engines.image_diffusers.protocol import MAX_IMAGES, MAX_STEPS, SCHEDULERS
from app.gui.adapters.gallery import IMAGE_ROLE, THUMB, GalleryModel
from app.gui.adapters.image_runner import (
    ImageLists,
    ImageModelChoice,
    ImageRunner,
    read_image_lists,
    size_presets,
)
from app.gui.adapters.runner import BackgroundRunner
from app.gui.theme import icon
from app.hardware.profile import HardwareProfile
from app.humanize import format_duration
from app.sessions.image import ImageSettings, is_turbo
from app.store.gallery import GalleryImage

MODEL_DEFAULT = "the model's own"
MAX_SEED = 2**31 - 1


class ImagesPage(QWidget):
    status = Signal(str)
    lists_shown = Signal(object)  # the ImageLists on screen
    # The worker's `finished` reason once the page has shown it (and the images before it).
    finished_shown = Signal(str)

    def __init__(
        self, runner: BackgroundRunner, *, hardware: HardwareProfile | None = None
    ) -> None:
        super().__init__()
        self.runner = runner
        self.image_runner = ImageRunner(self, hardware=hardware)
        self.choices: dict[str, ImageModelChoice] = {}
        self.selected: GalleryImage | None = None

        # --- the request ---
        self.model_box = QComboBox()
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("Describe the image (Ctrl+Enter makes it)")
        self.prompt.setMaximumHeight(80)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("What to keep out (optional)")
        self.negative.setMaximumHeight(48)
        self.size_box = QComboBox()
        self.steps = QSpinBox()
        self.steps.setRange(0, MAX_STEPS)
        self.steps.setSpecialValueText(MODEL_DEFAULT)  # 0: the model decides
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(-0.5, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setSpecialValueText(MODEL_DEFAULT)  # the minimum: the model decides
        self.guidance.setValue(-0.5)
        self.seed = QSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed_lock = QCheckBox("Keep")
        self.seed_lock.setToolTip("Keep this seed for the next image (else a new one is drawn)")
        dice = QPushButton("New seed")
        dice.setToolTip("Draw a random seed")
        dice.clicked.connect(self.roll_seed)
        self.roll_seed()
        self.scheduler = QComboBox()
        self.scheduler.addItem(MODEL_DEFAULT, None)
        for name in SCHEDULERS:
            self.scheduler.addItem(name, name)
        self.count = QSpinBox()
        self.count.setRange(1, MAX_IMAGES)
        self.why = QLabel("")
        self.why.setWordWrap(True)
        self.generate_button = QPushButton(icon("images"), "Make the image")
        self.generate_button.setDefault(True)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.image_runner.stop)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.progress_text = QLabel("")

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(dice)
        seed_row.addWidget(self.seed_lock)
        form = QFormLayout()
        form.addRow("Model:", self.model_box)
        form.addRow("Prompt:", self.prompt)
        form.addRow("Negative:", self.negative)
        form.addRow("Size:", self.size_box)
        form.addRow("Steps:", self.steps)
        form.addRow("Guidance:", self.guidance)
        form.addRow("Seed:", seed_row)
        form.addRow("Scheduler:", self.scheduler)
        form.addRow("Images:", self.count)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addWidget(self.why)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.progress_text)
        left.addStretch(1)
        left_box = QWidget()
        left_box.setLayout(left)

        # --- the gallery ---
        self.gallery = GalleryModel(runner)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(THUMB, THUMB))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setUniformItemSizes(True)
        self.grid.setSpacing(6)
        self.grid.setModel(self.gallery)
        self.grid.setMinimumHeight(THUMB + 24)
        self.grid.selectionModel().currentChanged.connect(self._select)
        # One viewer: the live preview while an image is made, else the picked image. Its
        # size never follows the picture's (Ignored), so a big image cannot grow the window.
        self.large = QLabel("Pick an image to see it large.")
        self.large.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.large.setMinimumSize(QSize(160, 160))
        self.large.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.preview = self.large
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.again_button = QPushButton("Use these settings again")
        self.again_button.clicked.connect(self.use_again)
        self.save_button = QPushButton("Save as…")
        self.save_button.clicked.connect(self.save_as)
        self.copy_button = QPushButton(icon("copy"), "Copy")
        self.copy_button.clicked.connect(self.copy_image)
        self.reveal_button = QPushButton(icon("folder"), "Show in folder")
        self.reveal_button.clicked.connect(self.reveal)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete)
        self._actions = (
            self.again_button,
            self.save_button,
            self.copy_button,
            self.reveal_button,
            self.delete_button,
        )
        for button in self._actions:
            button.setEnabled(False)
        actions = QGridLayout()  # two rows: the page fits a 1024-pixel-wide window
        for i, button in enumerate(self._actions):
            actions.addWidget(button, i // 3, i % 3)
        right = QVBoxLayout()
        right.addWidget(QLabel("<b>Gallery</b>"))
        right.addWidget(self.grid, 2)
        right.addWidget(self.large, 2)
        right.addWidget(self.details)
        right.addLayout(actions)
        right_box = QWidget()
        right_box.setLayout(right)

        self.splitter = QSplitter()
        self.splitter.addWidget(left_box)
        self.splitter.addWidget(right_box)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        QShortcut(QKeySequence("Ctrl+Return"), self).activated.connect(self.generate)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self).activated.connect(self.image_runner.stop)
        worker = self.image_runner.worker
        worker.planned.connect(self.why.setText)
        worker.load_progress.connect(self._on_load_progress)
        worker.step.connect(self._on_step)
        worker.preview.connect(self._on_preview)
        worker.image_saved.connect(self._on_saved)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.busy.connect(self._on_busy)

    # --- lists ----------------------------------------------------------------------------

    def refresh(self) -> None:
        self.runner.submit(read_image_lists).done.connect(self._show_lists)

    def _show_lists(self, lists: ImageLists) -> None:
        current = self.model_box.currentText()
        self.choices = {m.name: m for m in lists.models}
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for m in lists.models:
            self.model_box.addItem(m.name if m.problem is None else f"{m.name} (unusable)", m.name)
        self.model_box.blockSignals(False)
        index = self.model_box.findData(current)
        self.model_box.setCurrentIndex(index if index >= 0 else 0)
        self._model_changed()
        self.gallery.set_images(lists.gallery)
        if not lists.models:
            self.why.setText(
                "No image model yet: import a diffusers folder on the Models page or with "
                "`hearth models import FOLDER` (docs/images.md says which to get)."
            )
        self.generate_button.setEnabled(bool(lists.models))
        self.lists_shown.emit(lists)

    def _model_changed(self) -> None:
        choice = self.choices.get(str(self.model_box.currentData()))
        self.size_box.clear()
        if choice is None:
            return
        for width, height in size_presets(choice.family, choice.native):
            label = f"{width} × {height}" + (
                "  (native)" if width == height == choice.native else ""
            )
            self.size_box.addItem(label, (width, height))
        if choice.problem:
            self.why.setText(choice.problem)
        elif is_turbo(choice.name):
            self.why.setText("A Turbo model: one step and no guidance make an image.")
        else:
            self.why.setText("")

    # --- making images --------------------------------------------------------------------

    def roll_seed(self) -> None:
        self.seed.setValue(random.randrange(MAX_SEED))

    def settings(self) -> ImageSettings:
        size = self.size_box.currentData()
        width, height = size if isinstance(size, tuple) else (None, None)
        guidance = self.guidance.value()
        return ImageSettings(
            prompt=self.prompt.toPlainText().strip(),
            negative_prompt=self.negative.toPlainText().strip(),
            steps=self.steps.value() or None,
            guidance=None if guidance < 0 else guidance,
            width=width,
            height=height,
            seed=self.seed.value(),
            scheduler=self.scheduler.currentData(),
            n_images=self.count.value(),
        )

    def generate(self) -> None:
        if not self.generate_button.isEnabled():
            return
        settings = self.settings()
        if not settings.prompt:
            self.status.emit("Describe the image first: the prompt is empty.")
            self.prompt.setFocus()
            return
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.progress_text.setText("Starting…")
        self.image_runner.generate(str(self.model_box.currentData() or ""), settings)
        if not self.seed_lock.isChecked():
            self.roll_seed()  # the next image gets a new seed; this one is recorded with it

    def _on_busy(self, busy: bool) -> None:
        self.generate_button.setEnabled(not busy and bool(self.choices))
        self.cancel_button.setEnabled(busy)

    def _on_load_progress(self, fraction: float, component: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress_text.setText(f"Loading the model… {fraction:.0%} ({component}) — Esc cancels")

    def _on_step(
        self, image: int, n: int, step: int, steps: int, s_per_step: float, eta: float
    ) -> None:
        done = (image * steps + step) / max(n * steps, 1)
        self.progress.setValue(int(done * 1000))
        which = f"image {image + 1} of {n}, " if n > 1 else ""
        self.progress_text.setText(
            f"{which}step {step} of {steps} · {s_per_step:.2f} s/step · about "
            f"{format_duration(eta)} left — Esc cancels"
        )

    def _on_preview(self, png: bytes) -> None:
        image = QImage.fromData(png)
        if not image.isNull():
            self.preview.setPixmap(self._fit(QPixmap.fromImage(image), self.preview.size()))

    def _on_saved(self, image: GalleryImage) -> None:
        self.gallery.add_image(image)
        self.grid.setCurrentIndex(self.gallery.index(0))
        picture = QPixmap(str(image.path))
        if not picture.isNull():
            self.preview.setPixmap(self._fit(picture, self.preview.size()))

    def _on_finished(self, reason: str) -> None:
        self.progress.setVisible(False)
        self.progress_text.setText(
            "Cancelled: finished images are kept." if reason == "cancelled" else "Done."
        )
        self.status.emit(self.progress_text.text())
        self.finished_shown.emit(reason)

    def _on_failed(self, message: str) -> None:
        self.progress.setVisible(False)
        self.progress_text.setText(message)
        self.status.emit(message)

    # --- the gallery ----------------------------------------------------------------------

    def _select(self, current: QModelIndex, _previous: QModelIndex) -> None:
        image = current.data(IMAGE_ROLE) if current.isValid() else None
        self.selected = image if isinstance(image, GalleryImage) else None
        for button in self._actions:
            button.setEnabled(self.selected is not None)
        if self.selected is None:
            self.large.setText("Pick an image to see it large.")
            self.details.setText("")
            return
        picture = QPixmap(str(self.selected.path))
        if picture.isNull():
            self.large.setText(f"The file is gone from {self.selected.path}.")
        else:
            self.large.setPixmap(self._fit(picture, self.large.size()))
        p = self.selected.params
        negative = f"<br><i>without:</i> {_esc(p.negative_prompt)}" if p.negative_prompt else ""
        self.details.setText(
            f"{_esc(p.prompt)}{negative}<br>{p.width} × {p.height} · seed {p.seed} · {p.steps} "
            f"steps · guidance {p.guidance:g} · {p.scheduler or 'default scheduler'} · "
            f"{_esc(p.model)} · {self.selected.created_at[:16].replace('T', ' ')}"
        )

    def use_again(self) -> None:
        """Put the selected image's settings back in the form (the seed kept)."""
        if self.selected is None:
            return
        p = self.selected.params
        self.prompt.setPlainText(p.prompt)
        self.negative.setPlainText(p.negative_prompt)
        index = self.model_box.findData(p.model)
        if index >= 0:
            self.model_box.setCurrentIndex(index)
        size = self.size_box.findData((p.width, p.height))
        if size < 0:
            self.size_box.addItem(f"{p.width} × {p.height}", (p.width, p.height))
            size = self.size_box.count() - 1
        self.size_box.setCurrentIndex(size)
        self.steps.setValue(p.steps)
        self.guidance.setValue(p.guidance)
        self.seed.setValue(p.seed)
        self.seed_lock.setChecked(True)
        scheduler = self.scheduler.findData(p.scheduler or None)
        self.scheduler.setCurrentIndex(max(scheduler, 0))
        self.status.emit("The settings of that image are back in the form, its seed kept.")

    def save_as(self) -> None:
        if self.selected is None:
            return
        target, _ = QFileDialog.getSaveFileName(
            self, "Save the image", str(Path.home() / self.selected.path.name), "PNG (*.png)"
        )
        if not target:
            return
        try:
            shutil.copyfile(self.selected.path, target)  # the settings travel inside the PNG
        except OSError as exc:
            self.status.emit(
                f"Could not save {target} ({exc.strerror or exc}). Pick a folder you can "
                "write to, or free some space."
            )
            return
        self.status.emit(f"Saved {target}.")

    def copy_image(self) -> None:
        if self.selected is not None:
            QGuiApplication.clipboard().setImage(QImage(str(self.selected.path)))
            self.status.emit("The image is on the clipboard.")

    def reveal(self) -> None:
        if self.selected is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.selected.path.parent)))

    def delete(self, *, confirm: bool = True) -> None:
        image = self.selected
        if image is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self, "Delete the image?", f"Delete this image? Its file goes too:\n{image.path}"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        job = self.runner.submit(lambda: _delete(image.id))
        job.done.connect(self.gallery.remove_image)  # a bound slot: dropped if the page goes
        job.failed.connect(self.status)

    def shutdown(self) -> None:
        self.image_runner.close()

    @staticmethod
    def _fit(picture: QPixmap, box: QSize) -> QPixmap:
        return picture.scaled(
            box.boundedTo(picture.size() * 2),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )


def _delete(image_id: str) -> str:
    from contextlib import closing

    from app.store import open_default_database
    from app.store.gallery import delete_image

    with closing(open_default_database()) as db:
        delete_image(db, image_id)
    return image_id


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
