"""The gallery, `hearth imagine` and `hearth images` as a person uses them (tiny pipeline, CPU).

CLI runs are real subprocesses (`python -m app`), so Ctrl-C and killed workers behave as
in a terminal. Images are 64x64 from a random-weights pipeline: noise, through the real path.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image

from app.engines.image_diffusers.protocol import StepProgress
from app.engines.worker.process import WorkerCrashedError
from app.sessions.image import ImageSession, ImageSettings
from app.store import open_default_database
from app.store.errors import ImageNotFoundError, NotAHearthImageError
from app.store.gallery import (
    ImageParams,
    delete_image,
    export_image,
    get_image,
    list_images,
    read_png_parameters,
    recover_gallery,
    reveal_image,
    save_image,
    write_png,
)

HEARTH = [sys.executable, "-m", "app"]
posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, *args], capture_output=True, text=True, timeout=timeout)


def png_bytes(color: tuple[int, int, int] = (200, 30, 60), size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def rgb(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def gallery_files(home: Path) -> list[Path]:
    folder = home / "data" / "images"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


PARAMS = ImageParams(
    prompt="a lighthouse at dusk — ünïcödé",
    negative_prompt="blurry",
    seed=123456789012,
    steps=20,
    guidance=6.5,
    width=512,
    height=768,
    scheduler="DPM++ 2M",
    model="sd-turbo",
    extra={"device": "cpu", "dtype": "float32"},
)


@pytest.fixture(scope="session")
def build_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The torch/llama.cpp build probe, run once: every CLI run would otherwise repeat it."""
    home = tmp_path_factory.mktemp("probe-home")
    env = {**os.environ, "HEARTH_HOME": str(home)}
    subprocess.run([*HEARTH, "doctor", "--json"], env=env, capture_output=True, check=True)
    return home / "cache" / "build-probe.json"


@pytest.fixture
def probed(hearth_home: Path, build_probe: Path) -> Iterator[Path]:
    """This test's Hearth home, with the build probe already cached."""
    (hearth_home / "cache").mkdir(parents=True, exist_ok=True)
    shutil.copy(build_probe, hearth_home / "cache" / "build-probe.json")
    yield hearth_home


# --- the gallery --------------------------------------------------------------------------


def test_settings_travel_inside_the_png_and_come_back(tmp_path: Path) -> None:
    db = open_default_database()
    image = save_image(db, png_bytes(), PARAMS)
    assert image.path.is_file() and image.path.suffix == ".png"
    assert read_png_parameters(image.path) == PARAMS
    assert get_image(db, image.id[:6]).params == PARAMS
    assert rgb(image.path) == Image.open(io.BytesIO(png_bytes())).convert("RGB").tobytes()
    with Image.open(image.path) as opened:
        text = opened.text  # type: ignore[attr-defined]
    # Readable by other tools too: one chunk per setting and an A1111-style summary.
    assert text["prompt"] == PARAMS.prompt and text["seed"] == "123456789012"
    assert text["size"] == "512x768" and text["model"] == "sd-turbo"
    assert "Steps: 20, Sampler: DPM++ 2M, CFG scale: 6.5" in text["parameters"]
    assert "Hearth" in text["Software"]


def test_a_png_without_hearth_settings_is_named_as_such(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    plain.write_bytes(png_bytes())
    with pytest.raises(NotAHearthImageError):
        read_png_parameters(plain)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(NotAHearthImageError):
        read_png_parameters(junk)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_png(b"\x89PNG broken", PARAMS, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_recovery_removes_half_written_files_and_keeps_finished_ones(hearth_home: Path) -> None:
    db = open_default_database()
    folder = hearth_home / "data" / "images" / "2026-01"
    folder.mkdir(parents=True)
    (folder / "cut-off.png.partial").write_bytes(png_bytes()[:20])
    # Finished and renamed, but Hearth stopped before recording it.
    orphan = write_png(png_bytes(), PARAMS, folder / "orphan.png")
    (folder / "someone-elses.png").write_bytes(png_bytes())
    assert recover_gallery(db) == 0  # just written: maybe another Hearth is saving them
    assert (folder / "cut-off.png.partial").exists() and list_images(db) == []
    assert recover_gallery(db, grace_s=0) == 1
    assert not (folder / "cut-off.png.partial").exists()
    [entry] = list_images(db)
    assert entry.path == orphan and entry.params == PARAMS
    assert recover_gallery(db, grace_s=0) == 0  # once is enough


def test_delete_export_and_reveal(hearth_home: Path, tmp_path: Path) -> None:
    db = open_default_database()
    a = save_image(db, png_bytes((1, 2, 3)), PARAMS)
    b = save_image(db, png_bytes((4, 5, 6)), PARAMS)
    assert [e.id for e in list_images(db)] == [b.id, a.id]
    exported = export_image(db, a.id, tmp_path / "out")
    assert exported.read_bytes() == a.path.read_bytes()
    assert read_png_parameters(exported) == PARAMS
    assert reveal_image(db, a.id) == a.path.parent
    delete_image(db, a.id)
    assert not a.path.exists() and [e.id for e in list_images(db)] == [b.id]
    with pytest.raises(ImageNotFoundError):
        get_image(db, a.id)
    with pytest.raises(ImageNotFoundError):
        get_image(db, "")


# --- the session: crash safety ------------------------------------------------------------


@posix_signals
def test_a_worker_killed_mid_image_leaves_nothing_in_the_gallery_and_the_next_run_works(
    tiny_pipeline: Path, hearth_home: Path
) -> None:
    from app.hardware.profile import load_simulated_machines

    db = open_default_database()
    cpu_machine = load_simulated_machines()["airgapped-lab-cpu-32gb"]
    session = ImageSession(db, hardware=cpu_machine)
    try:
        job = session.prepare(str(tiny_pipeline), ImageSettings("a cat", steps=200, seed=3))
        killed = []

        def kill_at_second_step(event: object) -> None:
            if isinstance(event, StepProgress) and event.step == 2 and not killed:
                pid = session.client.pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        with pytest.raises(WorkerCrashedError, match="image worker was killed"):
            session.run(job, on_event=kill_at_second_step)
        assert killed and list_images(db) == [] and gallery_files(hearth_home) == []

        job = session.prepare(str(tiny_pipeline), ImageSettings("a cat", steps=2, seed=3))
        result = session.run(job)
        assert result.reason == "complete" and len(result.images) == 1
        assert session.client.pid not in (None, killed[0])
        assert [e.id for e in list_images(db)] == [result.images[0].id]
    finally:
        session.unload()


# --- hearth imagine -----------------------------------------------------------------------


def test_imagine_prints_progress_and_saves_a_png_that_can_be_made_again(
    tiny_pipeline: Path, probed: Path
) -> None:
    done = run(
        "imagine", "a red boat", "--model", str(tiny_pipeline), "--steps", "3", "--seed", "42"
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.is_file() and path.is_relative_to(probed / "data" / "images")
    err = done.stderr
    for component in ("scheduler", "tokenizer", "text_encoder", "unet", "vae"):
        assert f"loaded {component}" in err
    assert "prompt encoded" in err and "step 3/3" in err and "s/step" in err and "ETA" in err
    assert err.index("prompt encoded") < err.index("loaded unet")
    assert "Traceback" not in err

    params = read_png_parameters(path)
    assert (params.prompt, params.seed, params.steps, params.size) == ("a red boat", 42, 3, "64x64")
    assert params.model == "tiny-sd" and params.scheduler == "Euler"
    listed = json.loads(run("images", "list", "--json").stdout)
    assert [e["path"] for e in listed] == [str(path)] and listed[0]["seed"] == 42
    shown = run("images", "show", listed[0]["id"][:6]).stdout
    assert "a red boat" in shown and "again:" in shown

    # "Use these settings again": the printed command makes the same pixels.
    again = shlex.split(shown.split("again:", 1)[1].strip())
    assert again[:2] == ["hearth", "imagine"]
    redo = run(*again[1:])
    assert redo.returncode == 0, redo.stderr
    assert rgb(Path(redo.stdout.strip())) == rgb(path)


def test_imagine_with_a_library_name_several_images_and_out(
    tiny_pipeline: Path, probed: Path, tmp_path: Path
) -> None:
    from app.models.diffusers_folder import read_diffusers_facts
    from app.models.library import register_model

    db = open_default_database()
    facts = read_diffusers_facts(tiny_pipeline)
    register_model(db, "tiny", tiny_pipeline, facts, source="import", sha256=None)
    out = tmp_path / "exports" / "boat.png"
    done = run("imagine", "a boat", "--steps", "2", "--seed", "9", "--n", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.split()]
    assert written == [out.with_name("boat-1.png"), out.with_name("boat-2.png")]
    assert [read_png_parameters(p).seed for p in written] == [9, 10]
    assert {read_png_parameters(p).model for p in written} == {"tiny"}
    assert len(list_images(db)) == 2


@pytest.mark.parametrize(
    ("size", "why"),
    [
        ("100x100", "must be multiples of 8"),
        ("0x0", "must be positive multiples of 8"),  # once "the model's default": 256x256
        ("0x64", "must be positive multiples of 8"),
        ("-64x64", "must be positive multiples of 8"),
        ("64", "is not an image size"),
    ],
)
def test_imagine_and_plan_refuse_a_bad_size_alike_before_loading_anything(
    tiny_pipeline: Path, probed: Path, size: str, why: str
) -> None:
    made = run("imagine", "a boat", "--model", str(tiny_pipeline), "--size", size)
    planned = run("plan", str(tiny_pipeline), "--size", size)
    for done in (made, planned):
        assert done.returncode == 1
        assert why in done.stderr and "Traceback" not in done.stderr
        assert "usage:" not in done.stderr
    assert made.stderr == planned.stderr  # one rule, one sentence, for every face
    assert "loaded" not in made.stderr
    assert list_images(open_default_database()) == []


def test_a_size_with_spaces_is_read_the_same_everywhere(tiny_pipeline: Path, probed: Path) -> None:
    planned = run("plan", str(tiny_pipeline), "--size", " 64 x 64 ", "--json")
    assert planned.returncode == 0, planned.stderr
    assert '"width": 64' in planned.stdout and '"height": 64' in planned.stdout


def test_imagine_refuses_pickle_weights(tiny_pipeline: Path, probed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_pipeline, folder)
    unet = folder / "unet"
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.bin")
    done = run("imagine", "a boat", "--model", str(folder))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "pickle" in done.stderr and "safetensors" in done.stderr


def test_imagine_without_an_image_model_says_how_to_get_one(probed: Path) -> None:
    done = run("imagine", "a boat")
    assert done.returncode == 1
    assert "no image model" in done.stderr and "hearth models import" in done.stderr


def imagine_under_way(pipeline: Path) -> subprocess.Popen[str]:
    """Start a long `hearth imagine` (500 steps) and return once it reports its first step."""
    proc = subprocess.Popen(
        [*HEARTH, "imagine", "a boat", "--model", str(pipeline), "--steps", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(proc, "step ")
    return proc


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 300) -> str:
    """Read the process's stderr until `text` appears; what was read."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    assert text in seen, seen
    return seen


@posix_signals
def test_ctrl_c_cancels_cleanly_with_nothing_half_written(
    tiny_pipeline: Path, probed: Path
) -> None:
    proc = imagine_under_way(tiny_pipeline)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cancelled: nothing was saved" in err and "Traceback" not in err
    assert "step 500/500" not in err
    assert out.strip() == "" and gallery_files(probed) == []
    assert json.loads(run("images", "list", "--json").stdout) == []


@posix_signals
def test_a_killed_worker_is_one_clear_error_and_the_app_exits_normally(
    tiny_pipeline: Path, probed: Path
) -> None:
    proc = imagine_under_way(tiny_pipeline)
    # The image worker, not multiprocessing's resource tracker.
    [worker] = [
        p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())
    ]
    worker.kill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "error: The image worker was killed by signal 9 (SIGKILL" in err
    assert "Traceback" not in err and out.strip() == ""
    assert gallery_files(probed) == []


@posix_signals
def test_the_worker_exits_when_the_app_is_killed(tiny_pipeline: Path, probed: Path) -> None:
    proc = imagine_under_way(tiny_pipeline)
    workers = psutil.Process(proc.pid).children()
    assert workers
    proc.kill()  # no chance to clean up
    proc.wait(timeout=30)
    _gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "the worker noticed its parent died and exited"
    assert json.loads(run("images", "list", "--json").stdout) == []
    assert not [p for p in gallery_files(probed) if p.name.endswith(".partial")]


# --- hearth images ------------------------------------------------------------------------


def test_images_rm_asks_export_copies_and_reveal_prints_the_folder(
    hearth_home: Path, tmp_path: Path
) -> None:
    db = open_default_database()
    image = save_image(db, png_bytes(), PARAMS)
    exported = run("images", "export", image.id[:8], "--to", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert read_png_parameters(Path(exported.stdout.strip())) == PARAMS
    assert run("images", "reveal", image.id).stdout.strip() == str(image.path.parent)

    refused = run("images", "rm", image.id)  # no terminal to ask on
    assert refused.returncode == 1 and "--yes" in refused.stderr and image.path.exists()
    removed = run("images", "rm", image.id, "--yes")
    assert removed.returncode == 0 and not image.path.exists()
    assert run("images", "list").stdout.startswith("No images yet")
    missing = run("images", "show", "nope")
    assert missing.returncode == 1 and "hearth images list" in missing.stderr
