"""`scripts/package kit`: an install kit for an air-gapped machine, checked end to end.

    scripts/package kit --models gemma-3-270m-it-q4_k_m --to /media/usb/hearth-kit
    python scripts/packagelib/kit.py --models NAME... --to DIR [--installers DIR]
                                     [--include GLOB]... [--no-installers] [--home HOME]

The kit folder holds the installers, the chosen library models exported with their
manifest (`hearth models export`), a README for the person at the other end, SHA256SUMS
(every other file, in `sha256sum -c` format) and two scripts that check it with what a
bare system has: `verify` (sha256sum, or shasum on macOS) and `verify.ps1` (Get-FileHash).
Everything is written into `DIR.partial`, SHA256SUMS last, and renamed to DIR at the end,
so a kit that was interrupted never looks complete.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python scripts/packagelib/kit.py`: find `app`

from app import __version__  # noqa: E402
from app.cli.output import EXIT_INTERRUPTED, ProgressBar, print_error  # noqa: E402
from app.errors import HearthError  # noqa: E402
from app.humanize import MiB, format_size  # noqa: E402
from app.models.files import (  # noqa: E402
    ProgressCounter,
    ProgressFn,
    ReadError,
    check_free_space,
    copy_hashed,
    fsync_dir,
    sha256_file,
)
from app.models.library import library_name  # noqa: E402
from app.models.portable import (  # noqa: E402
    ExportedModel,
    export_models,
    library_files,
)
from app.paths import hearth_paths  # noqa: E402
from app.store import utc_now  # noqa: E402
from app.store.db import open_database  # noqa: E402
from app.store.library import LibraryModel, ModelKind, find_model, list_models  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "kit_templates"
#: What counts as an installer in --installers when no --include is given.
INSTALLER_PATTERNS = ("*.deb", "*.tar.gz", "*.exe", "*.dmg")
#: Room for the README, the scripts, SHA256SUMS and the manifest, and some to spare.
KIT_MARGIN = 16 * MiB
SUMS_NAME = "SHA256SUMS"
#: Written first into DIR.partial: a stale .partial holding it is ours to remove.
PARTIAL_MARKER = ".hearth-kit-partial"


class KitError(HearthError):
    default_remedy = "Check the paths and try again."


@dataclass(frozen=True)
class KitResult:
    folder: Path
    installers: tuple[Path, ...]  # inside the kit
    models: tuple[ExportedModel, ...]
    files: int  # listed in SHA256SUMS
    size_bytes: int


# --- the command --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/package kit",
        description="Write an install kit for an air-gapped machine: installers, models with "
        "their manifest, a README, SHA256SUMS and verify scripts.",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="NAME",
        help="library models to put in the kit (names as in `hearth models list`)",
    )
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="the kit folder")
    parser.add_argument(
        "--installers",
        type=Path,
        default=ROOT / "dist",
        metavar="DIR",
        help="where the installers are (default: %(default)s)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only the installers whose file name matches GLOB (repeatable; default: every "
        + ", ".join(INSTALLER_PATTERNS)
        + ")",
    )
    which.add_argument(
        "--no-installers", action="store_true", help="a models-only kit, without installers"
    )
    parser.add_argument(
        "--home",
        type=Path,
        metavar="HOME",
        help="the Hearth home whose library holds the models (default: HEARTH_HOME, or the "
        "usual place)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        with ProgressBar("kit") as bar:
            result = build_kit(
                args.models,
                args.to,
                installers_dir=None if args.no_installers else args.installers,
                include=args.include,
                home=args.home,
                progress=bar.update,
            )
    except HearthError as exc:
        return print_error(exc)
    except KeyboardInterrupt:
        print("Stopped; no kit was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    for path in result.installers:
        print(f"Installer {path.name} ({format_size(path.stat().st_size)})")
    for m in result.models:
        print(f"Model {m.name} ({m.kind}, {format_size(m.size_bytes)})")
    print(
        f"Wrote the kit to {result.folder}: {result.files} files, "
        f"{format_size(result.size_bytes)}, every one listed in {SUMS_NAME}."
    )
    print(f"At the other end: sh {result.folder / 'verify'}, then see README.txt.")
    return 0


# --- building the kit -------------------------------------------------------------------------


def build_kit(
    names: Sequence[str],
    dest: Path,
    *,
    installers_dir: Path | None,
    include: Sequence[str] | None = None,
    home: Path | None = None,
    progress: ProgressFn | None = None,
) -> KitResult:
    """Write the kit into `dest` (which must not exist, or be empty) and return what is in it.

    `installers_dir` None makes a models-only kit. Every check (names, installers, free
    space) runs before a byte is copied.
    """
    paths = hearth_paths({"HEARTH_HOME": str(home)} if home is not None else None)
    where = Path(home or os.environ.get("HEARTH_HOME") or paths.data)
    if not paths.database.is_file():
        raise KitError(
            f"There is no Hearth library at {where} (no {paths.database}).",
            "Pass --home (or set HEARTH_HOME) to the Hearth home that holds the models.",
        )
    db = open_database(paths.database)
    try:
        models = [_library_model(db, n, where) for n in dict.fromkeys(names)]
        installers = _pick_installers(installers_dir, include) if installers_dir else []
        dest = Path(os.path.abspath(dest.expanduser()))
        partial = dest.with_name(dest.name + ".partial")
        _check_target(dest, partial)
        model_bytes = sum(f.size for m in models for f in library_files(m))
        installer_bytes = sum(p.stat().st_size for p in installers)
        total = model_bytes + installer_bytes
        check_free_space(
            dest.parent,
            total + KIT_MARGIN,
            "The kit",
            "Free some space on that drive, write the kit to a larger one, or leave some "
            "models or installers out.",
        )
        return _write_kit(db, models, installers, dest, partial, total, progress)
    finally:
        db.close()


def _library_model(db: sqlite_utils.Database, name: str, home: Path) -> LibraryModel:
    model = find_model(db, library_name(name))  # the starter's aliases too
    if model is not None:
        return model
    have = sorted(m.name for m in list_models(db))
    if have:
        cause = f"No model named '{name}' is in the library at {home}; it has: {', '.join(have)}."
    else:
        cause = f"No model named '{name}' is in the library at {home}: it has no models at all."
    raise KitError(
        cause,
        "Use names from that list (`hearth models list`), pass --home for another Hearth "
        "home, or import the model first with `hearth models import PATH`.",
    )


def _pick_installers(folder: Path, include: Sequence[str] | None) -> list[Path]:
    folder = Path(os.path.abspath(folder.expanduser()))
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    patterns = tuple(include) if include else INSTALLER_PATTERNS
    picked = [p for p in files if any(fnmatch.fnmatch(p.name, g) for g in patterns)]
    if picked:
        return picked
    if include:
        listed = ", ".join(p.name for p in files) or "no files at all"
        raise KitError(
            f"No file in {folder} matches {' or '.join(include)}; it holds {listed}.",
            "Fix the --include pattern, or leave it out to take every installer there.",
        )
    where = (
        "does not exist"
        if not folder.is_dir()
        else "holds no installer (.deb, .tar.gz, .exe or .dmg)"
    )
    raise KitError(
        f"{folder} {where}, so the kit would have nothing to install.",
        "Build the installers first with `scripts/package`, point --installers at the folder "
        "that holds them, or pass --no-installers for a models-only kit.",
    )


def _check_target(dest: Path, partial: Path) -> None:
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise KitError(
            f"{dest} already exists and is not an empty folder.",
            "Give --to a new folder (or an empty one); the kit never writes over other files.",
        )
    if partial.exists() and not (partial / PARTIAL_MARKER).is_file():
        raise KitError(
            f"{partial} exists and was not left by an interrupted kit.",
            "Move it away or give --to another folder name.",
        )


def _write_kit(
    db: sqlite_utils.Database,
    models: list[LibraryModel],
    installers: list[Path],
    dest: Path,
    partial: Path,
    total: int,
    progress: ProgressFn | None,
) -> KitResult:
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted kit's leftovers (marked ours)
    try:
        partial.mkdir(parents=True)
        (partial / PARTIAL_MARKER).touch()
        sums: dict[str, str] = {}  # kit-relative POSIX path -> sha256
        counter = ProgressCounter(total, progress)
        copied = _copy_installers(installers, partial / "installers", counter, sums)

        def export_progress(done: int, _total: int, what: str) -> None:
            if progress is not None:  # one bar for the whole kit: installers, then models
                progress(counter.done + done, total, what)

        result = export_models([m.name for m in models], partial / "models", export_progress, db=db)
        for exported in result.models:
            for f in exported.files:
                assert f.sha256 is not None  # the export computed it while copying
                sums[_kit_path(partial, f.source)] = f.sha256
        sums[_kit_path(partial, result.manifest)] = sha256_file(result.manifest)

        _write_text(partial / "README.txt", readme(copied, list(result.models), models))
        _write_text(partial / "verify", (TEMPLATES / "verify.sh").read_text(), mode=0o755)
        _write_text(partial / "verify.ps1", (TEMPLATES / "verify.ps1").read_text())
        for name in ("README.txt", "verify", "verify.ps1"):
            sums[name] = sha256_file(partial / name)

        (partial / PARTIAL_MARKER).unlink()
        # SHA256SUMS last: with it the kit is whole (and only then is the folder renamed).
        lines = "".join(f"{sums[p]}  {p}\n" for p in sorted(sums))
        _write_text(partial / SUMS_NAME, lines)
        fsync_dir(partial)
        if dest.exists():
            dest.rmdir()  # checked empty up front
        os.replace(partial, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return KitResult(
        folder=dest,
        installers=tuple(dest / "installers" / p.name for p in copied),
        models=tuple(
            ExportedModel(m.name, m.kind, dest / "models" / m.folder.name, m.files)
            for m in result.models
        ),
        files=len(sums),
        size_bytes=size,
    )


def _copy_installers(
    installers: list[Path], folder: Path, counter: ProgressCounter, sums: dict[str, str]
) -> list[Path]:
    if not installers:
        return []
    folder.mkdir()
    out = []
    for src in installers:
        target = folder / src.name
        try:
            digest, _ = copy_hashed(src, target, counter.blocks(f"copying {src.name}"))
        except ReadError as exc:
            raise KitError(
                f"Reading {src} failed ({exc.strerror or exc}).",
                "Check that the drive is still connected, then try again.",
            ) from exc
        except OSError as exc:
            raise KitError(
                f"Writing {target} failed ({exc.strerror or exc}).",
                "Check that the target drive is writable and has room, then try again.",
            ) from exc
        sums[f"installers/{src.name}"] = digest
        out.append(target)
    return out


def _kit_path(kit: Path, path: Path) -> str:
    return path.relative_to(kit).as_posix()


def _write_text(path: Path, text: str, mode: int = 0o644) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(mode)


# --- the README -------------------------------------------------------------------------------


def _install_steps(name: str) -> str:
    """How to install one installer, by its kind (the file name's ending)."""
    if name.endswith(".deb"):
        return (
            f"  Debian or Ubuntu (x86-64):  sudo apt install ./installers/{name}\n"
            f"    (or: sudo dpkg -i installers/{name}; if it names missing packages,\n"
            "    install those from the system's own install media). It goes to\n"
            "    /opt/hearth; start Hearth from the applications menu, or run `hearth`."
        )
    if name.endswith(".tar.gz"):
        folder = name.removesuffix(".tar.gz")
        return (
            "  Any Linux (x86-64), no root needed:\n"
            f"    tar -xzf installers/{name} -C ~\n"
            f"    cd ~/{folder} && ./install.sh\n"
            "    (to ~/.local/opt/hearth, with a menu entry; then ~/.local/bin/hearth).\n"
            f"    Or run it in place without installing: ~/{folder}/hearth/hearth"
        )
    if name.endswith(".exe"):
        return (
            "  Windows: double-click it (or run it from PowerShell) and follow the steps.\n"
            "    If SmartScreen warns about an unknown publisher, choose More info, then\n"
            "    Run anyway. Start Hearth from the Start menu."
        )
    if name.endswith(".dmg"):
        return (
            "  macOS: open it and drag Hearth into Applications. The first time, open it\n"
            "    with right-click (or Control-click), Open, if macOS says it cannot check\n"
            "    the developer."
        )
    return f"  Install {name} as usual for its kind of file."


def readme(
    installers: list[Path], exported: list[ExportedModel], library: list[LibraryModel]
) -> str:
    """The README.txt for the person who receives the kit."""
    by_name = {m.name: m for m in library}
    lines = [
        "Hearth install kit",
        "==================",
        "",
        f"Written by Hearth {__version__} on {utc_now()[:10]}. Hearth runs AI models on this",
        "computer, with no network needed. This folder holds everything to install it and",
        "its models on a machine that is not connected to the internet.",
        "",
        "What is inside",
        "--------------",
    ]
    if installers:
        lines.append("installers/")
        for p in installers:
            lines.append(f"  {p.name}  ({format_size(p.stat().st_size)})")
    lines.append("models/  (the models, with hearth-manifest.json: each file's size and sha256)")
    for m in exported:
        row = by_name.get(m.name)
        facts = [m.kind.value, format_size(m.size_bytes)]
        if row is not None and row.license:
            facts.append(f"license {row.license}")
        if m.kind is ModelKind.IMAGE:
            facts.append("needs the full edition")
        lines.append(f"  {m.name}  ({', '.join(facts)})")
    lines += [
        "README.txt   this file",
        f"{SUMS_NAME}   the sha256 of every other file in the kit",
        "verify       checks the kit on Linux and macOS",
        "verify.ps1   checks the kit on Windows",
        "",
        "1. Check the copy first",
        "-----------------------",
        "A copy on a USB drive can be incomplete or damaged. Before installing, check",
        f"every file against {SUMS_NAME}, in this folder:",
        "",
        "  Linux, macOS:  ./verify",
        "                 (or: sh verify, if the drive lost the file's execute permission)",
        "  Windows:       powershell -ExecutionPolicy Bypass -File verify.ps1",
        "",
        "It ends with OK when every file matches. Otherwise it names each file that is",
        "MISSING or DAMAGED: copy the kit again and do not install from that copy.",
        "By hand: `sha256sum -c SHA256SUMS` (Linux), `shasum -a 256 -c SHA256SUMS`",
        "(macOS), or compare `Get-FileHash FILE` with its line in SHA256SUMS (Windows).",
        "",
    ]
    step = 2
    if installers:
        lines += [f"{step}. Install Hearth", "-----------------", "Pick the one for this computer:"]
        for p in installers:
            lines += ["", f"{p.name}", _install_steps(p.name)]
        lines.append("")
        step += 1
    first = exported[0].name if exported else "NAME"
    lines += [
        f"{step}. Add the models (no network needed)",
        "-------------------------------------",
        "Copy nothing by hand: Hearth checks every file's sha256 against the manifest",
        "before it accepts a model, then copies it into its library.",
        "",
        "  In a terminal:  hearth models import /path/to/this/kit/models",
        "                  (on Windows: hearth models import D:\\hearth-kit\\models)",
        "  In the window:  Models, then Import folder..., and choose this kit's",
        "                  models folder.",
        "",
        "Then `hearth models list` shows them, and",
        f"  hearth chat -m {first}",
        "(or the window's Chat page) uses one. The kit can be deleted afterwards.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
