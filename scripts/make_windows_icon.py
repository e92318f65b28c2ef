#!/usr/bin/env python3
"""Render resources/hearth.svg into resources/hearth.ico, Hearth's Windows icon (16–256 px).

    .venv/bin/python scripts/make_windows_icon.py [OUT]     (default: resources/hearth.ico)

The .ico is committed: the Windows release job embeds it in hearth.exe and hearthw.exe
(packaging/hearth.spec) and in the installer (packaging/windows/hearth.nsi) without
rendering anything. Run this again after changing hearth.svg; tests/test_windows_icon.py
fails until the two agree.

Qt's SVG renderer draws each size on its own (16 px is drawn at 16 px, not shrunk from
256), the same renderer that draws the Linux menu icons (scripts/packagelib/linux.py).
Pillow writes the images into one ICO, each stored as PNG, which Windows reads since Vista.

Importable: `make_ico(svg, out)` writes the file; `render_png(svg, size)` draws one size.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "hearth.svg"
ICO = ROOT / "resources" / "hearth.ico"

#: 16–48 px for lists, title bars and the taskbar (at 100–300 % display scaling), 64–256 px
#: for Explorer's large views and the installer.
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(svg: Path, size: int) -> bytes:
    """`svg` drawn on a transparent `size` x `size` square, as PNG bytes."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # Qt paints only with one
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"Qt cannot draw {svg}: is it an SVG file?")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    del app
    return bytes(buffer.data().data())


def make_ico(svg: Path = SVG, out: Path = ICO) -> Path:
    """Write `out`: one ICO holding `svg` at every size in ICON_SIZES. Returns `out`."""
    from PIL import Image

    images = [Image.open(io.BytesIO(render_png(svg, size))) for size in ICON_SIZES]
    largest = images[-1]
    # Pillow takes the image of each size from append_images, rather than scaling down.
    largest.save(out, format="ICO", sizes=[(s, s) for s in ICON_SIZES], append_images=images[:-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", nargs="?", type=Path, default=ICO, help=f"default {ICO}")
    parser.add_argument("--svg", type=Path, default=SVG, help=f"default {SVG}")
    args = parser.parse_args()
    print(make_ico(args.svg, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
