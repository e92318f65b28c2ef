"""The `hearth doctor` report: a HardwareProfile as JSON-ready data and as readable text."""

from __future__ import annotations

from typing import Any

import app
from app.edition import edition
from app.hardware.profile import (
    AVX2_WARNING,
    Backend,
    GpuInfo,
    HardwareProfile,
    llama_rebuild_warning,
)
from app.humanize import GiB, format_gib


def doctor_report(profile: HardwareProfile) -> dict[str, Any]:
    """Everything `hearth doctor` shows, as one JSON-serialisable object."""
    builds = profile.builds
    backends = builds.llama_backends
    backend, reason = recommend_backend(profile)
    return {
        "os": profile.os,
        "cpu": {
            "name": profile.cpu.name,
            "arch": profile.cpu.arch,
            "physical_cores": profile.cpu.physical_cores,
            "logical_cores": profile.cpu.logical_cores,
            "simd": list(profile.cpu.simd),
        },
        "memory": {
            "total_bytes": profile.ram_total,
            "available_bytes": profile.ram_available,
        },
        "gpus": [
            {
                "kind": g.kind,
                "name": g.name,
                "vram_total_bytes": g.vram_total,
                "vram_free_bytes": g.vram_free,
                "unified": g.unified,
                "compute_capability": g.compute_capability,
                "driver": g.driver,
                "recommended_working_set_bytes": g.recommended_working_set,
            }
            for g in profile.gpus
        ],
        "llama": {
            "version": builds.llama_version,
            # None only when the build was not checked.
            "gpu_offload": None if backends is None else bool(backends),
            "backends": None if backends is None else list(backends),
            "system_info": builds.llama_system_info,
            "cpu_variant": builds.llama_cpu_variant,
        },
        "torch": {
            "version": builds.torch_version,
            "cuda": builds.torch_cuda,
            "mps": builds.torch_mps,
        },
        "versions": {
            "hearth": app.__version__,
            "edition": edition(),
            "python": builds.python_version,
            "os": builds.os_version,
            "llama_cpp_python": builds.llama_version,
            "torch": builds.torch_version,
            "diffusers": builds.diffusers_version,
            "pyside6": builds.pyside_version,
        },
        "recommended": {"backend": backend.value, "reason": reason},
        "warnings": doctor_warnings(profile),
        "build_errors": list(builds.errors),
        "simulated": profile.simulated,
    }


def _best(gpus: list[GpuInfo]) -> GpuInfo:
    return max(gpus, key=lambda g: g.vram_free)


def recommend_backend(profile: HardwareProfile) -> tuple[Backend, str]:
    """Where llama.cpp should run on this machine, and why (one sentence)."""
    backends = profile.builds.llama_backends
    nvidia = [g for g in profile.gpus if g.kind == Backend.CUDA]
    metal = [g for g in profile.gpus if g.kind == Backend.METAL]
    if nvidia and (backends is None or Backend.CUDA in backends):
        gpu = _best(nvidia)
        return Backend.CUDA, (
            f"{gpu.name} ({format_gib(gpu.vram_free)} of {format_gib(gpu.vram_total)} free) "
            "runs llama.cpp through CUDA."
        )
    if metal and (backends is None or Backend.METAL in backends):
        gpu = _best(metal)
        return Backend.METAL, (
            f"The {gpu.name} GPU shares the {format_gib(profile.ram_total)} of RAM and runs "
            "llama.cpp through Metal."
        )
    cores = profile.cpu.physical_cores or profile.cpu.logical_cores
    if nvidia or metal:
        gpu = _best(nvidia or metal)
        what = "CUDA" if gpu.kind == Backend.CUDA else "Metal"
        return Backend.CPU, (
            f"The installed llama.cpp was built without {what}, so it runs on the CPU's "
            f"{cores} cores instead of the {gpu.name}."
        )
    if profile.gpus:
        return Backend.CPU, (
            f"Hearth has no backend for the {profile.gpus[0].name}, so llama.cpp runs on "
            f"the CPU's {cores} cores."
        )
    return Backend.CPU, f"No supported GPU was found, so llama.cpp runs on the CPU's {cores} cores."


def doctor_warnings(profile: HardwareProfile) -> list[str]:
    """Problems worth fixing on this machine, one sentence (or two) each."""
    warnings: list[str] = []
    if profile.lacks_avx2:
        warnings.append(AVX2_WARNING)
    if profile.ram_total < 8 * GiB:
        warnings.append(
            f"This machine has only {format_gib(profile.ram_total)} of RAM: expect only small chat "
            "models (about 3B parameters or fewer) to fit."
        )
    builds = profile.builds
    unused = profile.gpus_llama_cannot_use()
    for gpu in profile.gpus:
        if gpu in unused:
            warnings.append(llama_rebuild_warning(gpu, " for chat"))
        if gpu.kind == Backend.CUDA and builds.torch_cuda is False:
            version = f" ({builds.torch_version})" if builds.torch_version else ""
            warnings.append(
                f"{gpu.name} is not used for images: the installed PyTorch{version} has no "
                "CUDA support. Install a CUDA build of PyTorch "
                "(https://pytorch.org/get-started/locally/) into Hearth's environment."
            )
        if gpu.kind == Backend.METAL and builds.torch_mps is False:
            warnings.append(
                f"{gpu.name} is not used for images: the installed PyTorch cannot use Metal "
                "(MPS), so images are made on the CPU, much more slowly."
            )
    return warnings


# --- text --------------------------------------------------------------------------------


def _size(value: Any) -> str:
    return format_gib(None if value is None else int(value))


def _yes_no(value: Any) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _or_unknown(value: Any) -> str:
    return "unknown" if value in (None, "") else str(value)


def format_doctor_report(report: dict[str, Any]) -> str:
    """The report as plain text, like a bug report's "about" page."""
    lines: list[str] = []

    def section(title: str) -> None:
        if lines:
            lines.append("")
        lines.append(title)
        lines.append("-" * len(title))

    def row(label: str, value: Any) -> None:
        lines.append(f"  {label + ':':<22}{value}")

    versions = report.get("versions", {})
    cpu = report.get("cpu", {})
    memory = report.get("memory", {})
    llama = report.get("llama", {})
    torch = report.get("torch", {})

    section("Hearth")
    row("Version", _or_unknown(versions.get("hearth")))
    if versions.get("edition"):
        chat_only = versions["edition"] == "chat"
        row("Edition", "chat only (no image generation)" if chat_only else "full")
    if report.get("simulated"):
        row("Simulated machine", report["simulated"])

    section("System")
    row("OS", _or_unknown(report.get("os")))
    row("Platform", _or_unknown(versions.get("os")))
    row("Python", _or_unknown(versions.get("python")))

    section("CPU")
    row("Name", _or_unknown(cpu.get("name")))
    row("Architecture", _or_unknown(cpu.get("arch")))
    row("Cores", f"{cpu.get('physical_cores')} physical, {cpu.get('logical_cores')} logical")
    row("SIMD", ", ".join(cpu.get("simd") or []) or "none detected")

    section("Memory")
    row("Total", _size(memory.get("total_bytes")))
    row("Available", _size(memory.get("available_bytes")))

    section("GPUs")
    gpus = report.get("gpus") or []
    if not gpus:
        lines.append("  none found (normal on machines without an NVIDIA GPU or Apple Silicon)")
    for i, gpu in enumerate(gpus):
        kind = str(gpu.get("kind", "?")).upper() if gpu.get("kind") != "metal" else "Metal"
        lines.append(f"  [{i}] {gpu.get('name')} ({kind})")
        if gpu.get("unified"):
            row("  Memory", f"unified with RAM: {_size(gpu.get('vram_total_bytes'))}")
            row("  Working set", f"{_size(gpu.get('recommended_working_set_bytes'))} (estimate)")
        else:
            total = _size(gpu.get("vram_total_bytes"))
            row("  VRAM", f"{_size(gpu.get('vram_free_bytes'))} free of {total}")
        if gpu.get("compute_capability"):
            row("  Compute capability", gpu["compute_capability"])
        if gpu.get("driver"):
            row("  Driver", gpu["driver"])

    section("Builds")
    backends = llama.get("backends")
    if backends is None:
        backend_text = "not checked"
    else:
        backend_text = ", ".join(backends) if backends else "none (CPU-only build)"
    row("llama-cpp-python", _or_unknown(llama.get("version")))
    row("  GPU offload", _yes_no(llama.get("gpu_offload")))
    row("  GPU backends", backend_text)
    if llama.get("cpu_variant"):
        row("  CPU module", f"{llama['cpu_variant']} (portable build: picked for this CPU)")
    if llama.get("system_info"):
        row("  System info", llama["system_info"])
    if versions.get("edition") == "chat":
        row("PyTorch", "not in this edition")
    else:
        row("PyTorch", _or_unknown(torch.get("version")))
        row("  CUDA", _yes_no(torch.get("cuda")))
        row("  MPS (Metal)", _yes_no(torch.get("mps")))
        row("diffusers", _or_unknown(versions.get("diffusers")))
    row("PySide6", _or_unknown(versions.get("pyside6")))
    for error in report.get("build_errors") or []:
        lines.append(f"  ! {error}")

    section("Recommendation")
    recommended = report.get("recommended", {})
    row("Backend", _or_unknown(recommended.get("backend")))
    lines.append(f"  {recommended.get('reason', '')}")

    section("Warnings")
    warnings = report.get("warnings") or []
    if not warnings:
        lines.append("  none")
    lines.extend(f"  - {w}" for w in warnings)
    return "\n".join(lines) + "\n"
