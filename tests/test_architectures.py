"""A GGUF whose architecture the installed llama.cpp cannot run is refused at import and
plan, and listed as unusable (issue 10, case 4)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.gui.adapters.library_table import UNUSABLE, plan_library, verdict_text
from app.hardware import builds
from app.hardware.profile import load_simulated_machines
from app.models.gguf import read_gguf_facts
from app.models.library import register_model
from app.store import open_default_database
from app.store.library import ModelSource, list_models

CPU_32GB = load_simulated_machines()["airgapped-lab-cpu-32gb"]
REASON = "is a 'notarealarch' model, an architecture the installed llama.cpp"


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def unknown_gguf(tiny_gguf: Callable[..., Path]) -> Path:
    return tiny_gguf("foo.gguf", arch="notarealarch")


def test_common_architectures_are_found_in_the_library_without_asking_llama_cpp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds.llama_supports_architecture.cache_clear()

    def no_probe(arch: str) -> bool:
        raise AssertionError(f"{arch} should have been found in libllama's names")

    monkeypatch.setattr(builds, "_probe_architecture", no_probe)
    for arch in ("llama", "gemma3", "qwen2", "qwen3", "phi3", "mistral3", "deepseek2"):
        assert builds.llama_supports_architecture(arch) is True, arch
    builds.llama_supports_architecture.cache_clear()


def test_llama_cpp_itself_says_which_architectures_it_knows() -> None:
    assert builds._probe_architecture("notarealarch") is False
    assert builds._probe_architecture("llama") is True


def test_import_refuses_an_unknown_architecture_and_adds_nothing(unknown_gguf: Path) -> None:
    done = hearth("models", "import", str(unknown_gguf))
    assert done.returncode == 1
    assert f"error: foo.gguf {REASON} (llama-cpp-python 0.3.36) cannot run." in done.stderr
    assert "Pick a GGUF of an architecture llama.cpp runs" in done.stderr
    assert list_models(open_default_database()) == []
    listed = hearth("models", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_plan_refuses_an_unknown_architecture(unknown_gguf: Path) -> None:
    done = hearth("plan", str(unknown_gguf))
    assert done.returncode == 1 and REASON in done.stderr
    assert "fits" not in done.stdout


def test_a_library_model_of_an_unknown_architecture_is_listed_as_unusable(
    unknown_gguf: Path, tiny_gguf: Callable[..., Path]
) -> None:
    """As an older Hearth, which did not check, may have left it in the library."""
    facts = dataclasses.replace(read_gguf_facts(tiny_gguf("ok.gguf")), arch="notarealarch")
    db = open_default_database()
    register_model(db, "foo", unknown_gguf, facts, source=ModelSource.IMPORT, sha256=None)

    [row] = plan_library(CPU_32GB).models
    assert verdict_text(row) == UNUSABLE and row.problem and REASON in row.problem
    listed = hearth("models", "list")
    assert "unusable: unsupported architecture" in listed.stdout
