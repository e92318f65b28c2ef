"""HEARTH_HOME puts every folder under one root (tests, portable USB mode)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_every_location_hearth_writes_is_under_hearth_home(tmp_path: Path) -> None:
    root = tmp_path / "usb"
    paths = hearth_paths({"HEARTH_HOME": str(root)})
    locations = [
        paths.database,
        paths.images,
        paths.model_folder("TheBloke", "Tiny-GGUF"),
        paths.download_staging,
        paths.starter_parts,
        paths.build_check_cache,
        paths.token_file,
        paths.log_file("hearth"),
        paths.crash_file("chat-worker"),
    ]
    for location in locations:
        assert location.is_relative_to(root.resolve()), location
    assert len(set(locations)) == len(locations)
    assert paths.model_folder("TheBloke", "Tiny-GGUF").parent.parent == paths.models
    assert paths.log_file("hearth").parent == paths.crash_file("hearth").parent == paths.logs
    # Secrets and caches are kept apart: wiping the cache must never delete the token.
    assert not paths.token_file.is_relative_to(paths.cache)
    assert paths.download_staging.is_relative_to(paths.cache)


def test_startup_logs_go_where_paths_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import startup

    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    paths = hearth_paths()
    assert startup.log_file("image-worker") == paths.log_file("image-worker")
    assert startup.crash_file("image-worker") == paths.crash_file("image-worker")
