"""HEARTH_HOME puts every folder under one root (tests, portable USB mode)."""

from __future__ import annotations

from pathlib import Path

from app.paths import hearth_paths


def test_hearth_home_holds_everything(tmp_path: Path) -> None:
    paths = hearth_paths({"HEARTH_HOME": str(tmp_path / "usb")}).ensure()
    for folder in (paths.data, paths.models, paths.cache, paths.logs, paths.config):
        assert folder.is_dir()
        assert folder.is_relative_to(tmp_path / "usb")
    assert paths.database.parent == paths.data


def test_models_folder_can_live_on_another_drive(tmp_path: Path) -> None:
    paths = hearth_paths(
        {"HEARTH_HOME": str(tmp_path / "h"), "HEARTH_MODELS": str(tmp_path / "big")}
    )
    assert paths.models == (tmp_path / "big").resolve()
    assert paths.data.is_relative_to(tmp_path / "h")


def test_default_locations_are_per_user_platform_folders() -> None:
    paths = hearth_paths({})
    assert "Hearth" in str(paths.data) or "hearth" in str(paths.data)
    assert paths.models.is_relative_to(paths.data)
