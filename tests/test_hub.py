"""Hub search and file listing against a real HTTP server on 127.0.0.1 that speaks the Hub API."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.hardware.profile import HardwareProfile, load_simulated_machines
from app.hub import credentials as tokens
from app.hub.config import hub_config, save_hub_settings
from app.hub.errors import (
    GatedRepo,
    HubUnreachableError,
    NoGgufFilesError,
    OfflineError,
    RepoNotFound,
    RevisionNotFound,
)
from app.hub.quants import GgufFile, GgufVariant, parse_quant, suggest_variant
from app.hub.search import list_gguf_files, search_models
from app.planner import FitVerdict, LoadPlan
from app.store import open_default_database
from tests.hubserver import HubFile, HubRepo, HubServer, point_hub_client_at, running_hub

if TYPE_CHECKING:
    from tests.conftest import FakeKeyring

MACHINES = load_simulated_machines()
CPU_32GB = MACHINES["airgapped-lab-cpu-32gb"]
RTX4090 = MACHINES["linux-workstation-rtx4090-24gb-64gb"]
NETBOOK = MACHINES["netbook-4gb"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with running_hub(tmp_path / "hub-files", lifetime_s=120) as server:
        point_hub_client_at(server, monkeypatch, tmp_path)
        yield server


# --- file names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "quant"),
    [
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("Llama-3.2-1B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("Meta-Llama-3.1-8B-Instruct.Q8_0.gguf", "Q8_0"),
        ("gemma-3-270m-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Qwen2.5-72B-Instruct-Q5_K_S-00001-of-00002.gguf", "Q5_K_S"),
        ("Q4_K_M/Qwen3-235B-Q4_K_M-00003-of-00005.gguf", "Q4_K_M"),
        ("phi-4-bf16.gguf", "BF16"),
        ("tinyllama-fp16.gguf", "F16"),
        ("model-Q4_0_4_4.gguf", "Q4_0_4_4"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Qwen2.5-7B-Instruct.gguf", None),
    ],
)
def test_quant_is_read_from_the_file_name(filename: str, quant: str | None) -> None:
    assert parse_quant(filename) == quant


# --- search -------------------------------------------------------------------------------


def test_search_lists_gguf_repos_most_downloaded_first(hub: HubServer) -> None:
    found = search_models("chat", limit=10, hardware=CPU_32GB)

    # Only repos with GGUF files, sorted by downloads; the safetensors repo is left out.
    assert [m.repo for m in found] == [
        "hearth-test/Tiny-Chat-GGUF",
        "hearth-test/Gated-Chat-GGUF",
        "hearth-test/Split-Chat-GGUF",
    ]
    tiny = found[0]
    assert (tiny.downloads, tiny.likes) == (1200, 34)
    assert tiny.updated is not None and tiny.updated.isoformat().startswith("2025-01-15")
    assert found[1].gated and not tiny.gated
    # The Hub's GGUF metadata gives a parameter count, so a best fit is estimated from it.
    assert tiny.parameters == 1_500_000_000 and tiny.architecture == "llama"
    assert tiny.best_fit is not None and tiny.best_fit.estimated
    assert tiny.best_fit.quant == "Q4_K_M" and tiny.best_fit.verdict is FitVerdict.FITS_RAM
    assert found[2].best_fit is None  # no metadata on the Hub: nothing to estimate from
    listing = hub.requests("/api/models", method="GET")[0]
    assert listing.query["filter"] == ["gguf"] and listing.query["search"] == ["chat"]


def test_search_best_fit_depends_on_the_machine(hub: HubServer) -> None:
    (workstation,) = search_models("tiny", hardware=RTX4090)
    (netbook,) = search_models("tiny", hardware=NETBOOK)

    assert workstation.best_fit is not None and netbook.best_fit is not None
    assert workstation.best_fit.verdict is FitVerdict.FITS_GPU
    assert netbook.best_fit.size_bytes < workstation.best_fit.size_bytes


def test_search_limit_is_sent_and_respected(hub: HubServer) -> None:
    found = search_models("", limit=1, hardware=CPU_32GB)

    assert len(found) == 1
    assert hub.requests("/api/models")[0].query["limit"] == ["1"]


# --- files --------------------------------------------------------------------------------


def test_split_gguf_is_one_variant_with_all_parts_and_exact_sizes(hub: HubServer) -> None:
    repo = hub.repos["hearth-test/Split-Chat-GGUF"]
    served = {f.path: f for f in repo.files}

    variants = list_gguf_files(repo.repo_id, hardware=CPU_32GB)

    assert [v.quant for v in variants] == ["Q4_K_M", "Q8_0"]  # smallest first
    split = variants[0]
    assert split.split and split.complete
    assert [f.path for f in split.files] == [
        "split-chat-Q4_K_M-00001-of-00002.gguf",
        "split-chat-Q4_K_M-00002-of-00002.gguf",
    ]
    assert split.size == sum(served[f.path].size for f in split.files)
    for f in split.files:
        assert f.size == len(served[f.path].data)
        assert f.sha256 == hashlib.sha256(served[f.path].data).hexdigest()
    assert split.name == "split-chat-q4_k_m"
    assert split.revision == repo.commit  # downloads are pinned to the commit listed
    assert split.license == "mit"
    assert all(isinstance(v.verdict, FitVerdict) for v in variants)
    assert "file size" in split.facts_basis  # no GGUF metadata on the Hub for this repo


def test_files_suggest_q4_k_m_in_ram_and_the_largest_good_quant_on_a_gpu(
    hub: HubServer,
) -> None:
    variants = list_gguf_files("hearth-test/Tiny-Chat-GGUF", hardware=CPU_32GB)
    on_gpu = list_gguf_files("hearth-test/Tiny-Chat-GGUF", hardware=RTX4090)

    assert {v.quant for v in variants} == {"IQ4_XS", "Q4_K_M", "Q8_0", "F16"}  # not README.md
    assert [v.size for v in variants] == sorted(v.size for v in variants)
    suggested = [v for v in variants if v.suggested]
    # From RAM every byte is read per token: Q4_K_M, not the biggest that fits.
    assert [v.quant for v in suggested] == ["Q4_K_M"]
    assert all(v.verdict is FitVerdict.FITS_RAM for v in variants)
    # On a 24 GB GPU quality is free: the largest up to Q8_0 (not F16).
    assert [v.quant for v in on_gpu if v.suggested] == ["Q8_0"]
    assert all(v.verdict is FitVerdict.FITS_GPU for v in on_gpu)
    assert all(v.sha256_known for v in variants)
    assert "GGUF metadata" in variants[0].facts_basis
    as_json = suggested[0].to_dict()
    assert as_json["verdict"] == "fits in RAM" and as_json["suggested"] is True


def _variant(quant: str, verdict: FitVerdict, base: LoadPlan) -> GgufVariant:
    size = {"Q2_K": 3, "Q3_K_M": 4, "Q4_K_M": 5, "Q6_K": 7, "Q8_0": 9, "F16": 16}[quant]
    return GgufVariant(
        repo="x/y",
        revision="main",
        quant=quant,
        name=f"y-{quant.lower()}",
        files=(GgufFile(f"y-{quant}.gguf", size * 10**9, None),),
        plan=replace(base, verdict=verdict),
        facts_basis="test",
    )


@pytest.fixture
def base_plan(hub: HubServer) -> LoadPlan:
    return list_gguf_files("hearth-test/Tiny-Chat-GGUF", hardware=CPU_32GB)[0].plan


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        # Fully on the GPU beats a bigger quant that only runs split.
        ({"Q8_0": "split", "Q6_K": "split", "Q4_K_M": "gpu", "Q3_K_M": "gpu"}, "Q4_K_M"),
        # ...but not at the cost of going below Q4_K_M: split keeps most layers on the GPU.
        ({"Q4_K_M": "split", "Q3_K_M": "gpu", "Q2_K": "gpu"}, "Q4_K_M"),
        # Q4_K_M or better in RAM beats a lower quant on the GPU; in RAM, the smallest
        # good one (Q4_K_M) rather than the biggest.
        ({"Q8_0": "ram", "Q4_K_M": "ram", "Q3_K_M": "gpu"}, "Q4_K_M"),
        ({"Q8_0": "ram", "Q6_K": "split"}, "Q6_K"),
        # Above Q8_0 only when nothing smaller is good enough.
        ({"F16": "gpu", "Q8_0": "gpu", "Q4_K_M": "gpu"}, "Q8_0"),
        ({"F16": "gpu", "Q2_K": "gpu"}, "F16"),
        # Tight or won't fit is never suggested; below Q4_K_M is the last resort.
        ({"Q4_K_M": "tight", "Q3_K_M": "ram", "Q2_K": "ram"}, "Q3_K_M"),
        ({"Q4_K_M": "wont", "Q2_K": "tight"}, None),
    ],
)
def test_suggestion_prefers_gpu_then_q4_k_m_or_better(
    offer: dict[str, str], expected: str | None, base_plan: LoadPlan
) -> None:
    verdicts = {
        "gpu": FitVerdict.FITS_GPU,
        "split": FitVerdict.FITS_SPLIT,
        "ram": FitVerdict.FITS_RAM,
        "tight": FitVerdict.TIGHT,
        "wont": FitVerdict.WONT_FIT,
    }
    variants = [_variant(q, verdicts[v], base_plan) for q, v in offer.items()]

    best = suggest_variant(variants)

    assert (best.quant if best else None) == expected


@pytest.mark.parametrize(
    "catalog_name", ["qwen2.5-7b-instruct", "gemma-3-12b-it", "qwen2.5-0.5b-instruct"]
)
def test_catalog_and_files_suggest_the_same_quant_for_the_same_repo(
    hub: HubServer, catalog_name: str
) -> None:
    from app.hub.catalog import entry, fit_variants

    # The catalog entry's repo on the Hub, listing its files at the catalog's sizes.
    curated = entry(catalog_name)
    listed = [HubFile(v.files[0], b"GGUF", listed_size=v.size_bytes) for v in curated.variants]
    hub.add(HubRepo(curated.repo, listed, downloads=10))

    picks = {}
    for name, machine in MACHINES.items():
        fits = fit_variants(curated, machine)
        variants = list_gguf_files(curated.repo, hardware=machine)

        assert [v.quant for v in variants] == [f.quant.upper() for f in fits], name
        assert [v.verdict for v in variants] == [f.verdict for f in fits], name
        from_catalog = next((f.quant.upper() for f in fits if f.suggested), None)
        from_files = next((v.quant for v in variants if v.suggested), None)
        assert from_files == from_catalog, name
        picks[name] = from_files
    # The machines differ enough that the rule has real choices to make.
    assert len(set(picks.values())) > 1, picks


def test_a_big_model_on_a_small_machine_gets_honest_verdicts(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Tiny repo claims 1.5B parameters; on a 4 GB netbook with 2 GB free the planner
    # must not call every quant "fits" just because the test files are small.
    tiny_machine: HardwareProfile = replace(NETBOOK, ram_available=300 * 1024**2)
    variants = list_gguf_files("hearth-test/Tiny-Chat-GGUF", hardware=tiny_machine)

    assert all(v.verdict in (FitVerdict.TIGHT, FitVerdict.WONT_FIT) for v in variants)
    assert not any(v.suggested for v in variants)


def test_repo_without_gguf_files_says_so(hub: HubServer) -> None:
    with pytest.raises(NoGgufFilesError) as caught:
        list_gguf_files("hearth-test/Tiny-Chat-safetensors", hardware=CPU_32GB)

    assert "has no GGUF files" in caught.value.cause
    assert "hearth models search" in caught.value.remedy


def test_unknown_repo_and_revision_are_clear_errors(hub: HubServer) -> None:
    with pytest.raises(RepoNotFound) as missing:
        list_gguf_files("nobody/Nothing-GGUF", hardware=CPU_32GB)
    assert "no model repository called nobody/Nothing-GGUF" in missing.value.cause

    with pytest.raises(RevisionNotFound) as revision:
        list_gguf_files("hearth-test/Tiny-Chat-GGUF", "v9", hardware=CPU_32GB)
    assert "'v9'" in revision.value.cause


def test_malformed_repo_name_is_refused_before_any_request(hub: HubServer) -> None:
    with pytest.raises(RepoNotFound) as caught:
        list_gguf_files("../etc/passwd", hardware=CPU_32GB)

    assert "publisher/name" in caught.value.remedy
    assert hub.log == []


def test_gated_repo_lists_its_files_marked_gated(hub: HubServer) -> None:
    (variant,) = list_gguf_files("hearth-test/Gated-Chat-GGUF", hardware=CPU_32GB)

    assert variant.gated and variant.license == "llama3.1"


# --- offline, endpoint, token ---------------------------------------------------------------


def test_offline_mode_fails_fast_without_a_single_request(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(OfflineError) as search:
        search_models("tiny", hardware=CPU_32GB)
    with pytest.raises(OfflineError):
        list_gguf_files("hearth-test/Tiny-Chat-GGUF", hardware=CPU_32GB)

    assert "offline mode (HF_HUB_OFFLINE=1)" in search.value.cause
    assert "hearth models import" in search.value.remedy
    assert hub.log == []


def test_offline_setting_applies_unless_the_environment_says_otherwise(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_hub_settings(open_default_database(), offline=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    with pytest.raises(OfflineError) as caught:
        search_models("tiny", hardware=CPU_32GB)
    assert "Settings" in caught.value.cause
    assert hub.log == []

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the environment wins over the setting
    assert search_models("tiny", hardware=CPU_32GB)


def test_endpoint_comes_from_settings_when_the_environment_has_none(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    save_hub_settings(open_default_database(), endpoint=hub.url + "/")

    assert hub_config().endpoint == hub.url
    assert [m.repo for m in search_models("split", hardware=CPU_32GB)] == [
        "hearth-test/Split-Chat-GGUF"
    ]


def test_unreachable_hub_is_an_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    with pytest.raises(HubUnreachableError) as caught:
        search_models("tiny", hardware=CPU_32GB)

    assert isinstance(caught.value, OfflineError)
    assert f"127.0.0.1:{port}" in caught.value.cause


def test_token_is_stored_in_a_private_file_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")
    secret = "hf_" + "S3cr3tT0kenValue" * 2

    saved = tokens.save_token(f"  {secret}\n")

    path = tokens.token_file()
    assert saved.where == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret not in saved.masked and saved.masked.startswith("hf_")
    assert tokens.load_token() == secret
    assert secret not in repr(hub_config())  # the config never shows it
    assert hub_config().token == secret
    assert tokens.delete_token() and tokens.load_token() is None and not path.exists()


def test_an_empty_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")
    with pytest.raises(tokens.TokenStoreError):
        tokens.save_token("   ")
    assert not tokens.token_file().exists()


def test_gated_error_for_a_refused_token_names_the_token(hub: HubServer) -> None:
    from app.hub.errors import hub_error

    class FakeResponse:
        status_code = 403

    class Refused(Exception):
        response = FakeResponse()

    config = replace(hub_config(), token="hf_wrongwrongwrongwrong")
    error = hub_error(Refused("403"), config, repo="a/b", filename="b.gguf")

    assert isinstance(error, GatedRepo)
    assert "token" in error.cause and "hearth models login" in error.remedy
    assert "hf_wrong" not in str(error)


def test_token_goes_to_a_working_keyring_and_not_to_a_file(fake_keyring: FakeKeyring) -> None:
    secret = "hf_" + "KeyringToken" * 2

    saved = tokens.save_token(secret)

    assert saved.where == "the OS keyring (FakeRing)"
    assert list(fake_keyring.values.values()) == [secret]
    assert not tokens.token_file().exists()
    assert tokens.load_token() == secret
    assert tokens.delete_token() and fake_keyring.values == {}
