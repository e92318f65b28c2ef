"""The hardware profile: what a machine has, as plain frozen data the planner can reason on."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Backend(StrEnum):
    """Where llama.cpp runs the model's layers."""

    CUDA = "cuda"
    METAL = "metal"
    CPU = "cpu"


AVX2_WARNING = (
    "This CPU lacks AVX2: llama.cpp will run, but several times slower than on a CPU that has it."
)


@dataclass(frozen=True)
class CpuInfo:
    name: str
    arch: str  # "x86_64" | "arm64" | ...
    physical_cores: int
    logical_cores: int
    simd: tuple[str, ...]  # lower-case feature names: "avx", "avx2", "avx512f", "fma", "neon", ...


@dataclass(frozen=True)
class GpuInfo:
    kind: Backend  # the API that drives it: CUDA or METAL, never CPU
    name: str
    vram_total: int
    vram_free: int
    unified: bool = False  # Apple Silicon: the GPU shares system RAM
    compute_capability: str | None = None
    driver: str | None = None
    recommended_working_set: int | None = None  # Metal's budget for one process


@dataclass(frozen=True)
class BuildInfo:
    """What the installed inference libraries can do on this machine.

    `llama_backends` lists the GPU backends the llama.cpp build offloads to ("cuda",
    "metal", "vulkan", ...); empty means a CPU-only build. None in a field means "not
    checked" (simulated machines assume a build that matches their GPU).
    """

    llama_version: str | None = None
    llama_backends: tuple[str, ...] | None = None
    llama_system_info: str | None = None
    # A portable build's CPU module in use ("haswell", "x64"...); None for a native build.
    llama_cpu_variant: str | None = None
    torch_version: str | None = None
    torch_cuda: bool | None = None
    torch_mps: bool | None = None
    diffusers_version: str | None = None
    pyside_version: str | None = None
    python_version: str | None = None
    os_version: str | None = None
    errors: tuple[str, ...] = ()  # why a check could not run, one sentence each


@dataclass(frozen=True)
class HardwareProfile:
    os: str  # "linux" | "macos" | "windows"
    cpu: CpuInfo
    ram_total: int
    ram_available: int
    gpus: tuple[GpuInfo, ...] = ()
    builds: BuildInfo = field(default_factory=BuildInfo)
    simulated: str | None = None  # the simulated machine's name, None for this machine

    @property
    def arch(self) -> str:
        return self.cpu.arch

    @property
    def lacks_avx2(self) -> bool:
        """An x86 CPU without AVX2 (llama.cpp's fast kernels need it); unknown SIMD is not."""
        simd = set(self.cpu.simd)
        return self.cpu.arch == "x86_64" and bool(simd) and "avx2" not in simd

    def gpus_llama_cannot_use(self) -> tuple[GpuInfo, ...]:
        """GPUs the checked llama.cpp build was compiled without (none when not checked)."""
        backends = self.builds.llama_backends
        if backends is None:
            return ()
        return tuple(g for g in self.gpus if g.kind not in backends)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def llama_rebuild_warning(gpu: GpuInfo, used_for: str = "") -> str:
    """The sentence saying `gpu` is unused by llama.cpp, and the rebuild that fixes it."""
    fix = "-DGGML_CUDA=on" if gpu.kind == Backend.CUDA else "-DGGML_METAL=on"
    return (
        f"{gpu.name} is not used{used_for}: the installed llama.cpp was built without "
        f'{gpu.kind.upper()}. Rebuild it with CMAKE_ARGS="{fix}" ./scripts/run --rebuild.'
    )


def profile_from_dict(name: str, data: dict[str, Any]) -> HardwareProfile:
    """Build a profile from one entry of `hardware-profiles.json` (simulated machines)."""
    cpu = data["cpu"]
    gpus = tuple(
        GpuInfo(
            kind=Backend(g["kind"]),
            name=g["name"],
            vram_total=int(g["vram_total"]),
            vram_free=int(g["vram_free"]),
            unified=bool(g.get("unified", False)),
            compute_capability=g.get("compute_capability"),
            driver=g.get("driver"),
            recommended_working_set=g.get("recommended_working_set"),
        )
        for g in data.get("gpus", [])
    )
    kinds = tuple(sorted({g.kind.value for g in gpus}))
    return HardwareProfile(
        os=data["os"],
        cpu=CpuInfo(
            name=cpu.get("name", name),
            arch=data.get("arch", "x86_64"),
            physical_cores=int(cpu["physical_cores"]),
            logical_cores=int(cpu["logical_cores"]),
            simd=tuple(s.lower() for s in cpu.get("simd", [])),
        ),
        ram_total=int(data["ram_total"]),
        ram_available=int(data["ram_available"]),
        gpus=gpus,
        # A simulated machine is assumed to have the builds that match its hardware.
        builds=BuildInfo(
            llama_backends=kinds,
            torch_cuda=Backend.CUDA in kinds,
            torch_mps=Backend.METAL in kinds,
        ),
        simulated=name,
    )


def load_simulated_machines(path: Path | None = None) -> dict[str, HardwareProfile]:
    """The simulated machines shipped in resources (or read from `path`)."""
    data = read_simulation_file(path)
    return {name: profile_from_dict(name, m) for name, m in data["machines"].items()}


def read_simulation_file(path: Path | None = None) -> dict[str, Any]:
    """`hardware-profiles.json` from resources (or `path`): machines, reference models, cases."""
    if path is not None:
        return dict(json.loads(path.read_text()))
    from importlib.resources import files

    text = files("app.resources").joinpath("hardware-profiles.json").read_text()
    return dict(json.loads(text))
