"""Import and export for air-gapped machines: real files, a real SQLite library, bad input."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import socket
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.models.diffusers_folder import (
    IncompletePipelineError,
    PickleWeightsError,
    read_diffusers_facts,
)
from app.models.files import NotEnoughDiskError
from app.models.gguf import (
    ModelNotFoundError,
    NotGgufError,
    TruncatedGgufError,
    read_gguf_facts,
)
from app.models.library import register_model
from app.models.portable import (
    MANIFEST_NAME,
    DamagedLibraryFileError,
    FileTooLargeForDriveError,
    ManifestError,
    ManifestMismatchError,
    NameTakenError,
    TransferError,
    UnsupportedModelError,
    export_models,
    import_model,
)
from app.models.removal import remove_model
from app.paths import hearth_paths
from app.store import open_default_database
from app.store.library import ModelKind, ModelSource, find_model, list_models
from tests.gguf_factory import write_tiny_gguf
from tests.pipeline_factory import write_tiny_pipeline

DiskUsage = namedtuple("DiskUsage", "total used free")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def library_is_empty() -> bool:
    return list_models(open_default_database()) == [] and files_under(hearth_paths().models) == []


@pytest.fixture
def usb(tmp_path: Path) -> Path:
    """A folder standing in for a USB drive, outside the Hearth home."""
    folder = tmp_path / "usb"
    folder.mkdir()
    return folder


@pytest.fixture
def home_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Path]:
    """Switch to a second, empty Hearth home (the offline machine) when called."""

    def switch() -> Path:
        other = tmp_path / "hearth-home-b"
        monkeypatch.setenv("HEARTH_HOME", str(other))
        return other

    return switch


# --- importing one model -----------------------------------------------------------------


def test_import_copies_a_gguf_records_sha256_and_facts(
    tiny_gguf: Callable[..., Path], hearth_home: Path
) -> None:
    src = tiny_gguf("My-Model-Q8_0.gguf", context_length=4096)
    seen: list[tuple[int, int, str]] = []

    [model] = import_model(src, progress=lambda d, t, w: seen.append((d, t, w)))

    assert (
        model.name == "my-model-q8_0" and model.kind is ModelKind.CHAT and not model.already_present
    )
    assert model.path == hearth_home / "models" / "imported" / "my-model-q8_0" / src.name
    assert model.path.read_bytes() == src.read_bytes() and src.exists()  # copied, not moved
    row = find_model(open_default_database(), "my-model-q8_0")
    assert row is not None
    assert row.sha256 == sha256_of(src) == model.sha256
    assert row.source is ModelSource.IMPORT and row.size_bytes == src.stat().st_size
    assert row.architecture == "llama" and row.context_length == 4096
    assert row.imported_from == str(src)
    assert seen[-1][0] == seen[-1][1] == src.stat().st_size  # progress reached the end
    assert not list(hearth_home.rglob("*.partial"))


def test_import_with_link_keeps_the_file_in_place_and_rm_never_deletes_it(
    tiny_gguf: Callable[..., Path], hearth_home: Path
) -> None:
    src = tiny_gguf("linked.gguf")
    [model] = import_model(src, link=True)
    assert model.source is ModelSource.LINK and model.path == src
    assert files_under(hearth_home / "models") == []
    db = open_default_database()
    assert find_model(db, "linked").path == src  # type: ignore[union-attr]

    removed = remove_model(db, hearth_paths(), "linked")
    assert removed.deleted == () and removed.kept == (src,)
    assert src.read_bytes()[:4] == b"GGUF"
    assert find_model(db, "linked") is None


def test_importing_the_same_bytes_twice_is_idempotent(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    src = tiny_gguf("twice.gguf")
    [first] = import_model(src)
    [again] = import_model(src)
    # Another copy of the same bytes, under another name, is still the same model.
    copy = tmp_path / "elsewhere" / "renamed.gguf"
    copy.parent.mkdir()
    shutil.copy(src, copy)
    [renamed] = import_model(copy, name="another-name")
    # And importing the library's own file again changes nothing either.
    [own] = import_model(first.path)

    assert again.already_present and renamed.already_present and own.already_present
    assert again.name == renamed.name == own.name == "twice"
    assert [r.name for r in list_models(open_default_database())] == ["twice"]
    assert len(files_under(hearth_paths().models)) == 1


def test_a_different_model_under_a_taken_name_is_refused(
    tiny_gguf: Callable[..., Path],
) -> None:
    import_model(tiny_gguf("a.gguf"), name="mine")
    other = tiny_gguf("b.gguf", n_layers=3)
    with pytest.raises(NameTakenError, match="mine"):
        import_model(other, name="mine")


def test_a_split_gguf_imports_as_one_model_from_any_part_or_its_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "split"
    first = write_tiny_gguf(folder / "big-model-Q4_K_M-00001-of-00002.gguf")
    second = write_tiny_gguf(folder / "big-model-Q4_K_M-00002-of-00002.gguf", n_layers=1)

    [model] = import_model(second)  # the user picked the second part

    assert model.name == "big-model-q4_k_m"
    assert model.path.name == first.name
    assert sorted(p.name for p in model.path.parent.iterdir()) == [first.name, second.name]
    assert model.size_bytes == first.stat().st_size + second.stat().st_size
    row = find_model(open_default_database(), "big-model-q4_k_m")
    assert row is not None
    assert [f.path for f in row.files] == [first.name, second.name]
    assert read_gguf_facts(model.path).split_files == (first.name, second.name)
    [again] = import_model(folder)  # the folder is the same model
    assert again.already_present


def test_a_split_gguf_missing_a_part_is_refused(tmp_path: Path) -> None:
    part = write_tiny_gguf(tmp_path / "m-00001-of-00003.gguf")
    write_tiny_gguf(tmp_path / "m-00002-of-00003.gguf")
    with pytest.raises(ModelNotFoundError, match=r"m-00003-of-00003\.gguf"):
        import_model(part)
    assert library_is_empty()


# --- bad input ------------------------------------------------------------------------------


def test_a_random_file_named_gguf_is_refused_and_nothing_is_copied(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html><body>404 Not Found</body></html>" * 100)
    with pytest.raises(NotGgufError, match="not a GGUF model file") as err:
        import_model(fake)
    assert "error page" in str(err.value)
    assert library_is_empty()


def test_a_truncated_gguf_is_refused(tiny_gguf: Callable[..., Path]) -> None:
    src = tiny_gguf("cut.gguf")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedGgufError, match="truncated"):
        import_model(src)
    assert library_is_empty()


@pytest.mark.parametrize("name", ["v1-5-pruned.ckpt", "pytorch_model.bin"])
def test_a_pickle_checkpoint_is_refused(tmp_path: Path, name: str) -> None:
    ckpt = tmp_path / name
    ckpt.write_bytes(pickle.dumps({"state_dict": {"w": [0.0] * 64}}))
    with pytest.raises(PickleWeightsError, match="pickle") as err:
        import_model(ckpt)
    assert "safetensors" in err.value.remedy
    assert library_is_empty()


def test_a_single_file_safetensors_checkpoint_is_explained(tmp_path: Path) -> None:
    ckpt = tmp_path / "dreamshaper.safetensors"
    ckpt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    with pytest.raises(UnsupportedModelError, match="single-file") as err:
        import_model(ckpt)
    assert "diffusers" in err.value.remedy


def test_a_path_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="There is no file or folder at") as err:
        import_model(tmp_path / "no-such-usb" / "model.gguf")
    assert "mounted" in err.value.remedy


def test_a_folder_with_several_models_asks_for_one(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "many" / "a.gguf")
    write_tiny_gguf(tmp_path / "many" / "b.gguf")
    with pytest.raises(UnsupportedModelError, match="2 GGUF models"):
        import_model(tmp_path / "many")


def test_import_refuses_when_the_library_disk_has_no_room(
    tiny_gguf: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tiny_gguf("big.gguf")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: DiskUsage(10**12, 10**12, 1024))
    with pytest.raises(NotEnoughDiskError, match=r"needs 256 MiB free .*, but only 1 KiB") as err:
        import_model(src)
    assert "HEARTH_MODELS" in err.value.remedy
    assert library_is_empty()


def test_an_import_interrupted_mid_copy_leaves_nothing_behind(
    tiny_gguf: Callable[..., Path],
) -> None:
    src = tiny_gguf("interrupted.gguf")

    def pull_the_plug(done: int, total: int, what: str) -> None:
        if what.startswith("copying"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_model(src, progress=pull_the_plug)
    assert library_is_empty()
    [model] = import_model(src)  # and the next try works
    assert model.path.is_file()


# --- diffusers folders ---------------------------------------------------------------------


def test_a_diffusers_folder_imports_with_safetensors_only(tmp_path: Path) -> None:
    src = write_tiny_pipeline(tmp_path / "My-Pipeline", extras=True)

    [model] = import_model(src)

    assert model.kind is ModelKind.IMAGE and model.name == "my-pipeline"
    copied = [p.relative_to(model.path).as_posix() for p in files_under(model.path)]
    assert "unet/diffusion_pytorch_model.safetensors" in copied
    assert "tokenizer/vocab.json" in copied and "scheduler/scheduler_config.json" in copied
    assert not [p for p in copied if p.endswith((".bin", ".msgpack"))]  # pickles stay behind
    facts = read_diffusers_facts(model.path)
    assert facts.family == "sd15" and facts.stored_dtype == "float16"
    row = find_model(open_default_database(), "my-pipeline")
    assert row is not None
    assert row.kind is ModelKind.IMAGE and row.architecture == "sd15"
    assert row.quantization == "float16" and row.sha256 == model.sha256
    recorded = {f.path: f.sha256 for f in row.files}
    assert recorded["unet/diffusion_pytorch_model.safetensors"] == sha256_of(
        src / "unet" / "diffusion_pytorch_model.safetensors"
    )


def test_a_diffusers_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    src = write_tiny_pipeline(tmp_path / "old-pipeline", pickle_only=["unet"])
    with pytest.raises(PickleWeightsError, match="'unet' component has only pickle weights"):
        import_model(src)
    assert library_is_empty()


def test_a_diffusers_folder_missing_a_component_is_refused(tmp_path: Path) -> None:
    src = write_tiny_pipeline(tmp_path / "half-copied", missing=["vae"])
    with pytest.raises(IncompletePipelineError, match="'vae' component"):
        import_model(src)
    src = write_tiny_pipeline(tmp_path / "no-scheduler", missing=["scheduler"])
    with pytest.raises(IncompletePipelineError, match="'scheduler' component"):
        import_model(src)
    assert library_is_empty()


def test_a_model_from_a_hugging_face_cache_keeps_its_publisher_and_repo(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--stabilityai--sd-turbo"
    snapshot = write_tiny_pipeline(repo / "snapshots" / "0123abcd")
    [model] = import_model(snapshot)
    assert model.name == "sd-turbo"
    assert model.path == hearth_paths().models / "stabilityai" / "sd-turbo"
    row = find_model(open_default_database(), "sd-turbo")
    assert row is not None and row.repo == "stabilityai/sd-turbo"


# --- export and the manifest ---------------------------------------------------------------


def test_export_then_import_on_another_machine_round_trip(
    gemma_gguf: Path, tmp_path: Path, usb: Path, home_b: Callable[[], Path]
) -> None:
    [chat] = import_model(gemma_gguf)
    [image] = import_model(write_tiny_pipeline(tmp_path / "tiny-sd"))
    seen: list[int] = []

    result = export_models([chat.name, image.name], usb, progress=lambda d, t, w: seen.append(d))

    manifest = json.loads((usb / MANIFEST_NAME).read_text())
    assert manifest["format"] == "hearth-models" and manifest["format_version"] == 1
    listed = {m["name"]: m for m in manifest["models"]}
    assert listed[chat.name]["sha256"] == chat.sha256 == sha256_of(gemma_gguf)
    assert listed[chat.name]["license"] == "gemma"
    assert listed[chat.name]["architecture"] == "gemma3"
    assert listed[chat.name]["quantization"] == "Q4_K_M"
    assert listed[image.name]["kind"] == "image" and listed[image.name]["sha256"] == image.sha256
    for m in manifest["models"]:
        for f in m["files"]:
            assert (usb / f["path"]).stat().st_size == f["size"]
            assert sha256_of(usb / f["path"]) == f["sha256"]
    assert seen == sorted(seen) and seen[-1] == result.size_bytes

    other_home = home_b()
    imported = import_model(usb)

    assert {m.name: m.sha256 for m in imported} == {
        chat.name: chat.sha256,
        image.name: image.sha256,
    }
    b_chat = find_model(open_default_database(), chat.name)
    assert b_chat is not None and b_chat.path.is_relative_to(other_home)
    assert b_chat.source is ModelSource.IMPORT and b_chat.license == "gemma"
    facts_a, facts_b = read_gguf_facts(chat.path), read_gguf_facts(b_chat.path)
    assert facts_b == facts_a and facts_b.block_count == 18  # still a usable chat model
    b_image = find_model(open_default_database(), image.name)
    assert b_image is not None
    assert read_diffusers_facts(b_image.path).family == "sd15"
    assert sha256_of(b_chat.path) == sha256_of(gemma_gguf)
    [again] = [m for m in import_model(usb) if m.name == chat.name]
    assert again.already_present


def _export_two(tmp_path: Path, usb: Path) -> dict[str, Any]:
    import_model(write_tiny_gguf(tmp_path / "src" / "chatty.gguf"))
    import_model(write_tiny_pipeline(tmp_path / "src" / "painter"))
    export_models(["chatty", "painter"], usb)
    return json.loads((usb / MANIFEST_NAME).read_text())


@pytest.mark.parametrize("link", [False, True])
def test_a_manifest_whose_sha256_does_not_match_is_refused_before_anything_is_accepted(
    tmp_path: Path, usb: Path, home_b: Callable[[], Path], link: bool
) -> None:
    _export_two(tmp_path, usb)
    damaged = usb / "painter" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte flipped: only the sha256 can tell
    damaged.write_bytes(bytes(data))
    home_b()

    with pytest.raises(ManifestMismatchError, match=r"diffusion_pytorch_model\.safetensors") as err:
        import_model(usb, link=link)

    assert "painter" in str(err.value) and "sha256" in str(err.value)
    assert "Nothing was imported" in err.value.remedy
    assert library_is_empty()  # the good chat model was not accepted either
    assert not list(hearth_paths().models.parent.rglob("*.partial"))


def test_a_manifest_file_of_the_wrong_size_is_named(
    tmp_path: Path, usb: Path, home_b: Callable[[], Path]
) -> None:
    _export_two(tmp_path, usb)
    cut = usb / "chatty" / "chatty.gguf"
    cut.write_bytes(cut.read_bytes()[:1000])
    home_b()
    with pytest.raises(ManifestMismatchError, match=r"chatty/chatty.gguf is 1,000 bytes"):
        import_model(usb)
    assert library_is_empty()


def test_a_manifest_cannot_point_outside_its_folder(
    tmp_path: Path, usb: Path, home_b: Callable[[], Path]
) -> None:
    manifest = _export_two(tmp_path, usb)
    manifest["models"][0]["files"][0]["path"] = "../../etc/passwd"
    (usb / MANIFEST_NAME).write_text(json.dumps(manifest))
    home_b()
    with pytest.raises(ManifestError, match="unsafe"):
        import_model(usb)
    assert library_is_empty()


def test_export_refuses_when_the_target_disk_has_no_room(
    tiny_gguf: Callable[..., Path], usb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [model] = import_model(tiny_gguf("roomy.gguf"))
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: DiskUsage(10**9, 10**9, 4096))
    with pytest.raises(NotEnoughDiskError, match=f"Exporting needs .* holding {usb}"):
        export_models([model.name], usb)
    assert files_under(usb) == []


def test_export_notices_a_library_file_that_changed_since_it_was_recorded(
    tiny_gguf: Callable[..., Path], usb: Path
) -> None:
    [model] = import_model(tiny_gguf("rotten.gguf"))
    data = bytearray(model.path.read_bytes())
    data[-1] ^= 0xFF
    model.path.write_bytes(bytes(data))
    with pytest.raises(DamagedLibraryFileError, match="no longer matches"):
        export_models([model.name], usb)
    assert not (usb / MANIFEST_NAME).exists()
    assert not list(usb.rglob("*.gguf*"))


def test_exporting_twice_to_one_drive_adds_to_its_manifest(
    tiny_gguf: Callable[..., Path], usb: Path
) -> None:
    import_model(tiny_gguf("one.gguf"))
    import_model(tiny_gguf("two.gguf", n_layers=3))
    export_models(["one"], usb)
    export_models(["two"], usb)
    manifest = json.loads((usb / MANIFEST_NAME).read_text())
    assert [m["name"] for m in manifest["models"]] == ["one", "two"]


def test_exporting_an_unknown_model_is_a_clear_error(usb: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="No model named 'ghost'"):
        export_models(["ghost"], usb)


# --- offline -----------------------------------------------------------------------------------


def test_library_import_and_export_work_with_the_network_off(
    tiny_gguf: Callable[..., Path],
    usb: Path,
    home_b: Callable[[], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network is off")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    from app.hardware.profile import load_simulated_machines
    from app.hub.catalog import catalog_entries, fit_variants

    [model] = import_model(tiny_gguf("offline.gguf"))
    export_models([model.name], usb)
    home_b()
    [copied] = import_model(usb)
    lab = load_simulated_machines(Path(__file__).parent / "data" / "hardware-profiles.json")
    fits = fit_variants(catalog_entries("chat")[0], lab["airgapped-lab-cpu-32gb"])

    assert copied.sha256 == model.sha256
    assert any(f.suggested for f in fits)
    assert attempts == []


@pytest.mark.parametrize(
    ("code", "error", "says"),
    [
        (errno.ENOSPC, NotEnoughDiskError, "filled up while copying"),
        (errno.EFBIG, FileTooLargeForDriveError, "too large"),
    ],
)
def test_a_drive_that_fills_up_or_is_fat32_mid_export_is_explained(
    tiny_gguf: Callable[..., Path],
    usb: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
    says: str,
) -> None:
    [model] = import_model(tiny_gguf("fat.gguf"))

    def full(_fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(error, match=says):
        export_models([model.name], usb)
    assert not list(usb.rglob("*.gguf*")) and not (usb / MANIFEST_NAME).exists()


def test_a_models_folder_that_cannot_be_written_is_a_clear_error(
    tiny_gguf: Callable[..., Path],
) -> None:
    src = tiny_gguf("blocked.gguf")
    models = hearth_paths().ensure().models
    (models / "imported").write_text("a file where Hearth needs a folder")
    with pytest.raises(TransferError, match=f"Copying into {models} failed") as err:
        import_model(src)
    assert "writable" in err.value.remedy
    assert list_models(open_default_database()) == []
    assert [p.name for p in models.iterdir()] == ["imported"]


def test_a_downloaded_split_model_exports_verified_and_is_known_on_reimport(
    tmp_path: Path, usb: Path
) -> None:
    # Registered the way the download queue does: absolute paths, the first part's sha256.
    repo = hearth_paths().ensure().models / "bartowski" / "Big-GGUF"
    parts = [
        write_tiny_gguf(repo / "Big-Q4_K_M-00001-of-00002.gguf"),
        write_tiny_gguf(repo / "Big-Q4_K_M-00002-of-00002.gguf", n_layers=1),
    ]
    db = open_default_database()
    register_model(
        db,
        "big-q4_k_m",
        parts[0],
        read_gguf_facts(parts[0]),
        source=ModelSource.HUB,
        sha256=sha256_of(parts[0]),
        repo="bartowski/Big-GGUF",
        extra={
            "files": [
                {"path": str(p), "size": p.stat().st_size, "sha256": sha256_of(p)} for p in parts
            ]
        },
    )
    elsewhere = tmp_path / "stick"
    shutil.copytree(repo, elsewhere)
    [same] = import_model(elsewhere)
    assert same.already_present and same.name == "big-q4_k_m"

    export_models(["big-q4_k_m"], usb)
    [entry] = json.loads((usb / MANIFEST_NAME).read_text())["models"]
    assert [f["sha256"] for f in entry["files"]] == [sha256_of(p) for p in parts]
    assert entry["repo"] == "bartowski/Big-GGUF" and entry["source"] == "hub"

    data = bytearray(parts[1].read_bytes())
    data[-1] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(DamagedLibraryFileError, match="00002-of-00002"):
        export_models(["big-q4_k_m"], tmp_path / "usb2")


def test_each_imported_kind_is_planned_as_its_kind(
    tiny_gguf: Callable[..., Path], tmp_path: Path
) -> None:
    from app.hardware.profile import load_simulated_machines
    from app.models.kinds import plan_model
    from app.planner import ImagePlan, LoadPlan

    [chat] = import_model(tiny_gguf("planned.gguf"))
    [image] = import_model(write_tiny_pipeline(tmp_path / "planned-sd"))
    lab = load_simulated_machines(Path(__file__).parent / "data" / "hardware-profiles.json")
    hw = lab["airgapped-lab-cpu-32gb"]
    db = open_default_database()
    chat_model, image_model = find_model(db, chat.name), find_model(db, image.name)
    assert chat_model is not None and image_model is not None
    chat_plan, image_plan = plan_model(chat_model, hw), plan_model(image_model, hw)
    assert isinstance(chat_plan, LoadPlan) and chat_plan.threads > 0
    assert isinstance(image_plan, ImagePlan) and image_plan.weights_bytes > 0
    assert image_plan.verdict.value != "won't fit"  # a tiny pipeline fits a 32 GB machine
