"""A fast, bounds-checked reader for a GGUF file's header: metadata and the tensor table.

gguf's GGUFReader decodes every tokenizer string into numpy objects (10 s for a 262k
vocabulary); the library only needs the scalars, the sizes of big arrays and the tensor
table, so this reader skips array bodies and reads in well under a second.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
#: Arrays longer than this are summarised as ArrayInfo instead of decoded.
SMALL_ARRAY = 4096


class GgufFormatError(ValueError):
    """The bytes do not follow the GGUF layout (truncated, or not GGUF at all)."""


@dataclass(frozen=True)
class ArrayInfo:
    """A large metadata array (e.g. the tokenizer's tokens), summarised by its length."""

    element_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute offset in the file
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GgufHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int


def read_gguf_header(path: Path) -> GgufHeader:
    """Parse `path`'s header; raise GgufFormatError when it is damaged or cut short."""
    with path.open("rb") as fh:
        size = path.stat().st_size
        if size == 0:
            raise GgufFormatError("the file is empty")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _Parser(buf, size).parse()


class _Parser:
    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def take(self, fmt: str, n: int) -> Any:
        if self.pos + n > self.size:
            raise GgufFormatError(f"the header ends early, at byte {self.size:,}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.take("<Q", 8)
        if n > self.size - self.pos:
            raise GgufFormatError(f"a string of {n:,} bytes runs past the end of the file")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.take("<Q", 8)
        if n > self.size - self.pos:
            raise GgufFormatError(f"a string of {n:,} bytes runs past the end of the file")
        self.pos += n

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            fmt, n = _SCALARS[vtype]
            return self.take(fmt, n)
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.take("<I", 4)
            count = self.take("<Q", 8)
            if count <= SMALL_ARRAY:
                return [self.value(etype) for _ in range(count)]
            if etype in _SCALARS:
                width = _SCALARS[etype][1]
                if count * width > self.size - self.pos:
                    raise GgufFormatError("an array runs past the end of the file")
                self.pos += count * width
            elif etype == _STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                for _ in range(count):
                    self.value(etype)
            return ArrayInfo(etype, count)
        raise GgufFormatError(f"unknown metadata value type {vtype}")

    def parse(self) -> GgufHeader:
        if self.buf[:4] != b"GGUF":
            raise GgufFormatError("missing the GGUF magic bytes")
        self.pos = 4
        version = self.take("<I", 4)
        if version not in (2, 3):
            raise GgufFormatError(f"GGUF version {version} is not supported (2 and 3 are)")
        n_tensors = self.take("<Q", 8)
        n_kv = self.take("<Q", 8)
        if n_tensors > 10_000_000 or n_kv > 1_000_000:
            raise GgufFormatError("the header's counts are implausible")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self.string()
            metadata[key] = self.value(self.take("<I", 4))
        raw_tensors = []
        for _ in range(n_tensors):
            name = self.string()
            n_dims = self.take("<I", 4)
            if n_dims > 8:
                raise GgufFormatError(f"tensor {name} claims {n_dims} dimensions")
            shape = tuple(self.take("<Q", 8) for _ in range(n_dims))
            ggml_type = self.take("<I", 4)
            offset = self.take("<Q", 8)
            raw_tensors.append((name, shape, ggml_type, offset))
        alignment = int(metadata.get("general.alignment", 32) or 32)
        data_offset = (self.pos + alignment - 1) // alignment * alignment
        tensors = tuple(
            _tensor(name, shape, ggml_type, data_offset + offset)
            for name, shape, ggml_type, offset in raw_tensors
        )
        return GgufHeader(version, metadata, tensors, data_offset, self.size)


def _tensor(name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> TensorInfo:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    n = 1
    for d in shape:
        n *= d
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as exc:
        raise GgufFormatError(f"tensor {name} has unknown type {ggml_type}") from exc
    return TensorInfo(name, shape, ggml_type, offset, n, n // block * type_size)
