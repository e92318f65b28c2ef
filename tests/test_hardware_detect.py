"""Hardware detection on this machine, and the `hearth doctor` report on simulated ones."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.hardware import builds as build_checks
from app.hardware import detect
from app.hardware.builds import detect_builds
from app.hardware.detect import (
    detect_cpu,
    detect_gpus,
    detect_hardware,
    detect_memory,
    metal_working_set,
    simd_from_flags,
)
from app.hardware.doctor import doctor_report, format_doctor_report
from app.hardware.profile import (
    AVX2_WARNING,
    Backend,
    BuildInfo,
    CpuInfo,
    GpuInfo,
    HardwareProfile,
    load_simulated_machines,
)
from app.humanize import GiB
from app.paths import hearth_paths

DATA = Path(__file__).parent / "data" / "hardware-profiles.json"

NVIDIA_MACHINES = {
    "windows-laptop-rtx3060-6gb-16gb",
    "windows-laptop-gtx1650-4gb-8gb",
    "linux-workstation-rtx4090-24gb-64gb",
}
MACS = {"macbook-air-m2-8gb", "macbook-pro-m3-max-64gb"}


def _machines() -> dict[str, HardwareProfile]:
    try:
        return load_simulated_machines()
    except ModuleNotFoundError:  # running from a source tree without `pip install -e .`
        return load_simulated_machines(DATA)


def _cpuinfo_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def _plain_profile(**changes: Any) -> HardwareProfile:
    base = HardwareProfile(
        os="linux",
        cpu=CpuInfo("Test CPU", "x86_64", 8, 16, ("avx", "avx2", "fma")),
        ram_total=32 * GiB,
        ram_available=24 * GiB,
    )
    return replace(base, **changes)


#: The test NVIDIA GPU: the first device the fake NVML (`_fake_pynvml`) reports.
RTX = GpuInfo(
    kind=Backend.CUDA,
    name="NVIDIA GeForce RTX 4090",
    vram_total=24 * GiB,
    vram_free=23 * GiB,
    compute_capability="8.9",
    driver="550.54.15",
)


# --- this machine -------------------------------------------------------------------------


def test_detect_hardware_gives_sane_numbers() -> None:
    hw = detect_hardware(include_builds=False)
    assert hw.os in ("linux", "macos", "windows")
    assert hw.cpu.logical_cores >= 1
    assert 1 <= hw.cpu.physical_cores <= hw.cpu.logical_cores
    assert hw.ram_total >= hw.ram_available > 0
    assert isinstance(hw.cpu.simd, tuple)
    assert all(isinstance(s, str) and s == s.lower() for s in hw.cpu.simd)
    assert hw.cpu.name
    assert hw.simulated is None
    assert hw.builds == BuildInfo()  # include_builds=False checks nothing


def test_memory_matches_psutil_order_of_magnitude() -> None:
    total, available = detect_memory()
    assert total > 256 * 1024**2
    assert 0 < available <= total


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64", reason="x86_64 Linux only"
)
def test_simd_follows_proc_cpuinfo() -> None:
    flags = _cpuinfo_flags()
    assert flags is not None
    simd = detect_cpu().simd
    for feature in ("avx", "avx2", "avx512f", "fma", "f16c"):
        assert (feature in simd) == (feature in flags), feature
    assert detect_cpu().arch == "x86_64"


def test_simd_from_linux_flags_normalises_arm_and_x86_names() -> None:
    arm = simd_from_flags("fp asimd evtstrm aes crc32 asimddp sve i8mm bf16", "arm64")
    assert arm == ("neon", "dotprod", "i8mm", "sve", "bf16")
    x86 = simd_from_flags("fpu pni ssse3 avx avx2 fma f16c avx512f AVX512BW", "x86_64")
    assert x86 == ("sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw")
    assert simd_from_flags("fpu sse sse2", "x86_64") == ()


@pytest.mark.skipif(
    platform.system() == "Darwin" or Path("/proc/driver/nvidia").exists(),
    reason="this machine may have a GPU",
)
def test_detect_gpus_is_empty_without_a_gpu() -> None:
    assert detect_gpus() == ()


def _fake_pynvml(fail_init: bool = False) -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    names = [b"NVIDIA GeForce RTX 4090", "NVIDIA RTX A2000"]
    mod.nvmlDeviceGetName = lambda h: names[h]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        total=(24 - 18 * h) * GiB, free=(23 - 18 * h) * GiB, used=GiB
    )
    mod.nvmlDeviceGetCudaComputeCapability = lambda h: (8, 9) if h == 0 else (8, 6)  # type: ignore[attr-defined]
    return mod


def test_nvidia_gpus_are_read_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    monkeypatch.setattr(detect, "_is_apple_silicon", lambda: False)
    gpus = detect_gpus()
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A2000"]
    assert gpus[0] == RTX
    assert gpus[1].compute_capability == "8.6"
    assert not gpus[1].unified


def test_missing_nvml_library_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    monkeypatch.setattr(detect, "_is_apple_silicon", lambda: False)
    assert detect_gpus() == ()


def test_apple_silicon_gpu_is_unified_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(fail_init=True))
    monkeypatch.setattr(detect, "_is_apple_silicon", lambda: True)
    monkeypatch.setattr(detect, "detect_memory", lambda: (16 * GiB, 9 * GiB))
    monkeypatch.setattr(detect, "_sysctl", lambda name: "Apple M2 Pro")
    (gpu,) = detect_gpus()
    assert gpu.kind == "metal" and gpu.unified and gpu.name == "Apple M2 Pro"
    assert (gpu.vram_total, gpu.vram_free) == (16 * GiB, 9 * GiB)
    assert gpu.recommended_working_set == metal_working_set(16 * GiB)


def test_metal_working_set_matches_macos_fractions() -> None:
    machines = _machines()
    for name in MACS:
        hw = machines[name]
        assert metal_working_set(hw.ram_total) == hw.gpus[0].recommended_working_set
    assert metal_working_set(36 * GiB) == int(36 * GiB * 2 / 3)
    assert metal_working_set(48 * GiB) == 36 * GiB


# --- builds -------------------------------------------------------------------------------


def test_detect_builds_reports_missing_modules_as_sentences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        build_checks,
        "_PROBE_MODULES",
        {"llama": "hearth_no_such_llama", "torch": "hearth_no_such_torch"},
    )
    builds = detect_builds(timeout=60)
    assert builds.llama_backends is None
    assert builds.torch_cuda is None and builds.torch_mps is None
    assert len(builds.errors) == 2
    assert any(e.startswith("llama-cpp-python is not installed") for e in builds.errors)
    assert any(e.startswith("PyTorch is not installed") for e in builds.errors)
    assert all(e.endswith(".") for e in builds.errors)
    assert builds.python_version == platform.python_version()


def test_detect_builds_survives_a_hanging_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        build_checks,
        "_probe_command",
        lambda kind: [sys.executable, "-c", "import time; time.sleep(30)"],
    )
    builds = detect_builds(timeout=1)
    assert builds.llama_backends is None and builds.torch_cuda is None
    assert len(builds.errors) == 2
    assert all("took longer than 1 s" in e for e in builds.errors)


def test_detect_builds_survives_a_crashing_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        build_checks, "_probe_command", lambda kind: [sys.executable, "-c", "import os; os.abort()"]
    )
    builds = detect_builds(timeout=30)
    assert builds.llama_backends is None
    assert len(builds.errors) == 2
    assert all("crashed" in e for e in builds.errors)


def test_frozen_app_checks_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("a frozen app must not start sys.executable")

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(build_checks.subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(
        build_checks,
        "_PROBE_MODULES",
        {"llama": "hearth_no_such_llama", "torch": "hearth_no_such_torch"},
    )
    builds = detect_builds()
    assert any("llama-cpp-python is not installed" in e for e in builds.errors)
    assert builds.llama_backends is None


def test_llama_backends_are_read_from_registries_libs_and_system_info() -> None:
    backends = build_checks._llama_backends
    assert backends({"gpu_offload": False, "lib_files": ["libggml-cuda.so"]}) == ()
    assert backends({"gpu_offload": True, "registries": ["CPU", "CUDA"]}) == ("cuda",)
    assert backends({"gpu_offload": True, "lib_files": ["ggml-vulkan.dll", "ggml-cpu.dll"]}) == (
        "vulkan",
    )
    info = "Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 |"
    assert backends({"gpu_offload": True, "system_info": info}) == ("metal",)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama_cpp")
def test_detect_builds_reads_the_real_llama_cpp() -> None:
    builds = detect_builds()
    assert builds.llama_version == importlib.metadata.version("llama-cpp-python")
    assert builds.llama_backends is not None, builds.errors
    assert builds.llama_system_info and "CPU" in builds.llama_system_info
    if importlib.util.find_spec("torch") is not None:
        assert builds.torch_version == importlib.metadata.version("torch")
        assert isinstance(builds.torch_cuda, bool) and isinstance(builds.torch_mps, bool)
    report = doctor_report(replace(detect_hardware(include_builds=False), builds=builds))
    assert report["llama"]["gpu_offload"] == bool(builds.llama_backends)
    json.dumps(report)


# --- the doctor report --------------------------------------------------------------------

REQUIRED = {
    "cpu": {"name", "arch", "physical_cores", "logical_cores", "simd"},
    "memory": {"total_bytes", "available_bytes"},
    "llama": {"version", "gpu_offload", "backends", "system_info"},
    "torch": {"version", "cuda", "mps"},
    "versions": {"hearth", "python", "os", "llama_cpp_python", "torch", "diffusers", "pyside6"},
    "recommended": {"backend", "reason"},
}
GPU_KEYS = {
    "kind",
    "name",
    "vram_total_bytes",
    "vram_free_bytes",
    "unified",
    "compute_capability",
    "driver",
    "recommended_working_set_bytes",
}


@pytest.mark.parametrize("name", sorted(_machines()))
def test_doctor_report_for_simulated_machines(name: str) -> None:
    import app

    hw = _machines()[name]
    report = doctor_report(hw)
    json.dumps(report)
    for key, subkeys in REQUIRED.items():
        assert subkeys <= set(report[key]), key
    assert isinstance(report["cpu"]["simd"], list)
    assert isinstance(report["llama"]["gpu_offload"], bool)
    assert isinstance(report["llama"]["backends"], list)
    assert isinstance(report["warnings"], list)
    assert report["versions"]["hearth"] == app.__version__
    assert report["simulated"] == name
    assert len(report["gpus"]) == len(hw.gpus)
    for gpu in report["gpus"]:
        assert set(gpu) >= GPU_KEYS
    assert report["memory"]["total_bytes"] == hw.ram_total

    expected = "cuda" if name in NVIDIA_MACHINES else "metal" if name in MACS else "cpu"
    assert report["recommended"]["backend"] == expected
    reason = report["recommended"]["reason"]
    assert reason.endswith(".") and reason.count(". ") == 0
    assert (AVX2_WARNING in report["warnings"]) == (name == "old-laptop-8gb-no-avx2")
    assert not any("CMAKE_ARGS" in w for w in report["warnings"])


def test_nvidia_gpu_with_cpu_only_llama_build_recommends_cpu_and_says_how_to_fix() -> None:
    hw = _plain_profile(gpus=(RTX,), builds=BuildInfo(llama_backends=(), torch_cuda=True))
    report = doctor_report(hw)
    assert report["recommended"]["backend"] == "cpu"
    assert "without CUDA" in report["recommended"]["reason"]
    assert report["llama"]["gpu_offload"] is False
    fixes = [w for w in report["warnings"] if 'CMAKE_ARGS="-DGGML_CUDA=on"' in w]
    assert len(fixes) == 1
    assert "./scripts/run --rebuild" in fixes[0] and RTX.name in fixes[0]


def test_nvidia_gpu_with_unchecked_builds_recommends_cuda() -> None:
    report = doctor_report(_plain_profile(gpus=(RTX,)))
    assert report["recommended"]["backend"] == "cuda"
    assert report["llama"]["gpu_offload"] is None
    assert report["warnings"] == []


def test_nvidia_gpu_with_cpu_only_torch_warns_about_images() -> None:
    builds = BuildInfo(llama_backends=("cuda",), torch_version="2.13.0+cpu", torch_cuda=False)
    report = doctor_report(_plain_profile(gpus=(RTX,), builds=builds))
    assert report["recommended"]["backend"] == "cuda"
    (warning,) = report["warnings"]
    assert "PyTorch (2.13.0+cpu) has no CUDA support" in warning


def test_text_report_has_every_section_and_sizes_in_gib() -> None:
    hw = _machines()["airgapped-lab-cpu-32gb"]
    text = format_doctor_report(doctor_report(hw))
    for section in (
        "Hearth",
        "System",
        "CPU",
        "Memory",
        "GPUs",
        "Builds",
        "Recommendation",
        "Warnings",
    ):
        assert f"\n{section}\n" in f"\n{text}", section
    assert "none found" in text
    assert "32.0 GiB" in text and "28.0 GiB" in text
    assert "airgapped-lab-cpu-32gb" in text


def test_text_report_lists_gpus_and_warnings() -> None:
    hw = _plain_profile(gpus=(RTX,), builds=BuildInfo(llama_backends=()))
    text = format_doctor_report(doctor_report(hw))
    assert "none found" not in text
    assert "NVIDIA GeForce RTX 4090" in text and "23.0 GiB free of 24.0 GiB" in text
    assert "8.9" in text and "550.54.15" in text
    assert "-DGGML_CUDA=on" in text
    assert "none (CPU-only build)" in text


def test_report_for_this_machine_is_json() -> None:
    report = doctor_report(detect_hardware(include_builds=False))
    assert json.loads(json.dumps(report))["cpu"]["logical_cores"] >= 1
    assert report["simulated"] is None
    assert "Hearth" in format_doctor_report(report)


@pytest.fixture
def probe_calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the build probe with a counted fake (llama.cpp 9.9, CPU only) on "build-A".

    Returns the list of probe calls (their timeouts), so a test can see when the cache
    answered instead.
    """
    calls: list[float] = []
    fake = {"llama": {"version": "9.9", "gpu_offload": False}, "torch": {"version": "1.0"}}

    def probe(timeout: float) -> dict:
        calls.append(timeout)
        return fake

    monkeypatch.setattr(build_checks, "_probe_in_subprocesses", probe)
    monkeypatch.setattr(build_checks, "_build_fingerprint", lambda: "build-A")
    return calls


def test_build_checks_are_cached_until_the_builds_change(
    probe_calls: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_checks.detect_builds(fresh=False).llama_version == "9.9"
    assert build_checks.detect_builds(fresh=False).llama_version == "9.9"
    assert len(probe_calls) == 1  # the second answer came from the cache
    build_checks.detect_builds(fresh=True)
    assert len(probe_calls) == 2  # doctor always checks again
    monkeypatch.setattr(build_checks, "_build_fingerprint", lambda: "build-B")  # reinstalled
    build_checks.detect_builds(fresh=False)
    assert len(probe_calls) == 3


def test_a_frozen_app_caches_its_in_process_checks_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # The installers' full edition would otherwise import torch at every `hearth chat`.
    calls: list[str] = []

    def probe(kind: str, module: str | None = None) -> dict:
        calls.append(kind)
        return {"version": "9.9", "gpu_offload": False} if kind == "llama" else {"version": "2"}

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("a frozen app must not start sys.executable")

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(build_checks.subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(build_checks, "_probe_in_process", probe)
    monkeypatch.setattr(build_checks, "_build_fingerprint", lambda: "frozen-build")
    first = build_checks.detect_builds(fresh=False)
    assert first.llama_version == "9.9" and len(calls) in (1, 2)  # torch too in the full edition
    once = len(calls)
    assert build_checks.detect_builds(fresh=False) == first
    assert len(calls) == once  # the cache answered
    build_checks.detect_builds(fresh=True)  # the doctor checks again
    assert len(calls) == 2 * once


def test_this_machine_reuses_the_cached_build_checks_until_asked_fresh(
    probe_calls: list[float],
) -> None:
    """The GUI and the CLI both plan on `this_machine()`: same builds, same verdicts."""
    first, second = detect.this_machine(), detect.this_machine()
    assert len(probe_calls) == 1
    assert first.builds == second.builds and first.builds.llama_backends == ()
    assert first.cpu == second.cpu and first.simulated is None
    assert hearth_paths().build_check_cache.is_file()
    detect.this_machine(fresh_builds=True)
    assert len(probe_calls) == 2
