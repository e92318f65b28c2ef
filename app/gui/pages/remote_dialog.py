"""The Add remote dialog: a provider's name, address, key and (optionally) context window."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from app.gui.adapters.remote_providers import NewProvider


class RemoteProviderDialog(QDialog):
    """Asks for a new remote provider; `values()` is what was typed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a remote server")
        self.name = QLineEdit()
        self.name.setPlaceholderText("gpu-box")
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://gpu-box.lan:8000 (the API root, …/v1)")
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("optional; kept in the keyring")
        self.context = QSpinBox()
        self.context.setRange(0, 10_000_000)
        self.context.setSingleStep(1024)
        self.context.setSpecialValueText("detect")
        form = QFormLayout(self)
        form.addRow(
            QLabel(
                "An OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama, TGI). "
                "Hearth sends nothing to it until it is added."
            )
        )
        form.addRow("Name", self.name)
        form.addRow("Address", self.url)
        form.addRow("API key", self.key)
        form.addRow("Context window", self.context)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> NewProvider:
        return NewProvider(
            name=self.name.text().strip(),
            url=self.url.text().strip(),
            api_key=self.key.text(),
            context_window=self.context.value() or None,
        )
