"""Light and dark themes: one palette per theme, every colour the window uses comes from here.

The window follows the OS colour scheme (Qt 6.5's `styleHints().colorScheme()`) unless the
person picked light or dark in Settings (`gui.theme` in the store, read by `hearth
--screenshot --theme` too). Icons are shipped SVGs drawn in `currentColor`, painted in the
palette's text colour so they read in both themes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

#: The settings key (in the store) holding the person's choice.
SETTING_THEME = "gui.theme"


class Theme(StrEnum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


@dataclass(frozen=True)
class Colours:
    """The colours of one theme: the Qt palette's roles and Hearth's own meanings."""

    window: str
    base: str  # text fields, lists, the transcript
    alternate: str
    text: str
    muted: str  # secondary text: metrics, reasoning, placeholders
    button: str
    highlight: str
    highlighted_text: str
    link: str
    good: str  # fits on the GPU
    info: str  # fits in RAM, or split
    warn: str  # tight
    bad: str  # won't fit, unusable, errors
    on_status: str  # text on a good/info/warn/bad background


LIGHT = Colours(
    window="#f5f5f4",
    base="#ffffff",
    alternate="#efefed",
    text="#1c1b1a",
    muted="#6b6863",
    button="#ebeae7",
    highlight="#c2410c",
    highlighted_text="#ffffff",
    link="#b4410f",
    good="#1b7f3b",
    info="#1b5e7f",
    warn="#a86b00",
    bad="#b3261e",
    on_status="#ffffff",
)
DARK = Colours(
    window="#1f1e1c",
    base="#2a2826",
    alternate="#33312e",
    text="#ecebe8",
    muted="#a29d96",
    button="#3a3835",
    highlight="#f97316",
    highlighted_text="#1c1b1a",
    link="#fb923c",
    good="#4ade80",
    info="#7dd3fc",
    warn="#fbbf24",
    bad="#f87171",
    on_status="#1c1b1a",
)

_current: Colours = LIGHT


def system_is_dark() -> bool:
    """Whether the OS asks for a dark scheme (False when Qt cannot tell)."""
    app = QGuiApplication.instance()
    if app is None:
        return False
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return bool(scheme is not None and scheme() == Qt.ColorScheme.Dark)


def resolve(choice: Theme | str | None) -> Theme:
    """LIGHT or DARK for a choice (SYSTEM, an unknown value or None follow the OS)."""
    try:
        theme = Theme(choice or Theme.SYSTEM)
    except ValueError:
        theme = Theme.SYSTEM
    if theme is Theme.SYSTEM:
        return Theme.DARK if system_is_dark() else Theme.LIGHT
    return theme


def apply_theme(app: QApplication, choice: Theme | str | None) -> Theme:
    """Give the whole application the palette of `choice`; returns LIGHT or DARK."""
    global _current
    theme = resolve(choice)
    _current = DARK if theme is Theme.DARK else LIGHT
    app.setStyle("Fusion")  # the one style that draws everything from the palette
    app.setPalette(palette_for(_current))
    return theme


def colours() -> Colours:
    """The colours of the theme in use."""
    return _current


def palette_for(c: Colours) -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: c.window,
        QPalette.ColorRole.WindowText: c.text,
        QPalette.ColorRole.Base: c.base,
        QPalette.ColorRole.AlternateBase: c.alternate,
        QPalette.ColorRole.ToolTipBase: c.base,
        QPalette.ColorRole.ToolTipText: c.text,
        QPalette.ColorRole.PlaceholderText: c.muted,
        QPalette.ColorRole.Text: c.text,
        QPalette.ColorRole.Button: c.button,
        QPalette.ColorRole.ButtonText: c.text,
        QPalette.ColorRole.BrightText: c.bad,
        QPalette.ColorRole.Highlight: c.highlight,
        QPalette.ColorRole.HighlightedText: c.highlighted_text,
        QPalette.ColorRole.Link: c.link,
        QPalette.ColorRole.LinkVisited: c.link,
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(c.muted))
    return p


def icon(name: str, colour: str | None = None) -> QIcon:
    """A shipped SVG icon (`resources/icon-NAME.svg`) drawn in `colour` (default: text)."""
    svg = resources.files("app.resources").joinpath(f"icon-{name}.svg").read_text()
    result = QIcon()
    modes = (
        (QIcon.Mode.Normal, colour or _current.text),
        (QIcon.Mode.Selected, _current.highlighted_text),  # on the highlight colour
        (QIcon.Mode.Disabled, _current.muted),
    )
    for mode, paint in modes:
        renderer = QSvgRenderer(QByteArray(svg.replace("currentColor", paint).encode()))
        for size in (16, 24, 32, 48):  # sharp on every screen density
            pixmap = QPixmap(size, size)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            renderer.render(painter)
            painter.end()
            result.addPixmap(pixmap, mode)
    return result
