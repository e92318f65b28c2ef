"""The image worker process and its client, on a tiny random-weights SD pipeline (CPU).

The pipeline (scripts/make_tiny_pipeline.py) makes noise, but every tensor goes through the
real path: component-by-component loading from safetensors, the diffusers pipeline,
schedulers, previews and PNG encoding. Images are 64x64 with a few steps. No test
asserts a duration: "stops soon" is counted in steps, "early" in event order.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app.engines.errors import LoadCancelledError, NotLoadedError
from app.engines.image_diffusers import protocol as image
from app.engines.image_diffusers.client import (
    IMAGE_WORKER,
    ImageEngineClient,
    ImageLoadError,
    InvalidImageRequestError,
)
from app.engines.image_diffusers.worker import SLOW_LOAD_ENV
from app.engines.worker.process import WorkerCrashedError, describe_exit
from app.hardware.profile import load_simulated_machines
from app.models.diffusers_folder import IncompletePipelineError, PickleWeightsError
from app.planner import ImageMemoryMode, plan_image_load
from app.planner.facts import load_reference_models
from app.startup import log_file
from tests.engine_checks import CancelAtFirstReport, assert_unload_ends_the_worker

PROFILES = Path(__file__).parent / "data" / "hardware-profiles.json"
COMPONENTS = {"scheduler", "tokenizer", "text_encoder", "unet", "vae"}


def request(**kw: object) -> image.ImageGenerateRequest:
    args: dict[str, object] = {
        "request_id": f"r-{uuid.uuid4().hex[:8]}",
        "prompt": "a lighthouse at dusk",
        "steps": 2,
        "guidance": 7.0,
        "width": 64,
        "height": 64,
        "seed": 7,
        "preview_every": 0,
    }
    args.update(kw)
    return image.ImageGenerateRequest(**args)  # type: ignore[arg-type]


def results(events: list[object]) -> list[image.ImageResult]:
    return [e for e in events if isinstance(e, image.ImageResult)]


def pixels(result: image.ImageResult) -> bytes:
    with Image.open(io.BytesIO(result.png)) as png:
        assert png.size == (result.width, result.height)
        return png.convert("RGB").tobytes()


def copy_pipeline(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


@pytest.fixture(scope="module")
def client(tiny_pipeline: Path) -> Iterator[ImageEngineClient]:
    """One worker with the tiny pipeline loaded (CPU, float32), shared by generation tests."""
    c = ImageEngineClient()
    c.load(image.ImageLoadRequest(str(tiny_pipeline)))
    yield c
    c.unload()


# --- loading ------------------------------------------------------------------------------


def test_the_parent_process_never_imports_torch_or_diffusers(tiny_pipeline: Path) -> None:
    code = f"""
import json, sys
from app.engines.image_diffusers.client import ImageEngineClient
from app.engines.image_diffusers import protocol as image
if __name__ == "__main__":
    with ImageEngineClient() as c:
        events = list(c.generate(
            image.ImageGenerateRequest("r1", "a cat", steps=1, width=64, height=64, seed=1),
            load=image.ImageLoadRequest({str(tiny_pipeline)!r}),
        ))
    print(json.dumps({{
        "images": sum(isinstance(e, image.ImageResult) for e in events),
        "heavy": sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules),
    }}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"images": 1, "heavy": []}


def test_load_progress_is_monotonic_per_component_and_covers_every_one(
    tiny_pipeline: Path,
) -> None:
    with ImageEngineClient() as c:
        progress: list[image.ImageLoadProgress] = []
        loaded = c.load(image.ImageLoadRequest(str(tiny_pipeline)), on_progress=progress.append)
        pid = c.pid

    assert {p.component for p in progress} == COMPONENTS
    for name in COMPONENTS:
        mine = [p for p in progress if p.component == name]
        done = [p.bytes_done for p in mine]
        assert done == sorted(done)
        assert mine[-1].ready and mine[-1].bytes_done == mine[-1].bytes_total > 0
        assert sum(p.ready for p in mine) == 1
    # Components arrive in the order a generation needs them.
    ready_order = [p.component for p in progress if p.ready]
    assert ready_order == ["scheduler", "tokenizer", "text_encoder", "unet", "vae"]
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    unet = next(p for p in progress if p.component == "unet" and p.ready)
    assert (
        unet.bytes_total
        == (tiny_pipeline / "unet").joinpath("diffusion_pytorch_model.safetensors").stat().st_size
    )
    assert isinstance(loaded, image.ImageLoaded)
    assert (loaded.device, loaded.dtype, loaded.memory_mode) == ("cpu", "float32", "full")
    assert loaded.pipeline == "StableDiffusionPipeline" and loaded.family == "sd15"
    assert loaded.native_size == 64 and loaded.default_scheduler == "Euler"
    assert pid is not None and pid != os.getpid()


def ready_at(events: list[object], component: str) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if isinstance(e, image.ImageLoadProgress) and e.component == component and e.ready
    )


def first_at(events: list[object], kind: type) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, kind))


@pytest.mark.parametrize("overlap_vae", [None, True])
def test_the_prompt_is_encoded_while_the_unet_loads(
    tiny_pipeline: Path, monkeypatch: pytest.MonkeyPatch, overlap_vae: bool | None
) -> None:
    """A generate sent with its load: encoded before the UNet is in, run as soon as it can.

    On the CPU (None, the default) the first step waits for the VAE; with overlap_vae (the
    GPU default) it starts as soon as the UNet is in, while the VAE loads.
    """
    # Each read of a weight file takes 0.2 s longer, so loading lasts long enough to race.
    monkeypatch.setenv(SLOW_LOAD_ENV, "0.2")
    load = image.ImageLoadRequest(str(tiny_pipeline), overlap_vae=overlap_vae)
    with ImageEngineClient() as c:
        events = list(c.generate(request(steps=3), load=load))

    encoded = first_at(events, image.PromptEncoded)
    assert ready_at(events, "text_encoder") < encoded < ready_at(events, "unet")
    assert set(events[encoded].loading) >= {"unet", "vae"}  # type: ignore[attr-defined]
    first_step = first_at(events, image.StepProgress)
    loaded = first_at(events, image.ImageLoaded)
    if overlap_vae:
        assert ready_at(events, "unet") < first_step < ready_at(events, "vae") < loaded
    else:
        assert ready_at(events, "vae") < loaded < first_step
    assert isinstance(events[-1], image.Done) and events[-1].reason == "complete"
    metrics = next(e for e in events if isinstance(e, image.ImageMetrics))
    assert metrics.load_to_first_step_s is not None and metrics.images == 1
    assert len(results(events)) == 1


def test_a_warm_pipeline_is_not_loaded_again(
    client: ImageEngineClient, tiny_pipeline: Path
) -> None:
    pid = client.pid
    events = list(client.generate(request(), load=image.ImageLoadRequest(str(tiny_pipeline))))
    assert not any(isinstance(e, image.ImageLoadProgress | image.ImageLoaded) for e in events)
    assert len(results(events)) == 1 and client.pid == pid


def test_cancel_during_load_raises_load_cancelled_and_the_worker_loads_again(
    tiny_pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_LOAD_ENV, "0.3")
    stopper = CancelAtFirstReport[image.ImageLoadProgress]()

    with ImageEngineClient() as c:
        with pytest.raises(LoadCancelledError):
            c.load(image.ImageLoadRequest(str(tiny_pipeline)), stopper, stopper.cancel)
        seen = [p.component for p in stopper.seen]
        assert seen and "vae" not in seen  # stopped long before the last component
        assert c.loaded is None and c.is_alive()
        with pytest.raises(NotLoadedError):
            list(c.generate(request()))
        pid = c.pid
        monkeypatch.delenv(SLOW_LOAD_ENV)
        c.load(image.ImageLoadRequest(str(tiny_pipeline)))
        assert c.pid == pid
        assert len(results(list(c.generate(request())))) == 1


def test_cancelling_a_generate_that_waits_on_its_load_stops_the_load_too(
    tiny_pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SLOW_LOAD_ENV, "0.3")
    req = request()
    events: list[object] = []
    with ImageEngineClient() as c:
        for event in c.generate(req, load=image.ImageLoadRequest(str(tiny_pipeline))):
            events.append(event)
            if isinstance(event, image.ImageLoadProgress):
                c.cancel(req.request_id)
        assert c.loaded is None
    assert isinstance(events[-1], image.Done) and events[-1].reason == "cancelled"
    assert not any(
        isinstance(e, image.ImageLoaded | image.StepProgress | image.ImageResult) for e in events
    )


# --- refusing bad folders and requests ----------------------------------------------------


def test_a_pickle_only_component_is_refused_before_any_worker_starts(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    folder = copy_pipeline(tiny_pipeline, tmp_path / "pickled")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "unet" / "diffusion_pytorch_model.bin")
    c = ImageEngineClient()
    with pytest.raises(PickleWeightsError) as error:
        c.load(image.ImageLoadRequest(str(folder)))
    with pytest.raises(PickleWeightsError):
        list(c.generate(request(), load=image.ImageLoadRequest(str(folder))))
    assert "'unet'" in str(error.value) and "safetensors" in error.value.remedy
    assert c.pid is None and c.exitcode is None  # no worker was ever started


def test_a_missing_component_is_refused(tiny_pipeline: Path, tmp_path: Path) -> None:
    folder = copy_pipeline(tiny_pipeline, tmp_path / "no-vae")
    shutil.rmtree(folder / "vae")
    with ImageEngineClient() as c, pytest.raises(IncompletePipelineError) as error:
        c.load(image.ImageLoadRequest(str(folder)))
    assert "'vae'" in str(error.value) and "missing" in str(error.value)


def test_a_component_class_outside_the_known_ones_is_never_instantiated(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    folder = copy_pipeline(tiny_pipeline, tmp_path / "custom")
    index = json.loads((folder / "model_index.json").read_text())
    index["vae"] = ["my_module", "ArbitraryCode"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with ImageEngineClient() as c:
        with pytest.raises(ImageLoadError) as error:
            c.load(image.ImageLoadRequest(str(folder)))
        assert "my_module.ArbitraryCode" in str(error.value)
        c.load(image.ImageLoadRequest(str(tiny_pipeline)))  # the worker is fine
        assert c.loaded is not None


@pytest.mark.parametrize(
    ("size", "words"),
    [((100, 100), "multiples of 8"), ((4096, 512), "between 64 and 2048"), ((32, 32), "64")],
)
def test_an_invalid_size_is_refused_with_the_rule(
    client: ImageEngineClient, size: tuple[int, int], words: str
) -> None:
    width, height = size
    with pytest.raises(InvalidImageRequestError) as error:
        list(client.generate(request(width=width, height=height)))
    assert words in str(error.value) and f"{width}x{height}" in str(error.value)
    assert len(results(list(client.generate(request())))) == 1  # nothing else broke


def test_lcm_is_refused_on_a_model_not_distilled_for_it(client: ImageEngineClient) -> None:
    with pytest.raises(InvalidImageRequestError, match="LCM-distilled"):
        list(client.generate(request(scheduler="LCM")))


# --- generation ---------------------------------------------------------------------------


def test_same_seed_same_image_and_another_seed_another_image(client: ImageEngineClient) -> None:
    first = results(list(client.generate(request(seed=1234))))[0]
    again = results(list(client.generate(request(seed=1234))))[0]
    other = results(list(client.generate(request(seed=1235))))[0]
    assert first.seed == again.seed == 1234 and other.seed == 1235
    assert pixels(first) == pixels(again)
    assert pixels(first) != pixels(other)


def test_an_unset_seed_is_random_and_reported_so_the_image_can_be_made_again(
    client: ImageEngineClient,
) -> None:
    a = results(list(client.generate(request(seed=None))))[0]
    b = results(list(client.generate(request(seed=None))))[0]
    assert a.seed != b.seed
    again = results(list(client.generate(request(seed=a.seed))))[0]
    assert pixels(again) == pixels(a)


def test_several_images_use_consecutive_seeds_each_reproducible_alone(
    client: ImageEngineClient,
) -> None:
    events = list(client.generate(request(seed=50, n_images=2)))
    made = results(events)
    assert [r.seed for r in made] == [50, 51] and [r.image_index for r in made] == [0, 1]
    alone = results(list(client.generate(request(seed=51))))[0]
    assert pixels(alone) == pixels(made[1])
    progress = [e for e in events if isinstance(e, image.StepProgress)]
    assert [(p.image_index, p.step) for p in progress] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert progress[-1].eta_s == 0.0 and progress[0].eta_s > 0


def test_step_progress_then_previews_then_image_metrics_done(client: ImageEngineClient) -> None:
    events = list(client.generate(request(steps=4, preview_every=1)))
    steps = [e for e in events if isinstance(e, image.StepProgress)]
    assert [s.step for s in steps] == [1, 2, 3, 4] and all(s.steps == 4 for s in steps)
    assert all(s.s_per_step > 0 for s in steps)
    previews = [e for e in events if isinstance(e, image.Preview)]
    assert len(previews) >= 1
    for preview in previews:
        with Image.open(io.BytesIO(preview.png)) as png:
            assert png.format == "PNG" and png.size == (8, 8) == (preview.width, preview.height)
    assert [type(e) for e in events[-3:]] == [image.ImageResult, image.ImageMetrics, image.Done]
    metrics = events[-2]
    assert isinstance(metrics, image.ImageMetrics) and metrics.images == 1 and metrics.steps == 4
    assert metrics.device == "cpu" and metrics.memory_mode == "full"


@pytest.mark.parametrize("scheduler", ["Euler", "Euler a", "DPM++ 2M", "DDIM"])
def test_schedulers_by_name(client: ImageEngineClient, scheduler: str) -> None:
    made = results(list(client.generate(request(scheduler=scheduler, steps=3))))
    assert made[0].scheduler == scheduler
    assert len(pixels(made[0])) == 64 * 64 * 3


def test_the_scheduler_changes_the_image_and_default_means_the_models_own(
    client: ImageEngineClient,
) -> None:
    default = results(list(client.generate(request(steps=3))))[0]
    euler = results(list(client.generate(request(steps=3, scheduler="Euler"))))[0]
    ddim = results(list(client.generate(request(steps=3, scheduler="DDIM"))))[0]
    assert default.scheduler == "Euler" and pixels(default) == pixels(euler)
    assert pixels(ddim) != pixels(euler)


def test_cancel_mid_run_stops_within_a_step_and_makes_no_image(client: ImageEngineClient) -> None:
    req = request(steps=200)
    seen: list[int] = []
    events: list[object] = []
    for event in client.generate(req):
        events.append(event)
        if isinstance(event, image.StepProgress):
            seen.append(event.step)
            if event.step == 2:
                client.cancel(req.request_id)
    assert isinstance(events[-1], image.Done) and events[-1].reason == "cancelled"
    assert not results(events)
    assert max(seen) < 200  # in practice 2 or 3: the cancel is read after every step
    assert len(results(list(client.generate(request())))) == 1


def test_leaving_the_loop_early_cancels_the_generation(tiny_pipeline: Path) -> None:
    abandoned = request(steps=200)
    with ImageEngineClient() as c:  # its own worker, so that its log is this test's
        c.load(image.ImageLoadRequest(str(tiny_pipeline)))
        for event in c.generate(abandoned):
            if isinstance(event, image.StepProgress):
                break
        # The next run is complete, and the worker took it up only after ending the first.
        events = list(c.generate(request()))
        assert isinstance(events[-1], image.Done) and events[-1].reason == "complete"
    ends = [
        line
        for line in log_file(IMAGE_WORKER.log_name).read_text().splitlines()
        if f"{abandoned.request_id} ended" in line
    ]
    assert len(ends) == 1 and "(cancelled)" in ends[0], ends
    steps_run = int(ends[0].rsplit(" after ", 1)[1].split()[0])
    assert 1 <= steps_run < 200  # in practice 1 or 2: the cancel is read after every step


def test_an_sdxl_layout_pipeline_generates(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-sdxl"
    script = Path(__file__).resolve().parent.parent / "scripts" / "make_tiny_pipeline.py"
    subprocess.run(
        [sys.executable, str(script), str(folder), "--preset", "sdxl-tiny"],
        check=True,
        capture_output=True,
    )
    with ImageEngineClient() as c:
        events = list(c.generate(request(steps=2), load=image.ImageLoadRequest(str(folder))))
    loaded = next(e for e in events if isinstance(e, image.ImageLoaded))
    assert loaded.pipeline == "StableDiffusionXLPipeline" and loaded.family == "sdxl"
    components = {e.component for e in events if isinstance(e, image.ImageLoadProgress)}
    assert {"text_encoder_2", "tokenizer_2"} <= components
    assert len(results(events)) == 1


# --- memory modes -------------------------------------------------------------------------


def test_memory_mode_chosen_on_simulated_machines_is_applied_by_name(
    tiny_pipeline: Path,
) -> None:
    """The planner's mode for each simulated machine reaches the worker, which applies it.

    This machine has only a CPU, so the worker runs on the CPU: offload modes are then
    reported as not applicable (everything is in RAM already) and 'full' is used.
    """
    machines = load_simulated_machines(PROFILES)
    models = load_reference_models(PROFILES)
    chosen = {
        (machine, model): plan_image_load(machines[machine], models[model]).memory_mode
        for machine, model in [
            ("linux-workstation-rtx4090-24gb-64gb", "sdxl-base-1.0-fp16"),
            ("windows-laptop-rtx3060-6gb-16gb", "sdxl-base-1.0-fp16"),
            ("windows-laptop-gtx1650-4gb-8gb", "sdxl-base-1.0-fp16"),
            ("airgapped-lab-cpu-32gb", "sd-1.5-fp16"),
        ]
    }
    assert chosen[("linux-workstation-rtx4090-24gb-64gb", "sdxl-base-1.0-fp16")] == "full"
    assert chosen[("windows-laptop-rtx3060-6gb-16gb", "sdxl-base-1.0-fp16")] in (
        ImageMemoryMode.MODEL_CPU_OFFLOAD,
        ImageMemoryMode.SEQUENTIAL_CPU_OFFLOAD,
    )
    modes = {m.value for m in chosen.values()} | {"attention_slicing", "vae_tiling"}
    with ImageEngineClient() as c:
        for mode in sorted(modes):
            loaded = c.load(image.ImageLoadRequest(str(tiny_pipeline), memory_mode=mode))
            made = results(list(c.generate(request())))
            assert len(made) == 1
            if mode in ("model_cpu_offload", "sequential_cpu_offload"):
                assert loaded.memory_mode == "full"
                assert loaded.note and f"'{mode}' does not apply on the CPU" in loaded.note
            else:
                assert loaded.memory_mode == mode and loaded.note is None
            if mode == "vae_tiling":
                assert loaded.vae_tiling


# --- the process --------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_worker_killed_mid_generation_is_reported_and_the_next_run_uses_a_fresh_one(
    tiny_pipeline: Path,
) -> None:
    load = image.ImageLoadRequest(str(tiny_pipeline))
    with ImageEngineClient() as c:
        c.load(load)
        old_pid = c.pid
        assert old_pid is not None
        seen = 0
        with pytest.raises(WorkerCrashedError) as error:
            for event in c.generate(request(steps=200)):
                if isinstance(event, image.StepProgress):
                    seen += 1
                    if seen == 2:
                        os.kill(old_pid, signal.SIGKILL)
        message = str(error.value)
        assert "image worker" in message and "SIGKILL" in message and "out-of-memory" in message
        assert error.value.exitcode == -signal.SIGKILL
        assert not c.is_alive() and c.pid is None and c.loaded is None
        with pytest.raises(NotLoadedError):
            list(c.generate(request()))
        events = list(c.generate(request(), load=load))
        assert c.pid is not None and c.pid != old_pid
        assert len(results(events)) == 1


def test_unload_ends_the_worker_process(tiny_pipeline: Path) -> None:
    c = ImageEngineClient()
    c.load(image.ImageLoadRequest(str(tiny_pipeline)))
    assert_unload_ends_the_worker(c, lambda: list(c.generate(request())))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_chat_and_image_workers_run_at_once_and_each_survives_the_others_crash(
    tiny_pipeline: Path, gemma_gguf: Path
) -> None:
    from app.engines.chat_llama.client import ChatEngineClient
    from app.engines.chat_llama.protocol import GenerateRequest, LoadRequest, TokenEvent

    def chat(client: ChatEngineClient) -> str:
        events = client.generate(
            GenerateRequest(f"c-{uuid.uuid4().hex[:6]}", "The sea is", max_tokens=6, temperature=0)
        )
        return "".join(e.text for e in events if isinstance(e, TokenEvent))

    load = image.ImageLoadRequest(str(tiny_pipeline))
    with ChatEngineClient() as chat_client, ImageEngineClient() as image_client:
        chat_client.load(LoadRequest(str(gemma_gguf), n_ctx=512, n_gpu_layers=0, n_threads=2))
        image_client.load(load)
        assert chat_client.pid != image_client.pid
        answer = chat(chat_client)
        assert answer

        image_pid = image_client.pid
        assert image_pid is not None
        os.kill(image_pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError):
            list(image_client.generate(request()))
        assert chat(chat_client) == answer  # the chat worker did not notice

        assert len(results(list(image_client.generate(request(), load=load)))) == 1
        chat_pid = chat_client.pid
        assert chat_pid is not None
        os.kill(chat_pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError):
            chat(chat_client)
        assert len(results(list(image_client.generate(request())))) == 1


def test_describe_exit_names_the_image_worker_and_torch() -> None:
    assert describe_exit(-11, "image worker", "torch") == (
        "The image worker was killed by signal 11 (SIGSEGV — a crash inside torch)."
    )
    assert describe_exit(-9) == (
        "The chat worker was killed by signal 9 (SIGKILL — often the out-of-memory killer)."
    )
