"""Detect this machine's hardware and inference builds as a HardwareProfile."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from app.hardware.profile import BuildInfo, CpuInfo, GpuInfo, HardwareProfile

GIB = 1024**3

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

# Import names of the libraries whose builds are probed in a subprocess (tests swap them).
_PROBE_MODULES = {"llama": "llama_cpp", "torch": "torch"}
_PROBE_LABELS = {"llama": "llama-cpp-python", "torch": "PyTorch"}
_PROBE_MARK = "HEARTH-PROBE "

# ggml backend registry names that are GPUs (or accelerators), mapped to Hearth's names.
_GPU_BACKEND_NAMES = {
    "cuda": "cuda",
    "metal": "metal",
    "mtl": "metal",
    "vulkan": "vulkan",
    "rocm": "hip",
    "hip": "hip",
    "sycl": "sycl",
    "opencl": "opencl",
    "musa": "musa",
    "cann": "cann",
    "kompute": "kompute",
    "webgpu": "webgpu",
}
_CPU_BACKEND_NAMES = {"cpu", "blas", "rpc", "amx", "accelerate", "zdnn"}


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
                        kind="cuda",
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
    fraction = 2 / 3 if ram_total <= 36 * GIB else 3 / 4
    return int(ram_total * fraction)


def _apple_gpu() -> GpuInfo:
    total, available = detect_memory()
    name = _sysctl("machdep.cpu.brand_string") or "Apple Silicon"
    return GpuInfo(
        kind="metal",
        name=name,
        vram_total=total,
        vram_free=available,
        unified=True,
        recommended_working_set=metal_working_set(total),
    )


# --- inference builds --------------------------------------------------------------------


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:
            continue
    return None


def _build_fingerprint() -> str:
    """Changes whenever llama-cpp-python or torch is reinstalled (RECORD hashes every file)."""
    import hashlib

    digest = hashlib.sha256(f"{sys.executable}|{platform.platform()}".encode())
    for dist in ("llama-cpp-python", "torch"):
        try:
            digest.update(
                (importlib.metadata.distribution(dist).read_text("RECORD") or "").encode()
            )
        except Exception:  # not installed: part of the fingerprint too
            digest.update(f"no {dist}".encode())
    return digest.hexdigest()


def _cached_probe_results(timeout: float, fresh: bool) -> dict[str, dict[str, Any]]:
    """Probe results, reused from the cache folder while the installed builds are unchanged.

    The probes cost ~2 s (importing torch); `hearth plan` and `hearth chat` need the answer
    on every start, `hearth doctor` asks for a fresh one.
    """
    from app.paths import hearth_paths

    cache = hearth_paths().cache / "build-probe.json"
    key = _build_fingerprint()
    if not fresh:
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return dict(data["results"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    results = _probe_in_subprocesses(timeout)
    if not any("error" in r for r in results.values()):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps({"key": key, "results": results}))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home just means probing every time
    return results


def detect_builds(timeout: float = 60, *, fresh: bool = True) -> BuildInfo:
    """Installed versions, and what the llama.cpp and PyTorch builds can run on.

    Importing llama_cpp and torch is slow and can crash natively, so each is checked in
    its own subprocess, both at once, within `timeout` seconds in all. Under a frozen
    (PyInstaller) app, where sys.executable is the app itself, the checks run in-process.
    Problems end up as sentences in `errors`, never as exceptions.
    """
    errors: list[str] = []
    if getattr(sys, "frozen", False):
        results = {kind: _probe_in_process(kind) for kind in _PROBE_MODULES}
    else:
        results = _cached_probe_results(timeout, fresh)

    llama = results.get("llama", {})
    torch = results.get("torch", {})
    for result in (llama, torch):
        if "error" in result:
            errors.append(str(result["error"]))

    backends: tuple[str, ...] | None = None
    if "error" not in llama:
        backends = _llama_backends(llama)
        if backends is None:
            errors.append(
                "llama.cpp supports GPU offload, but which GPU backend it was built with "
                "could not be told."
            )

    llama_version = _str_or_none(llama.get("version")) or _dist_version("llama-cpp-python")
    torch_version = _str_or_none(torch.get("version")) or _dist_version("torch")
    return BuildInfo(
        llama_version=llama_version,
        llama_backends=backends,
        llama_system_info=_str_or_none(llama.get("system_info")),
        torch_version=torch_version,
        torch_cuda=_bool_or_none(torch.get("cuda")),
        torch_mps=_bool_or_none(torch.get("mps")),
        diffusers_version=_dist_version("diffusers"),
        pyside_version=_dist_version("PySide6", "PySide6-Essentials"),
        python_version=platform.python_version(),
        os_version=platform.platform(),
        errors=tuple(errors),
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _bool_or_none(value: object) -> bool | None:
    return None if value is None else bool(value)


def _llama_backends(result: dict[str, Any]) -> tuple[str, ...] | None:
    """The GPU backends from a llama probe's result: () for CPU-only, None when unknown."""
    if not result.get("gpu_offload"):
        return ()
    found: set[str] = set()
    for name in result.get("registries", []):
        found |= _backend_names(str(name))
    for file in result.get("lib_files", []):
        m = re.match(r"^(?:lib)?ggml-([a-z0-9]+)", str(file).lower())
        if m:
            found |= _backend_names(m.group(1))
    for m in re.finditer(r"([A-Za-z]+)\s*:", str(result.get("system_info") or "")):
        found |= _backend_names(m.group(1))
    if found:
        return tuple(sorted(found))
    if platform.system() == "Darwin":
        return ("metal",)  # the only GPU backend llama.cpp builds on macOS by default
    return None


def _backend_names(name: str) -> set[str]:
    key = name.strip().lower()
    if key in _CPU_BACKEND_NAMES:
        return set()
    mapped = _GPU_BACKEND_NAMES.get(key)
    return {mapped} if mapped else set()


def _probe_in_process(kind: str) -> dict[str, Any]:
    label = _PROBE_LABELS[kind]
    try:
        return _probe(kind, _PROBE_MODULES[kind])
    except ImportError as exc:
        return {"error": f"{label} is not installed ({exc})."}
    except Exception as exc:
        return {"error": f"Checking {label} failed: {type(exc).__name__}: {exc}."}


def _probe_command(kind: str) -> list[str]:
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds `app/`
    module = _PROBE_MODULES[kind]
    code = (
        f"import sys; sys.path.insert(0, {root!r}); "
        f"from app.hardware.detect import _probe_main; _probe_main({kind!r}, {module!r})"
    )
    # -P: do not put the current folder first on sys.path (a stray torch.py must not win).
    return [sys.executable, "-P", "-c", code]


def _probe_in_subprocesses(timeout: float) -> dict[str, dict[str, Any]]:
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    procs: dict[str, subprocess.Popen[str]] = {}
    results: dict[str, dict[str, Any]] = {}
    for kind in _PROBE_MODULES:
        try:
            procs[kind] = subprocess.Popen(
                _probe_command(kind),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                creationflags=flags,
            )
        except OSError as exc:
            results[kind] = {"error": f"Could not start a check of {_PROBE_LABELS[kind]}: {exc}."}
    deadline = time.monotonic() + timeout
    for kind, proc in procs.items():
        results[kind] = _collect(kind, proc, max(deadline - time.monotonic(), 0.1), timeout)
    return results


def _collect(
    kind: str, proc: subprocess.Popen[str], remaining: float, timeout: float
) -> dict[str, Any]:
    label = _PROBE_LABELS[kind]
    try:
        stdout, stderr = proc.communicate(timeout=remaining)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"Checking {label} took longer than {timeout:g} s and was stopped."}
    for line in reversed(stdout.splitlines()):
        if line.startswith(_PROBE_MARK):
            try:
                data = json.loads(line[len(_PROBE_MARK) :])
            except ValueError:
                break
            if isinstance(data, dict):
                return data
            break
    last = stderr.strip().splitlines()[-1:] if stderr.strip() else []
    detail = f" ({last[0][:200]})" if last else ""
    if proc.returncode == 0:
        return {"error": f"Checking {label} gave no answer{detail}."}
    return {
        "error": f"Checking {label} crashed its Python process (exit code {proc.returncode})"
        f"{detail}."
    }


def _probe_main(kind: str, module: str) -> None:
    """Entry point of a probe subprocess: print one marked JSON line."""
    label = _PROBE_LABELS.get(kind, module)
    try:
        result = _probe(kind, module)
    except ImportError as exc:
        result = {"error": f"{label} is not installed ({exc})."}
    except Exception as exc:
        result = {"error": f"Checking {label} failed: {type(exc).__name__}: {exc}."}
    print(_PROBE_MARK + json.dumps(result), flush=True)


def _probe(kind: str, module: str) -> dict[str, Any]:
    mod = importlib.import_module(module)
    if kind == "llama":
        return _probe_llama(mod)
    return _probe_torch(mod)


def _probe_llama(llama_cpp: Any) -> dict[str, Any]:
    info = llama_cpp.llama_print_system_info()
    if isinstance(info, bytes):
        info = info.decode(errors="replace")
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    try:
        lib_files = sorted(p.name for p in lib_dir.iterdir())
    except OSError:
        lib_files = []
    return {
        "version": getattr(llama_cpp, "__version__", None),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": str(info).strip(),
        "lib_files": lib_files,
        "registries": _ggml_registries(llama_cpp),
    }


def _ggml_registries(llama_cpp: Any) -> list[str]:
    """The names of ggml's backend registries ("CPU", "CUDA", "Metal"...), if reachable."""
    try:
        lib = llama_cpp.llama_cpp._lib
        count = lib.ggml_backend_reg_count
        count.restype = ctypes.c_size_t
        count.argtypes = []
        get = lib.ggml_backend_reg_get
        get.restype = ctypes.c_void_p
        get.argtypes = [ctypes.c_size_t]
        name = lib.ggml_backend_reg_name
        name.restype = ctypes.c_char_p
        name.argtypes = [ctypes.c_void_p]
        return [name(get(i)).decode(errors="replace") for i in range(count())]
    except Exception:
        return []


def _probe_torch(torch: Any) -> dict[str, Any]:
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    return {
        "version": str(torch.__version__),
        "cuda": bool(torch.cuda.is_available()),
        "mps": bool(mps.is_available()) if mps is not None else False,
    }


# --- everything --------------------------------------------------------------------------


def _os_name() -> str:
    system = platform.system()
    return {"Darwin": "macos", "Windows": "windows", "Linux": "linux"}.get(
        system, system.lower() or "unknown"
    )


def detect_hardware(include_builds: bool = True, *, fresh_builds: bool = False) -> HardwareProfile:
    """This machine's profile; `include_builds=False` skips the library checks.

    Build checks are cached while the installed builds are unchanged; `fresh_builds=True`
    runs them again (doctor).
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
