"""The image gallery: PNGs carrying their settings in text chunks, recorded in the database.

Each image is written to a `.partial` file, flushed, renamed into place (atomic), and only
then recorded in the `images` table, so the gallery never shows a half-written image. The
settings travel inside the PNG too (a `hearth` JSON chunk, one chunk per setting, and an
A1111-style `parameters` chunk other tools read), so an exported or copied image still
says how to make it again: `read_png_parameters(path)`.

    image = save_image(db, png_bytes, ImageParams(prompt="a lighthouse", seed=7, ...))
    read_png_parameters(image.path) == image.params  # True
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from app import __version__
from app.errors import HearthError
from app.store import utc_now
from app.store.errors import ImageNotFoundError, NotAHearthImageError

PARTIAL_SUFFIX = ".partial"
#: The PNG text chunk holding every setting as JSON (the one `read_png_parameters` trusts).
JSON_CHUNK = "hearth"


@dataclass(frozen=True)
class ImageParams:
    """Everything needed to make an image again ("use these settings again")."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    negative_prompt: str = ""
    scheduler: str = ""
    model: str = ""
    app_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # device, dtype, timings...

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def a1111_text(self) -> str:
        """The settings the way AUTOMATIC1111 writes them, which many tools can read."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(
            f"Steps: {self.steps}, Sampler: {self.scheduler or 'default'}, CFG scale: "
            f"{self.guidance:g}, Seed: {self.seed}, Size: {self.size}, Model: {self.model}, "
            f"Version: Hearth {self.app_version}"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class GalleryImage:
    id: str
    path: Path
    params: ImageParams
    created_at: str


def _png_info(params: ImageParams) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(JSON_CHUNK, json.dumps(asdict(params), ensure_ascii=False))
    info.add_itxt("parameters", params.a1111_text())
    for key in ("prompt", "negative_prompt", "seed", "steps", "guidance", "size", "scheduler"):
        info.add_itxt(key, str(getattr(params, key)))
    info.add_itxt("model", params.model)
    info.add_itxt("Software", f"Hearth {params.app_version}")
    return info


def write_png(png: bytes, params: ImageParams, dest: Path) -> Path:
    """Write the image at `dest` with `params` in its text chunks, atomically.

    The pixels are copied losslessly; the file appears under its name only when complete.
    """
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    try:
        with Image.open(BytesIO(png)) as image, partial.open("wb") as fh:
            image.save(fh, format="PNG", pnginfo=_png_info(params))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return dest


def read_png_parameters(path: Path | str) -> ImageParams:
    """The settings stored in a Hearth PNG, to make it again."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            text: dict[str, str] = dict(getattr(image, "text", {}) or {})
    except (OSError, UnidentifiedImageError) as exc:
        raise NotAHearthImageError(f"{path} is not a readable image ({exc}).") from exc
    if JSON_CHUNK not in text:
        raise NotAHearthImageError(f"{Path(path).name} carries no Hearth settings.")
    try:
        data = json.loads(text[JSON_CHUNK])
        known = {f.name for f in fields(ImageParams)}
        return ImageParams(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise NotAHearthImageError(f"The settings in {Path(path).name} are damaged.") from exc


def _images_folder() -> Path:
    from app.paths import hearth_paths

    return hearth_paths().images


def save_image(
    db: Database, png: bytes, params: ImageParams, folder: Path | None = None
) -> GalleryImage:
    """Save one finished image in the gallery folder and record it; returns the entry."""
    folder = folder or _images_folder()
    now = datetime.now(UTC)
    image_id = uuid.uuid4().hex
    name = f"{now:%Y%m%d-%H%M%S}-{params.seed}-{image_id[:6]}.png"
    path = write_png(png, params, folder / now.strftime("%Y-%m") / name)
    try:
        _record(db, image_id, path, params)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return get_image(db, image_id)


def _record(db: Database, image_id: str, path: Path, params: ImageParams) -> None:
    db.table("images").insert(
        {
            "id": image_id,
            "path": str(path),
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt,
            "seed": params.seed,
            "steps": params.steps,
            "guidance": params.guidance,
            "width": params.width,
            "height": params.height,
            "scheduler": params.scheduler,
            "model": params.model,
            "params": json.dumps(asdict(params), ensure_ascii=False),
            "created_at": utc_now(),
        }
    )
    db.conn.commit()


def _entry(row: dict[str, Any]) -> GalleryImage:
    try:
        data = json.loads(row["params"] or "{}")
        known = {f.name for f in fields(ImageParams)}
        params = ImageParams(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError):
        params = ImageParams(
            prompt=row["prompt"] or "",
            seed=int(row["seed"] or 0),
            steps=int(row["steps"] or 0),
            guidance=float(row["guidance"] or 0),
            width=int(row["width"] or 0),
            height=int(row["height"] or 0),
            negative_prompt=row["negative_prompt"] or "",
            scheduler=row["scheduler"] or "",
            model=row["model"] or "",
        )
    return GalleryImage(row["id"], Path(row["path"]), params, row["created_at"])


def list_images(db: Database, limit: int | None = None) -> list[GalleryImage]:
    """The gallery, newest first."""
    rows = db["images"].rows_where(order_by="created_at desc", limit=limit)
    return [_entry(dict(r)) for r in rows]


def get_image(db: Database, image_id: str) -> GalleryImage:
    """One image by id or unique id prefix."""
    rows = list(db["images"].rows_where("id LIKE ?", [f"{image_id}%"], limit=2))
    if not image_id or not rows:
        raise ImageNotFoundError(f"There is no image with id '{image_id}'.")
    if len(rows) > 1:
        raise ImageNotFoundError(
            f"More than one image id starts with '{image_id}'.", "Type more of the id."
        )
    return _entry(dict(rows[0]))


def delete_image(db: Database, image_id: str) -> GalleryImage:
    """Remove an image's file and its record; returns what was removed."""
    image = get_image(db, image_id)
    with contextlib.suppress(FileNotFoundError):
        image.path.unlink()
    db.execute("DELETE FROM images WHERE id = ?", [image.id])
    db.conn.commit()
    return image


def export_image(db: Database, image_id: str, dest_dir: Path) -> Path:
    """Copy an image (settings included) into `dest_dir`; returns the new file's path."""
    image = get_image(db, image_id)
    if not image.path.is_file():
        raise ImageNotFoundError(
            f"The file of image {image.id[:8]} is gone from {image.path}.",
            "Remove the entry with `hearth images rm`.",
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / image.path.name
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    shutil.copyfile(image.path, partial)
    os.replace(partial, dest)
    return dest


def reveal_image(db: Database, image_id: str, *, open_file_manager: bool = False) -> Path:
    """The folder holding an image; with `open_file_manager`, show it there too."""
    image = get_image(db, image_id)
    if open_file_manager:
        system = platform.system()
        if system == "Darwin":
            command = ["open", "-R", str(image.path)]
        elif system == "Windows":
            command = ["explorer", f"/select,{image.path}"]
        else:
            command = ["xdg-open", str(image.path.parent)]
        try:
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise HearthError(
                f"Could not open the file manager ({exc.strerror or exc}).",
                f"The image is in {image.path.parent}.",
            ) from exc
    return image.path.parent


def recover_gallery(db: Database, folder: Path | None = None, *, grace_s: float = 600.0) -> int:
    """Tidy the gallery folder after a crash; returns how many images were taken back in.

    `.partial` files (an image cut off mid-write) are deleted. A complete PNG with Hearth
    settings but no record (Hearth stopped between the rename and the insert) is recorded,
    so nothing finished is lost. Files younger than `grace_s` are left alone: another
    Hearth process (the window and a terminal at once) may be saving them right now.
    """
    folder = folder or _images_folder()
    if not folder.is_dir():
        return 0
    known = {str(r[0]) for r in db.execute("SELECT path FROM images").fetchall()}
    adopted = 0
    now = time.time()
    for path in sorted(folder.rglob("*")):
        try:
            if now - path.stat().st_mtime < grace_s or not path.is_file():
                continue
        except OSError:
            continue
        if path.name.endswith(PARTIAL_SUFFIX):
            with contextlib.suppress(OSError):
                path.unlink()
        elif path.suffix == ".png" and str(path) not in known:
            try:
                params = read_png_parameters(path)
            except NotAHearthImageError:
                continue
            _record(db, uuid.uuid4().hex, path, params)
            adopted += 1
    return adopted
