"""The Linux installers from a frozen onedir tree: a .deb (/opt/hearth) and a tar.gz.

The .deb's `Depends:` is read off the tree: every shared library its ELF files need that
is not inside it, mapped to the Debian package that ships it here (`dpkg -S`), with the
glibc floor from the newest GLIBC_x symbol version any file asks for.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

from packagelib.build import BUILD, DIST, ROOT, BuildError, run, say, version

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
# Qt's xcb platform plugin dlopens these at run time (ldd on the plugin lists most; the
# cursor library is loaded by name), and a window needs the fonts and D-Bus libraries.
ALWAYS = (
    "libxcb-cursor0",
    "libxkbcommon-x11-0",
    "libegl1",
    "libgl1",
    "libfontconfig1",
    # Qt's Wayland platform plugin (used first on a Wayland desktop) needs these three.
    "libwayland-client0",
    "libwayland-cursor0",
    "libwayland-egl1",
)
# Never inside the tree: the system's own copy must win (a bundled libstdc++ older than
# the one Mesa was built against breaks the GPU drivers), and glibc is never bundled.
SYSTEM_ONLY = re.compile(
    r"^(libstdc\+\+\.so|libgcc_s\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so"
    r"|ld-linux|libGL\.so|libEGL\.so|libGLX|libGLdispatch|libdrm|libgbm|libxcb[.-]|libX11"
    r"|libxkbcommon|libfontconfig|libfreetype|libdbus-1|libglib-2|libgthread|libgobject"
    r"|libexpat|libz\.so|libuuid|libgio-2|libgmodule-2|libmount|libblkid|libselinux|libpcre2"
    r"|libffi|libharfbuzz|libcairo|libgcrypt|libgpg-error|libpng16|libbz2|libbrotli|libsystemd"
    r"|liblzma|libzstd|liblz4|libcap\.so|libkeyutils|libcom_err|libkrb5|libk5crypto|libgssapi)"
)
# auditwheel renames the libraries it vendors into a wheel: libbrotlicommon-53534446.so.1.2.0
WHEEL_VENDORED = re.compile(r"-[0-9a-f]{8}\.so")
DESKTOP = """[Desktop Entry]
Type=Application
Name=Hearth
GenericName=Local AI assistant
Comment=Private chat and image generation on this computer, offline
Exec={exec} %F
Icon=hearth
Terminal=false
Categories=Utility;Development;
Keywords=AI;chat;LLM;assistant;image;offline;
StartupWMClass=Hearth
"""


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(tree: Path) -> list[Path]:
    return [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]


def drop_system_libraries(tree: Path) -> list[str]:
    """Remove bundled copies of libraries the system must provide (see SYSTEM_ONLY)."""
    removed = []
    internal = tree / "_internal"
    for path in sorted(internal.glob("*")):
        if WHEEL_VENDORED.search(path.name):
            continue  # a wheel's own copy (auditwheel-renamed): that wheel needs exactly it
        if path.is_file() and SYSTEM_ONLY.match(path.name):
            path.unlink()
            removed.append(path.name)
    return removed


def link_llama_libraries(tree: Path) -> int:
    """One copy of each llama.cpp library, the other names as links; returns bytes saved.

    The wheel has no symlinks, so libllama.so, libllama.so.0 and libllama.so.0.5.0 arrive as
    three files, and PyInstaller adds a fourth beside the program. Two files with one soname
    can end up loaded as two libraries with two backend registries: keep the soname file
    (libllama.so.0), point every other name at it, and drop the full-version names.
    """
    internal = tree / "_internal"
    lib = internal / "llama_cpp" / "lib"
    saved = 0
    for soname_file in sorted(lib.glob("lib*.so.[0-9]")):
        stem = soname_file.name.rsplit(".so.", 1)[0]  # libllama
        for other in [*lib.glob(f"{stem}.so.*.*"), internal / soname_file.name]:
            if other.is_file() and not other.is_symlink() and other != soname_file:
                saved += other.stat().st_size
                other.unlink()
        plain = lib / f"{stem}.so"
        if plain.is_file() and not plain.is_symlink():
            saved += plain.stat().st_size
            plain.unlink()
        plain.symlink_to(soname_file.name)  # what llama-cpp-python dlopens by path
        top = internal / soname_file.name
        if not top.exists():
            top.symlink_to(soname_file.relative_to(internal))  # LD_LIBRARY_PATH finds it
    return saved


def strip_python(tree: Path) -> int:
    """Strip the debug sections from libpython and its extension modules; bytes saved.

    Only those: they come from the build machine's own Python build. Wheels' libraries are
    left alone, since many are rewritten by patchelf/auditwheel and `strip` breaks them
    (numpy's OpenBLAS then fails with "ELF load command address/offset not page-aligned").
    """
    internal = tree / "_internal"
    targets = [*internal.glob("libpython3*.so*"), *internal.glob("python3*/lib-dynload/*.so")]
    saved = 0
    for path in targets:
        if path.is_symlink() or not path.is_file():
            continue
        before = path.stat().st_size
        run(["strip", "--strip-debug", path])
        saved += before - path.stat().st_size
    return saved


def glibc_floor(tree: Path) -> str:
    newest = (2, 17)
    for path in elf_files(tree):
        out = subprocess.run(
            ["objdump", "-T", str(path)], capture_output=True, text=True, check=False
        ).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", out):
            newest = max(newest, (int(major), int(minor)))
    return f"{newest[0]}.{newest[1]}"


def system_dependencies(tree: Path) -> set[str]:
    """Debian packages holding the libraries the tree's ELF files load from the system."""
    paths: set[str] = set()
    missing: set[str] = set()
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / "_internal"))
    for path in elf_files(tree):
        out = subprocess.run(
            ["ldd", str(path)], capture_output=True, text=True, check=False, env=env
        ).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if not m:
                continue
            name, where = m.groups()
            if where == "not":
                missing.add(name)
            elif not where.startswith(str(tree)):
                paths.add(os.path.realpath(where))
    # Libraries found only beside other bundled ones (CUDA stubs, optional plugins) are not
    # the system's business; name the rest so a missing X11 library is caught here.
    missing = {m for m in missing if not (tree / "_internal" / m).exists()}
    packages: set[str] = set()
    for path in sorted(paths):
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            alt = path.replace("/usr/lib/", "/lib/", 1)  # merged /usr: dpkg knows one name
            out = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            packages.add(out.stdout.split(":")[0].strip())
    if missing:
        say(f"Not found on this build machine (left to ALWAYS/Depends): {sorted(missing)}")
    return {p for p in packages if p not in ("libc6", "libc-bin")}


def render_icons(python: Path, out: Path) -> None:
    """hearth.svg rendered to PNG at the hicolor sizes (Qt's SVG renderer, in the build env)."""
    svg = ROOT / "resources" / "hearth.svg"
    code = (
        "import sys\n"
        "from PySide6.QtCore import Qt\n"
        "from PySide6.QtGui import QGuiApplication, QImage, QPainter\n"
        "from PySide6.QtSvg import QSvgRenderer\n"
        "app = QGuiApplication([])\n"
        "r = QSvgRenderer(sys.argv[1])\n"
        "for size in map(int, sys.argv[3:]):\n"
        "    img = QImage(size, size, QImage.Format.Format_ARGB32)\n"
        "    img.fill(Qt.GlobalColor.transparent)\n"
        "    p = QPainter(img); r.render(p); p.end()\n"
        "    img.save(f'{sys.argv[2]}/{size}.png')\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    run([python, "-c", code, svg, out, *map(str, ICON_SIZES)], env=env)


def _install_icons(icons: Path, share: Path) -> None:
    for size in ICON_SIZES:
        target = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(icons / f"{size}.png", target / "hearth.png")
    scalable = share / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "resources" / "hearth.svg", scalable / "hearth.svg")


def _normalise_modes(root: Path) -> None:
    """0755 for folders and executables, 0644 for the rest (lintian, and umask-proof)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            shared_library = ".so" in path.name and is_elf(path)
            program = is_elf(path) and not shared_library
            executable = program or (
                not shared_library and bool(path.stat().st_mode & stat.S_IXUSR)
            )
            path.chmod(0o755 if executable else 0o644)


def package_name(edition: str) -> str:
    return "hearth" if edition == "full" else "hearth-chat"


def build_deb(edition: str, tree: Path, python: Path) -> Path:
    """dist/hearth[-chat]_VERSION_amd64.deb"""
    name = package_name(edition)
    stage = BUILD / edition / "deb"
    shutil.rmtree(stage, ignore_errors=True)
    say(f"Staging the .deb in {stage}")
    opt = stage / "opt" / "hearth"
    shutil.copytree(tree, opt, symlinks=True)
    bin_dir = stage / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "hearth").symlink_to("/opt/hearth/hearth")
    share = stage / "usr" / "share"
    (share / "applications").mkdir(parents=True)
    (share / "applications" / "hearth.desktop").write_text(DESKTOP.format(exec="hearth"))
    icons = BUILD / "icons"
    render_icons(python, icons)
    _install_icons(icons, share)
    doc = share / "doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(_copyright())
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    changelog = (
        f"{name} ({version()}) unstable; urgency=medium\n\n"
        f"  * Hearth {version()}, {edition} edition.\n\n"
        f" -- Hearth developers <hearth@example.org>  {stamp}\n"
    )
    with gzip.GzipFile(doc / "changelog.gz", "wb", mtime=0, compresslevel=9) as f:
        f.write(changelog.encode())
    overrides = share / "lintian" / "overrides"
    overrides.mkdir(parents=True)
    (overrides / name).write_text(_lintian_overrides(name))
    man = share / "man" / "man1"
    man.mkdir(parents=True)
    with gzip.GzipFile(man / "hearth.1.gz", "wb", mtime=0, compresslevel=9) as f:
        f.write(_manpage().encode())

    floor = glibc_floor(opt)
    depends = sorted(system_dependencies(opt) | set(ALWAYS))
    depends_line = ", ".join([f"libc6 (>= {floor})", *depends])
    installed_kb = (
        sum(p.stat().st_size for p in stage.rglob("*") if p.is_file() and not p.is_symlink())
        // 1024
    )
    other = package_name("chat" if edition == "full" else "full")
    control = stage / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(
        f"Package: {name}\n"
        f"Version: {version()}\n"
        "Section: utils\n"
        "Priority: optional\n"
        "Architecture: amd64\n"
        f"Installed-Size: {installed_kb}\n"
        f"Depends: {depends_line}\n"
        f"Conflicts: {other}\n"
        f"Replaces: {other}\n"
        "Maintainer: Hearth developers <hearth@example.org>\n"
        "Homepage: https://hearth.invalid/\n"
        "Description: private, on-device AI chat"
        + (" and image generation\n" if edition == "full" else " (chat-only edition)\n")
        # lintian: extended description lines of at most 80 characters.
        + (
            " Hearth runs chat models (llama.cpp) and image models (diffusers)\n"
            if edition == "full"
            else " Hearth runs chat models (llama.cpp)\n"
        )
        + " fully offline on this computer: models come from a download you ask for,\n"
        " or a USB drive.\n"
    )
    _normalise_modes(stage)
    DIST.mkdir(exist_ok=True)
    deb = DIST / f"{name}_{version()}_amd64.deb"
    deb.unlink(missing_ok=True)  # dpkg-deb writes into an existing file without truncating it
    say(f"Building {deb.name} (xz -9)")
    run(["fakeroot", "dpkg-deb", "-Zxz", "-z9", "--build", stage, deb])
    return deb


def lintian(deb: Path) -> None:
    """lintian must report no errors (warnings are printed, overrides are in the package)."""
    if shutil.which("lintian") is None:
        raise BuildError("lintian is not installed. Install Debian's lintian package, then rerun.")
    done = subprocess.run(
        ["lintian", "--tag-display-limit", "0", "--fail-on", "error", str(deb)],
        capture_output=True,
        text=True,
        check=False,
    )
    print(done.stdout + done.stderr, end="")
    if done.returncode != 0:
        raise BuildError(f"lintian found errors in {deb.name} (above).")
    say(f"lintian: no errors in {deb.name}")


def build_tar(edition: str, tree: Path, python: Path) -> Path:
    """dist/hearth[-chat]-VERSION-linux-x86_64.tar.gz with install.sh for the user's home."""
    name = f"{package_name(edition)}-{version()}-linux-x86_64"
    stage = BUILD / edition / "tar" / name
    shutil.rmtree(stage.parent, ignore_errors=True)
    shutil.copytree(tree, stage / "hearth", symlinks=True)
    icons = BUILD / "icons"
    if not (icons / "256.png").exists():
        render_icons(python, icons)
    _install_icons(icons, stage / "share")
    (stage / "share" / "applications").mkdir(parents=True)
    (stage / "share" / "applications" / "hearth.desktop").write_text(
        DESKTOP.format(exec="@BIN@/hearth")
    )
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(ROOT / "packaging" / "linux" / script, stage / script)
    (stage / "README.txt").write_text(_tar_readme(name))
    _normalise_modes(stage)
    DIST.mkdir(exist_ok=True)
    out = DIST / f"{name}.tar.gz"
    say(f"Building {out.name} (gzip -9)")
    with tarfile.open(out, "w:gz", compresslevel=9) as tar:
        tar.add(stage, arcname=name)
    return out


def _copyright() -> str:
    return (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: Hearth\n\n"
        "Files: *\nCopyright: 2026 Hearth developers\nLicense: Apache-2.0\n"
        " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n\n"
        "Files: opt/hearth/_internal/*\nCopyright: their authors (Python, Qt for Python,"
        " llama.cpp, PyTorch and the other libraries bundled)\n"
        "License: various-free\n Each library's licence is in its folder under"
        " /opt/hearth/_internal (the *.dist-info folders and LICENSE files).\n"
    )


def _lintian_overrides(name: str) -> str:
    # The frozen app is one self-contained tree under /opt, as the issue asks; these tags
    # describe that choice, not a mistake.
    tags = [
        "dir-or-file-in-opt",
        "embedded-library",
        "shared-library-lacks-prerequisites",
        "unstripped-binary-or-object",
        "hardening-no-fortify-functions",
        "hardening-no-relro",
        "hardening-no-bindnow",
        "library-not-linked-against-libc",
        "shlib-without-versioned-soname",
        "executable-in-usr-lib",
        "package-contains-vcs-control-file",
        "script-not-executable",
        "non-standard-file-perm",
        "package-installs-python-pycache-dir",
        "package-contains-documentation-outside-usr-share-doc",
        "extra-license-file",
        "repeated-path-segment",
        "spelling-error-in-binary",
        "font-in-non-font-package",
        "unusual-interpreter",
        "executable-not-elf-or-script",
        "no-symbols-control-file",
        # Four of torch's own sources begin "#!/usr/bin/env/python3" (a typo upstream); they
        # are modules imported from the archive, never run as scripts.
        "wrong-path-for-interpreter",
        "hardening-no-pie",
        "custom-library-search-path",
    ]
    return "".join(f"{name}: {tag}\n" for tag in tags)


def _manpage() -> str:
    return (
        '.TH HEARTH 1 "" "Hearth" "User Commands"\n'
        ".SH NAME\nhearth \\- private, on-device AI chat and image generation\n"
        ".SH SYNOPSIS\n.B hearth\n[\\fICOMMAND\\fR] [\\fIOPTIONS\\fR]\n"
        ".SH DESCRIPTION\nWith no command, opens the Hearth window. "
        "\\fBhearth doctor\\fR reports this machine, \\fBhearth chat\\fR chats in the terminal, "
        "\\fBhearth models\\fR manages the model library; \\fBhearth --help\\fR lists all.\n"
    )


def _tar_readme(name: str) -> str:
    return (
        f"Hearth {version()} for Linux x86-64 ({name})\n\n"
        "Install into your home folder (no root needed):\n\n"
        "    ./install.sh            # to ~/.local/opt/hearth, with a menu entry\n"
        "    ~/.local/bin/hearth     # or pick Hearth from the applications menu\n\n"
        "Remove it again with ./uninstall.sh (your chats and models stay in\n"
        "~/.local/share/hearth until you delete that folder).\n"
        "Or run it in place without installing: ./hearth/hearth\n"
    )
