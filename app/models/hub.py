"""Search the Hub for GGUF chat models; list a repo's quant variants with fit verdicts."""

from __future__ import annotations

import os
import re
import socket
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.errors import HearthError
from app.hardware.facts import ChatModelFacts
from app.hardware.planner import FitVerdict, LoadPlan, LoadSettings, plan_load
from app.hardware.profile import HardwareProfile

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from sqlite_utils import Database

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Settings keys (the environment variables, when set, win over them).
SETTING_ENDPOINT = "hub.endpoint"
SETTING_OFFLINE = "hub.offline"
#: A Hub that does not answer within these is treated as unreachable: never hang.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0

_TRUE = {"1", "ON", "YES", "TRUE"}
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)
_QUANT_RE = re.compile(
    r"(?:^|[-._])("
    r"I?Q\d_(?:K(?:_[A-Z]{1,2})?|\d(?:_\d_\d)?|[A-Z]{1,3})"
    r"|TQ\d_0|MXFP4(?:_MOE)?|BF16|FP16|F16|FP32|F32"
    r")(?=$|[-._])",
    re.I,
)

#: Approximate bits per weight of each llama.cpp quant type (whole file, as llama.cpp
#: reports it): used to rank quality and to estimate sizes or parameter counts.
QUANT_BITS: dict[str, float] = {
    "IQ1_S": 1.56,
    "IQ1_M": 1.75,
    "TQ1_0": 1.69,
    "IQ2_XXS": 2.06,
    "TQ2_0": 2.06,
    "IQ2_XS": 2.31,
    "IQ2_S": 2.5,
    "IQ2_M": 2.7,
    "Q2_K": 2.96,
    "Q2_K_S": 2.8,
    "IQ3_XXS": 3.06,
    "IQ3_XS": 3.3,
    "IQ3_S": 3.44,
    "Q3_K_S": 3.5,
    "IQ3_M": 3.7,
    "Q3_K_M": 3.91,
    "Q3_K_L": 4.27,
    "Q3_K_XL": 4.4,
    "IQ4_XS": 4.25,
    "MXFP4": 4.25,
    "MXFP4_MOE": 4.25,
    "IQ4_NL": 4.5,
    "Q4_0": 4.55,
    "Q4_K_S": 4.58,
    "Q4_K": 4.89,
    "Q4_K_M": 4.89,
    "Q4_K_L": 5.0,
    "Q4_K_XL": 5.0,
    "Q4_1": 5.0,
    "Q5_0": 5.54,
    "Q5_K_S": 5.54,
    "Q5_K": 5.69,
    "Q5_K_M": 5.69,
    "Q5_K_L": 5.8,
    "Q5_K_XL": 5.8,
    "Q5_1": 6.0,
    "Q6_K": 6.56,
    "Q6_K_L": 6.7,
    "Q6_K_XL": 6.7,
    "Q8_0": 8.5,
    "Q8_K_XL": 8.7,
    "F16": 16.0,
    "BF16": 16.0,
    "F32": 32.0,
}
#: Suggested quants are at least this good (Q4_K_M) and, when one fits, at most Q8_0:
#: above it the quality gain is invisible and the file doubles.
GOOD_ENOUGH_BITS = QUANT_BITS["Q4_K_M"]
ENOUGH_BITS = QUANT_BITS["Q8_0"]
#: The quants `search_models` considers when it estimates the best fit of a repo.
SEARCH_LADDER = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")


# --- errors -------------------------------------------------------------------------------


class HubError(HearthError):
    """Something about the Hub (or the mirror in HF_ENDPOINT) stopped the request."""

    default_remedy = "Try again in a few minutes; if it keeps failing, check the Hub's status page."


class OfflineError(HubError):
    """Hearth is offline (by choice or because the network is down) and did not reach the Hub."""

    default_remedy = (
        "Models already in the library keep working, and `hearth models import` adds models "
        "from a disk. To use the Hub, unset HF_HUB_OFFLINE (or turn off offline mode in "
        "Settings)."
    )


class HubUnreachableError(OfflineError):
    default_remedy = (
        "Check the network connection (or the mirror address in HF_ENDPOINT) and try again; "
        "models already in the library keep working offline."
    )


class RepoNotFound(HubError):
    default_remedy = (
        "Check the name (publisher/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF) or find it with "
        "`hearth models search`. A private repo also needs a token: `hearth models login`."
    )


class RevisionNotFound(HubError):
    default_remedy = (
        "Leave out --revision to use the main branch, or check the branch, tag or commit."
    )


class FileNotOnHub(HubError):
    default_remedy = "See the repo's files with `hearth models files REPO`."


class GatedRepo(HubError):
    default_remedy = (
        "Accept the model's terms on its Hub page, then give Hearth an access token from that "
        "account with `hearth models login` (or in Settings)."
    )


class NoGgufFilesError(HubError):
    default_remedy = (
        "Hearth runs chat models from GGUF files: search for a GGUF build of this model with "
        "`hearth models search NAME`."
    )


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class HubConfig:
    """Where the Hub is, whether Hearth may reach it, and the token to send."""

    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    offline_reason: str = ""  # "HF_HUB_OFFLINE=1" or "offline mode is on in Settings"
    token: str | None = field(default=None, repr=False)

    def require_online(self) -> None:
        """Raise OfflineError, before any network access, when offline mode is on."""
        if self.offline:
            raise OfflineError(
                f"Hearth is in offline mode ({self.offline_reason}), so it did not contact the "
                f"Hub at {self.endpoint}."
            )


def hub_config(db: Database | None = None, environ: dict[str, str] | None = None) -> HubConfig:
    """Resolve the endpoint, offline mode and token: environment first, then Settings.

    `HF_ENDPOINT` and `HF_HUB_OFFLINE` (the variables huggingface_hub itself reads) win over
    the `hub.endpoint` / `hub.offline` settings, so a lab can pin a mirror for everyone.

    >>> hub_config(environ={"HF_ENDPOINT": "http://mirror.lab:8080/", "HF_HUB_OFFLINE": "0"})
    HubConfig(endpoint='http://mirror.lab:8080', offline=False, offline_reason='')
    """
    from app.models.tokens import load_token

    env = dict(os.environ) if environ is None else environ
    endpoint = (env.get("HF_ENDPOINT") or "").strip()
    offline_env = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").strip()
    offline, reason = False, ""
    if offline_env:
        offline = offline_env.upper() in _TRUE
        reason = "HF_HUB_OFFLINE=1" if offline else ""
    if not endpoint or not offline_env:
        from app.store import get_setting, open_default_database

        database = db if db is not None else open_default_database()
        if not endpoint:
            endpoint = str(get_setting(database, SETTING_ENDPOINT, "") or "")
        if not offline_env and get_setting(database, SETTING_OFFLINE, False):
            offline, reason = True, "offline mode is on in Settings"
    token = env.get("HF_TOKEN") or load_token()
    return HubConfig(
        endpoint=(endpoint or DEFAULT_ENDPOINT).rstrip("/"),
        offline=offline,
        offline_reason=reason,
        token=token or None,
    )


def save_hub_settings(
    db: Database, *, endpoint: str | None = None, offline: bool | None = None
) -> None:
    """Store the Settings values (`endpoint=""` returns to the public Hub)."""
    from app.store import set_setting

    with db.conn:
        if endpoint is not None:
            set_setting(db, SETTING_ENDPOINT, endpoint.strip().rstrip("/"))
        if offline is not None:
            set_setting(db, SETTING_OFFLINE, bool(offline))


# --- what the Hub has -------------------------------------------------------------------


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


@dataclass(frozen=True)
class GgufFile:
    """One file on the Hub; `sha256` is the LFS object id when the Hub gives one."""

    path: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class GgufVariant:
    """One downloadable chat model in a repo: a quant, as one file or a split set."""

    repo: str
    revision: str  # the commit the listing came from: downloads are pinned to it
    quant: str | None  # "Q4_K_M", "IQ4_XS", "F16"... None when the file name does not say
    name: str  # the name it gets in the library
    files: tuple[GgufFile, ...]
    plan: LoadPlan  # the planner's answer for this machine
    facts_basis: str  # where the model's shape came from (always an estimate before download)
    license: str | None = None
    gated: bool = False
    complete: bool = True  # False: a split set with parts missing on the Hub
    suggested: bool = False  # the quant Hearth suggests for this machine

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def verdict(self) -> FitVerdict:
        return self.plan.verdict

    @property
    def split(self) -> bool:
        return len(self.files) > 1

    @property
    def sha256_known(self) -> bool:
        return all(f.sha256 for f in self.files)

    @property
    def bits(self) -> float | None:
        return QUANT_BITS.get(self.quant or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "quant": self.quant,
            "name": self.name,
            "files": [asdict(f) for f in self.files],
            "size_bytes": self.size,
            "split": self.split,
            "sha256_known": self.sha256_known,
            "verdict": self.verdict.value,
            "n_ctx": self.plan.n_ctx,
            "gpu_layers": self.plan.gpu_layers_mode,
            "memory_bytes": self.plan.estimate.total,
            "facts_basis": self.facts_basis,
            "license": self.license,
            "gated": self.gated,
            "complete": self.complete,
            "suggested": self.suggested,
        }


def parse_quant(filename: str) -> str | None:
    """The llama.cpp quant type named in a GGUF file name, upper-cased.

    >>> parse_quant("Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"), parse_quant("x.iq4_xs.gguf")
    ('Q4_K_M', 'IQ4_XS')
    >>> parse_quant("Llama-3.3-70B-Q5_K_S-00001-of-00002.gguf"), parse_quant("m-fp16.gguf")
    ('Q5_K_S', 'F16')
    """
    stem = PurePosixPath(filename).name
    split = _SPLIT_RE.match(stem)
    stem = split["stem"] if split else re.sub(r"\.gguf$", "", stem, flags=re.I)
    found = _QUANT_RE.findall(stem)
    if not found:
        return None
    quant = found[-1].upper()
    return {"FP16": "F16", "FP32": "F32"}.get(quant, quant)


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
    _check_reachable(config.endpoint)
    api = _api(config)
    try:
        found = list(
            api.list_models(
                search=query.strip() or None,
                filter="gguf",
                sort="downloads",
                limit=max(1, limit),
                expand=["downloads", "likes", "lastModified", "gated", "gguf"],
            )
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
            hw = hw or _this_machine()
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
    `suggest_variant`): on the GPU the largest good quant up to Q8_0, in RAM Q4_K_M.

    >>> variants = list_gguf_files("Qwen/Qwen2.5-0.5B-Instruct-GGUF")  # doctest: +SKIP
    >>> [(v.quant, v.size, v.verdict.value, v.suggested) for v in variants][:2]
    [('Q2_K', 415223968, 'fits on GPU', False), ('Q3_K_M', 432082080, 'fits on GPU', False)]
    """
    repo = check_repo_id(repo)
    config = config or hub_config()
    config.require_online()
    api = _api(config)
    try:
        info = api.model_info(repo, revision=revision, files_metadata=True, timeout=READ_TIMEOUT_S)
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
    hw = hardware or _this_machine()
    variants = []
    for files, complete in groups:
        quant = parse_quant(files[0].path)
        facts, basis = estimate_facts(
            repo,
            quant,
            sum(f.size for f in files),
            parameters=_int_or_none(gguf.get("total")),
            arch=str(gguf.get("architecture") or "") or None,
            context_length=_int_or_none(gguf.get("context_length")),
        )
        from app.models.library import model_name_for

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


def group_gguf_files(
    entries: Iterable[tuple[str, int | None, str | None]],
) -> list[tuple[list[GgufFile], bool]]:
    """Group (path, size, sha256) entries into models: split parts together, in order.

    Returns (files, complete) pairs; vision projectors (`mmproj-*`) are not chat models and
    are left out.
    """
    singles: list[tuple[list[GgufFile], bool]] = []
    sets: dict[tuple[str, str, int], dict[int, GgufFile]] = {}
    for path, size, sha256 in entries:
        name = PurePosixPath(path).name
        if not name.lower().endswith(".gguf") or name.lower().startswith("mmproj"):
            continue
        file = GgufFile(path=path, size=int(size or 0), sha256=sha256)
        split = _SPLIT_RE.match(name)
        if split:
            key = (str(PurePosixPath(path).parent), split["stem"], int(split["count"]))
            sets.setdefault(key, {})[int(split["index"])] = file
        else:
            singles.append(([file], True))
    for (_folder, _stem, count), parts in sets.items():
        ordered = [parts[i] for i in sorted(parts)]
        singles.append((ordered, sorted(parts) == list(range(1, count + 1))))
    return singles


def suggest_variant(variants: Sequence[GgufVariant]) -> GgufVariant | None:
    """The variant to suggest here (the same idea as the catalog's best fit), or None.

    In order of preference:
    1. fits fully on the GPU and is Q4_K_M or better: the largest up to Q8_0 (quality is
       free there; F16/BF16 only when nothing smaller is in this group);
    2. runs split GPU+CPU or in RAM and is Q4_K_M or better: the smallest, i.e. Q4_K_M or
       the nearest above it (from RAM every byte is read for every token: smaller is faster);
    3. fits on the GPU below Q4_K_M: the largest; 4. runs below Q4_K_M: the largest.
    Nothing that is tight or won't fit is suggested.
    """
    runnable = [v for v in variants if v.complete and v.verdict.rank <= 1]
    if len(variants) == 1 and runnable:
        return runnable[0]
    rated = [(v, v.bits) for v in runnable if v.bits is not None]
    on_gpu = [(v, b) for v, b in rated if v.verdict is FitVerdict.FITS_GPU]
    good_on_gpu = [(v, b) for v, b in on_gpu if b >= GOOD_ENOUGH_BITS]
    if good_on_gpu:
        enough = [(v, b) for v, b in good_on_gpu if b <= ENOUGH_BITS]
        if enough:
            return max(enough, key=lambda vb: (vb[1], vb[0].size))[0]
        return min(good_on_gpu, key=lambda vb: (vb[1], vb[0].size))[0]
    good = [(v, b) for v, b in rated if b >= GOOD_ENOUGH_BITS]
    if good:
        return min(good, key=lambda vb: (vb[1], vb[0].size))[0]
    for tier in (on_gpu, rated):
        if tier:
            return max(tier, key=lambda vb: (vb[1], vb[0].size))[0]
    return None


def estimate_facts(
    repo: str,
    quant: str | None,
    size: int,
    *,
    parameters: int | None = None,
    arch: str | None = None,
    context_length: int | None = None,
) -> tuple[ChatModelFacts, str]:
    """Planner facts for a model known only by its Hub listing, and a note on their basis.

    The exact shape (layers, KV heads) is only in the file's header; until it is downloaded
    the shape is that of a typical model of the same parameter count. The parameter count
    is the Hub's (from its GGUF metadata) when it has one, else derived from the file size
    and the quant's bits per weight.
    """
    bits = QUANT_BITS.get(quant or "", 4.9)
    if parameters:
        basis = "estimated from the Hub's GGUF metadata and the file size"
    else:
        parameters = int(size * 8 / bits)
        basis = "estimated from the file size"
    layers, embd, heads, kv_heads = _typical_shape(parameters)
    head_dim = embd // heads
    name = repo.split("/")[-1] + (f"-{quant}" if quant else "")
    facts = ChatModelFacts(
        name=name,
        arch=arch or "unknown",
        file_size=size,
        block_count=layers,
        embedding_length=embd,
        head_count=heads,
        head_count_kv=kv_heads,
        key_length=head_dim,
        value_length=head_dim,
        context_length=context_length or 4096,
        quantization=quant,
        parameters=parameters,
    )
    return facts, basis


def _typical_shape(parameters: int) -> tuple[int, int, int, int]:
    """(layers, embedding, heads, KV heads) of a typical dense model of this size."""
    billions = parameters / 1e9
    shapes = (  # up to N billion: the shape of a well-known model of that size
        (0.8, (24, 896, 14, 2)),  # Qwen2.5 0.5B
        (2.0, (28, 1536, 12, 2)),  # Qwen2.5 1.5B
        (4.5, (28, 3072, 24, 8)),  # Llama 3.2 3B
        (10.0, (32, 4096, 32, 8)),  # Llama 3.1 8B
        (16.0, (48, 5120, 40, 8)),  # Qwen2.5 14B
        (40.0, (64, 5120, 40, 8)),  # Qwen2.5 32B
        (90.0, (80, 8192, 64, 8)),  # Llama 3.1 70B
    )
    for limit, shape in shapes:
        if billions <= limit:
            return shape
    return (126, 16384, 128, 8)  # Llama 3.1 405B


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


# --- talking to the Hub -------------------------------------------------------------------


def _api(config: HubConfig) -> HfApi:
    from huggingface_hub import HfApi

    from app import __version__

    _bound_default_timeouts()
    return HfApi(
        endpoint=config.endpoint,
        token=config.token,
        library_name="hearth",
        library_version=__version__,
    )


def _bound_default_timeouts() -> None:
    """Give huggingface_hub's shared client finite timeouts (its default is none at all).

    Calls that pass their own timeout (downloads, file metadata) keep it; this bounds the
    ones that do not, such as listing models, so a dead network cannot hang Hearth.
    """
    import httpx2
    from huggingface_hub import get_session

    session = get_session()
    if session.timeout.connect is None or session.timeout.read is None:
        session.timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)


def _check_reachable(endpoint: str) -> None:
    """Fail in seconds when the Hub (or the proxy in front of it) does not accept connections.

    Listing models goes through huggingface_hub's retrying helper, which would otherwise
    spend ~25 s backing off before admitting the network is down.
    """
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host = proxy_parts.hostname or host
        port = proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise HubUnreachableError(
            f"Hearth could not reach the Hub at {endpoint} ({_reason(exc)})."
        ) from exc


def hub_error(
    exc: BaseException,
    config: HubConfig,
    *,
    repo: str | None = None,
    revision: str | None = None,
    filename: str | None = None,
) -> HearthError:
    """Turn a huggingface_hub / network exception into the HearthError a person can act on."""
    import httpx2
    from huggingface_hub import errors as hf

    if isinstance(exc, HearthError):
        return exc
    what = repo or "the Hub"
    status = _status(exc)
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return OfflineError(
            f"huggingface_hub is in offline mode, so Hearth did not contact {what}."
        )
    if isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError | socket.gaierror):
        return HubUnreachableError(
            f"Hearth could not reach the Hub at {config.endpoint} ({_reason(exc)})."
        )
    if isinstance(exc, hf.GatedRepoError) or (status in (401, 403) and filename is not None):
        return _gated(what, config, status)
    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFound(f"{what} has no branch, tag or commit called '{revision}'.")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        at = f" at revision {revision}" if revision else ""
        return FileNotOnHub(f"{what} has no file called {filename}{at}.")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return RepoNotFound(f"There is no model repository called {what} on {config.endpoint}.")
    if status in (401, 403):
        return _gated(what, config, status)
    if status == 404:
        return FileNotOnHub(f"{config.endpoint} has no {filename or what} (HTTP 404).")
    if isinstance(exc, hf.HfHubHTTPError) and status is not None:
        return HubError(f"The Hub at {config.endpoint} answered HTTP {status} for {what}.")
    return HubError(f"Talking to the Hub about {what} failed ({_reason(exc)}).")


def _gated(what: str, config: HubConfig, status: int | None) -> GatedRepo:
    if config.token and status == 403:
        return GatedRepo(
            f"Your saved access token may not download {what}: it is gated or private.",
            "Accept the model's terms on its Hub page with the account the token belongs to, "
            "or save another token with `hearth models login`.",
        )
    return GatedRepo(
        f"{what} is gated or private: the Hub wants an access token before it lets you download it."
    )


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _this_machine() -> HardwareProfile:
    from app.hardware.detect import detect_hardware

    return detect_hardware(include_builds=True)
