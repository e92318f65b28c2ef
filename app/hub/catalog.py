"""The curated catalog of Hub models (resources/catalog.json), each variant's fit on a machine.

It lives with the Hub because every entry is a Hub repo to download, and because it shares
the one quant-suggestion rule (app.hub.quants) with `hearth models files`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.hardware.profile import HardwareProfile
from app.hub.quants import suggest_variant
from app.models.library import model_name_for
from app.planner import FitVerdict, plan_image_load, plan_load
from app.planner.facts import ChatModelFacts, ImageModelFacts
from app.store.library import ModelKind

CATALOG_RESOURCE = "catalog.json"
KINDS = tuple(k.value for k in ModelKind)
#: Numbers the planner needs for a chat model; every catalog chat entry must give them.
CHAT_ARCH_FIELDS = (
    "arch",
    "block_count",
    "embedding_length",
    "head_count",
    "head_count_kv",
    "key_length",
    "value_length",
    "context_length",
    "vocab_size",
)
IMAGE_ARCH_FIELDS = ("family", "pipeline_class", "native_resolution")
ENTRY_FIELDS = ("name", "kind", "title", "repo", "license", "description", "variants")


class CatalogError(HearthError):
    """The catalog shipped with Hearth cannot be read or does not follow its schema."""

    default_remedy = "Reinstall Hearth: its catalog file is damaged."


class CatalogEntryNotFoundError(HearthError):
    default_remedy = "Run `hearth models catalog` to see the names."


@dataclass(frozen=True)
class CatalogVariant:
    """One downloadable form of a catalog model: a GGUF quant, or a diffusers dtype variant."""

    quant: str  # "Q4_K_M", "Q8_0", ... or "fp16" for image models
    files: tuple[str, ...]  # paths in the Hub repo
    size_bytes: int  # approximate: the Hub's exact size is checked when downloading
    component_bytes: dict[str, int] | None = None  # image models: bytes per component
    allow_patterns: tuple[str, ...] = ()  # image models: what to fetch from the repo

    @property
    def library_name(self) -> str:
        """The name a GGUF download of this variant gets in the library."""
        return model_name_for(self.files[0])


@dataclass(frozen=True)
class CatalogEntry:
    """One curated model with its variants and the published numbers the planner needs."""

    name: str
    kind: ModelKind
    title: str
    repo: str
    license: str
    description: str
    variants: tuple[CatalogVariant, ...]
    architecture: dict[str, Any]
    parameters: int | None = None
    tags: tuple[str, ...] = ()

    def variant(self, quant: str) -> CatalogVariant:
        """The variant with this quant (case-insensitive), or a CatalogEntryNotFoundError."""
        for v in self.variants:
            if v.quant.lower() == quant.lower():
                return v
        raise CatalogEntryNotFoundError(
            f"{self.title} has no '{quant}' variant.",
            f"Pick one of: {', '.join(v.quant for v in self.variants)}.",
        )

    def facts(self, variant: CatalogVariant) -> ChatModelFacts | ImageModelFacts:
        """What the planner needs to know about `variant`, from the published numbers."""
        a = self.architecture
        if self.kind is ModelKind.IMAGE:
            return ImageModelFacts(
                name=f"{self.name} ({variant.quant})",
                family=str(a["family"]),
                component_bytes=dict(variant.component_bytes or {}),
                stored_dtype="float16" if variant.quant == "fp16" else "float32",
                native_resolution=int(a["native_resolution"]),
                pipeline_class=a.get("pipeline_class"),
            )
        return ChatModelFacts(
            name=variant.library_name,
            arch=str(a["arch"]),
            file_size=variant.size_bytes,
            block_count=int(a["block_count"]),
            embedding_length=int(a["embedding_length"]),
            head_count=int(a["head_count"]),
            head_count_kv=int(a["head_count_kv"]),
            key_length=int(a["key_length"]),
            value_length=int(a["value_length"]),
            context_length=int(a["context_length"]),
            vocab_size=int(a["vocab_size"]),
            sliding_window=a.get("sliding_window"),
            quantization=variant.quant.upper(),
            parameters=self.parameters,
            has_chat_template=True,
        )


@dataclass(frozen=True)
class VariantFit:
    """How one variant would load on one machine."""

    variant: CatalogVariant
    verdict: FitVerdict
    need_bytes: int  # estimated memory to run it (RAM + VRAM)
    summary: str  # the planner's main reason, one sentence
    suggested: bool = False

    # What the one suggestion rule (app.hub.quants.suggest_variant) reads from a choice.
    @property
    def quant(self) -> str:
        return self.variant.quant

    @property
    def size(self) -> int:
        return self.variant.size_bytes

    @property
    def complete(self) -> bool:
        return True  # a catalog variant names every file it needs

    def to_dict(self) -> dict[str, Any]:
        return {
            "quant": self.variant.quant,
            "files": list(self.variant.files),
            "size_bytes": self.variant.size_bytes,
            "library_name": self.variant.library_name,
            "verdict": self.verdict.value,
            "need_bytes": self.need_bytes,
            "summary": self.summary,
            "suggested": self.suggested,
        }


def catalog_entries(kind: ModelKind | str | None = None) -> list[CatalogEntry]:
    """The curated models, chat first, optionally only one kind.

    >>> [e.name for e in catalog_entries("image")][:2]
    ['sd-1.5', 'sd-turbo']
    """
    entries = _load_shipped()
    if kind is not None:
        if kind not in KINDS:
            raise CatalogEntryNotFoundError(
                f"'{kind}' is not a kind of model.", "Use chat or image."
            )
        return [e for e in entries if e.kind == kind]
    return list(entries)


def entry(name: str) -> CatalogEntry:
    """The catalog entry called `name` (case-insensitive)."""
    for e in _load_shipped():
        if e.name == name.lower():
            return e
    raise CatalogEntryNotFoundError(f"The catalog has no model called '{name}'.")


def entry_for_repo(repo: str) -> CatalogEntry | None:
    """The catalog entry whose files come from Hub repo `repo` (case-insensitive), or None.

    >>> entry_for_repo("bartowski/Qwen2.5-7B-Instruct-GGUF").name
    'qwen2.5-7b-instruct'
    """
    return next((e for e in _load_shipped() if e.repo.lower() == repo.lower()), None)


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """Read and check a catalog file (the shipped one when `path` is None)."""
    if path is None:
        from importlib.resources import files

        text = files("app.resources").joinpath(CATALOG_RESOURCE).read_text()
        where = CATALOG_RESOURCE
    else:
        text = path.read_text()
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"The catalog {where} is not valid JSON ({exc}).") from exc
    if data.get("format_version") != 1:
        raise CatalogError(f"The catalog {where} has an unknown format version.")
    entries = [_parse_entry(raw, where) for raw in data.get("models", [])]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogError(f"The catalog {where} lists {dupes[0]} twice.")
    return sorted(entries, key=lambda e: KINDS.index(e.kind))


def fit_variants(e: CatalogEntry, hardware: HardwareProfile | None = None) -> list[VariantFit]:
    """Each variant's planner verdict on `hardware` (this machine when None), best one marked.

    The suggestion follows the one rule `hearth models files` uses too
    (app.hub.quants.suggest_variant): on the GPU the largest good quant up to Q8_0, otherwise
    Q4_K_M or the nearest above it; below Q4_K_M only when nothing better runs. No variant is
    suggested when none fits.
    """
    if hardware is None:
        from app.hardware.detect import this_machine

        hardware = this_machine()
    fits = [_fit(e, v, hardware) for v in e.variants]
    best = suggest_variant(fits)
    return [
        VariantFit(f.variant, f.verdict, f.need_bytes, f.summary, suggested=f is best) for f in fits
    ]


# --- internals -------------------------------------------------------------------------------


@cache
def _load_shipped() -> tuple[CatalogEntry, ...]:
    return tuple(load_catalog())


def _fit(e: CatalogEntry, v: CatalogVariant, hw: HardwareProfile) -> VariantFit:
    facts = e.facts(v)
    if isinstance(facts, ImageModelFacts):
        image_plan = plan_image_load(hw, facts)
        need = image_plan.peak_device_bytes + image_plan.ram_bytes
        return VariantFit(v, image_plan.verdict, need, image_plan.reasons[0])
    plan = plan_load(hw, facts)
    summary = next((r for r in plan.reasons if not r.startswith("Context ")), plan.reasons[0])
    return VariantFit(v, plan.verdict, plan.estimate.total, summary)


def _parse_entry(raw: dict[str, Any], where: str) -> CatalogEntry:
    label = raw.get("name", "<unnamed>")
    missing = [k for k in ENTRY_FIELDS if not raw.get(k)]
    if missing:
        raise CatalogError(f"The catalog entry {label} in {where} lacks {', '.join(missing)}.")
    if raw["kind"] not in KINDS:
        raise CatalogError(f"The catalog entry {label} has an unknown kind '{raw['kind']}'.")
    kind = ModelKind(raw["kind"])
    arch = dict(raw.get("architecture") or {})
    needed = CHAT_ARCH_FIELDS if kind is ModelKind.CHAT else IMAGE_ARCH_FIELDS
    lacking = [k for k in needed if arch.get(k) in (None, "", 0)]
    if lacking:
        raise CatalogError(f"The catalog entry {label} lacks architecture {', '.join(lacking)}.")
    variants = []
    for rv in raw["variants"]:
        files = tuple(rv.get("files") or ())
        size = int(rv.get("size_bytes") or 0)
        if not rv.get("quant") or not files or size <= 0:
            raise CatalogError(
                f"A variant of {label} lacks its quant, files or a positive size_bytes."
            )
        components = rv.get("component_bytes")
        if kind is ModelKind.IMAGE and not components:
            raise CatalogError(f"The image variant {label} {rv['quant']} lacks component_bytes.")
        variants.append(
            CatalogVariant(
                quant=str(rv["quant"]),
                files=files,
                size_bytes=size,
                component_bytes={k: int(n) for k, n in components.items()} if components else None,
                allow_patterns=tuple(rv.get("allow_patterns") or ()),
            )
        )
    return CatalogEntry(
        name=str(raw["name"]),
        kind=kind,
        title=str(raw["title"]),
        repo=str(raw["repo"]),
        license=str(raw["license"]),
        description=str(raw["description"]),
        variants=tuple(variants),
        architecture=arch,
        parameters=int(raw["parameters"]) if raw.get("parameters") else None,
        tags=tuple(raw.get("tags") or ()),
    )
