"""The release workflow, the PyInstaller spec, the NSIS installer and the macOS signing files
do what issue 14 asks.

The jobs themselves run on GitHub's Windows and macOS machines; here they pass a real
workflow linter (actionlint, with shellcheck on every `run:` script when it is installed),
the spec runs with stand-ins for PyInstaller's build steps, the installer script compiles
with a real makensis, and the shape of each job is checked.
"""

from __future__ import annotations

import builtins
import importlib.util
import plistlib
import re
import shutil
import struct
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
NSIS_SCRIPT = ROOT / "packaging" / "windows" / "hearth.nsi"
SPEC = ROOT / "packaging" / "hearth.spec"
ICON = ROOT / "resources" / "hearth.ico"
ENTITLEMENTS = ROOT / "packaging" / "macos" / "entitlements.plist"
MACOS_SCRIPTS = [ROOT / "packaging" / "macos" / name for name in ("sign_app.sh", "make_dmg.sh")]


def tool(name: str) -> str | None:
    """A command from this virtual environment's bin folder, else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def jobs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = workflow()["jobs"]
    return found


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = jobs()[job]["steps"]
    return found


def job_text(job: str) -> str:
    """Everything a job says (its env, steps and scripts) as one string, for searching."""
    return yaml.safe_dump(jobs()[job], width=10_000)


def run_actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    actionlint = tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed: pip install -e '.[test]' brings it")
    return subprocess.run(
        [actionlint, "-no-color", "-oneline", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# The workflow as a whole


def test_release_workflow_passes_actionlint() -> None:
    result = run_actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_retired_runner_and_an_unquoted_variable(tmp_path: Path) -> None:
    # The lint above means something only if this linter knows today's runners and runs
    # shellcheck: a copy with the retired macos-13 image (and, with shellcheck, a bare $var).
    broken = WORKFLOW.read_text().replace("runs-on: macos-15-intel", "runs-on: macos-13")
    broken = broken.replace('run: test "${GITHUB_REF_NAME#v}" = "$VERSION"', "run: test $VERSION")
    copy = tmp_path / ".github" / "workflows" / "release.yml"
    copy.parent.mkdir(parents=True)
    copy.write_text(broken)
    result = run_actionlint(copy)
    assert result.returncode == 1
    assert 'label "macos-13" is unknown' in result.stdout
    if shutil.which("shellcheck"):
        assert "SC2086" in result.stdout


def test_release_runs_on_version_tags_and_by_hand() -> None:
    data = workflow()
    # PyYAML follows YAML 1.1, where a bare `on` key is the boolean true.
    triggers: dict[str, Any] = data.get("on") or data[True]  # type: ignore[index]
    assert triggers["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in triggers
    assert data["permissions"] == {"contents": "read"}


def test_jobs_run_on_the_runners_the_issue_names() -> None:
    runners = {name: job["runs-on"] for name, job in jobs().items()}
    assert runners == {
        "linux": "ubuntu-22.04",  # glibc 2.35: the .deb runs on Ubuntu 22.04 and Debian 12
        "windows": "windows-2022",
        "macos-arm64": "macos-14",
        "macos-intel": "macos-15-intel",  # macos-13 is retired (actionlint knows)
        "linux-cuda": "ubuntu-22.04",
        "windows-cuda": "windows-2022",
        "release": "ubuntu-22.04",
    }
    assert "ubuntu22.04" in jobs()["linux-cuda"]["container"]


def test_no_host_name_is_written_in_the_workflow() -> None:
    text = WORKFLOW.read_text()
    assert "://" not in text
    assert "${{ vars.TORCH_INDEX_URL }}" in text


def linux_build_settings() -> Any:
    """scripts/packagelib/build.py, where the Linux build keeps its version and pins."""
    path = ROOT / "scripts" / "packagelib" / "build.py"
    spec = importlib.util.spec_from_file_location("hearth_release_build_settings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_platform_builds_the_versions_the_linux_build_pins() -> None:
    build = linux_build_settings()
    printed = subprocess.run(
        [sys.executable, "-c", workflow()["env"]["BUILD_SETTINGS"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = [f"VERSION={build.version()}", f"TORCH_PIN={build.TORCH_PIN}"]
    assert printed == [*expected, f"LLAMA_PIN={build.LLAMA_PIN}"]
    assert workflow()["env"]["PORTABLE_CMAKE_ARGS"] == build.PORTABLE_CMAKE
    # The CUDA image's Python has no tomllib: its job reads the same two values with sed.
    read = next(s for s in steps("linux-cuda") if s.get("name") == "Read the version and the pins")
    text_read = subprocess.run(
        ["sh", "-c", read["run"].replace('>> "$GITHUB_ENV"', "")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert text_read == [f"VERSION={build.version()}", f"LLAMA_PIN={build.LLAMA_PIN}"]


# The Linux job


def test_linux_job_packages_both_editions_then_smoke_tests_and_uploads_dist() -> None:
    runs = [step.get("run", "") for step in steps("linux")]
    order = ["scripts/package full --format all", "scripts/package chat\n", "package --check"]
    positions = [next(i for i, run in enumerate(runs) if cmd in run + "\n") for cmd in order]
    assert positions == sorted(positions)
    # The check debootstraps and chroots: root; and chats with the test model from .venv.
    assert 'sudo env "PATH=$PATH" scripts/package --check\n' in runs[positions[2]]
    assert any(".venv/share/hearth-test-models/gemma-3-270m-q4_k_m.gguf" in r for r in runs)
    upload = next(s for s in steps("linux") if s.get("uses", "").startswith("actions/upload"))
    assert "dist/*.deb" in upload["with"]["path"]
    assert "dist/*.tar.gz" in upload["with"]["path"]
    assert jobs()["linux"]["env"]["GLIBC_FLOOR"] == "2.35"


# Windows and macOS


@pytest.mark.parametrize("job", ["windows", "macos-arm64", "macos-intel"])
def test_desktop_jobs_freeze_the_checked_in_spec_for_their_edition(job: str) -> None:
    text = job_text(job)
    assert "PyInstaller --noconfirm --clean packaging/hearth.spec" in text
    assert jobs()[job]["env"]["HEARTH_EDITION"] == "${{ matrix.edition }}"
    assert "--version" in text and "--screenshot" in text  # the frozen build starts


def test_intel_macs_get_the_chat_edition_only() -> None:
    matrices = {
        name: job["strategy"]["matrix"].get("edition")
        for name, job in jobs().items()
        if "strategy" in job
    }
    assert matrices["windows"] == ["full", "chat"]
    assert matrices["macos-arm64"] == ["full", "chat"]
    assert matrices["macos-intel"] == ["chat"]
    assert "torch" not in job_text("macos-intel").replace("TORCH_INDEX_URL", "")


@pytest.mark.parametrize("job", ["windows", "macos-arm64"])
def test_torch_is_installed_for_the_full_edition_only(job: str) -> None:
    torch_steps = [s for s in steps(job) if "$TORCH_PIN" in s.get("run", "")]
    assert torch_steps
    assert all(s["if"] == "matrix.edition == 'full'" for s in torch_steps)


@pytest.mark.parametrize(("edition", "present"), [("full", True), ("chat", False)])
def test_edition_requirements_leave_image_libraries_out_of_the_chat_edition(
    edition: str, present: bool
) -> None:
    snippet = workflow()["env"]["EDITION_REQUIREMENTS"]
    listed = subprocess.run(
        [sys.executable, "-c", snippet, edition],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    names = {re.split(r"[^A-Za-z0-9._-]", line, maxsplit=1)[0].lower() for line in listed}
    assert "pyside6-essentials" in names and "pyinstaller" in names
    for image_only in ("torch", "diffusers", "transformers", "accelerate"):
        assert (image_only in names) is present


def test_windows_job_starts_signs_and_packs_both_programs() -> None:
    smoke = next(s for s in steps("windows") if s.get("name") == "Smoke-test the frozen build")
    # The windowed program draws the window with its standard streams closed, as it has
    # them when the Start menu starts it.
    assert "dist/hearth/hearthw.exe --screenshot" in smoke["run"]
    assert ">&- 2>&-" in smoke["run"]
    sign = next(s for s in steps("windows") if s.get("name", "").startswith("Sign hearth.exe"))
    assert sign["run"].split()[1:] == ["dist/hearth/hearth.exe", "dist/hearth/hearthw.exe"]


def test_windows_builds_llama_cpp_portable_with_msvc_and_an_nsis_installer() -> None:
    assert workflow()["env"]["PORTABLE_CMAKE_ARGS"] == (
        "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
    )
    build = next(s for s in steps("windows") if "CMAKE_ARGS" in s.get("env", {}))
    assert build["env"]["CMAKE_ARGS"] == "${{ env.PORTABLE_CMAKE_ARGS }}"
    assert "--no-binary llama-cpp-python" in build["run"]
    installer = [s for s in steps("windows") if "build_installer.ps1" in s.get("run", "")]
    assert len(installer) == 2  # unsigned, and signed when the certificate is there


@pytest.mark.parametrize("job", ["macos-arm64", "macos-intel"])
def test_macos_builds_metal_app_bundle_signed_notarized_into_a_dmg(job: str) -> None:
    args = jobs()[job]["env"]["LLAMA_CMAKE_ARGS"].split()
    for flag in ("-DGGML_METAL=on", "-DGGML_METAL_EMBED_LIBRARY=on", "-DGGML_NATIVE=OFF"):
        assert flag in args
    assert "-DGGML_BACKEND_DL=ON" in args
    text = job_text(job)
    assert "org.hearth.Hearth" in text  # the bundle id the spec gives Hearth.app
    assert "Print :CFBundleIconFile" in text  # and its icon is in the bundle
    assert "packaging/macos/sign_app.sh" in text
    assert "packaging/macos/entitlements.plist" in text
    assert "packaging/macos/make_dmg.sh" in text
    assert "xcrun notarytool submit" in text and "xcrun stapler staple" in text


def test_signing_steps_run_only_when_their_secrets_are_set() -> None:
    gated = 0
    for name, job in jobs().items():
        for key, value in job.get("env", {}).items():
            if "secrets." in str(value):
                # A job's env holds a flag only, never a secret every step could read.
                assert "!= ''" in value and "&& 'yes' || ''" in value, f"{name}: {key}"
        for step in job["steps"]:
            if "secrets." in yaml.safe_dump(step.get("env", {})):
                condition = step.get("if", "")
                assert re.search(r"env\.[A-Z_]+ != ''", condition), f"{name}: {step['name']}"
                gated += 1
    assert gated == 10  # Windows: exe, installer; each Mac job: certificate, app, DMG, notary


# The CUDA add-on


@pytest.mark.parametrize(
    ("job", "module", "runtime"),
    [
        ("linux-cuda", "libggml-cuda*.so", ["libcudart.so.12", "libcublas.so.12"]),
        ("windows-cuda", "ggml-cuda*.dll", ["cudart64_12.dll", "cublas64_12.dll"]),
    ],
)
def test_cuda_addon_archives_the_module_its_runtime_and_nvidias_terms(
    job: str, module: str, runtime: list[str]
) -> None:
    args = jobs()[job]["env"]["LLAMA_CMAKE_ARGS"].split()
    assert "-DGGML_CUDA=on" in args and "-DGGML_BACKEND_DL=ON" in args
    text = job_text(job)
    assert module in text
    for library in runtime:
        assert library in text
    assert "NOTICE.txt" in text and "$CUDA_ADDON_NOTICE" in text
    notice = workflow()["env"]["CUDA_ADDON_NOTICE"]
    assert "redistributed" in notice and "NVIDIA CUDA Toolkit End User License" in notice


# Artifacts and the release


def test_artifacts_have_distinct_names_and_all_reach_the_release() -> None:
    names = []
    for job in jobs().values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/upload-artifact@"):
                assert step["with"]["if-no-files-found"] == "error"
                names.append(step["with"]["name"])
    assert sorted(names) == sorted(
        [
            "hearth-linux-x86_64",
            "hearth-windows-x64-${{ matrix.edition }}",
            "hearth-macos-arm64-${{ matrix.edition }}",
            "hearth-macos-x86_64-${{ matrix.edition }}",
            "hearth-cuda-addon-linux-x86_64",
            "hearth-cuda-addon-windows-x64",
        ]
    )
    release = jobs()["release"]
    assert set(release["needs"]) == set(jobs()) - {"release"}
    assert release["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert release["permissions"] == {"contents": "write"}
    download = next(s for s in release["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["pattern"] == "hearth-*"
    attach = next(s for s in release["steps"] if "action-gh-release" in s.get("uses", ""))
    assert attach["with"]["draft"] is True


# The PyInstaller spec


@dataclass
class BuildStep:
    """One of PyInstaller's build steps the spec asked for (Analysis, PYZ, EXE, COLLECT...)."""

    kind: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    # What the spec reads back off an Analysis.
    pure: list[Any] = field(default_factory=list)
    scripts: list[Any] = field(default_factory=list)
    binaries: list[Any] = field(default_factory=list)
    datas: list[Any] = field(default_factory=list)


def run_spec(
    platform: str, tmp_path: Path, pure: dict[str, list[Any]] | None = None
) -> list[BuildStep]:
    """packaging/hearth.spec run as PyInstaller runs it on `platform` (sys.platform's value),
    with stand-ins that record each build step instead of building, and no llama.cpp.

    `pure` gives an Analysis (by its script's name, "hearthw_entry") the modules it finds."""
    recorded: list[BuildStep] = []

    def step(kind: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> BuildStep:
            done = BuildStep(kind, args, kwargs)
            if kind == "Analysis":
                (script,) = args[0]
                name = Path(script).stem
                done.scripts = [(name, script, "PYSOURCE")]
                done.pure = list((pure or {}).get(name, []))
                # Something of its own in each, to see which analysis a COLLECT takes in.
                done.binaries = [(f"{name}.dll", f"/build/{name}.dll", "BINARY")]
                done.datas = [(f"{name}.txt", f"/build/{name}.txt", "DATA")]
            recorded.append(done)
            return done

        return record

    class PlatformSys(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(sys, name)

    fake_sys = PlatformSys("sys")
    fake_sys.platform = platform
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    for helper in ("collect_data_files", "collect_submodules", "copy_metadata"):
        setattr(hooks, helper, lambda *args, **kwargs: [])
    llama_cpp = types.ModuleType("llama_cpp")
    llama_cpp.__file__ = str(tmp_path / "site-packages" / "llama_cpp" / "__init__.py")
    stand_ins = {"sys": fake_sys, "PyInstaller.utils.hooks": hooks, "llama_cpp": llama_cpp}

    def spec_import(name: str, *args: Any, **kwargs: Any) -> Any:
        return stand_ins[name] if name in stand_ins else builtins.__import__(name, *args, **kwargs)

    namespace: dict[str, Any] = {
        "__builtins__": {**vars(builtins), "__import__": spec_import},
        "SPECPATH": str(SPEC.parent),
        "workpath": str(tmp_path / "work"),
        **{kind: step(kind) for kind in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")},
    }
    exec(compile(SPEC.read_text(), str(SPEC), "exec"), namespace)
    return recorded


def built(spec: list[BuildStep], kind: str) -> list[BuildStep]:
    return [step for step in spec if step.kind == kind]


def test_windows_gets_a_windowed_program_beside_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_EDITION", "chat")
    spec = run_spec("win32", tmp_path)
    launcher, analysis = built(spec, "Analysis")
    # hearthw.exe is analysed on its own, from the stub, before Hearth (whose
    # base_library.zip and warn file, written to the same work folder, must be the ones kept).
    assert launcher.args[0] == [str(ROOT / "packaging" / "hearthw_entry.py")]
    assert analysis.args[0] == [str(ROOT / "packaging" / "hearth_entry.py")]
    assert "pathex" not in launcher.kwargs and "hiddenimports" not in launcher.kwargs
    for heavy in ("app", "PySide6", "llama_cpp", "torch", "diffusers", "transformers"):
        assert heavy in launcher.kwargs["excludes"]
    programs = built(spec, "EXE")
    assert [(p.kwargs["name"], p.kwargs["console"]) for p in programs] == [
        ("hearth", True),  # the command line, and Hearth
        ("hearthw", False),  # the window: what the shortcuts start (hearth.nsi)
    ]
    archives = built(spec, "PYZ")
    for program, source, archive in zip(programs, (analysis, launcher), archives, strict=True):
        # Each program with its own analysis's pure-Python archive, and Hearth's icon.
        assert archive.args[0] is source.pure
        assert program.args[0] is archive and program.args[1] is source.scripts
        assert program.kwargs["exclude_binaries"] is True
        assert program.kwargs["icon"] == str(ICON)
    (collect,) = built(spec, "COLLECT")
    # One onedir folder: both programs over one _internal, which holds what either needs.
    assert collect.args[:2] == tuple(programs)
    for source in (analysis, launcher):
        assert any(part is source.binaries for part in collect.args)
        assert any(part is source.datas for part in collect.args)
    assert collect.kwargs["name"] == "hearth"
    assert not built(spec, "BUNDLE")
    assert (tmp_path / "work" / "edition.txt").read_text() == "chat\n"


@pytest.mark.parametrize("found", ["app.cli.main", "PySide6.QtCore", "numpy", "requests"])
def test_the_spec_refuses_a_windowed_stub_that_holds_more_than_the_standard_library(
    found: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The excludes name the heavy packages; this catches any other that a change to the stub
    # would drag in, as the real Analysis would find it.
    monkeypatch.setenv("HEARTH_EDITION", "full")
    stdlib = [("subprocess", "/py/subprocess.py", "PYMODULE"), ("_pyi_rth_utils", "", "PYMODULE")]
    assert run_spec("win32", tmp_path, pure={"hearthw_entry": stdlib})
    with pytest.raises(SystemExit, match="standard library only"):
        run_spec("win32", tmp_path, pure={"hearthw_entry": [*stdlib, (found, "", "PYMODULE")]})


def test_the_windowed_stub_imports_the_standard_library_only() -> None:
    # What PyInstaller collects for hearthw.exe is what the stub imports: run it in a fresh
    # interpreter and list what importing it (and showing an error, which imports ctypes on
    # Windows) added to sys.modules.
    code = (
        "import sys; before = set(sys.modules); sys.path.insert(0, 'packaging');"
        "import ctypes, hearthw_entry; print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    added = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "hearthw_entry" in added
    tops = {name.split(".")[0] for name in added} - {"hearthw_entry"}
    assert tops <= set(sys.stdlib_module_names), tops - set(sys.stdlib_module_names)
    assert not tops & {"app", "PySide6", "llama_cpp", "torch", "numpy", "multiprocessing"}


@pytest.mark.parametrize(("platform", "console"), [("linux", True), ("darwin", False)])
def test_linux_and_macos_keep_one_program(
    platform: str, console: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linux: /opt/hearth/hearth is the command and the menu entry's program
    # (scripts/packagelib/linux.py); macOS: the app bundle is windowed.
    monkeypatch.setenv("HEARTH_EDITION", "full")
    spec = run_spec(platform, tmp_path)
    (analysis,) = built(spec, "Analysis")  # no stub to analyse
    (program,) = built(spec, "EXE")
    assert program.args[1] is analysis.scripts
    assert program.kwargs["name"] == "hearth"
    assert program.kwargs["console"] is console
    assert program.kwargs["icon"] is None
    bundles = built(spec, "BUNDLE")
    assert [b.kwargs["name"] for b in bundles] == ["Hearth.app"] * (platform == "darwin")
    for bundle in bundles:
        # The app shows Hearth's icon in the Finder and the Dock, not PyInstaller's.
        assert bundle.kwargs["icon"] == str(ROOT / "resources" / "hearth.icns")
        assert bundle.kwargs["bundle_identifier"] == "org.hearth.Hearth"


# The NSIS installer


def test_nsis_script_installs_per_user_with_start_menu_entry_and_uninstaller() -> None:
    script = NSIS_SCRIPT.read_text()
    assert "RequestExecutionLevel user" in script
    assert 'InstallDir "$LOCALAPPDATA\\Programs\\Hearth"' in script
    assert 'CreateShortcut "$SMPROGRAMS\\${APP_NAME}.lnk" "$INSTDIR\\${APP_EXE}"' in script
    assert 'WriteUninstaller "$INSTDIR\\${UNINSTALLER}"' in script
    assert "Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Hearth" in script
    for value in ("DisplayName", "UninstallString", "QuietUninstallString", "EstimatedSize"):
        assert f'HKCU "${{UNINSTALL_KEY}}" "{value}"' in script
    assert "HKLM" not in script
    assert "SetShellVarContext current" in script
    # The uninstaller removes the program's files, not a folder the user may have chosen.
    assert 'RMDir /r "$INSTDIR"' not in script


def test_nsis_shortcuts_open_the_windowed_program_with_hearths_icon() -> None:
    script = NSIS_SCRIPT.read_text()
    # hearthw.exe has no console window; hearth.exe (the command line) is started by none.
    assert '!define APP_EXE "hearthw.exe"' in script
    assert '!define CLI_EXE "hearth.exe"' in script
    shortcuts = re.findall(r"^\s*CreateShortcut (.*)$", script, re.MULTILINE)
    assert len(shortcuts) == 2  # the Start menu, and the desktop when its box is ticked
    for shortcut in shortcuts:
        assert shortcut.split()[1:] == [
            '"$INSTDIR\\${APP_EXE}"',
            '""',
            '"$INSTDIR\\${APP_EXE}"',
            "0",
        ]
    assert '!define MUI_FINISHPAGE_RUN "$INSTDIR\\${APP_EXE}"' in script
    assert 'WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\\${APP_EXE}"' in script
    assert '!define MUI_ICON "${ICON}"' in script and '!define MUI_UNICON "${ICON}"' in script
    uninstall = script[script.index('Section "Uninstall"') :]
    for removed in ("$DESKTOP\\${APP_NAME}.lnk", "$INSTDIR\\${APP_EXE}", "$INSTDIR\\${CLI_EXE}"):
        assert f'Delete "{removed}"' in uninstall


@pytest.fixture
def dummy_build(tmp_path: Path) -> Path:
    """A stand-in for PyInstaller's onedir output: the two programs and their _internal."""
    tree = tmp_path / "dist" / "hearth"
    (tree / "_internal" / "llama_cpp" / "lib").mkdir(parents=True)
    (tree / "hearth.exe").write_bytes(b"MZ stand-in")
    (tree / "hearthw.exe").write_bytes(b"MZ stand-in, windowed")
    (tree / "_internal" / "python311.dll").write_bytes(b"MZ" + bytes(4096))
    (tree / "_internal" / "llama_cpp" / "lib" / "ggml-cpu-x64.dll").write_bytes(b"MZ")
    return tree


def makensis(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("makensis")
    if found is None:
        pytest.skip("makensis is not installed (Debian package: nsis)")
    return subprocess.run(
        [found, "-V2", "-WX", *args, str(NSIS_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ico_images(data: bytes) -> list[bytes]:
    """The images inside an .ico file, as its directory lists them."""
    count = struct.unpack_from("<H", data, 4)[0]
    images = []
    for i in range(count):
        size, offset = struct.unpack_from("<II", data, 6 + 16 * i + 8)
        images.append(data[offset : offset + size])
    return images


def test_nsis_script_compiles_into_an_installer_and_signs_both_executables(
    dummy_build: Path, tmp_path: Path
) -> None:
    log = tmp_path / "signed.txt"
    signer = tmp_path / "sign.py"
    signer.write_text(f"import sys\nopen({str(log)!r}, 'a').write(sys.argv[1] + '\\n')\n")
    setup = tmp_path / "Hearth-0.1.0-windows-x64-full-setup.exe"
    result = makensis(
        "-DVERSION=0.1.0",
        "-DEDITION=full",
        f"-DSRCDIR={dummy_build}",
        f"-DOUTFILE={setup}",
        f"-DSIGN_CMD={sys.executable} {signer}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    installer = setup.read_bytes()
    assert installer[:2] == b"MZ"
    # The installer's own icon is Hearth's: every size of hearth.ico is in its resources.
    for image in ico_images(ICON.read_bytes()):
        assert image in installer
    signed = log.read_text().splitlines()
    # First the uninstaller makensis embeds, then the finished installer.
    assert len(signed) == 2
    assert signed[1] == str(setup)


def test_nsis_script_refuses_a_missing_icon(dummy_build: Path, tmp_path: Path) -> None:
    result = makensis(
        "-DVERSION=0.1.0",
        f"-DSRCDIR={dummy_build}",
        f"-DOUTFILE={tmp_path / 'x-setup.exe'}",
        f"-DICON={tmp_path / 'missing.ico'}",
    )
    assert result.returncode != 0
    assert "missing.ico" in result.stdout + result.stderr


def test_nsis_script_refuses_to_build_without_a_version(dummy_build: Path, tmp_path: Path) -> None:
    result = makensis(f"-DSRCDIR={dummy_build}", f"-DOUTFILE={tmp_path / 'x-setup.exe'}")
    assert result.returncode != 0
    assert "/DVERSION=x.y.z" in result.stdout + result.stderr


# macOS signing


def test_entitlements_allow_jit_and_unsigned_memory_but_keep_library_validation() -> None:
    entitlements = plistlib.loads(ENTITLEMENTS.read_bytes())
    assert entitlements == {
        "com.apple.security.cs.allow-jit": True,
        "com.apple.security.cs.allow-unsigned-executable-memory": True,
    }
    # Why disable-library-validation is left out is written down beside the keys.
    assert "disable-library-validation" in ENTITLEMENTS.read_text()


def test_sign_app_uses_the_hardened_runtime_and_the_entitlements() -> None:
    script = MACOS_SCRIPTS[0].read_text()
    assert "--options runtime" in script and "--timestamp" in script
    assert '--entitlements "$entitlements"' in script
    assert "codesign --verify --deep --strict" in script
    assert "hdiutil create" in MACOS_SCRIPTS[1].read_text()


@pytest.mark.parametrize("script", MACOS_SCRIPTS, ids=lambda p: p.name)
def test_macos_scripts_are_valid_shell(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"
    shellcheck = shutil.which("shellcheck")
    command = [shellcheck, str(script)] if shellcheck else ["bash", "-n", str(script)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
