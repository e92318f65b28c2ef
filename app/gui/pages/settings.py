"""The Settings page: theme; how chat models load (backend, GPU layers, threads, context);
the models folder; the Hub (offline mode, address, access token). The command line uses the
same settings."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.errors import HearthError
from app.gui.adapters.runner import BackgroundRunner
from app.gui.adapters.settings import (
    MODELS_FOLDER_NOTE,
    TokenChange,
    WindowSettings,
    read_settings,
    save_settings,
)
from app.gui.theme import Theme, colours, icon
from app.sessions.preferences import LoadPreferences, parse_backend, parse_number

THEME_LABELS = {Theme.SYSTEM: "Follow the system", Theme.LIGHT: "Light", Theme.DARK: "Dark"}
BACKEND_LABELS = {
    "auto": "Automatic (the best one here)",
    "cuda": "CUDA (NVIDIA)",
    "metal": "Metal (Apple)",
    "cpu": "CPU only",
}


class SettingsPage(QWidget):
    """Edits WindowSettings; Save writes them to the store (theme changes apply at once)."""

    status = Signal(str)
    theme_chosen = Signal(str)  # a Theme value: the window applies it
    saved = Signal(object)  # the WindowSettings now stored
    shown = Signal(object)  # the WindowSettings on screen

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

        # --- how chat models load ---
        self.backend = QComboBox()
        for combo in (self.theme, self.backend):
            combo.setMaximumWidth(340)
        for value, label in BACKEND_LABELS.items():
            self.backend.addItem(label, value)
        self.gpu_layers = self._number_field(
            "auto", "0 runs on the CPU only; empty: as many as fit"
        )
        self.threads = self._number_field("auto", "Empty: one per physical core")
        self.context = self._number_field(
            "auto", "Tokens of context; empty: what fits, up to the model's own"
        )

        # --- storage ---
        self.models_folder = QLineEdit()
        self.models_folder.setPlaceholderText("the default folder")
        self.choose_folder_button = QPushButton(icon("folder"), "Choose…")
        self.choose_folder_button.clicked.connect(self.choose_models_folder)
        self.default_folder_button = QPushButton("Default")
        self.default_folder_button.setToolTip("Go back to Hearth's own models folder")
        self.default_folder_button.clicked.connect(self.models_folder.clear)
        self.models_note = self._note(MODELS_FOLDER_NOTE)

        # --- the Hub ---
        self.offline = QCheckBox("Offline mode: never contact the Hub (search and downloads off)")
        self.endpoint = QLineEdit()
        self.endpoint.setPlaceholderText("https://huggingface.co (leave empty) or a mirror")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("paste a new token to save it (hf_…)")
        self.forget_token_button = QPushButton("Forget")
        self.forget_token_button.setToolTip("Delete the saved token from the keyring")
        self.forget_token_button.clicked.connect(self.forget_token)
        self.token_note = self._note("")
        self._forget_token = False

        self.overrides = self._note("")
        self.error = self._note("")
        self.error.setObjectName("settingsError")
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.setEnabled(False)  # until the stored settings are on screen
        self.save_button.clicked.connect(self.save)
        self.forget_token_button.setEnabled(False)

        form = QFormLayout()
        form.addRow(self._heading("Appearance"))
        form.addRow("Theme:", self.theme)
        form.addRow(self._heading("Chat models (the command line uses these too)"))
        form.addRow("Backend:", self.backend)
        form.addRow("GPU layers:", self.gpu_layers)
        form.addRow("Threads:", self.threads)
        form.addRow("Context size:", self.context)
        form.addRow(self._heading("Storage"))
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.models_folder, 1)
        folder_row.addWidget(self.choose_folder_button)
        folder_row.addWidget(self.default_folder_button)
        folder_col = QVBoxLayout()
        folder_col.addLayout(folder_row)
        folder_col.addWidget(self.models_note)
        form.addRow("Models folder:", folder_col)
        form.addRow(self._heading("Hugging Face Hub"))
        form.addRow("Network:", self.offline)
        form.addRow("Hub address:", self.endpoint)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.forget_token_button)
        token_col = QVBoxLayout()
        token_col.addLayout(token_row)
        token_col.addWidget(self.token_note)
        form.addRow("Access token:", token_col)

        body = QWidget()
        column = QVBoxLayout(body)
        title = QLabel(
            "<h2>Settings</h2>Stored in Hearth's database: the command line uses the same ones."
        )
        title.setWordWrap(True)
        column.addWidget(title)
        column.addLayout(form)
        column.addWidget(self.overrides)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        buttons = QHBoxLayout()
        buttons.addWidget(self.error, 1)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        self.restyle()

    @staticmethod
    def _number_field(placeholder: str, tip: str) -> QLineEdit:
        field = QLineEdit()
        field.setPlaceholderText(placeholder)
        field.setToolTip(tip)
        field.setMaximumWidth(180)
        return field

    @staticmethod
    def _note(text: str) -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        return label

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = QLabel(f"<b>{text}</b>")
        label.setContentsMargins(0, 8, 0, 0)
        return label

    def restyle(self) -> None:
        """Colours from the current theme (the window calls this when the theme changes)."""
        c = colours()
        for note in (self.models_note, self.token_note, self.overrides):
            note.setStyleSheet(f"color: {c.muted};")
        self.error.setStyleSheet(f"color: {c.bad};")

    # --- reading --------------------------------------------------------------------------

    def refresh(self) -> None:
        job = self.runner.submit(read_settings)
        job.done.connect(self._show)
        job.failed.connect(self.status)

    def _show(self, settings: WindowSettings) -> None:
        self.current = settings
        self.theme.blockSignals(True)
        self.theme.setCurrentIndex(max(self.theme.findData(settings.theme.value), 0))
        self.theme.blockSignals(False)
        load = settings.load
        self.backend.setCurrentIndex(
            max(self.backend.findData(load.backend.value if load.backend else "auto"), 0)
        )
        for field, value in (
            (self.gpu_layers, load.gpu_layers),
            (self.threads, load.threads),
            (self.context, load.n_ctx),
        ):
            field.setText("" if value is None else str(value))
        self.models_folder.setText(settings.models_folder)
        self.models_folder.setPlaceholderText(settings.models_default)
        self.offline.setChecked(settings.offline)
        self.endpoint.setText(settings.endpoint)
        self.token.clear()
        self._forget_token = False
        token = settings.token
        if token.masked:
            self.token_note.setText(f"A token is saved in the keyring ({token.masked}).")
        else:
            self.token_note.setText(
                "No token saved: public models only. Gated models need one from your Hub account."
            )
        self.forget_token_button.setEnabled(bool(token.masked))
        notes = [
            f"{value} is set, so it wins over the setting here."
            for _k, value in settings.overridden
        ]
        if settings.models_in_use != (settings.models_folder or settings.models_default):
            notes.append(f"New models go to {settings.models_in_use}.")
        self.overrides.setText(" ".join(notes))
        self.overrides.setVisible(bool(notes))
        self.error.clear()
        self.save_button.setEnabled(True)
        self.shown.emit(settings)

    # --- editing --------------------------------------------------------------------------

    def choose_models_folder(self) -> None:
        start = self.models_folder.text() or self.models_folder.placeholderText()
        folder = QFileDialog.getExistingDirectory(self, "Where new models go", start)
        if folder:
            self.models_folder.setText(folder)

    def forget_token(self) -> None:
        self._forget_token = True
        self.token.clear()
        self.token_note.setText("The saved token will be deleted when you press Save.")
        self.forget_token_button.setEnabled(False)

    def edited(self) -> WindowSettings:
        """The settings as edited; a PreferenceError (one sentence) when a value is unusable."""
        base = self.current or WindowSettings(Theme.SYSTEM, False, "")
        load = LoadPreferences(
            backend=parse_backend(str(self.backend.currentData())),
            gpu_layers=parse_number("gpu_layers", self.gpu_layers.text()),
            threads=parse_number("threads", self.threads.text()),
            n_ctx=parse_number("n_ctx", self.context.text()),
        )
        return replace(
            base,
            theme=Theme(str(self.theme.currentData())),
            offline=self.offline.isChecked(),
            endpoint=self.endpoint.text().strip(),
            load=load,
            models_folder=self.models_folder.text().strip(),
        )

    def token_change(self) -> TokenChange:
        if self._forget_token:
            return TokenChange(forget=True)
        typed = self.token.text().strip()
        return TokenChange(new=typed or None)

    def save(self) -> None:
        if self.current is None:
            return  # not read yet: saving now would overwrite what is stored with blanks
        try:
            wanted = self.edited()
        except HearthError as exc:
            self._failed(str(exc))
            return
        token = self.token_change()
        self.save_button.setEnabled(False)
        self.error.clear()
        job = self.runner.submit(lambda: save_settings(wanted, token))
        job.done.connect(self._saved)
        job.failed.connect(self._failed)

    def _saved(self, settings: WindowSettings) -> None:
        self.save_button.setEnabled(True)
        self._show(settings)
        self.status.emit("Settings saved.")
        self.saved.emit(settings)

    def _failed(self, message: str) -> None:
        self.save_button.setEnabled(self.current is not None)
        self.error.setText(message)  # beside Save, where the person is looking
