"""The curated catalog: complete entries, published numbers that match real files, and a
computable verdict with a suggested quant that fits on every simulated machine."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from app.hardware.profile import (
    HardwareProfile,
    load_simulated_machines,
)
from app.hub.catalog import (
    CHAT_ARCH_FIELDS,
    CatalogEntryNotFoundError,
    CatalogError,
    catalog_entries,
    entry,
    fit_variants,
    load_catalog,
)
from app.hub.quants import GOOD_ENOUGH_BITS, quant_bits
from app.models.gguf import read_gguf_facts
from app.planner import FitVerdict
from app.planner.facts import ChatModelFacts, ImageModelFacts, load_reference_models

PROFILES = Path(__file__).parent / "data" / "hardware-profiles.json"
MACHINES: dict[str, HardwareProfile] = load_simulated_machines(PROFILES)
RAW = json.loads(files("app.resources").joinpath("catalog.json").read_text())


def test_every_entry_has_what_a_user_and_the_planner_need() -> None:
    assert RAW["sizes_are_approximate"] is True
    for raw in RAW["models"]:
        name = raw["name"]
        for key in ("title", "repo", "license", "description"):
            assert isinstance(raw[key], str) and raw[key].strip(), (name, key)
        assert "/" in raw["repo"], name
        assert len(raw["description"]) <= 110 and "\n" not in raw["description"], name
        assert raw["variants"], name
        for v in raw["variants"]:
            assert v["size_bytes"] > 0 and v["files"], (name, v)
        if raw["kind"] == "chat":
            arch = raw["architecture"]
            for key in CHAT_ARCH_FIELDS[1:]:
                assert isinstance(arch[key], int) and arch[key] > 0, (name, key)
            assert arch["head_count"] % arch["head_count_kv"] == 0, name
            for v in raw["variants"]:
                [file] = v["files"]
                assert file.endswith(".gguf") and v["quant"].lower() in file.lower(), (name, v)
            sizes = [v["size_bytes"] for v in raw["variants"]]
            assert sizes == sorted(sizes), f"{name}: variants go from small to large"
        else:
            [v] = raw["variants"]
            assert v["quant"] == "fp16" and "model_index.json" in v["files"]
            assert sum(v["component_bytes"].values()) == v["size_bytes"], name
            assert {"unet", "vae", "text_encoder"} <= set(v["component_bytes"]), name
            assert all(f.endswith(".fp16.safetensors") for f in v["files"][1:]), name
    assert load_catalog()  # the loader's own checks agree


def test_the_catalog_covers_the_models_people_ask_for() -> None:
    names = {e.name for e in catalog_entries()}
    for size in ("0.5b", "1.5b", "3b", "7b", "14b"):
        assert f"qwen2.5-{size}-instruct" in names
    assert {"llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "llama-3.1-8b-instruct"} <= names
    assert {"gemma-3-1b-it", "gemma-3-4b-it", "gemma-3-12b-it"} <= names
    assert {"mistral-7b-instruct-v0.3", "mistral-nemo-instruct-2407"} <= names
    assert {"phi-3.5-mini-instruct", "phi-4-mini-instruct"} <= names
    assert any("reasoning" in e.tags for e in catalog_entries("chat"))
    assert [e.name for e in catalog_entries("image")] == [
        "sd-1.5",
        "sd-turbo",
        "sdxl-turbo",
        "sdxl-base-1.0",
    ]


def test_published_numbers_agree_with_the_reference_models() -> None:
    reference = load_reference_models(PROFILES)
    pairs = [
        ("qwen2.5-1.5b-instruct", "qwen2.5-1.5b-instruct-q4_k_m"),
        ("llama-3.1-8b-instruct", "llama-3.1-8b-instruct-q4_k_m"),
    ]
    for catalog_name, ref_name in pairs:
        e = entry(catalog_name)
        facts = e.facts(e.variant("Q4_K_M"))
        ref = reference[ref_name]
        assert isinstance(facts, ChatModelFacts) and isinstance(ref, ChatModelFacts)
        for key in ("block_count", "embedding_length", "head_count", "head_count_kv"):
            assert getattr(facts, key) == getattr(ref, key), (catalog_name, key)
        assert abs(facts.file_size - ref.file_size) / ref.file_size < 0.15
    sd = entry("sd-1.5")
    sd_facts = sd.facts(sd.variants[0])
    assert isinstance(sd_facts, ImageModelFacts)
    assert sd_facts.component_bytes == reference["sd-1.5-fp16"].component_bytes  # type: ignore[union-attr]


def test_catalog_architecture_matches_a_real_qwen2_5_file(starter_gguf: Path) -> None:
    # The starter is Qwen2.5-Coder-1.5B: the same architecture as Qwen2.5-1.5B-Instruct.
    real = read_gguf_facts(starter_gguf)
    e = entry("qwen2.5-1.5b-instruct")
    listed = e.facts(e.variant("Q4_K_M"))
    assert isinstance(listed, ChatModelFacts)
    for key in CHAT_ARCH_FIELDS:
        assert getattr(listed, key) == getattr(real, key), key
    assert abs(listed.file_size - real.file_size) / real.file_size < 0.15


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_variant_has_a_verdict_and_the_suggestion_fits(machine: str) -> None:
    hw = MACHINES[machine]
    for e in catalog_entries():
        fits = fit_variants(e, hw)
        assert [f.variant for f in fits] == list(e.variants)
        for f in fits:
            assert isinstance(f.verdict, FitVerdict) and f.need_bytes > 0 and f.summary
        suggested = [f for f in fits if f.suggested]
        fitting = [f for f in fits if f.verdict.rank <= 1]
        if not fitting:
            assert suggested == [], (machine, e.name)
            continue
        [best] = suggested
        assert best.verdict.rank <= 1, (machine, e.name)
        # The one rule (app.hub.quants): Q4_K_M or better whenever one runs, and fully on
        # the GPU whenever a good quant fits there.
        good = [f for f in fitting if (quant_bits(f.quant) or 0) >= GOOD_ENOUGH_BITS]
        if good:
            assert (quant_bits(best.quant) or 0) >= GOOD_ENOUGH_BITS, (machine, e.name)
        if any(f.verdict is FitVerdict.FITS_GPU for f in good):
            assert best.verdict is FitVerdict.FITS_GPU, (machine, e.name)


def test_suggestions_follow_the_machine() -> None:
    def best(e_name: str, machine: str) -> str | None:
        fits = fit_variants(entry(e_name), MACHINES[machine])
        return next((f.variant.quant for f in fits if f.suggested), None)

    # A 24 GB GPU holds even the 8-bit 14B: take the quality.
    assert best("qwen2.5-14b-instruct", "linux-workstation-rtx4090-24gb-64gb") == "Q8_0"
    # A CPU-only lab machine: Q4_K_M, the usual balance of speed and quality in RAM.
    assert best("qwen2.5-7b-instruct", "airgapped-lab-cpu-32gb") == "Q4_K_M"
    # A 4 GB netbook cannot run a 14B at all, but a 1B model fits.
    assert best("qwen2.5-14b-instruct", "netbook-4gb") is None
    assert best("llama-3.2-1b-instruct", "netbook-4gb") is not None
    fits = fit_variants(entry("qwen2.5-14b-instruct"), MACHINES["netbook-4gb"])
    assert {f.verdict for f in fits} == {FitVerdict.WONT_FIT}


def test_entries_are_found_by_name_and_quant() -> None:
    e = entry("Qwen2.5-7B-Instruct")
    assert e.repo == "bartowski/Qwen2.5-7B-Instruct-GGUF"
    v = e.variant("q4_k_m")
    assert v.files == ("Qwen2.5-7B-Instruct-Q4_K_M.gguf",)
    assert v.library_name == "qwen2.5-7b-instruct-q4_k_m"
    with pytest.raises(CatalogEntryNotFoundError, match="no model called"):
        entry("gpt-5")
    with pytest.raises(CatalogEntryNotFoundError, match="Q4_K_M"):
        e.variant("Q1_XXS")


def test_a_damaged_catalog_file_is_reported(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(RAW))
    del broken["models"][0]["architecture"]["head_count_kv"]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(CatalogError, match="head_count_kv"):
        load_catalog(path)
    broken = json.loads(json.dumps(RAW))
    broken["models"][1]["variants"][0]["size_bytes"] = 0
    path.write_text(json.dumps(broken))
    with pytest.raises(CatalogError, match="positive size_bytes"):
        load_catalog(path)


def test_catalog_command_shows_the_best_quant_for_a_simulated_machine() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "models", "catalog", "--json", "--machine", "netbook-4gb"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["machine"] == "netbook-4gb"
    by_name = {m["name"]: m for m in report["models"]}
    assert by_name["qwen2.5-14b-instruct"]["suggested"] is None
    small = by_name["llama-3.2-1b-instruct"]
    [best] = [v for v in small["variants"] if v["suggested"]]
    assert best["quant"] == small["suggested"] and best["verdict"] == "fits in RAM"

    text = subprocess.run(
        [sys.executable, "-m", "app", "models", "catalog", "--kind", "image"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert text.returncode == 0, text.stderr
    assert "sdxl-turbo" in text.stdout and "qwen2.5" not in text.stdout
