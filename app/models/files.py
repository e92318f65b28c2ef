"""Model files on disk: sha256 while reading, verified copies, atomic moves, free space."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from app.errors import HearthError
from app.humanize import MiB, format_size

#: Bytes read per block: large enough for full disk speed, small enough for smooth progress.
CHUNK = 4 * MiB

#: Called with the size of each block as it is read (add them up for progress).
BlockFn = Callable[[int], None]
#: What callers of long file work pass for progress: (bytes done, bytes total, what).
ProgressFn = Callable[[int, int, str], None]


class NotEnoughDiskError(HearthError):
    default_remedy = (
        "Free some space, or move the library to a larger drive with HEARTH_MODELS, then try again."
    )


class ProgressCounter:
    """Progress across all the files of one job: adds up blocks into `progress` calls."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.total = total
        self.done = 0
        self.progress = progress

    def add(self, n: int, what: str) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total, what)

    def blocks(self, what: str) -> BlockFn:
        """A BlockFn that reports each block as `what`."""
        return lambda n: self.add(n, what)


class ReadError(OSError):
    """Reading the source failed (not writing the copy): usually a drive that went away."""


def pump(src: IO[bytes], out: IO[bytes] | None, digest: Any, on_block: BlockFn | None) -> int:
    """Read `src` to its end into `digest` (a hashlib object) and `out`; return the bytes read.

    The one read loop behind hashing, copying and assembling model files. A failed read
    raises ReadError, a failed write the OSError itself.
    """
    done = 0
    while True:
        try:
            block = src.read(CHUNK)
        except OSError as exc:
            raise ReadError(exc.errno, exc.strerror, exc.filename) from exc
        if not block:
            return done
        if out is not None:
            out.write(block)
        digest.update(block)
        done += len(block)
        if on_block is not None:
            on_block(len(block))


def sha256_file(path: Path, progress: BlockFn | None = None) -> str:
    """The sha256 of the file at `path` as hex; `progress` gets each block's size.

    Raises ReadError when the file cannot be opened or read.
    """
    digest = hashlib.sha256()
    with _open_source(path) as fh:
        pump(fh, None, digest, progress)
    return digest.hexdigest()


def copy_hashed(src: Path, dest: Path, progress: BlockFn | None = None) -> tuple[str, int]:
    """Copy `src` to `dest` computing sha256 on the way, fsync it; return (sha256, size).

    On any failure `dest` is removed; reading `src` failing raises ReadError, writing
    `dest` the OSError itself, so callers can say which side failed in their own words.
    """
    digest = hashlib.sha256()
    with _open_source(src) as fin:
        try:
            with dest.open("wb") as fout:
                size = pump(fin, fout, digest, progress)
                fout.flush()
                os.fsync(fout.fileno())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    return digest.hexdigest(), size


def _open_source(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ReadError(exc.errno, exc.strerror, str(path)) from exc


def atomic_move(source: Path, dest: Path) -> None:
    """Move `source` to `dest` in one step (os.replace); across drives, copy next to `dest`
    first, then rename, so `dest` is never seen half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    temporary = dest.with_name(f".{dest.name}.partial")
    with source.open("rb") as src, temporary.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, dest)
    source.unlink()


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; Windows has no directory fsync)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_space(folder: Path) -> int:
    """Bytes free on the drive holding `folder` (or its nearest existing parent)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(folder: Path, need: int, what: str, remedy: str | None = None) -> None:
    """Raise NotEnoughDiskError unless the drive holding `folder` has `need` bytes free.

    `what` starts the sentence: "Importing", "The download", "The starter model".

    >>> check_free_space(Path("/"), 0, "Nothing")
    """
    free = free_space(folder)
    if free < need:
        raise NotEnoughDiskError(
            f"{what} needs {format_size(need)} free on the drive holding {folder}, but only "
            f"{format_size(free)} is free.",
            remedy,
        )


class DiskFullError(HearthError):
    """A disk filled up while Hearth was writing to it."""

    default_remedy = "Free some space and run the same command again: it continues from there."


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` means a disk ran out of space (a write, or SQLite's "disk is full").

    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # sqlite3.OperationalError("database or disk is full"), without importing sqlite3 here.
    return type(exc).__name__ == "OperationalError" and "disk is full" in str(exc)


def disk_full_error(folder: Path, remedy: str | None = None) -> DiskFullError:
    """The one sentence for a full disk: which folder's disk, and how much is left.

    Safe to call on that very disk: it only asks the filesystem how much is free.
    """
    try:
        free = f"{format_size(free_space(folder))} free"
    except OSError:
        free = "no room left"
    return DiskFullError(f"The disk holding {folder} is full ({free}).", remedy)
