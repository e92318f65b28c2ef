"""GGUF quants: reading them from file names, grouping a repo's files into models, and the one
rule that picks the quant Hearth suggests for a machine (the catalog and `models files` use it)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeVar

from app.planner import FitVerdict, LoadPlan
from app.planner.facts import ChatModelFacts

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


def quant_bits(quant: str | None) -> float | None:
    """Bits per weight of a quant name in any case (`q4_k_m`, `FP16`), or None if unknown.

    >>> quant_bits("q4_k_m"), quant_bits("fp16"), quant_bits(None)
    (4.89, 16.0, None)
    """
    name = (quant or "").upper()
    return QUANT_BITS.get({"FP16": "F16", "FP32": "F32"}.get(name, name))


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
        return quant_bits(self.quant)

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


class QuantChoice(Protocol):
    """What the suggestion rule looks at: a `GgufVariant` or a catalog `VariantFit`."""

    @property
    def quant(self) -> str | None: ...

    @property
    def size(self) -> int: ...

    @property
    def verdict(self) -> FitVerdict: ...

    @property
    def complete(self) -> bool: ...


Choice = TypeVar("Choice", bound=QuantChoice)


def suggest_variant(variants: Sequence[Choice]) -> Choice | None:
    """The quant to suggest on this machine, or None: THE rule, for the catalog and the Hub.

    In order of preference:
    1. fits fully on the GPU and is Q4_K_M or better: the largest up to Q8_0 (quality is
       free there; F16/BF16 only when nothing smaller is in this group);
    2. runs split GPU+CPU or in RAM and is Q4_K_M or better: the smallest, i.e. Q4_K_M or
       the nearest above it (from RAM every byte is read for every token: smaller is faster);
    3. fits on the GPU below Q4_K_M: the largest; 4. runs below Q4_K_M: the largest.
    Nothing that is tight or won't fit is suggested; a lone variant that runs is suggested
    whatever its quant (an image model's `fp16`, a GGUF whose name does not say).

    Tier 2 before 3 is the choice between "Q3_K_M fully on the GPU" and "Q4_K_M split
    GPU+CPU": below Q4_K_M answers get visibly worse (llama.cpp's perplexity tables rise
    several times faster per bit lost below 4 bits), while a split load still runs most
    layers on the GPU, so it costs some speed, not quality. A person who prefers speed can
    still pick the smaller quant by name (`--quant Q3_K_M`); the default keeps answers good.

    >>> suggest_variant([])  # nothing offered, nothing suggested
    """
    runnable = [v for v in variants if v.complete and v.verdict.rank <= 1]
    if len(variants) == 1 and runnable:
        return runnable[0]
    rated = [(v, b) for v in runnable if (b := quant_bits(v.quant)) is not None]
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
    bits = quant_bits(quant) or 4.9
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
