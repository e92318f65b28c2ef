"""scripts/package's Linux half on a small stand-in for the frozen tree: the .deb's layout,
control fields and Depends, and the tar.gz's install.sh/uninstall.sh in a home folder.

The real build (PyInstaller over the whole app, ~20 min) runs in `scripts/package`, and
`scripts/package --check` installs its .deb into a clean Debian root; see docs/packaging.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from packagelib import build, linux  # noqa: E402

needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("fakeroot") is None,
    reason="needs dpkg-deb and fakeroot (Debian's dpkg and fakeroot packages)",
)


@pytest.fixture
def frozen_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A onedir-shaped tree: an ELF program `hearth`, and Qt's xcb plugin as a library."""
    monkeypatch.setattr(linux, "BUILD", tmp_path / "build")
    monkeypatch.setattr(linux, "DIST", tmp_path / "dist")
    tree = tmp_path / "frozen" / "hearth"
    internal = tree / "_internal"
    internal.mkdir(parents=True)
    shutil.copy2("/bin/true", tree / "hearth")
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    shutil.copy2(plugin, internal / "libqxcb.so")
    shutil.copy2("/usr/lib/x86_64-linux-gnu/libstdc++.so.6", internal / "libstdc++.so.6")
    # A wheel's own vendored copy (auditwheel's renaming): it must stay.
    shutil.copy2(
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", internal / "libbrotlicommon-53534446.so.1.2.0"
    )
    return tree


def test_the_chat_edition_installs_no_image_stack_and_keeps_the_rest() -> None:
    chat = " ".join(build.requirements("chat"))
    full = " ".join(build.requirements("full"))
    for name in ("torch", "diffusers", "transformers", "accelerate"):
        assert name not in chat and name in full
    for name in ("PySide6-Essentials", "huggingface-hub", "sqlite-utils", "fastapi"):
        assert name in chat
    assert "llama-cpp-python" not in full  # the portable wheel instead


def test_bundled_system_libraries_are_left_to_the_system(frozen_tree: Path) -> None:
    dropped = linux.drop_system_libraries(frozen_tree)
    assert dropped == ["libstdc++.so.6"]  # Mesa needs the system's own
    assert (frozen_tree / "_internal" / "libbrotlicommon-53534446.so.1.2.0").exists()
    assert (frozen_tree / "_internal" / "libqxcb.so").exists()


@needs_dpkg
def test_the_deb_installs_to_opt_with_a_menu_entry_icons_and_real_depends(
    frozen_tree: Path, tmp_path: Path
) -> None:
    deb = linux.build_deb("chat", frozen_tree, Path(sys.executable))
    assert deb.name == f"hearth-chat_{build.version()}_amd64.deb"
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    for path in (
        "./opt/hearth/hearth",
        "./usr/share/applications/hearth.desktop",
        "./usr/share/icons/hicolor/256x256/apps/hearth.png",
        "./usr/share/icons/hicolor/16x16/apps/hearth.png",
        "./usr/share/icons/hicolor/scalable/apps/hearth.svg",
        "./usr/share/doc/hearth-chat/copyright",
        "./usr/share/man/man1/hearth.1.gz",
    ):
        assert path in listing, path
    assert "./usr/bin/hearth -> /opt/hearth/hearth" in listing
    program = next(line for line in listing.splitlines() if "opt/hearth/hearth" in line)
    assert "rwxr-xr-x root/root" in program

    def field(name: str) -> str:
        return subprocess.run(
            ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert field("Package") == "hearth-chat" and field("Architecture") == "amd64"
    assert field("Conflicts") == "hearth"  # both editions own /opt/hearth
    depends = [d.strip() for d in field("Depends").split(",")]
    assert depends[0].startswith("libc6 (>= 2.")
    # Read off the xcb plugin's own links (ldd + dpkg -S), plus what Qt dlopens by name.
    assert "libxcb1" in depends and "libxcb-cursor0" in depends and "libegl1" in depends
    icon = tmp_path / "icon.png"
    with open(tmp_path / "fs.tar", "wb") as fs:
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=fs, check=True)
    with tarfile.open(tmp_path / "fs.tar") as tar:
        member = tar.extractfile("./usr/share/icons/hicolor/48x48/apps/hearth.png")
        assert member is not None
        icon.write_bytes(member.read())
    assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if shutil.which("lintian"):
        linux.lintian(deb)


@pytest.mark.parametrize("edition", ["chat", "full"])
def test_the_package_description_is_what_apt_shows_in_80_columns(
    edition: str, frozen_tree: Path
) -> None:
    # lintian warns (extended-description-line-too-long) past 80 characters; apt and
    # software centres show the lines as written.
    deb = linux.build_deb(edition, frozen_tree, Path(sys.executable))
    text = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Description"], capture_output=True, text=True, check=True
    ).stdout
    lines = text.rstrip("\n").splitlines()
    assert len(lines) >= 2 and all(len(line) <= 80 for line in lines), lines
    assert ("image generation" in lines[0]) == (edition == "full")


def test_the_tarball_installs_into_a_home_without_root_and_uninstalls(
    frozen_tree: Path, tmp_path: Path
) -> None:
    tarball = linux.build_tar("full", frozen_tree, Path(sys.executable))
    assert tarball.name == f"hearth-{build.version()}-linux-x86_64.tar.gz"
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="tar")
    folder = unpacked / tarball.name.removesuffix(".tar.gz")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    done = subprocess.run(
        ["sh", str(folder / "install.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Hearth is installed in" in done.stdout
    command = home / ".local" / "bin" / "hearth"
    assert subprocess.run([str(command)], check=False).returncode == 0  # the program runs
    desktop = (home / ".local" / "share" / "applications" / "hearth.desktop").read_text()
    assert f"Exec={command} %F" in desktop and "Icon=hearth" in desktop
    assert (home / ".local/share/icons/hicolor/128x128/apps/hearth.png").exists()

    # Again: an update swaps the folder in whole.
    again = subprocess.run(["sh", str(folder / "install.sh")], env=env, capture_output=True)
    assert again.returncode == 0 and not (home / ".local/opt/hearth.old").exists()

    done = subprocess.run(
        ["sh", str(folder / "uninstall.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "chats and models are still" in done.stdout
    assert not command.exists() and not (home / ".local" / "opt" / "hearth").exists()
    assert not (home / ".local/share/applications/hearth.desktop").exists()


def test_install_sh_refuses_a_half_unpacked_archive_with_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    shutil.copy2(ROOT / "packaging" / "linux" / "install.sh", folder / "install.sh")
    done = subprocess.run(
        ["sh", str(folder / "install.sh")],
        env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "unpack the whole archive" in done.stderr
