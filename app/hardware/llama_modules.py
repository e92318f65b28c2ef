"""Load a portable llama.cpp build's backend modules (one CPU module per x86 level, CUDA...).

A build made with `-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON` (the installers' build,
so that no laptop dies of SIGILL on an instruction its CPU lacks) has no CPU code in
libggml itself: `libggml-cpu-<level>.so` modules sit beside it (in the installers) or in
`site-packages/bin` (llama-cpp-python 0.3.36's wheel), and llama-cpp-python never loads
them. `load_backend_modules()` asks ggml to load the best one for this CPU, plus any GPU
module there, before the first model loads. A normal (native) build has none: nothing to do.

`HEARTH_LLAMA_CPU_VARIANT=x64` (or haswell, skylakex...) loads that CPU module instead of
the best one: the way to check that a plain x86-64 machine still chats, or to step around a
bad variant. GPU modules beside it (the CUDA add-on's `ggml-cuda`) are still loaded.

Left alone, ggml would load the best-scoring CPU module. Hearth loads the best one without
Intel AMX instead (`AMX_VARIANTS` says why).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

VARIANT_ENV = "HEARTH_LLAMA_CPU_VARIANT"

if sys.platform == "win32":
    _GGML, _CPU_GLOB, _SUFFIX = "ggml.dll", "ggml-cpu*.dll", ".dll"
elif sys.platform == "darwin":
    _GGML, _CPU_GLOB, _SUFFIX = "libggml.dylib", "libggml-cpu*.so", ".so"
else:
    _GGML, _CPU_GLOB, _SUFFIX = "libggml.so", "libggml-cpu*.so", ".so"


def module_dirs(llama_cpp_dir: Path) -> list[Path]:
    """Where a portable build keeps its modules: beside libllama, or site-packages/bin."""
    lib = llama_cpp_dir / "lib"
    return [d for d in (lib, llama_cpp_dir.parent / "bin") if d.is_dir()]


def cpu_modules(llama_cpp_dir: Path) -> list[Path]:
    """The CPU variant modules of a portable build (empty for a native build)."""
    found: list[Path] = []
    for folder in module_dirs(llama_cpp_dir):
        found += sorted(p for p in folder.glob(_CPU_GLOB) if p.is_file() and "ggml-cpu-" in p.name)
    return found


#: CPU modules with Intel AMX (tile matrix) code, which Hearth never picks on its own. ggml's
#: AMX matrix multiply crashes on some machines whose processor reports AMX, virtual
#: machines in particular: SIGILL or SIGSEGV at the first prompt on this project's build
#: machine (a virtualised Sapphire Rapids), as in ggml-org/llama.cpp#20824. The next module
#: down (zen4, cooperlake, icelake: AVX-512 with VNNI and BF16) runs there; the cost is
#: AMX's faster prompt reading on machines where it works. `HEARTH_LLAMA_CPU_VARIANT=
#: sapphirerapids` still loads it.
AMX_VARIANTS = frozenset({"sapphirerapids"})

#: GPU backend modules a portable build (or an add-on such as the CUDA one) may put beside
#: the CPU modules.
GPU_MODULES = ("cuda", "vulkan", "hip", "sycl", "opencl", "metal", "musa")


def gpu_modules(llama_cpp_dir: Path) -> list[Path]:
    """The GPU backend modules beside a portable build's CPU modules (the CUDA add-on)."""
    names = {f"{prefix}ggml-{gpu}{_SUFFIX}" for gpu in GPU_MODULES for prefix in ("lib", "")}
    return [
        p
        for folder in module_dirs(llama_cpp_dir)
        for p in sorted(folder.iterdir())
        if p.name in names
    ]


def variant_of(module: Path) -> str:
    """`libggml-cpu-haswell.so` -> "haswell"."""
    return module.name.split(".")[0].split("ggml-cpu-", 1)[-1]


_loaded: dict[str, tuple[str, ...]] = {}


def load_backend_modules(llama_cpp_dir: str, ggml: Any = None) -> tuple[str, ...]:
    """Load the modules once per process; returns the CPU variant in use (() if native).

    `ggml` is the loaded libllama (`llama_cpp.llama_cpp._lib`): looked up through it, ggml's
    functions are those of the very libggml instance libllama uses. A separate dlopen of
    libggml.so by path can map a second copy (the wheel ships copies, not links), whose
    backend registry libllama never sees.

    Raises RuntimeError with a sentence when a forced variant is missing or will not load.
    """
    if llama_cpp_dir in _loaded:
        return _loaded[llama_cpp_dir]
    root = Path(llama_cpp_dir)
    modules = cpu_modules(root)
    if not modules:
        _loaded[llama_cpp_dir] = ()
        return ()
    if ggml is None:
        ggml = ctypes.CDLL(str(root / "lib" / _GGML))
    load_one = ggml.ggml_backend_load
    load_one.restype = ctypes.c_void_p
    load_one.argtypes = [ctypes.c_char_p]
    forced = os.environ.get(VARIANT_ENV, "").strip()
    if forced:
        match = [m for m in modules if variant_of(m) == forced]
        if not match:
            names = ", ".join(sorted(variant_of(m) for m in modules))
            raise RuntimeError(
                f"{VARIANT_ENV}={forced} names no CPU module of this llama.cpp build "
                f"(it has: {names}). Unset it, or name one of those."
            )
        if not load_one(os.fsencode(match[0])):
            raise RuntimeError(
                f"The llama.cpp CPU module {match[0].name} does not run on this processor. "
                f"Unset {VARIANT_ENV} to let Hearth pick the one that does."
            )
        chosen: str | None = forced
    else:
        # ggml's own choice (ggml_backend_load_all_from_path) is the highest score, AMX
        # included; Hearth takes the highest score without AMX (AMX_VARIANTS).
        chosen = best_variant(modules, skip=AMX_VARIANTS)
        path = next((m for m in modules if variant_of(m) == chosen), None)
        if path is None or not load_one(os.fsencode(path)):
            load_all = ggml.ggml_backend_load_all_from_path  # let ggml pick, as a last resort
            load_all.argtypes = [ctypes.c_char_p]
            load_all.restype = None
            load_all(os.fsencode(modules[0].parent))
            chosen = best_variant(modules)
    for gpu in gpu_modules(root):  # a GPU that will not load leaves the CPU to do the work
        load_one(os.fsencode(gpu))
    _loaded[llama_cpp_dir] = (chosen,) if chosen else ()
    return _loaded[llama_cpp_dir]


def forget_loaded() -> None:
    """Forget what was loaded (tests that build fake trees)."""
    _loaded.clear()


def best_variant(modules: list[Path], skip: frozenset[str] = frozenset()) -> str | None:
    """The highest `ggml_backend_score()` (0: this CPU lacks it), leaving out `skip`.

    With nothing skipped, this is the variant ggml itself would pick.
    """
    scored: list[tuple[int, str]] = []
    for module in modules:
        if variant_of(module) in skip:
            continue
        try:
            score = ctypes.CDLL(str(module)).ggml_backend_score
        except (OSError, AttributeError):
            continue
        score.restype = ctypes.c_int
        score.argtypes = []
        value = int(score())
        if value > 0:
            scored.append((value, variant_of(module)))
    return max(scored)[1] if scored else None
