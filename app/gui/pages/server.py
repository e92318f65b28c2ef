"""The Server page: the local OpenAI-compatible API, off until turned on; URL, key, copy."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.api_server import ApiServerController

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4567
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def confirm_lan(parent: QWidget, host: str) -> bool:
    """Ask before listening beyond this machine (the key stays required)."""
    answer = QMessageBox.warning(
        parent,
        "Serve to the network?",
        f"Listening on {host} lets other computers on your network reach Hearth's models. "
        "They still need the API key. Serve on the network?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Yes


class ServerPage(QWidget):
    """Binds the switch, host, port and key fields to an `ApiServerController`."""

    status = Signal(str)
    api_state = Signal(str)  # "API on http://…" while on, "" when off

    def __init__(self, controller: ApiServerController | None = None) -> None:
        super().__init__()
        self.controller = controller or ApiServerController(self)
        self.confirm_lan = confirm_lan  # tests replace the dialog
        self.switch = QCheckBox("Serve models to other programs on this computer")
        self.switch.setToolTip("An OpenAI-compatible API for editors, scripts and agents")
        self.host = QLineEdit(DEFAULT_HOST)
        self.host.setToolTip("127.0.0.1: this computer only. Another address reaches the network.")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.port.setValue(DEFAULT_PORT)
        self.url = QLabel("Off")
        self.url.setTextInteractionFlags(self.url.textInteractionFlags().TextSelectableByMouse)
        self.key = QLineEdit()
        self.key.setReadOnly(True)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("made when the server first starts")
        self.show_key = QPushButton("Show")
        self.show_key.setCheckable(True)
        self.copy_key = QPushButton("Copy key")
        self.copy_key.setEnabled(False)
        self.where = QLabel("")
        self.where.setWordWrap(True)

        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.show_key)
        key_row.addWidget(self.copy_key)
        form = QFormLayout()
        form.addRow("Address", self.host)
        form.addRow("Port", self.port)
        form.addRow("URL", self.url)
        form.addRow("API key", key_row)
        form.addRow("", self.where)
        intro = QLabel(
            "Point a client (the openai package, an editor, a script) at the URL with the key "
            "as its API key. Requests from web pages and other host names are refused."
        )
        intro.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.switch)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addStretch(1)

        self.switch.toggled.connect(self._toggled)
        self.show_key.toggled.connect(self._show_key)
        self.copy_key.clicked.connect(self._copy_key)
        self.controller.started.connect(self._on_started)
        self.controller.stopped.connect(self._on_stopped)
        self.controller.failed.connect(self._on_failed)

    def _toggled(self, on: bool) -> None:
        if on:
            host = self.host.text().strip() or DEFAULT_HOST
            if host not in LOOPBACK and not self.confirm_lan(self, host):
                self.switch.blockSignals(True)
                self.switch.setChecked(False)
                self.switch.blockSignals(False)
                return
            self.host.setEnabled(False)
            self.port.setEnabled(False)
            self.url.setText("Starting…")
            self.controller.start(host, self.port.value())
        else:
            self.url.setText("Stopping…")
            self.controller.stop()

    def _on_started(self, url: str, key: str, where: str) -> None:
        self.url.setText(f"{url}/v1")
        self.key.setText(key)
        self.copy_key.setEnabled(True)
        self.where.setText(f"The key is kept in {where}.")
        self.api_state.emit(f"API on {url}")
        self.status.emit(f"The API server is on at {url}.")

    def _on_stopped(self) -> None:
        self.url.setText("Off")
        self.host.setEnabled(True)
        self.port.setEnabled(True)
        self.api_state.emit("")
        self.status.emit("The API server is off.")

    def _on_failed(self, message: str) -> None:
        self.switch.blockSignals(True)
        self.switch.setChecked(False)
        self.switch.blockSignals(False)
        self._on_stopped()
        self.url.setText("Off")
        self.status.emit(message)

    def _show_key(self, shown: bool) -> None:
        mode = QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        self.key.setEchoMode(mode)
        self.show_key.setText("Hide" if shown else "Show")

    def _copy_key(self) -> None:
        QGuiApplication.clipboard().setText(self.key.text())
        self.status.emit("API key copied.")

    def models_in_use(self) -> list[str]:
        """The library names the API holds loaded (for the Models page's delete check)."""
        return self.controller.models_in_use()

    def shut_down(self) -> None:
        """Stop the server and wait (closing the window)."""
        if self.controller.running:
            self.controller.stop()
        self.controller.wait()
