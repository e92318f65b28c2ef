"""The chat page's side panel: one conversation's system prompt (with saved presets) and
sampling settings; changes apply to the next answer and are kept with the conversation."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.gui.adapters.chat_runner import TurnOptions
from app.gui.adapters.conversations import CONTEXT_KEY

#: What the spin boxes show for a setting the person has not chosen (the worker's defaults).
DEFAULTS: dict[str, float | int] = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024}
#: Edits are saved once typing pauses this long.
SAVE_DELAY_MS = 400


class ChatSettingsPanel(QScrollArea):
    """The side panel; `changed` says the person changed something (the page saves it)."""

    changed = Signal()
    preset_saved = Signal(str, str)  # name, prompt
    preset_deleted = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(200)
        self.presets: dict[str, str] = {}
        self.chosen: dict[str, Any] = {}  # only what the person set
        self._loading = False
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.changed)

        heading = QLabel("<b>This conversation</b>")
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.model_label.setToolTip(
            "Pick the model above; the conversation keeps the last one used"
        )
        self.preset_box = QComboBox()
        self.preset_box.setToolTip("Saved system prompts")
        self.preset_box.activated.connect(self._preset_picked)
        self.save_preset_button = QPushButton("Save…")
        self.save_preset_button.setToolTip("Save this system prompt as a preset")
        self.save_preset_button.clicked.connect(self.ask_preset_name)
        self.delete_preset_button = QPushButton("Delete")
        self.delete_preset_button.setToolTip("Delete the preset picked")
        self.delete_preset_button.clicked.connect(self._delete_preset)
        presets = QHBoxLayout()
        presets.addWidget(self.save_preset_button)
        presets.addWidget(self.delete_preset_button)
        presets.addStretch(1)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("You are a helpful assistant.")
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setMinimumHeight(80)
        self.system_prompt.setMaximumHeight(180)
        self.system_prompt.textChanged.connect(self._edited)

        self.temperature = self._spin(QDoubleSpinBox(), "temperature", 0.0, 2.0, 0.05)
        self.top_p = self._spin(QDoubleSpinBox(), "top_p", 0.0, 1.0, 0.05)
        self.max_tokens = self._spin(QSpinBox(), "max_tokens", 1, 32768, 64)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(0, 262_144)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSpecialValueText("Auto")
        self.n_ctx.setToolTip("Tokens of context; applies when the model is next loaded")
        self.n_ctx.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        self.n_ctx.valueChanged.connect(lambda v: self._set(CONTEXT_KEY, v or None))

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Context", self.n_ctx)
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.clicked.connect(self.reset)
        self.note = QLabel(
            "Changes apply to the next answer. A new context size applies when the model is "
            "loaded again."
        )
        self.note.setWordWrap(True)

        box = QWidget()
        layout = QVBoxLayout(box)
        layout.addWidget(heading)
        layout.addWidget(self.model_label)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.preset_box)
        layout.addWidget(self.system_prompt)
        layout.addLayout(presets)
        layout.addLayout(form)
        layout.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.setWidget(box)
        self.set_presets({})
        self.show_settings("", {})

    def _spin(
        self, spin: QSpinBox | QDoubleSpinBox, key: str, low: float, high: float, step: float
    ) -> Any:
        spin.setRange(low, high)  # type: ignore[arg-type]
        spin.setSingleStep(step)  # type: ignore[arg-type]
        spin.setAccessibleName(key)
        spin.valueChanged.connect(lambda v: self._set(key, v))
        return spin

    # --- values ---------------------------------------------------------------------------

    def show_settings(self, system_prompt: str, settings: dict[str, Any]) -> None:
        """Show a conversation's choices (without counting that as a change)."""
        self._loading = True
        try:
            self.chosen = {
                k: v for k, v in settings.items() if k in (*DEFAULTS, CONTEXT_KEY) and v is not None
            }
            self.system_prompt.setPlainText(system_prompt)
            self.temperature.setValue(
                float(self.chosen.get("temperature", DEFAULTS["temperature"]))
            )
            self.top_p.setValue(float(self.chosen.get("top_p", DEFAULTS["top_p"])))
            self.max_tokens.setValue(int(self.chosen.get("max_tokens", DEFAULTS["max_tokens"])))
            self.n_ctx.setValue(int(self.chosen.get(CONTEXT_KEY) or 0))
            self._match_preset()
        finally:
            self._loading = False

    def show_model(self, model: str | None) -> None:
        self.model_label.setText(f"Model: {model}" if model else "Model: the one picked above")

    def options(self, model: str | None = None) -> TurnOptions:
        """What goes with the next turn (and is saved with the conversation)."""
        return TurnOptions(self.system_prompt.toPlainText().strip(), dict(self.chosen), model)

    def context_size(self) -> int | None:
        value = self.chosen.get(CONTEXT_KEY)
        return int(value) if value else None

    def reset(self) -> None:
        self.show_settings(self.system_prompt.toPlainText(), {})
        self._save_timer.start()

    def flush(self) -> None:
        """Report a change still waiting for typing to pause (before a send)."""
        if self._save_timer.isActive():
            self._save_timer.stop()
            self.changed.emit()

    def _set(self, key: str, value: Any) -> None:
        if self._loading:
            return
        if value is None:
            self.chosen.pop(key, None)
        else:
            self.chosen[key] = round(value, 3) if isinstance(value, float) else value
        self._save_timer.start()

    def _edited(self) -> None:
        if not self._loading:
            self._match_preset()
            self._save_timer.start()

    # --- presets --------------------------------------------------------------------------

    def set_presets(self, presets: dict[str, str]) -> None:
        self.presets = dict(presets)
        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        self.preset_box.addItem("No preset", "")
        for name in sorted(self.presets, key=str.lower):
            self.preset_box.addItem(name, name)
        self.preset_box.blockSignals(False)
        self._match_preset()

    def _match_preset(self) -> None:
        text = self.system_prompt.toPlainText().strip()
        name = next((n for n, p in self.presets.items() if p.strip() == text and text), "")
        self.preset_box.setCurrentIndex(max(self.preset_box.findData(name), 0))
        self.delete_preset_button.setEnabled(bool(name))

    def _preset_picked(self, index: int) -> None:
        name = str(self.preset_box.itemData(index) or "")
        if name in self.presets:
            self.system_prompt.setPlainText(self.presets[name])  # a change: saved, used next

    def ask_preset_name(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        name, ok = QInputDialog.getText(self, "Save system prompt", "Preset name:")
        if ok and name.strip():
            self.save_preset(name.strip())

    def save_preset(self, name: str) -> None:
        prompt = self.system_prompt.toPlainText().strip()
        self.presets[name] = prompt
        self.set_presets(self.presets)
        self.preset_saved.emit(name, prompt)

    def _delete_preset(self) -> None:
        name = str(self.preset_box.currentData() or "")
        if name in self.presets:
            del self.presets[name]
            self.set_presets(self.presets)
            self.preset_deleted.emit(name)
