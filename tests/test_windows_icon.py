"""resources/hearth.ico, Hearth's Windows icon, is a valid multi-size ICO drawn from hearth.svg.

The .ico is committed (the Windows release job renders nothing); scripts/make_windows_icon.py
makes it again after the SVG changes, and these tests fail until someone does.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ICO = ROOT / "resources" / "hearth.ico"
SVG = ROOT / "resources" / "hearth.svg"
SIZES = [16, 24, 32, 48, 64, 128, 256]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_windows_icon() -> ModuleType:
    path = ROOT / "scripts" / "make_windows_icon.py"
    spec = importlib.util.spec_from_file_location("hearth_make_windows_icon", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ico_images(data: bytes) -> dict[int, bytes]:
    """Each image of an ICO file by its size in pixels, read as Windows reads the directory."""
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    assert (reserved, kind) == (0, 1), "not an icon file"
    images: dict[int, bytes] = {}
    for i in range(count):
        width, height, _colors, _, _planes, bits, size, offset = struct.unpack_from(
            "<BBBBHHII", data, 6 + 16 * i
        )
        assert bits == 32, "Hearth's icon has an alpha channel at every size"
        assert offset + size <= len(data)
        image = data[offset : offset + size]
        # 0 in the directory means 256; a PNG image says its own size in its IHDR chunk.
        side = width or 256
        assert (width or 256) == (height or 256)
        assert image.startswith(PNG_SIGNATURE)
        assert struct.unpack_from(">II", image, 16) == (side, side)
        images[side] = image
    return images


def pixels(png: bytes) -> np.ndarray:
    """RGBA values of a PNG, as a height x width x 4 array (Qt decodes it)."""
    from PySide6.QtGui import QImage

    image = QImage.fromData(png, "PNG").convertToFormat(QImage.Format.Format_RGBA8888)
    assert not image.isNull()
    rows = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(
        image.height(), image.bytesPerLine()
    )
    return rows[:, : image.width() * 4].reshape(image.height(), image.width(), 4).astype(int)


def test_the_icon_holds_every_size_windows_asks_for() -> None:
    assert sorted(ico_images(ICO.read_bytes())) == SIZES
    assert list(make_windows_icon().ICON_SIZES) == SIZES


@pytest.mark.usefixtures("qapp")
def test_the_icon_is_hearth_svg_drawn_at_each_size() -> None:
    # Drawn again from the SVG now: an SVG changed since the .ico was made shows here (a
    # colour shifted by 16 of 255, the bar moved by 10 of 256 units, corners rounded
    # differently all do). A little slack for another Qt version's antialiasing.
    script = make_windows_icon()
    for size, png in ico_images(ICO.read_bytes()).items():
        committed, fresh = pixels(png), pixels(script.render_png(SVG, size))
        assert committed.shape == fresh.shape == (size, size, 4)
        difference = np.abs(committed - fresh)
        unlike = int((difference.max(axis=2) > 24).sum())
        stale = f"the {size} px icon is not hearth.svg: run scripts/make_windows_icon.py"
        assert difference.mean() < 0.5, stale
        assert unlike <= max(1, size * size // 400), stale
    # The corners are transparent (the SVG's rounded square), the middle is the flame.
    big = pixels(ico_images(ICO.read_bytes())[256])
    assert big[0, 0, 3] == 0 and big[128, 128, 3] == 255


@pytest.mark.usefixtures("qapp")
def test_the_script_writes_an_ico_pillow_and_windows_can_read(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    out = make_windows_icon().make_ico(SVG, tmp_path / "hearth.ico")
    assert sorted(ico_images(out.read_bytes())) == SIZES
    with image_module.open(out) as ico:
        assert ico.format == "ICO"
        assert sorted(ico.info["sizes"]) == [(s, s) for s in SIZES]
