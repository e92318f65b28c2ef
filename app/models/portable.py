"""Move models on and off air-gapped machines: verified import, and export with a manifest.

An import takes a `.gguf` file, a split GGUF set (any part, or its folder), a diffusers
folder (safetensors only) or an export folder holding `hearth-manifest.json`. It checks
the model before copying a byte, copies through a `<name>.partial` folder while computing
sha256, fsyncs, and renames the folder into place in one step: the library never sees a
half-copied model. `link=True` records the model where it is instead of copying it.

    import_model("/media/usb/Qwen2.5-7B-Instruct-Q4_K_M.gguf")
    export_models(["qwen2.5-7b-instruct-q4_k_m"], "/media/usb/hearth-export")
    import_model("/media/usb/hearth-export")  # verifies every sha256 first

A model's `sha256` in the library is its file's sha256; for a model made of several files
(split GGUF, diffusers folder) it is the sha256 of the lines `"<file sha256>  <path>\\n"`,
sorted by path, so the same bytes give the same value on every machine.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import sqlite_utils

from app import __version__
from app.errors import HearthError
from app.humanize import MiB
from app.models.diffusers_folder import (
    PICKLE_SUFFIXES,
    IncompletePipelineError,
    PickleWeightsError,
    pick_weight_files,
    read_diffusers_facts,
)
from app.models.files import (
    NotEnoughDiskError,
    ProgressCounter,
    ProgressFn,
    ReadError,
    check_free_space,
    copy_hashed,
    fsync_dir,
    sha256_file,
)
from app.models.gguf import (
    GGUF_MAGIC,
    ModelFileError,
    ModelNotFoundError,
    NotGgufError,
    read_gguf_facts,
    read_gguf_metadata,
    split_parts,
)
from app.models.kinds import kind_spec
from app.models.library import (
    STARTER_ALIASES,
    find_library_model,
    model_name_for,
    register_model,
)
from app.paths import HearthPaths, hearth_paths
from app.store import open_default_database, utc_now
from app.store.library import LibraryModel, ModelKind, ModelSource, find_model, list_models

MANIFEST_NAME = "hearth-manifest.json"
MANIFEST_FORMAT = "hearth-models"
MANIFEST_VERSION = 1
#: Room left free on the library's disk after an import (the OS and the database need some).
IMPORT_MARGIN = 256 * MiB
#: Room left on an export target: a USB stick may be sized to fit exactly, so keep it small.
EXPORT_MARGIN = 16 * MiB
#: Weights for other frameworks that diffusers folders on the Hub often carry; never copied.
_FOREIGN_WEIGHTS = frozenset({".msgpack", ".h5", ".onnx", ".onnx_data", ".pb", ".ot", ".tflite"})
_HF_CACHE_DIR = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>.+)$")
_BAD_NAME = re.compile(r"[\x00-\x1f/\\:*?\"<>|]")


# --- errors ---------------------------------------------------------------------------------


class TransferError(HearthError):
    default_remedy = "Check the path and the drive, then try again."


class UnsupportedModelError(ModelFileError):
    default_remedy = (
        "Import a .gguf chat model (one file, or every part of a split one) or a diffusers "
        "image model folder (model_index.json with its component folders, safetensors weights)."
    )


class ManifestError(TransferError):
    """The export folder's manifest cannot be used; nothing was imported."""

    default_remedy = "Export the models again, or copy the whole export folder again."


class ManifestMismatchError(ManifestError):
    """A file does not match the manifest (size or sha256); nothing was imported."""

    default_remedy = (
        "The copy is incomplete or damaged: copy the export folder again (or export again "
        "on the other machine). Nothing was imported."
    )


class NameTakenError(TransferError):
    default_remedy = (
        "Import it under another name with --name NEW, or remove the other model with "
        "`hearth models rm NAME` first."
    )


class DamagedLibraryFileError(TransferError):
    default_remedy = (
        "The library's copy changed since it was recorded: import or download the model again."
    )


class FileTooLargeForDriveError(TransferError):
    default_remedy = (
        "The drive's file system cannot hold files over 4 GiB (FAT32): reformat it as exFAT "
        "or NTFS, or export a smaller quant."
    )


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where its bytes are, and its path inside the model's folder."""

    source: Path
    relpath: str  # POSIX path relative to the model's folder
    size: int
    sha256: str | None = None  # expected (manifest, library) or computed


@dataclass(frozen=True)
class ImportedModel:
    """A model now in the library (or found there already, `already_present`)."""

    name: str
    kind: ModelKind
    path: Path
    source: ModelSource  # IMPORT or LINK (or how the model already present came)
    sha256: str
    size_bytes: int
    already_present: bool = False


@dataclass(frozen=True)
class ExportedModel:
    name: str
    kind: ModelKind
    folder: Path
    files: tuple[ModelFile, ...]

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class ExportResult:
    dest: Path
    manifest: Path
    models: tuple[ExportedModel, ...]

    @property
    def size_bytes(self) -> int:
        return sum(m.size_bytes for m in self.models)


@dataclass
class _Candidate:
    """One model about to be imported, checked but not yet copied."""

    kind: ModelKind
    name: str
    files: list[ModelFile]
    entry: str  # relpath of the file to load (chat); "" for an image folder
    source_root: Path  # the folder the relpaths are relative to
    publisher: str = "imported"
    repo: str | None = None
    revision: str | None = None
    license: str | None = None
    expected_sha256: str | None = None  # the model's sha256 from a manifest
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def link_path(self) -> Path:
        return self.source_root / self.entry if self.entry else self.source_root


# --- import ---------------------------------------------------------------------------------


def import_model(
    path: Path | str,
    *,
    link: bool = False,
    name: str | None = None,
    progress: ProgressFn | None = None,
    db: sqlite_utils.Database | None = None,
    paths: HearthPaths | None = None,
) -> list[ImportedModel]:
    """Import the model(s) at `path` into the library and return them.

    `path` is a .gguf file, any part of a split GGUF or the folder holding it, a diffusers
    folder, or an export folder with `hearth-manifest.json` (every file's size and sha256
    are checked before anything is accepted). Importing the same bytes again does nothing
    and returns the existing entry with `already_present=True`.

    >>> imported = import_model("/media/usb/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf")  # doctest: +SKIP
    >>> [m.name for m in imported]  # doctest: +SKIP
    ['qwen2.5-1.5b-instruct-q4_k_m']
    """
    db = db if db is not None else open_default_database()
    paths = (paths or hearth_paths()).ensure()
    src = Path(os.path.abspath(Path(path).expanduser()))  # keep symlinked names (HF cache)
    if not src.exists():
        raise ModelNotFoundError(
            f"There is no file or folder at {src}.",
            "Check the path; a USB drive must be plugged in and mounted first.",
        )
    if name is not None:
        name = check_model_name(name)
    manifest = _manifest_in(src)
    if manifest is not None:
        return _import_manifest(manifest, link, name, progress, db, paths)
    candidate = _inspect(src, name)
    return _import_candidates([candidate], link, progress, db, paths)


def check_model_name(name: str) -> str:
    """`name` if it can name a library model (and its folder), else a TransferError."""
    cleaned = name.strip()
    if (
        not cleaned
        or cleaned.startswith(".")
        or _BAD_NAME.search(cleaned)
        or len(cleaned) > 120
        or cleaned in STARTER_ALIASES
    ):
        raise TransferError(
            f"'{name}' cannot name a model.",
            "Use letters, digits, '.', '-' and '_' (up to 120 characters), e.g. my-model-q4.",
        )
    return cleaned


def _inspect(src: Path, name: str | None) -> _Candidate:
    """Check what `src` is and that it is usable, without copying anything."""
    if src.is_dir():
        if (src / "model_index.json").is_file():
            return _diffusers_candidate(src, name)
        models = _gguf_models_in(src)
        if len(models) == 1:
            return _gguf_candidate(models[0], name)
        if len(models) > 1:
            listed = ", ".join(p.name for p in models[:3]) + ("…" if len(models) > 3 else "")
            raise UnsupportedModelError(
                f"{src} holds {len(models)} GGUF models ({listed}).",
                f"Import one at a time, e.g. `hearth models import {models[0]}`.",
            )
        pickles = sorted(p.name for p in src.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise PickleWeightsError(
                f"{src} holds only pickle checkpoints ({pickles[0]}), no .gguf file and no "
                "diffusers model_index.json."
            )
        raise UnsupportedModelError(
            f"{src} holds no .gguf file and no diffusers model (model_index.json)."
        )
    suffix = src.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not _starts_with(src, GGUF_MAGIC):
        raise PickleWeightsError(f"{src.name} is a pickle checkpoint ({suffix}).")
    if suffix == ".safetensors":
        raise UnsupportedModelError(
            f"{src.name} is a single-file safetensors checkpoint, not a model Hearth can import.",
            "Image models are imported as diffusers folders (model_index.json with unet, vae "
            "and text encoder folders): get the diffusers version of this model. Chat models "
            "must be .gguf files.",
        )
    return _gguf_candidate(src, name)


def _gguf_models_in(folder: Path) -> list[Path]:
    """The first file of each GGUF model directly in `folder` (vision projectors skipped)."""
    firsts: dict[Path, None] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() == ".gguf" and not p.name.startswith("."):
            if "mmproj" in p.name.lower():
                continue
            firsts[split_parts(p)[0]] = None
    return list(firsts)


def _gguf_candidate(path: Path, name: str | None) -> _Candidate:
    facts = read_gguf_facts(path)  # header, metadata and every part's tensor table
    if facts.block_count <= 0 or facts.head_count <= 0:
        raise NotGgufError(
            f"{path.name} is a GGUF file but not a chat model (architecture '{facts.arch}').",
            "Pick the model file itself; files such as vision projectors (mmproj) go with one.",
        )
    parts = split_parts(path)
    publisher, repo = _hf_cache_origin(parts[0])
    license_ = read_gguf_metadata(parts[0]).get("general.license")
    files = [ModelFile(p, p.name, p.stat().st_size) for p in parts]
    return _Candidate(
        kind=ModelKind.EMBEDDING if facts.is_embedding else ModelKind.CHAT,
        name=name or model_name_for(parts[0].name),
        files=files,
        entry=parts[0].name,
        source_root=parts[0].parent,
        publisher=publisher or "imported",
        repo=repo,
        license=str(license_) if isinstance(license_, str) else None,
    )


def _diffusers_candidate(folder: Path, name: str | None) -> _Candidate:
    read_diffusers_facts(folder)  # model_index.json, components, safetensors-only weights
    files = diffusers_folder_files(folder)
    publisher, repo = _hf_cache_origin(folder)
    default = (repo.split("/", 1)[1] if repo else folder.name).lower()
    return _Candidate(
        kind=ModelKind.IMAGE,
        name=name or check_model_name(default),
        files=files,
        entry="",
        source_root=folder,
        publisher=publisher or "imported",
        repo=repo,
    )


def diffusers_folder_files(folder: Path) -> list[ModelFile]:
    """The files a diffusers pipeline folder needs: its index, and each component's configs,
    tokenizer files and safetensors weights (the fp16 variant when there is one). Pickle
    weights, other frameworks' weights and the Hub's single-file checkpoints stay behind."""
    index_path = folder / "model_index.json"
    try:
        index: dict[str, Any] = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise IncompletePipelineError(f"{index_path} cannot be read ({exc}).") from exc
    files = [_model_file(index_path, folder)]
    for p in sorted(folder.iterdir()):
        readme = p.suffix.lower() in (".md", ".txt") or p.name.upper().startswith("LICENSE")
        if p.is_file() and readme and not p.name.startswith("."):
            files.append(_model_file(p, folder))
    for component, spec in sorted(index.items()):
        if component.startswith("_") or not isinstance(spec, list) or not spec or spec[0] is None:
            continue
        sub = folder / component
        if not sub.is_dir():
            raise IncompletePipelineError(
                f"The pipeline lists a '{component}' component but {sub} is missing."
            )
        weights = set(pick_weight_files(sub))
        for p in sorted(sub.rglob("*")):
            rel = p.relative_to(folder)
            if not p.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            suffix = p.suffix.lower()
            if suffix in PICKLE_SUFFIXES or suffix in _FOREIGN_WEIGHTS:
                continue
            if suffix == ".safetensors" and p not in weights:
                continue  # the other precision of the same weights
            files.append(_model_file(p, folder))
    return files


def _model_file(path: Path, root: Path) -> ModelFile:
    return ModelFile(path, path.relative_to(root).as_posix(), path.stat().st_size)


def _hf_cache_origin(path: Path) -> tuple[str | None, str | None]:
    """(publisher, "org/name") when `path` lies in a Hugging Face cache snapshot."""
    for parent in path.parents:
        m = _HF_CACHE_DIR.match(parent.name)
        if m and (parent / "snapshots").is_dir():
            return m["org"], f"{m['org']}/{m['name']}"
    return None, None


def _import_candidates(
    candidates: list[_Candidate],
    link: bool,
    progress: ProgressFn | None,
    db: sqlite_utils.Database,
    paths: HearthPaths,
) -> list[ImportedModel]:
    """Import checked candidates: all of them, or (on any error) none."""
    results: dict[int, ImportedModel] = {}
    todo: list[tuple[int, _Candidate]] = []
    hashed: dict[int, list[ModelFile]] = {}
    for i, c in enumerate(candidates):
        found = _already_in_library(c, db, progress)
        if isinstance(found, ImportedModel):
            results[i] = found
            continue
        if found is not None:
            hashed[i] = found  # hashed to compare with the library: reuse for the copy check
        existing = find_model(db, c.name)
        if existing is not None and existing.path.exists():
            raise NameTakenError(f"A different model is already in the library as '{c.name}'.")
        todo.append((i, c))
    names = [c.name for _, c in todo]
    if len(set(names)) != len(names):
        raise ManifestError("The manifest lists the same model name twice.")

    if link:
        # Verify every file of every model before any is recorded.
        checked = []
        for i, c in todo:
            files = hashed.get(i) or _hash_files(c.files, progress, "verifying")
            _check_expected(c, files)
            checked.append((i, replace(c, files=files)))
        for i, c in checked:
            results[i] = _register(db, c, c.link_path, ModelSource.LINK)
        return [results[i] for i in sorted(results)]

    total = sum(c.size for _, c in todo)
    if todo:
        check_free_space(paths.models, total + IMPORT_MARGIN, "Importing")
    staged: list[tuple[int, _Candidate, Path, list[ModelFile]]] = []
    stagings: list[Path] = []
    counter = ProgressCounter(total, progress)
    try:
        for i, c in todo:
            target = _target_folder(db, paths, c)
            staging = target.with_name(target.name + ".partial")
            # A stale .partial from an import that was killed: it was never in the library.
            shutil.rmtree(staging, ignore_errors=True)
            stagings.append(staging)
            copied = _copy_files(c.files, staging, counter)
            _check_expected(c, copied)
            before = hashed.get(i)
            if before is not None and model_sha256(before) != model_sha256(copied):
                raise TransferError(
                    f"{c.link_path} changed while it was being imported.",
                    "Wait until whatever writes it has finished, then import again.",
                )
            _validate_staged(c, staging)
            staged.append((i, c, target, copied))
    except BaseException as exc:
        for staging in stagings:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EFBIG):
            raise TransferError(
                f"Copying into {paths.models} failed ({exc.strerror or exc}).",
                "Check that the models folder is writable and its drive connected "
                "(HEARTH_MODELS moves it).",
            ) from exc
        if isinstance(exc, OSError):
            raise _write_error(exc, Path(exc.filename or "model"), paths.models / "x") from exc
        raise
    for (i, c, target, copied), staging in zip(staged, stagings, strict=True):
        try:
            _commit_folder(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _write_error(exc, staging, target) from exc
        model_path = target / c.entry if c.entry else target
        placed = replace(c, files=[replace(f, source=target / f.relpath) for f in copied])
        results[i] = _register(db, placed, model_path, ModelSource.IMPORT)
    return [results[i] for i in sorted(results)]


def _already_in_library(
    c: _Candidate, db: sqlite_utils.Database, progress: ProgressFn | None
) -> ImportedModel | list[ModelFile] | None:
    """The library's entry when it holds the same bytes; else the hashed files, if hashing
    was needed to tell (same size as a library model), else None."""
    models = [m for m in list_models(db, c.kind) if m.path.exists()]
    if c.expected_sha256:
        same = [m for m in models if c.expected_sha256 in _row_digests(m)]
        return _as_present(same[0]) if same else None
    for model in models:
        if model.path == c.link_path:
            return _as_present(model)  # the library's own copy, imported again
    same_size = [m for m in models if m.size_bytes == c.size and m.sha256]
    if not same_size:
        return None
    files = _hash_files(c.files, progress, "checking")
    digest = model_sha256(files)
    same = [r for r in same_size if digest in _row_digests(r)]
    return _as_present(same[0]) if same else files


def _row_digests(model: LibraryModel) -> set[str]:
    """The model sha256 a library model stands for: its own column, and the digest of the
    per-file sha256 it recorded (downloads record the first part's sha256 in the column)."""
    digests = {model.sha256} if model.sha256 else set()
    files = model.files
    if files and all(f.sha256 is not None for f in files):
        as_files = [
            ModelFile(
                Path(f.path),
                Path(f.path).name if model.kind.is_gguf else f.path,
                f.size,
                f.sha256,
            )
            for f in files
        ]
        digests.add(model_sha256(as_files))
    return digests


def _as_present(model: LibraryModel) -> ImportedModel:
    return ImportedModel(
        name=model.name,
        kind=model.kind,
        path=model.path,
        source=model.source,
        sha256=model.sha256 or "",
        size_bytes=int(model.size_bytes or 0),
        already_present=True,
    )


def _check_expected(c: _Candidate, files: list[ModelFile]) -> None:
    """Raise unless each file's computed sha256 is the one expected of it."""
    for f in files:
        want = next((e.sha256 for e in c.files if e.relpath == f.relpath), None)
        if want and f.sha256 != want:
            raise ManifestMismatchError(
                f"{c.source_root / f.relpath} does not match the sha256 in the manifest "
                f"(expected {want[:12]}…, got {(f.sha256 or '')[:12]}…)."
            )
    if c.expected_sha256 and model_sha256(files) != c.expected_sha256:
        raise ManifestMismatchError(
            f"The files of {c.name} do not add up to the sha256 the manifest gives for the model."
        )


def _validate_staged(c: _Candidate, staging: Path) -> None:
    """Read the copied model the way the engines will (a final check of the copy)."""
    kind_spec(c.kind).inspect(staging / c.entry if c.entry else staging)


def _target_folder(db: sqlite_utils.Database, paths: HearthPaths, c: _Candidate) -> Path:
    """`<models>/<publisher>/<name>`, or `<name>-2`, ... when a library model lives there."""
    base = paths.model_folder(_safe_component(c.publisher), _safe_component(c.name))
    used = [m.path for m in list_models(db) if m.name != c.name]
    target, n = base, 1
    while any(_is_within(p, target) for p in used):
        n += 1
        target = base.with_name(f"{base.name}-{n}")
    return target


def _commit_folder(staging: Path, target: Path) -> None:
    if target.exists():
        # Left by an import that stopped after its rename but before the library recorded
        # it (no library model lives here: _target_folder checked).
        shutil.rmtree(target)
    os.replace(staging, target)
    fsync_dir(target.parent)


def _register(
    db: sqlite_utils.Database, c: _Candidate, path: Path, source: ModelSource
) -> ImportedModel:
    digest = model_sha256(c.files)
    extra = {
        **c.extra,
        "files": [{"path": f.relpath, "size": f.size, "sha256": f.sha256} for f in c.files],
        "imported_from": str(c.link_path),
        "imported_at": utc_now(),
    }
    register_model(
        db,
        c.name,
        path,
        kind_spec(c.kind).inspect(path),
        source=source,
        sha256=digest,
        size_bytes=c.size,
        repo=c.repo,
        revision=c.revision,
        license=c.license,
        extra=extra,
    )
    return ImportedModel(c.name, c.kind, path, source, digest, c.size)


# --- manifest import ------------------------------------------------------------------------


def _manifest_in(src: Path) -> Path | None:
    if src.is_file() and src.name == MANIFEST_NAME:
        return src
    if src.is_dir() and (src / MANIFEST_NAME).is_file():
        return src / MANIFEST_NAME
    return None


def _import_manifest(
    manifest: Path,
    link: bool,
    name: str | None,
    progress: ProgressFn | None,
    db: sqlite_utils.Database,
    paths: HearthPaths,
) -> list[ImportedModel]:
    root = manifest.parent
    models = read_manifest(manifest)
    if name is not None and len(models) != 1:
        raise TransferError(
            f"--name works for one model, and {manifest} lists {len(models)}.",
            "Import without --name, then rename nothing: each model keeps its exported name.",
        )
    candidates = []
    for m in models:
        model_root = root / m["root"]
        files = [
            ModelFile(
                root / f["path"],
                PurePosixPath(f["path"]).relative_to(m["root"]).as_posix(),
                int(f["size"]),
                str(f["sha256"]),
            )
            for f in m["files"]
        ]
        # Cheap checks first: every file there, each of the size the manifest says.
        for f in files:
            shown = f"{m['root']}/{f.relpath}"
            if not f.source.is_file():
                raise ManifestMismatchError(
                    f"{shown} is listed in {manifest.name} but missing from {root}."
                )
            actual = f.source.stat().st_size
            if actual != f.size:
                raise ManifestMismatchError(
                    f"{shown} is {actual:,} bytes but {manifest.name} says {f.size:,}."
                )
        repo = m.get("repo") or None
        candidates.append(
            _Candidate(
                kind=ModelKind(m["kind"]),
                name=name or check_model_name(m["name"]),
                files=files,
                entry=PurePosixPath(m["entry"]).relative_to(m["root"]).as_posix()
                if ModelKind(m["kind"]).is_gguf
                else "",
                source_root=model_root,
                publisher=repo.split("/", 1)[0] if repo and "/" in repo else "imported",
                repo=repo,
                revision=m.get("revision"),
                license=m.get("license"),
                expected_sha256=m["sha256"],
                extra={
                    "exported_source": m.get("source"),
                    "exported_at": m.get("exported_at"),
                },
            )
        )
    return _import_candidates(candidates, link, progress, db, paths)


def read_manifest(manifest: Path) -> list[dict[str, Any]]:
    """The models a `hearth-manifest.json` lists, checked for shape and safe paths."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{manifest} cannot be read as JSON ({exc}).") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{manifest} is not a Hearth export manifest.")
    version = data.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ManifestError(
            f"{manifest} was written by a newer Hearth (format {version}).",
            "Update Hearth on this machine, then import again.",
        )
    models = data.get("models")
    if not isinstance(models, list):
        raise ManifestError(f"{manifest} lists no models.")
    for m in models:
        _check_manifest_model(manifest, m)
    return models


def _check_manifest_model(manifest: Path, m: Any) -> None:
    label = m.get("name", "<unnamed>") if isinstance(m, dict) else "<not an object>"
    problem = None
    if not isinstance(m, dict):
        problem = "is not an object"
    elif m.get("kind") not in [k.value for k in ModelKind]:
        problem = "has no kind (chat, embedding or image)"
    elif not all(isinstance(m.get(k), str) and m.get(k) for k in ("name", "root", "sha256")):
        problem = "lacks its name, root or sha256"
    elif ModelKind(m["kind"]).is_gguf and not isinstance(m.get("entry"), str):
        problem = "lacks the file to load (entry)"
    elif not isinstance(m.get("files"), list) or not m["files"]:
        problem = "lists no files"
    else:
        root = _safe_relpath(m["root"])
        for f in m["files"]:
            if not isinstance(f, dict) or not isinstance(f.get("sha256"), str):
                problem = "has a file without sha256"
                break
            if not isinstance(f.get("size"), int) or f["size"] < 0:
                problem = "has a file without a size"
                break
            rel = _safe_relpath(f.get("path"))
            if rel is None or root is None or root not in rel.parents:
                problem = f"has an unsafe or misplaced file path {f.get('path')!r}"
                break
        entry = m.get("entry")
        if problem is None and ModelKind(m["kind"]).is_gguf:
            listed = {f["path"] for f in m["files"]}
            if entry not in listed:
                problem = f"names an entry file {entry!r} it does not list"
    if problem:
        raise ManifestError(f"The model {label} in {manifest} {problem}.")


def _safe_relpath(value: Any) -> PurePosixPath | None:
    """A relative path that stays inside the export folder, or None."""
    if not isinstance(value, str) or not value or "\\" in value:
        return None
    p = PurePosixPath(value)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or ":" in p.parts[0]:
        return None
    return p


# --- export ---------------------------------------------------------------------------------


def export_models(
    names: Sequence[str],
    dest: Path | str,
    progress: ProgressFn | None = None,
    *,
    db: sqlite_utils.Database | None = None,
) -> ExportResult:
    """Copy library models and a `hearth-manifest.json` into `dest` (e.g. a USB drive).

    Each model goes in `dest/<name>/`; the manifest lists every file's relative path, size
    and sha256 (checked against the library's record while copying), plus each model's
    kind, license, source and architecture. Exporting into a folder that already holds an
    export adds to its manifest.

    >>> export_models(["qwen2.5-1.5b-instruct-q4_k_m"], "/media/usb/models")  # doctest: +SKIP
    """
    db = db if db is not None else open_default_database()
    rows = []
    for n in dict.fromkeys(names):
        model = find_library_model(db, n)
        rows.append((model, library_files(model)))
    dest = Path(os.path.abspath(Path(dest).expanduser()))
    if dest.exists() and not dest.is_dir():
        raise TransferError(f"{dest} is a file, not a folder.", "Give a folder to export into.")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferError(f"Cannot create {dest} ({exc.strerror or exc}).") from exc
    manifest_path = dest / MANIFEST_NAME
    kept = read_manifest(manifest_path) if manifest_path.exists() else []
    kept = [m for m in kept if m["name"] not in {r.name for r, _ in rows}]

    total = sum(f.size for _, files in rows for f in files)
    replaced = 0
    for row, files in rows:
        for f in files:
            old = dest / _safe_component(row.name) / f.relpath
            replaced += old.stat().st_size if old.is_file() else 0
    check_free_space(
        dest,
        total - replaced + EXPORT_MARGIN,
        "Exporting",
        "Free some space on that drive, or export to a larger one.",
    )

    counter = ProgressCounter(total, progress)
    exported: list[ExportedModel] = []
    entries: list[dict[str, Any]] = []
    for row, files in rows:
        folder = dest / _safe_component(row.name)
        written = []
        for f in files:
            out = folder / f.relpath
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _write_error(exc, f.source, out) from exc
            partial = out.with_name(out.name + ".partial")
            try:
                digest, size = _copy_one(f.source, partial, counter)
                if f.sha256 and digest != f.sha256:
                    raise DamagedLibraryFileError(
                        f"{f.source} no longer matches the sha256 the library recorded for "
                        f"{row.name} (expected {f.sha256[:12]}…, read {digest[:12]}…)."
                    )
                os.replace(partial, out)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            written.append(ModelFile(out, f.relpath, size, digest))
        fsync_dir(folder)
        exported.append(ExportedModel(row.name, row.kind, folder, tuple(written)))
        entries.append(_manifest_entry(row, folder.name, written))

    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "written_by": f"Hearth {__version__}",
        "written_at": utc_now(),
        "models": sorted(kept + entries, key=lambda m: m["name"]),
    }
    _write_json_atomically(manifest_path, manifest)
    return ExportResult(dest, manifest_path, tuple(exported))


def library_files(model: LibraryModel) -> list[ModelFile]:
    """The files of a library model with their recorded sha256 where known."""
    path = model.path
    # Imports record paths inside the model's folder; downloads record absolute paths.
    recorded = {f.path: f for f in model.files}
    if model.kind.is_gguf:
        recorded = {Path(f.path).name: f for f in model.files}
    gone = ModelNotFoundError(
        f"The library lists '{model.name}' at {path}, but it is gone.",
        "Reconnect the drive it was on, or remove it with `hearth models rm` and import it again.",
    )
    if model.kind is ModelKind.IMAGE:
        if not path.is_dir():
            raise gone
        if recorded:
            files = []
            for rel, info in recorded.items():
                if Path(rel).is_absolute() and Path(rel).is_relative_to(path):
                    rel = Path(rel).relative_to(path).as_posix()
                p = path / rel
                if not p.is_file():
                    raise ModelNotFoundError(
                        f"{p} is missing from the image model '{model.name}'.",
                        "Import or download the model again.",
                    )
                files.append(ModelFile(p, rel, p.stat().st_size, info.sha256))
            return files
        return diffusers_folder_files(path)
    if not path.is_file():
        raise gone
    parts = split_parts(path)
    files = []
    for p in parts:
        known = recorded.get(p.name)
        sha = known.sha256 if known else None
        if sha is None and len(parts) == 1:
            sha = model.sha256  # one file: the model's sha256 is the file's
        files.append(ModelFile(p, p.name, p.stat().st_size, sha))
    return files


def _manifest_entry(model: LibraryModel, root: str, files: list[ModelFile]) -> dict[str, Any]:
    entry = f"{root}/{files[0].relpath}" if model.kind.is_gguf else root
    return {
        "name": model.name,
        "kind": model.kind.value,
        "root": root,
        "entry": entry,
        "sha256": model_sha256(files),
        "size_bytes": sum(f.size for f in files),
        "source": model.source.value,
        "repo": model.repo,
        "revision": model.revision,
        "license": model.license,
        "architecture": model.architecture,
        "quantization": model.quantization,
        "parameters": model.parameters,
        "context_length": model.context_length,
        "exported_at": utc_now(),
        "files": [
            {"path": f"{root}/{f.relpath}", "size": f.size, "sha256": f.sha256} for f in files
        ],
    }


# --- shared helpers -------------------------------------------------------------------------


def model_sha256(files: Iterable[ModelFile]) -> str:
    """One sha256 for a model: its file's, or a digest of all its files' (path, sha256)."""
    files = list(files)
    if len(files) == 1 and files[0].sha256:
        return files[0].sha256
    lines = sorted(f"{f.sha256}  {f.relpath}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _copy_files(files: list[ModelFile], staging: Path, counter: ProgressCounter) -> list[ModelFile]:
    """Copy `files` under `staging` at their relpaths; return them with computed sha256."""
    staging.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        dest = staging / f.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest, size = _copy_one(f.source, dest, counter)
        if size != f.size:
            raise TransferError(
                f"{f.source} changed while it was copied ({f.size:,} bytes, then {size:,}).",
                "Wait until whatever writes it has finished, then import again.",
            )
        out.append(ModelFile(dest, f.relpath, size, digest))
    fsync_dir(staging)
    return out


def _copy_one(src: Path, dest: Path, counter: ProgressCounter) -> tuple[str, int]:
    """Copy `src` to `dest` computing sha256 on the way; fsync before returning."""
    try:
        return copy_hashed(src, dest, counter.blocks(f"copying {src.name}"))
    except ReadError as exc:
        raise _read_error(exc, src) from exc
    except OSError as exc:
        raise _write_error(exc, src, dest) from exc


def _read_error(exc: OSError, src: Path) -> TransferError:
    return TransferError(
        f"Reading {src} failed ({exc.strerror or exc}).",
        "Check that the drive is still connected, then try again.",
    )


def _write_error(exc: OSError, src: Path, dest: Path) -> HearthError:
    if exc.errno == errno.ENOSPC:
        return NotEnoughDiskError(f"The drive holding {dest.parent} filled up while copying.")
    if exc.errno == errno.EFBIG:
        return FileTooLargeForDriveError(f"{dest.parent} cannot hold {src.name}: it is too large.")
    return TransferError(f"Writing {dest} failed ({exc.strerror or exc}).")


def _hash_files(files: list[ModelFile], progress: ProgressFn | None, what: str) -> list[ModelFile]:
    counter = ProgressCounter(sum(f.size for f in files), progress)
    out = []
    for f in files:
        try:
            digest = sha256_file(f.source, counter.blocks(f"{what} {f.source.name}"))
        except ReadError as exc:
            raise _read_error(exc, f.source) from exc
        out.append(ModelFile(f.source, f.relpath, f.size, digest))
    return out


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, tmp, path) from exc
    fsync_dir(path.parent)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def _safe_component(name: str) -> str:
    cleaned = _BAD_NAME.sub("-", name).strip(". ") or "model"
    return cleaned[:120]


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
