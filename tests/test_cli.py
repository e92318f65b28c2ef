"""`hearth` as a person runs it in a terminal: real subprocesses, real output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from app.cli.output import CtrlC, ProgressBar, Unit, print_table

HEARTH = [sys.executable, "-m", "app"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEARTH, *args], capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )


def test_doctor_json_has_the_documented_keys() -> None:
    done = run("doctor", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cpu"]["physical_cores"] == psutil.cpu_count(logical=False)
    assert report["cpu"]["logical_cores"] == psutil.cpu_count(logical=True)
    assert isinstance(report["cpu"]["simd"], list)
    assert report["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert 0 < report["memory"]["available_bytes"] <= report["memory"]["total_bytes"]
    assert report["gpus"] == []  # this test machine has none
    assert report["llama"]["gpu_offload"] is False  # CPU build of llama.cpp here
    assert report["torch"]["cuda"] is False and report["torch"]["mps"] is False
    assert report["recommended"]["backend"] == "cpu"


def test_doctor_text_report_on_a_simulated_mac() -> None:
    done = run("doctor", "--machine", "macbook-air-m2-8gb")
    assert done.returncode == 0, done.stderr
    assert "Apple M2" in done.stdout and "metal" in done.stdout


def test_plan_real_model_json(gemma_gguf: Path) -> None:
    done = run("plan", str(gemma_gguf), "--ctx", "4096", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["backend"] == "cpu" and plan["gpu_layers_mode"] == "none"
    assert plan["verdict"] == "fits in RAM"
    assert plan["threads"] == psutil.cpu_count(logical=False)
    assert plan["n_ctx"] == 4096
    parts = plan["estimate"]
    assert parts["total"] == sum(
        parts[k] for k in ("weights", "repacked", "kv_cache", "compute", "overhead")
    )
    # KV cache: 18 blocks x 1 KV head x (256 + 256) x 2 bytes per token.
    assert parts["kv_cache"] == 4096 * 18 * 512 * 2


def test_plan_reference_model_on_simulated_machines() -> None:
    netbook = run(
        "plan", "llama-3.1-8b-instruct-q4_k_m", "--machine", "netbook-4gb", "--ctx", "4096"
    )
    assert netbook.returncode == 0, netbook.stderr
    assert "won't fit" in netbook.stdout
    rtx = run(
        "plan",
        "llama-3.1-8b-instruct-q4_k_m",
        "--machine",
        "windows-laptop-rtx3060-6gb-16gb",
        "--ctx",
        "8192",
        "--json",
    )
    plan = json.loads(rtx.stdout)
    assert plan["verdict"] == "fits split GPU+CPU" and plan["backend"] == "cuda"
    assert 0 < plan["gpu_layers"] < plan["total_layers"]


def test_plan_errors_are_one_clear_sentence_not_a_traceback(tmp_path: Path) -> None:
    done = run("plan", str(tmp_path / "missing.gguf"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: There is no file at")
    unknown = run("plan", "no-such-model")
    assert unknown.returncode == 1 and "hearth models list" in unknown.stderr
    bad_machine = run("plan", "llama-3.1-8b-instruct-q4_k_m", "--machine", "cray-1")
    assert bad_machine.returncode == 1 and "netbook-4gb" in bad_machine.stderr


def test_gui_without_display_explains_instead_of_crashing() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    done = run(env=env)
    assert done.returncode == 1
    assert "no display" in done.stderr and "xvfb-run" in done.stderr
    assert "Traceback" not in done.stderr


def test_models_list_starts_empty_and_says_what_to_do() -> None:
    done = run("models", "list")
    assert done.returncode == 0
    assert "hearth models starter" in done.stdout
    assert json.loads(run("models", "list", "--json").stdout) == []


def test_help_lists_the_commands() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in ("doctor", "plan", "models"):
        assert command in done.stdout


def test_every_run_logs_to_hearth_home_and_json_output_is_only_json(
    hearth_home: Path, tiny_gguf: Callable[..., Path]
) -> None:
    empty = run("models", "list", "--json")
    assert (empty.stdout, empty.stderr) == ("[]\n", "")
    log = hearth_home / "logs" / "hearth.log"
    assert "INFO app.startup: hearth started (pid" in log.read_text()

    imported = run("models", "import", str(tiny_gguf("Logged-Q8_0.gguf")))
    assert imported.returncode == 0, imported.stderr
    # Not a terminal: progress is whole lines on stderr (no carriage returns), ending at 100%.
    assert "\r" not in imported.stderr and "%" not in imported.stdout
    progress = [line for line in imported.stderr.splitlines() if line.startswith("import: ")]
    assert progress and "100.0%" in progress[-1]

    listed = run("models", "list", "--json")
    assert listed.stderr == ""
    [row] = json.loads(listed.stdout)
    assert listed.stdout == json.dumps([row], indent=2) + "\n"
    assert log.read_text().count("hearth started") == 3


def test_a_missing_package_is_one_sentence_and_a_remedy_not_a_traceback() -> None:
    # `None` in sys.modules is how Python marks a module as not importable.
    code = (
        "import sys; sys.modules['platformdirs'] = None; "
        "from app.cli.main import main; raise SystemExit(main(['models', 'list']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: Hearth cannot start: platformdirs (for finding")
    assert "./scripts/run --rebuild" in done.stderr and "platformdirs>=4.2" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_progress_away_from_a_terminal_prints_the_first_and_last_lines_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ProgressBar("copying") as bar:
        for done in range(0, 101, 10):
            bar.update(done * 1024**2, 100 * 1024**2, "model.gguf")
        bar.update(100 * 1024**2, 100 * 1024**2, "model.gguf")  # the end, said twice
    with ProgressBar("generating", Unit.STEPS) as steps:
        steps.update(1, 20, rate=2.0, eta=9.5)
        steps.update(7, 20, rate=2.0, eta=6.5)  # interrupted here: shown when the bar closes
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "copying: model.gguf   0.0%  0 B/100 MiB  ETA ?",
        lines[1],
        "generating: step 1/20  0.50 s/step  ETA 9.5 s",
        "generating: step 7/20  0.50 s/step  ETA 6.5 s",
    ]
    assert lines[1].startswith("copying: model.gguf 100.0%  100 MiB/100 MiB  ")
    assert lines[1].endswith("ETA 0.0 s")


def test_tables_in_a_pipe_keep_each_row_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "a-model-with-a-very-long-name-" * 8
    print_table(
        ["NAME", "SIZE", "LAST USED"], [[long_name, "1.04 GiB", "never"], ["b", "7 KiB", ""]]
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["NAME", "SIZE", "LAST", "USED"]
    assert lines[1].startswith(long_name) and lines[1].endswith("never")
    assert lines[2].split() == ["b", "7", "KiB"]
    assert lines[1].index("1.04 GiB") == lines[2].index("7 KiB")  # columns line up
    assert all(line == line.rstrip() for line in lines)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_first_ctrl_c_stops_the_operation_and_a_second_one_exits() -> None:
    stops: list[str] = []
    # What was there before comes back: Python's default, or SIG_IGN when the suite runs in
    # the background of a shell without job control (`./scripts/test &`).
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), CtrlC(lambda: stops.append("stop")) as ctrl_c:
        assert signal.getsignal(signal.SIGINT) is not before
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.pressed and stops == ["stop"]
        os.kill(os.getpid(), signal.SIGINT)
    assert stops == ["stop"]
    assert signal.getsignal(signal.SIGINT) is before
