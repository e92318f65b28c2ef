"""The Settings page: theme, offline mode and the Hub address, stored where the CLI reads them."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.runner import BackgroundRunner
from app.gui.adapters.settings import WindowSettings, read_settings, save_settings
from app.gui.theme import Theme

THEME_LABELS = {Theme.SYSTEM: "Follow the system", Theme.LIGHT: "Light", Theme.DARK: "Dark"}


class SettingsPage(QWidget):
    """Edits WindowSettings; Save writes them to the store (theme changes apply at once)."""

    status = Signal(str)
    theme_chosen = Signal(str)  # a Theme value: the window applies it
    saved = Signal(object)  # the WindowSettings now stored

    def __init__(self, runner: BackgroundRunner) -> None:
        super().__init__()
        self.runner = runner
        self.current: WindowSettings | None = None
        self.theme = QComboBox()
        for theme, label in THEME_LABELS.items():
            self.theme.addItem(label, theme.value)
        self.theme.currentIndexChanged.connect(
            lambda _i: self.theme_chosen.emit(str(self.theme.currentData()))
        )
        self.offline = QCheckBox("Offline mode: never contact the Hub (search and downloads off)")
        self.endpoint = QLineEdit()
        self.endpoint.setPlaceholderText("https://huggingface.co (leave empty) or a mirror")
        self.overrides = QLabel("")
        self.overrides.setWordWrap(True)
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)

        form = QFormLayout()
        form.addRow("Theme:", self.theme)
        form.addRow("Network:", self.offline)
        form.addRow("Hub address:", self.endpoint)
        layout = QVBoxLayout(self)
        title = QLabel(
            "<h2>Settings</h2>Stored in Hearth's database: the command line uses the same ones."
        )
        title.setWordWrap(True)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.overrides)
        layout.addWidget(self.save_button)
        layout.addStretch(1)

    def refresh(self) -> None:
        job = self.runner.submit(read_settings)
        job.done.connect(self._show)
        job.failed.connect(self.status)

    def _show(self, settings: WindowSettings) -> None:
        self.current = settings
        self.theme.blockSignals(True)
        self.theme.setCurrentIndex(max(self.theme.findData(settings.theme.value), 0))
        self.theme.blockSignals(False)
        self.offline.setChecked(settings.offline)
        self.endpoint.setText(settings.endpoint)
        notes = [
            f"{value} is set, so it wins over the setting here."
            for _k, value in settings.overridden
        ]
        self.overrides.setText(" ".join(notes))
        self.overrides.setVisible(bool(notes))

    def edited(self) -> WindowSettings:
        base = self.current or WindowSettings(Theme.SYSTEM, False, "")
        return replace(
            base,
            theme=Theme(str(self.theme.currentData())),
            offline=self.offline.isChecked(),
            endpoint=self.endpoint.text().strip(),
        )

    def save(self) -> None:
        wanted = self.edited()
        self.save_button.setEnabled(False)
        job = self.runner.submit(lambda: save_settings(wanted))
        job.done.connect(self._saved)
        job.failed.connect(self._failed)

    def _saved(self, settings: WindowSettings) -> None:
        self.save_button.setEnabled(True)
        self._show(settings)
        self.status.emit("Settings saved.")
        self.saved.emit(settings)

    def _failed(self, message: str) -> None:
        self.save_button.setEnabled(True)
        self.status.emit(message)
