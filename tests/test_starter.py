"""Installing the starter model from part files: verified, atomic, registered once."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from app.models.files import NotEnoughDiskError
from app.models.library import resolve_model_path
from app.models.starter import (
    STARTER,
    StarterModel,
    StarterModelError,
    install_starter,
)
from app.paths import hearth_paths
from app.store import open_default_database
from app.store.library import ModelSource, find_model, list_models


def _make_parts(model_file: Path, folder: Path, parts: int) -> StarterModel:
    """Split a real GGUF into wheel-shaped zip parts like the PyPI packages."""
    data = model_file.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    spec = replace(
        STARTER,
        name="tiny-starter",
        publisher="Test",
        repo="Tiny-GGUF",
        filename="tiny.gguf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        package="tiny-part{n}",
        version="1.0",
        member="tiny_part{n}/data/part{nn}.bin",
        parts=parts,
    )
    step = len(data) // parts + 1
    for n in range(1, parts + 1):
        with zipfile.ZipFile(folder / spec.wheel_name(n), "w") as z:
            z.writestr(spec.member.format(n=n, nn=f"{n:02d}"), data[(n - 1) * step : n * step])
    return spec


def test_install_registers_once_and_is_a_no_op_the_second_time(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    spec = _make_parts(tiny_gguf(), tmp_path / "wheels", parts=3)
    db = open_default_database()
    paths = hearth_paths()
    seen: list[int] = []
    first = install_starter(
        db,
        paths,
        parts_dir=tmp_path / "wheels",
        model=spec,
        progress=lambda done, total, what: seen.append(done),
    )
    assert first.installed_now
    assert first.path == paths.models / "Test" / "Tiny-GGUF" / "tiny.gguf"
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == spec.sha256
    assert seen and seen == sorted(seen) and seen[-1] == spec.size
    row = find_model(db, "tiny-starter")
    assert row is not None and row.sha256 == spec.sha256 and row.source is ModelSource.STARTER
    mtime = first.path.stat().st_mtime_ns
    again = install_starter(db, paths, parts_dir=tmp_path / "wheels", model=spec)
    assert not again.installed_now and again.path.stat().st_mtime_ns == mtime
    assert len(list_models(db)) == 1


def test_corrupt_part_leaves_nothing_in_the_library(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    spec = _make_parts(tiny_gguf(), tmp_path / "wheels", parts=2)
    spec = replace(spec, sha256="0" * 64)  # what a damaged part looks like from here
    db = open_default_database()
    with pytest.raises(StarterModelError, match="corrupt"):
        install_starter(db, hearth_paths(), parts_dir=tmp_path / "wheels", model=spec)
    folder = hearth_paths().models / "Test" / "Tiny-GGUF"
    assert list(folder.iterdir()) == []  # no half model, no .partial
    assert find_model(db, "tiny-starter") is None


def test_missing_part_is_named(tiny_gguf: Callable[..., Path], tmp_path: Path) -> None:
    spec = _make_parts(tiny_gguf(), tmp_path / "wheels", parts=3)
    (tmp_path / "wheels" / spec.wheel_name(2)).unlink()
    with pytest.raises(StarterModelError, match="1 of the 3") as err:
        install_starter(
            open_default_database(), hearth_paths(), parts_dir=tmp_path / "wheels", model=spec
        )
    assert spec.wheel_name(2) in err.value.cause


def test_full_disk_is_refused_before_writing(
    tiny_gguf: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    spec = _make_parts(tiny_gguf(), tmp_path / "wheels", parts=2)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(NotEnoughDiskError, match=r"The starter model needs 256 MiB free .*only"):
        install_starter(
            open_default_database(), hearth_paths(), parts_dir=tmp_path / "wheels", model=spec
        )


def test_library_name_resolves_and_a_deleted_file_is_explained(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    from app.models.gguf import ModelNotFoundError

    spec = _make_parts(tiny_gguf(), tmp_path / "wheels", parts=2)
    db = open_default_database()
    result = install_starter(db, hearth_paths(), parts_dir=tmp_path / "wheels", model=spec)
    assert resolve_model_path(db, "tiny-starter") == (result.path, "tiny-starter")
    result.path.unlink()
    with pytest.raises(ModelNotFoundError, match="the file is gone"):
        resolve_model_path(db, "tiny-starter")


def _make_index(spec: StarterModel, parts: Path, index: Path) -> None:
    """The parts as real wheels (with metadata) in a folder pip reads as its only index."""
    index.mkdir(parents=True, exist_ok=True)
    for n in range(1, spec.parts + 1):
        dist = spec.package.format(n=n)
        info = f"{dist.replace('-', '_')}-{spec.version}.dist-info"
        with (
            zipfile.ZipFile(parts / spec.wheel_name(n)) as src,
            zipfile.ZipFile(index / spec.wheel_name(n), "w") as wheel,
        ):
            for item in src.infolist():
                wheel.writestr(item, src.read(item))
            wheel.writestr(
                f"{info}/METADATA",
                f"Metadata-Version: 2.1\nName: {dist}\nVersion: {spec.version}\n",
            )
            wheel.writestr(
                f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            )
            wheel.writestr(f"{info}/RECORD", "")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip (the real one, in a subprocess) finds packages only in this folder: offline."""
    index = tmp_path / "index"
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return index


@pytest.mark.slow
def test_the_parts_download_with_pip_and_reports_its_bytes(
    tiny_gguf: Callable[..., Path], tmp_path: Path, local_index: Path
) -> None:
    spec = _make_parts(tiny_gguf(), tmp_path / "parts", parts=3)
    _make_index(spec, tmp_path / "parts", local_index)
    reports: list[tuple[int, int, str]] = []
    result = install_starter(
        open_default_database(),
        hearth_paths(),
        model=spec,
        progress=lambda done, total, what: reports.append((done, total, what)),
    )
    assert result.installed_now
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == spec.sha256
    downloading = [r for r in reports if r[2] == "downloading"]
    assert downloading and downloading[-1][:2] == (spec.size, spec.size)
    assert [d for d, _, _ in downloading] == sorted(d for d, _, _ in downloading)
    stages = [what for _, _, what in reports]
    assert stages.index("assembling") > max(i for i, s in enumerate(stages) if s == "downloading")
    assert not hearth_paths().starter_parts.exists()  # the model holds the bytes now


@pytest.mark.slow
def test_a_cancel_during_the_download_stops_pip_and_installs_nothing(
    tiny_gguf: Callable[..., Path], tmp_path: Path, local_index: Path
) -> None:
    spec = _make_parts(tiny_gguf(), tmp_path / "parts", parts=3)
    _make_index(spec, tmp_path / "parts", local_index)

    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int, what: str) -> None:
        raise Cancelled  # the window's Progress raises at the first report after Cancel

    with pytest.raises(Cancelled):
        install_starter(open_default_database(), hearth_paths(), model=spec, progress=cancel)
    assert find_model(open_default_database(), spec.name) is None
    assert not spec.target(hearth_paths()).exists()
    assert not (hearth_paths().starter_parts / ".downloading").exists()
