"""Detect this machine's CPU, RAM and GPUs, with its inference builds, as a HardwareProfile."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import subprocess
from pathlib import Path

import psutil

from app.hardware.builds import detect_builds
from app.hardware.profile import Backend, BuildInfo, CpuInfo, GpuInfo, HardwareProfile
from app.humanize import GiB

# The x86 features the report shows, in this order ("pni" is how Linux names SSE3).
_X86_FEATURES = (
    "sse3",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
)
_LINUX_FLAG_ALIASES = {"pni": "sse3", "asimd": "neon", "asimddp": "dotprod"}
_ARM_FEATURES = ("neon", "dotprod", "i8mm", "sve", "sve2", "bf16")

# IsProcessorFeaturePresent constants (winnt.h; the values are fixed by the ABI).
_WIN_X86_FEATURES = {
    "sse3": 13,  # PF_SSE3_INSTRUCTIONS_AVAILABLE
    "ssse3": 36,  # PF_SSSE3_INSTRUCTIONS_AVAILABLE
    "sse4_1": 37,  # PF_SSE4_1_INSTRUCTIONS_AVAILABLE
    "sse4_2": 38,  # PF_SSE4_2_INSTRUCTIONS_AVAILABLE
    "avx": 39,  # PF_AVX_INSTRUCTIONS_AVAILABLE
    "avx2": 40,  # PF_AVX2_INSTRUCTIONS_AVAILABLE
    "avx512f": 41,  # PF_AVX512F_INSTRUCTIONS_AVAILABLE
    "bmi2": 60,  # PF_BMI2_INSTRUCTIONS_AVAILABLE (Windows 11 24H2+)
}
_WIN_ARM_FEATURES = {
    "neon": 19,  # PF_ARM_NEON_INSTRUCTIONS_AVAILABLE
    "dotprod": 43,  # PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE
    "sve": 46,  # PF_ARM_SVE_INSTRUCTIONS_AVAILABLE
    "sve2": 47,  # PF_ARM_SVE2_INSTRUCTIONS_AVAILABLE
    "i8mm": 66,  # PF_ARM_V82_I8MM_INSTRUCTIONS_AVAILABLE
    "bf16": 68,  # PF_ARM_V86_BF16_INSTRUCTIONS_AVAILABLE
}


# --- CPU ---------------------------------------------------------------------------------


def detect_cpu() -> CpuInfo:
    """The CPU's name, architecture, core counts and SIMD features (best effort, never raises)."""
    system = platform.system()
    arch = _normalise_arch(platform.machine())
    if _is_apple_silicon():
        arch = "arm64"  # the hardware, even when this Python runs under Rosetta
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    physical = min(physical, logical)
    if system == "Linux":
        name, simd = _linux_cpu(arch)
    elif system == "Darwin":
        name, simd = _macos_cpu(arch)
    elif system == "Windows":
        name, simd = _windows_cpu(arch)
    else:
        name, simd = platform.processor(), ()
    return CpuInfo(
        name=name or platform.processor() or arch,
        arch=arch,
        physical_cores=int(physical),
        logical_cores=int(logical),
        simd=simd,
    )


def _normalise_arch(machine: str) -> str:
    m = machine.lower()
    if m in ("x86_64", "amd64", "x64", "em64t"):
        return "x86_64"
    if m in ("arm64", "aarch64", "armv8", "armv8l", "arm64e"):
        return "arm64"
    if m in ("i386", "i486", "i586", "i686", "x86"):
        return "x86"
    return m or "unknown"


def _ordered(found: set[str], arch: str) -> tuple[str, ...]:
    order = _ARM_FEATURES if arch == "arm64" else _X86_FEATURES
    return tuple(f for f in order if f in found)


def simd_from_flags(flags: str | list[str], arch: str) -> tuple[str, ...]:
    """The SIMD features Hearth reports, from a Linux `flags`/`Features` line's words."""
    words = flags.split() if isinstance(flags, str) else flags
    found = {_LINUX_FLAG_ALIASES.get(w.lower(), w.lower()) for w in words}
    return _ordered(found, arch)


def _linux_cpu(arch: str) -> tuple[str, tuple[str, ...]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor(), ()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    name = fields.get("model name") or fields.get("hardware") or fields.get("cpu model", "")
    if not name and arch == "arm64":
        name = _read_text("/sys/firmware/devicetree/base/model").strip("\x00 \n")
    flags = fields.get("flags") or fields.get("features") or ""
    return name, simd_from_flags(flags, arch)


def _macos_cpu(arch: str) -> tuple[str, tuple[str, ...]]:
    name = _sysctl("machdep.cpu.brand_string") or ""
    if arch == "arm64":
        # Every Apple Silicon chip (M1 on) has NEON and the dot-product instructions.
        found = {"neon", "dotprod"}
        if _sysctl("hw.optional.arm.FEAT_I8MM") == "1":
            found.add("i8mm")
        if _sysctl("hw.optional.arm.FEAT_BF16") == "1":
            found.add("bf16")
        return name, _ordered(found, arch)
    words = " ".join(
        _sysctl(k) or "" for k in ("machdep.cpu.features", "machdep.cpu.leaf7_features")
    ).lower()
    found = {w.replace(".", "_") for w in words.split()}
    if "avx1_0" in found:
        found.add("avx")
    for sse in ("sse4_1", "sse4_2"):
        if sse.replace("_", ".") in words:
            found.add(sse)
    return name, _ordered(found, arch)


def _windows_cpu(arch: str) -> tuple[str, tuple[str, ...]]:
    name = _windows_cpu_name() or platform.processor()
    found: set[str] = set()
    try:
        present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined,unused-ignore]
        table = _WIN_ARM_FEATURES if arch == "arm64" else _WIN_X86_FEATURES
        found = {feature for feature, pf in table.items() if present(pf)}
    except Exception:
        return name, ()
    if "avx2" in found:
        # Windows has no FMA/F16C flags, but every AVX2 CPU (Intel Haswell, AMD Excavator
        # and later) also has FMA3 and F16C.
        found |= {"fma", "f16c"}
    return name, _ordered(found, arch)


def _windows_cpu_name() -> str:
    try:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        key = winreg.OpenKey(  # type: ignore[attr-defined,unused-ignore]
            winreg.HKEY_LOCAL_MACHINE,  # type: ignore[attr-defined,unused-ignore]
            r"HARDWARE\DESCRIPTION\System\CentralProcessor\0",
        )
        with key:
            value, _ = winreg.QueryValueEx(  # type: ignore[attr-defined,unused-ignore]
                key, "ProcessorNameString"
            )
        return str(value).strip()
    except Exception:
        return ""


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(
            ["/usr/sbin/sysctl", "-n", name],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


# --- memory and GPUs ---------------------------------------------------------------------


def detect_memory() -> tuple[int, int]:
    """(total, available) system RAM in bytes."""
    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available)


def detect_gpus() -> tuple[GpuInfo, ...]:
    """NVIDIA GPUs through NVML, or the Apple Silicon GPU; empty when there is none."""
    gpus = _nvidia_gpus()
    if _is_apple_silicon():
        gpus += (_apple_gpu(),)
    return gpus


def _is_apple_silicon() -> bool:
    if platform.system() != "Darwin":
        return False
    return platform.machine() == "arm64" or _sysctl("hw.optional.arm64") == "1"


def _nvidia_gpus() -> tuple[GpuInfo, ...]:
    try:
        import pynvml
    except Exception:
        return ()
    try:
        pynvml.nvmlInit()
    except Exception:
        return ()  # no NVIDIA driver (libnvidia-ml missing) or no usable device
    gpus: list[GpuInfo] = []
    try:
        try:
            driver: str | None = _text(pynvml.nvmlSystemGetDriverVersion())
        except Exception:
            driver = None
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                try:
                    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                    cc: str | None = f"{major}.{minor}"
                except Exception:
                    cc = None
                gpus.append(
                    GpuInfo(
                        kind=Backend.CUDA,
                        name=_text(pynvml.nvmlDeviceGetName(handle)),
                        vram_total=int(mem.total),
                        vram_free=int(mem.free),
                        compute_capability=cc,
                        driver=driver,
                    )
                )
            except Exception:
                continue  # a device NVML cannot read (lost, or in a bad state): skip it
    except Exception:
        pass
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return tuple(gpus)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def metal_working_set(ram_total: int) -> int:
    """Estimate Metal's recommendedMaxWorkingSetSize: 2/3 of RAM up to 36 GiB, 3/4 above.

    macOS reports the real figure through MTLDevice.recommendedMaxWorkingSetSize, which
    needs PyObjC; this estimate follows the documented behaviour of current macOS.
    """
    fraction = 2 / 3 if ram_total <= 36 * GiB else 3 / 4
    return int(ram_total * fraction)


def _apple_gpu() -> GpuInfo:
    total, available = detect_memory()
    return GpuInfo(
        kind=Backend.METAL,
        name=_sysctl("machdep.cpu.brand_string") or "Apple Silicon",
        vram_total=total,
        vram_free=available,
        unified=True,
        recommended_working_set=metal_working_set(total),
    )


# --- everything --------------------------------------------------------------------------


def _os_name() -> str:
    system = platform.system()
    return {"Darwin": "macos", "Windows": "windows", "Linux": "linux"}.get(
        system, system.lower() or "unknown"
    )


def this_machine(*, fresh_builds: bool = False) -> HardwareProfile:
    """This machine's profile with its build checks: what every face plans against.

    CPU, RAM and GPUs are read now; the build checks come from the cache while the installed
    llama.cpp and torch are unchanged, or run again with `fresh_builds=True` (doctor).

    >>> this_machine().builds.llama_backends  # doctest: +SKIP
    ('cuda',)
    """
    return detect_hardware(include_builds=True, fresh_builds=fresh_builds)


def detect_hardware(include_builds: bool = True, *, fresh_builds: bool = False) -> HardwareProfile:
    """This machine's profile; `include_builds=False` skips the library checks.

    Build checks are cached while the installed builds are unchanged; `fresh_builds=True`
    runs them again (doctor). Faces call `this_machine()`.
    """
    total, available = detect_memory()
    return HardwareProfile(
        os=_os_name(),
        cpu=detect_cpu(),
        ram_total=total,
        ram_available=available,
        gpus=detect_gpus(),
        builds=detect_builds(fresh=fresh_builds) if include_builds else BuildInfo(),
    )
