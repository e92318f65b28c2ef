"""Every simulated machine × model case in tests/data/hardware-profiles.json gets a sane plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.hardware.profile import load_simulated_machines
from app.planner import FitVerdict, LoadSettings, plan_image_load, plan_load
from app.planner.facts import ChatModelFacts, ImageModelFacts, load_reference_models

DATA = Path(__file__).parent / "data" / "hardware-profiles.json"
CASES = json.loads(DATA.read_text())["cases"]
MACHINES = load_simulated_machines(DATA)
MODELS = load_reference_models(DATA)


def _case_id(case: dict) -> str:
    return f"{case['machine']}+{case['model']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_plan_satisfies_expectations(case: dict) -> None:
    hw = MACHINES[case["machine"]]
    model = MODELS[case["model"]]
    expect = case["expect"]
    if isinstance(model, ChatModelFacts):
        plan = plan_load(hw, model, LoadSettings(n_ctx=case.get("n_ctx")))
        if "backend" in expect:
            assert plan.backend.value == expect["backend"], plan.reasons
        if "gpu_layers" in expect:
            assert plan.gpu_layers_mode == expect["gpu_layers"], plan.reasons
            if expect["gpu_layers"] == "some":
                assert 0 < plan.gpu_layers < plan.total_layers
        if "threads" in expect:
            assert plan.threads == expect["threads"]
        if "warns_about" in expect:
            assert any(expect["warns_about"] in w.lower() for w in plan.warnings), plan.warnings
        verdict = plan.verdict
        assert plan.reasons, "every plan explains itself"
    else:
        assert isinstance(model, ImageModelFacts)
        image_plan = plan_image_load(hw, model)
        if "device" in expect:
            assert image_plan.device == expect["device"], image_plan.reasons
        if "dtype" in expect:
            allowed = expect["dtype"] if isinstance(expect["dtype"], list) else [expect["dtype"]]
            assert image_plan.dtype in allowed
        if "memory_mode" in expect:
            assert image_plan.memory_mode.value in expect["memory_mode"], image_plan.reasons
        verdict = image_plan.verdict
    if "verdict" in expect:
        assert verdict.value in expect["verdict"]


def test_every_machine_and_model_gets_a_plan_with_numbers() -> None:
    for hw in MACHINES.values():
        for model in MODELS.values():
            if isinstance(model, ChatModelFacts):
                plan = plan_load(hw, model)
                assert plan.estimate.total == plan.estimate.gpu_bytes + plan.estimate.cpu_bytes
                assert plan.estimate.weights >= model.file_size
                assert plan.n_ctx <= model.context_length
                assert plan.threads == hw.cpu.physical_cores
            else:
                image_plan = plan_image_load(hw, model)
                assert image_plan.weights_bytes > 0
                assert image_plan.verdict in FitVerdict


def test_auto_context_prefers_gpu_over_a_longer_context() -> None:
    hw = MACHINES["windows-laptop-rtx3060-6gb-16gb"]
    llama8b = MODELS["llama-3.1-8b-instruct-q4_k_m"]
    assert isinstance(llama8b, ChatModelFacts)
    long = plan_load(hw, llama8b, LoadSettings(n_ctx=8192))
    auto = plan_load(hw, llama8b)
    assert long.verdict == FitVerdict.FITS_SPLIT
    assert auto.verdict.rank <= long.verdict.rank
    assert auto.n_ctx <= 8192
    if auto.n_ctx < 8192:
        assert "8192" in auto.reasons[0]


def test_more_context_never_needs_less_memory() -> None:
    hw = MACHINES["airgapped-lab-cpu-32gb"]
    model = MODELS["llama-3.1-8b-instruct-q4_k_m"]
    assert isinstance(model, ChatModelFacts)
    totals = [
        plan_load(hw, model, LoadSettings(n_ctx=n)).estimate.total for n in (2048, 8192, 32768)
    ]
    assert totals == sorted(totals) and totals[0] < totals[-1]
    # KV cache for llama-3.1-8b: 32 blocks x 8 KV heads x 256 (K+V) x 2 bytes = 128 KiB/token.
    kv = [plan_load(hw, model, LoadSettings(n_ctx=n)).estimate.kv_cache for n in (2048, 8192)]
    assert kv[1] - kv[0] == 6144 * 32 * 8 * 256 * 2


def test_forcing_cpu_on_a_gpu_machine_plans_cpu() -> None:
    hw = MACHINES["linux-workstation-rtx4090-24gb-64gb"]
    model = MODELS["qwen2.5-1.5b-instruct-q4_k_m"]
    assert isinstance(model, ChatModelFacts)
    plan = plan_load(hw, model, LoadSettings(n_ctx=4096, gpu_layers=0))
    assert plan.backend.value == "cpu" and plan.gpu_layers == 0
    assert plan.verdict == FitVerdict.FITS_RAM


def test_gpu_without_matching_llama_build_falls_back_to_cpu_and_says_how_to_fix() -> None:
    from dataclasses import replace

    hw = MACHINES["windows-laptop-rtx3060-6gb-16gb"]
    cpu_build = replace(hw, builds=replace(hw.builds, llama_backends=()))
    model = MODELS["qwen2.5-1.5b-instruct-q4_k_m"]
    assert isinstance(model, ChatModelFacts)
    plan = plan_load(cpu_build, model, LoadSettings(n_ctx=4096))
    assert plan.backend.value == "cpu"
    assert any("GGML_CUDA" in w for w in plan.warnings)


def test_a_bigger_quant_never_looks_better_than_a_smaller_one() -> None:
    """The repacked copy of Q4 weights counts in RSS but its source pages are reclaimable,
    so Q4_K_M must not rank below a larger Q5_K_M/Q6_K on a tight machine."""
    from dataclasses import replace

    base = MODELS["qwen2.5-1.5b-instruct-q4_k_m"]
    assert isinstance(base, ChatModelFacts)
    sizes = {"Q4_K_M": 1.0, "Q5_K_M": 1.15, "Q6_K": 1.32, "Q8_0": 1.7}
    for hw in MACHINES.values():
        ranks = []
        for quant, scale in sizes.items():
            facts = replace(base, quantization=quant, file_size=int(base.file_size * scale))
            plan = plan_load(hw, facts, LoadSettings(n_ctx=4096, gpu_layers=0))
            ranks.append(plan.verdict.rank)
            assert plan.estimate.cpu_need <= plan.estimate.cpu_bytes
        assert ranks == sorted(ranks), (hw.simulated, ranks)


def test_plans_serialise_with_plain_words_for_their_choices() -> None:
    """`hearth plan --json` and the worker pipe read the enum choices as their words."""
    for hw in MACHINES.values():
        for model in MODELS.values():
            if isinstance(model, ChatModelFacts):
                data = json.loads(json.dumps(plan_load(hw, model).to_dict()))
                assert data["gpu_layers_mode"] in {"all", "some", "none"}
                assert data["backend"] in {"cuda", "metal", "cpu"}
                assert data["estimate"]["total"] > 0
            else:
                data = json.loads(json.dumps(plan_image_load(hw, model).to_dict()))
                assert data["device"] in {"cuda", "mps", "cpu"}
                assert data["dtype"] in {"float16", "bfloat16", "float32"}
            assert data["verdict"] in {v.value for v in FitVerdict}
            assert type(data["verdict"]) is str


def test_planner_and_doctor_give_the_same_rebuild_advice() -> None:
    from dataclasses import replace

    from app.hardware.doctor import doctor_warnings

    hw = MACHINES["linux-workstation-rtx4090-24gb-64gb"]
    cpu_build = replace(hw, builds=replace(hw.builds, llama_backends=()))
    model = MODELS["qwen2.5-1.5b-instruct-q4_k_m"]
    assert isinstance(model, ChatModelFacts)
    (planner_warning,) = plan_load(cpu_build, model).warnings
    doctor_warning = next(w for w in doctor_warnings(cpu_build) if "GGML_CUDA" in w)
    fix = 'Rebuild it with CMAKE_ARGS="-DGGML_CUDA=on" ./scripts/run --rebuild.'
    assert planner_warning.endswith(fix) and doctor_warning.endswith(fix)
    assert planner_warning.startswith(f"{hw.gpus[0].name} is not used: ")
    assert doctor_warning.startswith(f"{hw.gpus[0].name} is not used for chat: ")


def test_the_plans_batch_sizes_reach_the_worker_capped_by_the_context() -> None:
    from app.engines.chat_llama.protocol import LoadRequest

    chat_models = [m for m in MODELS.values() if isinstance(m, ChatModelFacts)]
    for hw in MACHINES.values():
        for model in chat_models:
            plan = plan_load(hw, model, LoadSettings(n_ctx=4096))
            assert (plan.n_batch, plan.n_ubatch) == (512, 512), (hw.simulated, model.name)
            request = LoadRequest.from_plan("m.gguf", plan)
            assert (request.n_batch, request.n_ubatch) == (512, 512)
    laptop, model = MACHINES["windows-laptop-rtx3060-6gb-16gb"], chat_models[0]
    calls_of_2048 = plan_load(laptop, model, LoadSettings(n_ctx=4096, n_batch=2048))
    request = LoadRequest.from_plan("m.gguf", calls_of_2048)
    assert (request.n_batch, request.n_ubatch) == (2048, 512)
    # A context smaller than a call holds caps the call; the compute buffer follows n_ubatch.
    small = plan_load(laptop, model, LoadSettings(n_ctx=256))
    assert (small.n_batch, small.n_ubatch) == (256, 256)
    steps_of_1024 = plan_load(laptop, model, LoadSettings(n_ctx=4096, n_batch=1024, n_ubatch=1024))
    default = plan_load(laptop, model, LoadSettings(n_ctx=4096))
    assert steps_of_1024.estimate.compute > default.estimate.compute
