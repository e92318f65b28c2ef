"""`scripts/package kit`: the air-gapped install kit verifies with bare tools and imports offline.

One test builds a kit with the real Gemma model and takes it to the other end: `sh verify`
passes, a flipped byte or a missing file fails naming the file, and `hearth models import`
in a fresh home with the network cut registers the model with the same sha256. The others
use a tiny GGUF: the shasum fallback, and the refusals (unknown name, no installers, no
space, a target in use), each of which leaves no kit behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import HearthError
from app.models.portable import import_model
from app.paths import hearth_paths
from app.store.db import open_database
from app.store.library import find_model

ROOT = Path(__file__).resolve().parent.parent
KIT_SCRIPT = ROOT / "scripts" / "packagelib" / "kit.py"
sys.path.insert(0, str(ROOT / "scripts"))

from packagelib import kit  # noqa: E402

DEB = "hearth-chat_0.1.0_amd64.deb"
TARBALL = "hearth-chat-0.1.0-linux-x86_64.tar.gz"


def fake_installers(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEB).write_bytes(b"!<arch>\n" + os.urandom(4096))
    (folder / TARBALL).write_bytes(os.urandom(2048))
    (folder / "build-notes.txt").write_text("not an installer\n")
    return folder


def verify(kit_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(kit_dir / "verify")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def offline_prefix() -> tuple[list[str], dict[str, str]]:
    """A command prefix and environment that cut the network: `unshare -n` where it works
    (root), else proxies pointing at a closed port and the Hub client offline."""
    blocked = {"HF_HUB_OFFLINE": "1"}
    tool = shutil.which("unshare")
    if tool and subprocess.run([tool, "-n", "true"], capture_output=True).returncode == 0:
        return [tool, "-n"], blocked
    nowhere = "http://127.0.0.1:9"
    proxies = {k: nowhere for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    return [], {**blocked, **proxies, "NO_PROXY": ""}


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_kit_verifies_with_bare_tools_and_imports_offline(
    gemma_gguf: Path, tmp_path: Path, hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [model] = import_model(gemma_gguf, link=True)
    installers = fake_installers(tmp_path / "dist")
    kit_dir = tmp_path / "usb" / "hearth-kit"

    rc = kit.main(["--models", model.name, "--to", str(kit_dir), "--installers", str(installers)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "ETA" in out.err  # progress on the copy
    assert not kit_dir.with_name("hearth-kit.partial").exists()

    # Every file but SHA256SUMS itself is listed, in `sha256sum -c` format.
    sums = (kit_dir / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in sums}
    on_disk = {p.relative_to(kit_dir).as_posix() for p in kit_dir.rglob("*") if p.is_file()} - {
        "SHA256SUMS"
    }
    assert listed == on_disk
    gguf_rel = f"models/{model.name}/{gemma_gguf.name}"
    assert {f"installers/{DEB}", f"installers/{TARBALL}", gguf_rel} <= listed
    assert "installers/build-notes.txt" not in listed
    assert {"README.txt", "verify", "verify.ps1", "models/hearth-manifest.json"} <= listed
    assert f"{model.sha256}  {gguf_rel}" in sums
    readme = (kit_dir / "README.txt").read_text()
    for needed in ("./verify", "verify.ps1", DEB, TARBALL, "hearth models import", model.name):
        assert needed in readme
    assert "Get-FileHash" in (kit_dir / "verify.ps1").read_text()

    passed = verify(kit_dir)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "OK: all 7 files match" in passed.stdout

    # The other end: a fresh home, no network, the CLI as a person would run it.
    fresh = tmp_path / "other-machine"
    prefix, blocked = offline_prefix()
    env = {**os.environ, "HEARTH_HOME": str(fresh), **blocked}
    imported = subprocess.run(
        [*prefix, sys.executable, "-m", "app", "models", "import", str(kit_dir / "models")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    db = open_database(hearth_paths({"HEARTH_HOME": str(fresh)}).database)
    row = find_model(db, model.name)
    db.close()
    assert row is not None
    assert row.sha256 == model.sha256
    assert row.path.is_file() and row.path.is_relative_to(fresh)
    manifest = json.loads((kit_dir / "models" / "hearth-manifest.json").read_text())
    assert manifest["models"][0]["sha256"] == model.sha256

    # A damaged copy: one byte flipped in the model.
    copied_model = kit_dir / gguf_rel
    flip_byte(copied_model, copied_model.stat().st_size // 2)
    damaged = verify(kit_dir)
    assert damaged.returncode == 1
    assert f"DAMAGED  {gguf_rel}" in damaged.stdout
    assert "OK:" not in damaged.stdout
    flip_byte(copied_model, copied_model.stat().st_size // 2)

    # An incomplete copy: an installer left behind.
    (kit_dir / "installers" / DEB).unlink()
    missing = verify(kit_dir)
    assert missing.returncode == 1
    assert f"MISSING  installers/{DEB}" in missing.stdout
    assert "DAMAGED" not in missing.stdout


@pytest.fixture
def tiny_model(tiny_gguf: Callable[..., Path]) -> str:
    [model] = import_model(tiny_gguf("Kit-Tiny-Q8_0.gguf"), link=True)
    return model.name


def test_verify_uses_shasum_where_sha256sum_is_missing(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit_dir = tmp_path / "kit"
    assert kit.main(["--models", tiny_model, "--to", str(kit_dir), "--no-installers"]) == 0
    assert not (kit_dir / "installers").exists()
    # A PATH like macOS's: shasum, and none of GNU's sha256sum.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "grep", "sed", "shasum"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed here")
        (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir)}
    assert verify(kit_dir, env).returncode == 0
    flip_byte(kit_dir / "README.txt", 0)
    failed = verify(kit_dir, env)
    assert failed.returncode == 1
    assert "DAMAGED  README.txt" in failed.stdout


def test_unknown_model_name_lists_what_the_library_has(tiny_model: str, tmp_path: Path) -> None:
    kit_dir = tmp_path / "kit"
    # As the lead's tests will run it before the dispatcher exists: the file on its own.
    run = subprocess.run(
        [sys.executable, str(KIT_SCRIPT), "--models", "no-such-model", "--to", str(kit_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert "No model named 'no-such-model' is in the library" in run.stderr
    assert f"it has: {tiny_model}." in run.stderr
    assert "hearth models list" in run.stderr
    assert "Traceback" not in run.stderr
    assert not kit_dir.exists()


def test_no_installers_is_refused_unless_asked_for(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "dist"
    empty.mkdir()
    (empty / "build.log").write_text("no installers here\n")
    kit_dir = tmp_path / "kit"
    args = ["--models", tiny_model, "--to", str(kit_dir), "--installers", str(empty)]
    assert kit.main(args) == 1
    err = capsys.readouterr().err
    assert f"{empty} holds no installer (.deb, .tar.gz, .exe or .dmg)" in err
    assert "--no-installers" in err
    assert not kit_dir.exists()

    assert kit.main([*args, "--include", "*.dmg"]) == 1
    assert "No file in" in capsys.readouterr().err


def test_too_little_space_is_refused_before_a_byte_is_copied(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.models.files.free_space", lambda folder: 1024)
    kit_dir = tmp_path / "kit"
    with pytest.raises(HearthError, match=r"The kit needs .* free on the drive") as caught:
        kit.build_kit([tiny_model], kit_dir, installers_dir=fake_installers(tmp_path / "dist"))
    assert "larger one" in caught.value.remedy
    assert not kit_dir.exists() and not kit_dir.with_name("kit.partial").exists()


def test_a_kit_that_fails_halfway_leaves_nothing_that_looks_complete(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def export_fails(*args: object, **kwargs: object) -> None:
        raise kit.KitError("The drive went away.")

    monkeypatch.setattr(kit, "export_models", export_fails)
    kit_dir = tmp_path / "kit"
    with pytest.raises(kit.KitError):
        kit.build_kit([tiny_model], kit_dir, installers_dir=fake_installers(tmp_path / "dist"))
    assert not kit_dir.exists()
    assert not kit_dir.with_name("kit.partial").exists()


def test_a_folder_in_use_is_never_written_over(tiny_model: str, tmp_path: Path) -> None:
    kit_dir = tmp_path / "kit"
    kit_dir.mkdir()
    (kit_dir / "photos.txt").write_text("keep me\n")
    with pytest.raises(kit.KitError, match="already exists and is not an empty folder"):
        kit.build_kit([tiny_model], kit_dir, installers_dir=None)
    assert sorted(p.name for p in kit_dir.iterdir()) == ["photos.txt"]
