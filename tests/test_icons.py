"""resources/hearth.ico and .icns, Hearth's Windows and macOS icons, are drawn from hearth.svg.

The .ico is committed (the Windows release job renders nothing); scripts/make_icons.py
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
ICNS = ROOT / "resources" / "hearth.icns"
SVG = ROOT / "resources" / "hearth.svg"
SIZES = [16, 24, 32, 48, 64, 128, 256]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_icons() -> ModuleType:
    path = ROOT / "scripts" / "make_icons.py"
    spec = importlib.util.spec_from_file_location("hearth_make_icons", path)
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
    assert list(make_icons().ICON_SIZES) == SIZES


@pytest.mark.usefixtures("qapp")
def test_the_icon_is_hearth_svg_drawn_at_each_size() -> None:
    # Drawn again from the SVG now: an SVG changed since the .ico was made shows here (a
    # colour shifted by 16 of 255, the bar moved by 10 of 256 units, corners rounded
    # differently all do). A little slack for another Qt version's antialiasing.
    script = make_icons()
    for size, png in ico_images(ICO.read_bytes()).items():
        committed, fresh = pixels(png), pixels(script.render_png(SVG, size))
        assert committed.shape == fresh.shape == (size, size, 4)
        difference = np.abs(committed - fresh)
        unlike = int((difference.max(axis=2) > 24).sum())
        stale = f"the {size} px icon is not hearth.svg: run scripts/make_icons.py"
        assert difference.mean() < 0.5, stale
        assert unlike <= max(1, size * size // 400), stale
    # The corners are transparent (the SVG's rounded square), the middle is the flame.
    big = pixels(ico_images(ICO.read_bytes())[256])
    assert big[0, 0, 3] == 0 and big[128, 128, 3] == 255


@pytest.mark.usefixtures("qapp")
def test_the_script_writes_an_ico_pillow_and_windows_can_read(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    out = make_icons().make_ico(SVG, tmp_path / "hearth.ico")
    assert sorted(ico_images(out.read_bytes())) == SIZES
    with image_module.open(out) as ico:
        assert ico.format == "ICO"
        assert sorted(ico.info["sizes"]) == [(s, s) for s in SIZES]


# The macOS icon

# The PNG-holding ICNS types and the pixel size of each (Apple's icns format; 1x and 2x
# types of one size hold the same picture).
ICNS_TYPES = {
    b"ic11": 32,  # 16@2x
    b"ic12": 64,  # 32@2x
    b"ic07": 128,
    b"ic13": 256,  # 128@2x
    b"ic08": 256,
    b"ic14": 512,  # 256@2x
    b"ic09": 512,
    b"ic10": 1024,  # 512@2x
}


def icns_images(data: bytes) -> dict[bytes, bytes]:
    """Each PNG image of an ICNS file by its type, read as macOS reads the file."""
    magic, total = struct.unpack_from(">4sI", data, 0)
    assert magic == b"icns" and total == len(data), "not an icns file, or cut short"
    images: dict[bytes, bytes] = {}
    offset = 8
    while offset < total:
        kind, length = struct.unpack_from(">4sI", data, offset)
        assert length >= 8 and offset + length <= total
        body = data[offset + 8 : offset + length]
        if kind in ICNS_TYPES:
            side = ICNS_TYPES[kind]
            assert body.startswith(PNG_SIGNATURE), kind
            assert struct.unpack_from(">II", body, 16) == (side, side), kind
            images[kind] = body
        offset += length
    return images


def test_the_mac_icon_holds_every_size_the_finder_and_dock_ask_for() -> None:
    images = icns_images(ICNS.read_bytes())
    assert set(images) == set(ICNS_TYPES)
    assert sorted(set(ICNS_TYPES.values())) == list(make_icons().ICNS_SIZES)


@pytest.mark.usefixtures("qapp")
def test_the_mac_icon_is_hearth_svg_drawn_at_each_size() -> None:
    script = make_icons()
    fresh: dict[int, np.ndarray] = {}
    for kind, png in icns_images(ICNS.read_bytes()).items():
        size = ICNS_TYPES[kind]
        if size not in fresh:
            fresh[size] = pixels(script.render_png(SVG, size))
        committed = pixels(png)
        assert committed.shape == fresh[size].shape == (size, size, 4)
        difference = np.abs(committed - fresh[size])
        stale = f"the {size} px mac icon ({kind.decode()}) is stale: run scripts/make_icons.py"
        assert difference.mean() < 0.5, stale
        assert int((difference.max(axis=2) > 24).sum()) <= max(1, size * size // 400), stale


@pytest.mark.usefixtures("qapp")
def test_the_script_writes_an_icns_pillow_can_read(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    out = make_icons().make_icns(SVG, tmp_path / "hearth.icns")
    assert set(icns_images(out.read_bytes())) == set(ICNS_TYPES)
    with image_module.open(out) as icns:
        assert icns.format == "ICNS"
        assert icns.size == (1024, 1024)
