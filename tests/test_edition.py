"""The chat-only edition, and a portable llama.cpp build's CPU modules (issue 14)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import edition as edition_module
from app.edition import NotInThisEdition
from app.hardware.llama_modules import (
    VARIANT_ENV,
    best_variant,
    cpu_modules,
    forget_loaded,
    gpu_modules,
    load_backend_modules,
    variant_of,
)


@pytest.fixture
def chat_edition(monkeypatch: pytest.MonkeyPatch) -> None:
    edition_module.edition.cache_clear()
    monkeypatch.setattr(edition_module, "_image_libraries_present", lambda: False)
    yield
    edition_module.edition.cache_clear()


def test_a_source_checkout_with_torch_is_the_full_edition() -> None:
    edition_module.edition.cache_clear()
    assert edition_module.edition() == "full" and edition_module.images_available()


def test_the_chat_edition_refuses_images_with_a_sentence_and_the_doctor_says_so(
    chat_edition: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli.main import main
    from app.hardware.profile import load_simulated_machines
    from app.sessions.image import ImageSession, ImageSettings
    from app.store import open_default_database

    assert edition_module.edition() == "chat"
    machine = load_simulated_machines()["airgapped-lab-cpu-32gb"]
    session = ImageSession(open_default_database(), hardware=machine)
    with pytest.raises(NotInThisEdition) as refused:
        session.prepare(None, ImageSettings(prompt="a red square"))
    session.unload()
    assert "not in this edition" in str(refused.value) and "full edition" in str(refused.value)

    assert main(["imagine", "a red square"]) != 0
    assert "not in this edition" in capsys.readouterr().err

    from app.hardware.doctor import doctor_report, format_doctor_report

    text = format_doctor_report(doctor_report(machine))
    assert "Edition:" in text and "chat only" in text and "not in this edition" in text


# --- a portable build's modules: a fake libggml and CPU modules, compiled here -------------

FAKE_GGML = r"""
#include <stdio.h>
#include <stdlib.h>
static FILE *log_file(void) { return fopen(getenv("FAKE_GGML_LOG"), "a"); }
void ggml_backend_load_all_from_path(const char *dir) {
    FILE *f = log_file(); fprintf(f, "all %s\n", dir); fclose(f);
}
void *ggml_backend_load(const char *path) {
    FILE *f = log_file(); fprintf(f, "one %s\n", path); fclose(f);
    return getenv("FAKE_GGML_REFUSE") ? NULL : (void *)1;
}
"""
FAKE_MODULE = "int ggml_backend_score(void) { return SCORE; }\n"


def _compile(source: str, out: Path, *defines: str) -> None:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", *defines, "-o", str(out), str(src)], check=True)
    src.unlink()


@pytest.fixture
def portable_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("gcc") is None or sys.platform != "linux":
        pytest.skip("needs gcc on Linux to build the fake ggml libraries")
    root = tmp_path / "site-packages" / "llama_cpp"
    lib = root / "lib"
    lib.mkdir(parents=True)
    _compile(FAKE_GGML, lib / "libggml.so")
    # What this CPU runs: x64 scores 1, haswell 3; "sapphirerapids" is beyond it (0).
    for variant, score in (("x64", 1), ("haswell", 3), ("sapphirerapids", 0)):
        _compile(FAKE_MODULE, lib / f"libggml-cpu-{variant}.so", f"-DSCORE={score}")
    monkeypatch.setenv("FAKE_GGML_LOG", str(tmp_path / "calls.log"))
    monkeypatch.delenv(VARIANT_ENV, raising=False)
    forget_loaded()
    yield root
    forget_loaded()


def test_a_native_build_has_no_modules_to_load(tmp_path: Path) -> None:
    (tmp_path / "llama_cpp" / "lib").mkdir(parents=True)
    (tmp_path / "llama_cpp" / "lib" / "libggml-cpu.so").write_bytes(b"")  # built in, not a variant
    forget_loaded()
    assert cpu_modules(tmp_path / "llama_cpp") == []
    assert load_backend_modules(str(tmp_path / "llama_cpp")) == ()


def test_a_portable_build_loads_its_modules_and_names_the_variant_this_cpu_gets(
    portable_tree: Path, tmp_path: Path
) -> None:
    assert sorted(variant_of(m) for m in cpu_modules(portable_tree)) == [
        "haswell",
        "sapphirerapids",
        "x64",
    ]
    assert load_backend_modules(str(portable_tree)) == ("haswell",)
    assert (tmp_path / "calls.log").read_text() == (
        f"one {portable_tree / 'lib' / 'libggml-cpu-haswell.so'}\n"
    )


def test_an_amx_module_is_never_picked_on_its_own_but_can_be_forced(
    portable_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A processor that reports AMX: ggml would score sapphirerapids highest, and its AMX
    # matrix multiply crashes on some such machines (virtual ones in particular).
    _compile(FAKE_MODULE, portable_tree / "lib" / "libggml-cpu-sapphirerapids.so", "-DSCORE=9")
    modules = cpu_modules(portable_tree)
    assert best_variant(modules) == "sapphirerapids"  # what ggml itself would load
    assert load_backend_modules(str(portable_tree)) == ("haswell",)
    log = tmp_path / "calls.log"
    assert log.read_text() == f"one {portable_tree / 'lib' / 'libggml-cpu-haswell.so'}\n"
    forget_loaded()
    log.unlink()
    monkeypatch.setenv(VARIANT_ENV, "sapphirerapids")
    assert load_backend_modules(str(portable_tree)) == ("sapphirerapids",)
    assert log.read_text() == f"one {portable_tree / 'lib' / 'libggml-cpu-sapphirerapids.so'}\n"


def test_when_the_chosen_module_will_not_load_ggml_picks(
    portable_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GGML_REFUSE", "1")
    assert load_backend_modules(str(portable_tree)) == ("haswell",)
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        f"one {portable_tree / 'lib' / 'libggml-cpu-haswell.so'}",
        f"all {portable_tree / 'lib'}",
    ]


def test_a_forced_variant_loads_only_that_module(
    portable_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIANT_ENV, "x64")
    assert load_backend_modules(str(portable_tree)) == ("x64",)
    assert (tmp_path / "calls.log").read_text() == (
        f"one {portable_tree / 'lib' / 'libggml-cpu-x64.so'}\n"
    )


def test_a_forced_variant_still_loads_the_cuda_add_on(
    portable_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CUDA add-on puts libggml-cuda.so beside the CPU modules; forcing a CPU variant
    # must not turn the GPU off (load_all would have loaded it too).
    _compile(
        "int ggml_backend_score(void) { return 0; }\n", portable_tree / "lib" / "libggml-cuda.so"
    )
    assert [m.name for m in gpu_modules(portable_tree)] == ["libggml-cuda.so"]
    assert "libggml-cuda.so" not in [m.name for m in cpu_modules(portable_tree)]
    monkeypatch.setenv(VARIANT_ENV, "x64")
    assert load_backend_modules(str(portable_tree)) == ("x64",)
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        f"one {portable_tree / 'lib' / 'libggml-cpu-x64.so'}",
        f"one {portable_tree / 'lib' / 'libggml-cuda.so'}",
    ]


def test_a_forced_variant_that_is_missing_or_refused_says_what_to_do(
    portable_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIANT_ENV, "avx9000")
    with pytest.raises(RuntimeError) as missing:
        load_backend_modules(str(portable_tree))
    assert "names no CPU module" in str(missing.value) and "haswell, sapphirerapids, x64" in str(
        missing.value
    )
    forget_loaded()
    monkeypatch.setenv(VARIANT_ENV, "sapphirerapids")
    monkeypatch.setenv("FAKE_GGML_REFUSE", "1")
    with pytest.raises(RuntimeError) as refused:
        load_backend_modules(str(portable_tree))
    assert "does not run on this processor" in str(refused.value)
    assert f"Unset {VARIANT_ENV}" in str(refused.value)
