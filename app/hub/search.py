"""Search the Hub for GGUF chat models; list a repo's quant variants with fit verdicts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from app.hardware.detect import this_machine
from app.hardware.profile import HardwareProfile
from app.hub.catalog import CatalogVariant, entry_for_repo
from app.hub.config import (
    READ_TIMEOUT_S,
    HubConfig,
    check_reachable,
    hub_api,
    hub_config,
    within_deadline,
)
from app.hub.errors import NoGgufFilesError, RepoNotFound, hub_error
from app.hub.quants import (
    QUANT_BITS,
    GgufFile,
    GgufVariant,
    estimate_facts,
    group_gguf_files,
    parse_quant,
    suggest_variant,
)
from app.planner import FitVerdict, LoadSettings, plan_load
from app.planner.facts import ChatModelFacts

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: The quants `search_models` considers when it estimates the best fit of a repo.
SEARCH_LADDER = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")


@dataclass(frozen=True)
class QuantFit:
    """How one quant of a model would run here."""

    quant: str
    size_bytes: int
    verdict: FitVerdict
    estimated: bool  # True: the size (or the model's shape) is a guess, not read from files


@dataclass(frozen=True)
class HubModel:
    """One search result: a GGUF repo and its popularity."""

    repo: str
    downloads: int
    likes: int
    updated: datetime | None
    gated: bool
    parameters: int | None = None  # from the Hub's GGUF metadata, when it has some
    architecture: str | None = None
    context_length: int | None = None
    best_fit: QuantFit | None = None  # the quant Hearth would pick here (an estimate)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["updated"] = self.updated.isoformat() if self.updated else None
        if self.best_fit:
            d["best_fit"]["verdict"] = self.best_fit.verdict.value
        return d


def check_repo_id(repo: str) -> str:
    """Return `repo` if it is `publisher/name`, else raise a HearthError saying how to write it."""
    repo = repo.strip().strip("/")
    if not _REPO_RE.match(repo) or ".." in repo:
        raise RepoNotFound(
            f"'{repo}' is not a Hub repository name.",
            "Write it as publisher/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.",
        )
    return repo


def search_models(
    query: str,
    limit: int = 20,
    *,
    hardware: HardwareProfile | None = None,
    config: HubConfig | None = None,
) -> list[HubModel]:
    """GGUF repos on the Hub matching `query`, most downloaded first, with an estimated best fit.

    >>> [m.repo for m in search_models("qwen2.5 0.5b", limit=3)]  # doctest: +SKIP
    ['Qwen/Qwen2.5-0.5B-Instruct-GGUF', ...]
    """
    config = config or hub_config()
    config.require_online()
    check_reachable(config.endpoint)
    api = hub_api(config)
    try:
        found = within_deadline(
            lambda: list(
                api.list_models(
                    search=query.strip() or None,
                    filter="gguf",
                    sort="downloads",
                    limit=max(1, limit),
                    expand=["downloads", "likes", "lastModified", "gated", "gguf"],
                )
            ),
            config,
        )
    except Exception as exc:
        raise hub_error(exc, config) from exc
    hw = hardware
    results = []
    for info in found:
        gguf = info.gguf if isinstance(info.gguf, dict) else {}
        params = _int_or_none(gguf.get("total"))
        context = _int_or_none(gguf.get("context_length"))
        arch = str(gguf.get("architecture") or "") or None
        best = None
        if params:
            hw = hw or this_machine()
            best = _best_quant_estimate(info.id, params, arch, context, hw)
        results.append(
            HubModel(
                repo=info.id,
                downloads=int(info.downloads or 0),
                likes=int(info.likes or 0),
                updated=info.last_modified,
                gated=bool(info.gated),
                parameters=params,
                architecture=arch,
                context_length=context,
                best_fit=best,
            )
        )
    return results


def list_gguf_files(
    repo: str,
    revision: str | None = None,
    *,
    hardware: HardwareProfile | None = None,
    settings: LoadSettings | None = None,
    config: HubConfig | None = None,
) -> list[GgufVariant]:
    """A repo's GGUF chat models grouped by quant, smallest first, each with a fit verdict.

    A split GGUF (`name-00001-of-00003.gguf`...) is one variant holding all its parts; sizes
    are exact and sha256 comes from the Hub's LFS data. One variant is `suggested` (see
    `app.hub.quants.suggest_variant`): on the GPU the largest good quant up to Q8_0, in RAM
    Q4_K_M.

    >>> variants = list_gguf_files("Qwen/Qwen2.5-0.5B-Instruct-GGUF")  # doctest: +SKIP
    >>> [(v.quant, v.size, v.verdict.value, v.suggested) for v in variants][:2]
    [('Q2_K', 415223968, 'fits on GPU', False), ('Q3_K_M', 432082080, 'fits on GPU', False)]
    """
    from app.models.library import model_name_for

    repo = check_repo_id(repo)
    config = config or hub_config()
    config.require_online()
    api = hub_api(config)
    try:
        info = within_deadline(
            lambda: api.model_info(
                repo, revision=revision, files_metadata=True, timeout=READ_TIMEOUT_S
            ),
            config,
        )
    except Exception as exc:
        raise hub_error(exc, config, repo=repo, revision=revision) from exc
    gguf = info.gguf if isinstance(info.gguf, dict) else {}
    card = info.card_data
    license_ = getattr(card, "license", None) if card is not None else None
    groups = group_gguf_files(
        (s.rfilename, s.size, s.lfs.sha256 if s.lfs else None) for s in (info.siblings or [])
    )
    if not groups:
        raise NoGgufFilesError(f"{repo} has no GGUF files.")
    hw = hardware or this_machine()
    curated = entry_for_repo(repo)
    variants = []
    for files, complete in groups:
        quant = parse_quant(files[0].path)
        size = sum(f.size for f in files)
        published = (
            curated.facts(CatalogVariant(quant or "", (files[0].path,), size)) if curated else None
        )
        if isinstance(published, ChatModelFacts):
            # Hearth's catalog knows this repo's real shape: plan with it, so `models files`
            # and `models catalog` see the same model and suggest the same quant.
            facts, basis = published, "from Hearth's catalog and the Hub's file sizes"
        else:
            facts, basis = estimate_facts(
                repo,
                quant,
                size,
                parameters=_int_or_none(gguf.get("total")),
                arch=str(gguf.get("architecture") or "") or None,
                context_length=_int_or_none(gguf.get("context_length")),
            )
        variants.append(
            GgufVariant(
                repo=repo,
                revision=str(info.sha or revision or "main"),
                quant=quant,
                name=model_name_for(PurePosixPath(files[0].path).name),
                files=tuple(files),
                plan=plan_load(hw, facts, settings),
                facts_basis=basis,
                license=str(license_) if license_ else None,
                gated=bool(info.gated),
                complete=complete,
            )
        )
    variants.sort(key=lambda v: (v.size, v.name))
    best = suggest_variant(variants)
    return [replace(v, suggested=True) if v is best else v for v in variants]


def _best_quant_estimate(
    repo: str,
    parameters: int,
    arch: str | None,
    context_length: int | None,
    hardware: HardwareProfile,
) -> QuantFit | None:
    """The quant `suggest_variant` would pick among the usual ladder, sizes estimated."""
    candidates = []
    for quant in SEARCH_LADDER:
        size = int(parameters * QUANT_BITS[quant] / 8)
        facts, basis = estimate_facts(
            repo, quant, size, parameters=parameters, arch=arch, context_length=context_length
        )
        candidates.append(
            GgufVariant(
                repo=repo,
                revision="main",
                quant=quant,
                name=facts.name,
                files=(GgufFile(f"{facts.name}.gguf", size, None),),
                plan=plan_load(hardware, facts),
                facts_basis=basis,
            )
        )
    best = suggest_variant(candidates)
    if best is None:
        smallest = candidates[-1]
        return QuantFit(smallest.quant or "", smallest.size, smallest.verdict, estimated=True)
    return QuantFit(best.quant or "", best.size, best.verdict, estimated=True)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
