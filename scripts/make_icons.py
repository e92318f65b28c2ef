#!/usr/bin/env python3
"""Render resources/hearth.svg into Hearth's Windows and macOS icons.

    .venv/bin/python scripts/make_icons.py             (both, into resources/)
    .venv/bin/python scripts/make_icons.py --ico OUT   (only the .ico, to OUT)
    .venv/bin/python scripts/make_icons.py --icns OUT  (only the .icns, to OUT)

resources/hearth.ico (16–256 px) and resources/hearth.icns (32–1024 px, for 16–512 px
at 1x and 2x) are committed: the release jobs embed the .ico in hearth.exe and hearthw.exe and
in the installer (packaging/windows/hearth.nsi), and the .icns in Hearth.app
(packaging/hearth.spec), without rendering anything. Run this again after changing
hearth.svg; tests/test_icons.py fails until they agree.

Qt's SVG renderer draws each size on its own (16 px is drawn at 16 px, not shrunk from
256), the same renderer that draws the Linux menu icons (scripts/packagelib/linux.py).
Pillow writes the images into one ICO, each stored as PNG, which Windows reads since Vista,
and into one ICNS, each stored as PNG (the ic07–ic14 types macOS reads since 10.7).

Importable: `make_ico(svg, out)` and `make_icns(svg, out)` write the files; `render_png(svg,
size)` draws one size.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "hearth.svg"
ICO = ROOT / "resources" / "hearth.ico"
ICNS = ROOT / "resources" / "hearth.icns"

#: 16–48 px for lists, title bars and the taskbar (at 100–300 % display scaling), 64–256 px
#: for Explorer's large views and the installer.
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
#: The Finder, the Dock and Launchpad: 16–512 px at 1x and 2x (512@2x is 1024 px). Pillow
#: writes the PNG types, 32 px and up (16@2x is 32 px); macOS draws 16 px from the 32 px image.
ICNS_SIZES = (32, 64, 128, 256, 512, 1024)


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


def make_icns(svg: Path = SVG, out: Path = ICNS) -> Path:
    """Write `out`: one ICNS holding `svg` at every size in ICNS_SIZES. Returns `out`."""
    from PIL import Image

    images = [Image.open(io.BytesIO(render_png(svg, size))) for size in ICNS_SIZES]
    # Pillow picks each size from append_images (an image of the right size), rather than
    # scaling the largest down.
    images[-1].save(out, format="ICNS", append_images=images[:-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ico", type=Path, help=f"write only the .ico, here (default {ICO})")
    parser.add_argument("--icns", type=Path, help=f"write only the .icns, here (default {ICNS})")
    parser.add_argument("--svg", type=Path, default=SVG, help=f"default {SVG}")
    args = parser.parse_args()
    both = args.ico is None and args.icns is None
    if args.ico or both:
        print(make_ico(args.svg, args.ico or ICO))
    if args.icns or both:
        print(make_icns(args.svg, args.icns or ICNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
