"""What the installed llama.cpp and PyTorch builds can do, checked in subprocesses and cached."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.edition import images_available
from app.hardware.llama_modules import load_backend_modules
from app.hardware.profile import BuildInfo
from app.paths import hearth_paths

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
    digest = hashlib.sha256(f"{sys.executable}|{platform.platform()}".encode())
    for dist in ("llama-cpp-python", "torch"):
        try:
            digest.update(
                (importlib.metadata.distribution(dist).read_text("RECORD") or "").encode()
            )
        except Exception:  # not installed: part of the fingerprint too
            digest.update(f"no {dist}".encode())
    return digest.hexdigest()


def _cached_probe_results(
    timeout: float, fresh: bool, probe: Callable[[], dict[str, dict[str, Any]]] | None = None
) -> dict[str, dict[str, Any]]:
    """Probe results, reused from the cache folder while the installed builds are unchanged.

    The probes cost ~2 s (importing torch); `hearth plan` and `hearth chat` need the answer
    on every start, `hearth doctor` asks for a fresh one. `probe` runs them (default: in
    subprocesses, within `timeout`).
    """
    cache = hearth_paths().build_check_cache
    key = _build_fingerprint()
    if not fresh:
        try:
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return dict(data["results"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    results = probe() if probe else _probe_in_subprocesses(timeout)
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
    images = images_available()  # the chat-only edition has no torch to check
    if getattr(sys, "frozen", False):
        # The installers' builds: the same cache, keyed by the program and the packages'
        # RECORDs (the spec copies both), so `hearth chat` in the full edition does not
        # import torch at every start (1.7 s on a 2-core machine).
        kinds = [kind for kind in _PROBE_MODULES if images or kind != "torch"]
        results = _cached_probe_results(
            timeout, fresh, lambda: {kind: _probe_in_process(kind) for kind in kinds}
        )
    else:
        results = _cached_probe_results(timeout, fresh)
    if not images:
        results.pop("torch", None)

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
        llama_cpu_variant=_str_or_none(llama.get("cpu_variant")),
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


def _probe_in_process(kind: str, module: str | None = None) -> dict[str, Any]:
    """One probe's result; a failure becomes {"error": sentence}, never an exception."""
    label = _PROBE_LABELS.get(kind, module or kind)
    try:
        return _probe(kind, module or _PROBE_MODULES[kind])
    except ImportError as exc:
        return {"error": f"{label} is not installed ({exc})."}
    except Exception as exc:
        return {"error": f"Checking {label} failed: {type(exc).__name__}: {exc}."}


def _probe_command(kind: str) -> list[str]:
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds `app/`
    module = _PROBE_MODULES[kind]
    code = (
        f"import sys; sys.path.insert(0, {root!r}); "
        f"from app.hardware.builds import probe_main; probe_main({kind!r}, {module!r})"
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


def probe_main(kind: str, module: str) -> None:
    """Entry point of a probe subprocess: print one marked JSON line."""
    print(_PROBE_MARK + json.dumps(_probe_in_process(kind, module)), flush=True)


def _probe(kind: str, module: str) -> dict[str, Any]:
    mod = importlib.import_module(module)
    if kind == "llama":
        return _probe_llama(mod)
    return _probe_torch(mod)


def _probe_llama(llama_cpp: Any) -> dict[str, Any]:
    # A portable build's CPU (and GPU) code sits in modules: load them as the worker does,
    # without ggml's "loaded CPU backend from ..." lines in the doctor's report.
    _quiet_llama_log(llama_cpp)
    variant = load_backend_modules(str(Path(llama_cpp.__file__).parent), llama_cpp.llama_cpp._lib)
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
        "cpu_variant": variant[0] if variant else None,
    }


_QUIET: list[Any] = []  # the ctypes callback must outlive the call that installs it


def _quiet_llama_log(llama_cpp: Any) -> None:
    try:
        if not _QUIET:
            _QUIET.append(llama_cpp.llama_log_callback(lambda _level, _text, _data: None))
        llama_cpp.llama_log_set(_QUIET[0], ctypes.c_void_p(0))
    except Exception:  # an older binding without the call: the lines just show
        pass


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


# --- which model architectures the installed llama.cpp can load ---------------------------


@functools.lru_cache(maxsize=256)
def llama_supports_architecture(arch: str) -> bool | None:
    """Whether the installed llama.cpp loads models whose `general.architecture` is `arch`.

    None when it cannot be told (llama-cpp-python missing, the check failed): callers then
    let the model through, and loading it says what is wrong. Two steps, cheap first:

    1. The name as a C string in libllama's read-only data (llama.cpp keeps its architecture
       names there, NUL-terminated): found means supported. A few ms, once per process.
    2. Not found: llama.cpp is asked for certain in a subprocess, by loading a metadata-only
       GGUF of that architecture with `vocab_only` (a known architecture fails later, on the
       missing vocabulary; an unknown one fails with "unknown model architecture"). About a
       second, and only for an architecture the first step did not find.
    """
    if not arch or not arch.isprintable():
        return False
    names = _llama_library_strings()
    if names is None:
        return None
    if arch.encode() + b"\0" in names:
        return True
    return _probe_architecture(arch)


@functools.lru_cache(maxsize=1)
def _llama_library_strings() -> bytes | None:
    """The bytes of the installed libllama (found without importing llama_cpp), or None."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("libllama.so", "libllama.dylib", "llama.dll"):
            lib = Path(folder) / "lib" / name
            try:
                return lib.read_bytes()
            except OSError:
                continue
    return None


_ARCH_MARK = "HEARTH-ARCH "


def _probe_architecture(arch: str, timeout: float = 60) -> bool | None:
    if getattr(sys, "frozen", False):
        return _architecture_known_here(arch)
    root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); "
        f"from app.hardware.builds import architecture_probe_main; "
        f"architecture_probe_main({arch!r})"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-P", "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_ARCH_MARK):
            value = json.loads(line[len(_ARCH_MARK) :])
            return value if isinstance(value, bool) else None
    return None


def architecture_probe_main(arch: str) -> None:
    """Entry point of the architecture check subprocess: print one marked JSON line."""
    try:
        known = _architecture_known_here(arch)
    except Exception:
        known = None
    print(_ARCH_MARK + json.dumps(known), flush=True)


def _architecture_known_here(arch: str) -> bool | None:
    """Ask this process's llama.cpp whether it knows `arch` (a probe subprocess, or the
    frozen app: imported by name, like the build probes, so the faces never load it)."""
    import tempfile

    from gguf import GGUFWriter

    llama_cpp = importlib.import_module("llama_cpp")

    messages: list[str] = []

    @llama_cpp.llama_log_callback
    def on_log(_level: int, text: bytes, _user: object) -> None:
        messages.append(text.decode(errors="replace"))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe.gguf"
        writer = GGUFWriter(str(probe), arch)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(probe).encode(), params)
        if model:  # cannot happen without a vocabulary, but free it if it does
            llama_cpp.llama_model_free(model)
            return True
    return "unknown model architecture" not in "".join(messages)
