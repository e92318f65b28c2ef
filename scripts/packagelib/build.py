"""Build Hearth's frozen app and Linux installers (`scripts/package`, docs/packaging.md).

    scripts/package [full|chat] [--format deb|tar|all]
    scripts/package --check [full|chat]   smoke-test the .deb in a clean Debian root
    scripts/package kit --models NAME... --to DIR

Each edition gets a build environment of its own under build/package/ (never the dev
.venv): torch (full only), a portable llama.cpp wheel (one CPU module per x86 level, chosen
at run time; built once and kept in build/package/wheels), Hearth's other dependencies,
PyInstaller. Then PyInstaller runs packaging/hearth.spec, and the onedir tree becomes a
.deb (/opt/hearth) and a tar.gz (installed into the user's home by its install.sh).

Standard library only: it runs before any environment exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD = ROOT / "build" / "package"
DIST = ROOT / "dist"
WHEELS = BUILD / "wheels" / "portable"

TORCH_PIN = "torch==2.13.0"
LLAMA_PIN = "llama-cpp-python==0.3.36"
PYINSTALLER = ["pyinstaller==6.22.3", "pyinstaller-hooks-contrib>=2026.9"]
# A llama.cpp that runs on any x86-64 laptop: no -march=native, CPU code in loadable
# modules, one per instruction-set level, the best picked at run time.
PORTABLE_CMAKE = "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
IMAGE_DISTS = {"torch", "diffusers", "transformers", "accelerate"}
# Onedir size budgets (bytes), docs/packaging.md.
BUDGET = {"chat": 260 * 10**6, "full": 1050 * 10**6}


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


class BuildError(Exception):
    """A step failed: the message says which and what to do."""


def run(cmd: list[str], **kw: object) -> None:
    shown = " ".join(str(c) for c in cmd)
    print(f"    $ {shown}", flush=True)
    done = subprocess.run([str(c) for c in cmd], check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise BuildError(f"`{shown}` failed (exit {done.returncode}); its output is above.")


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def requirements(edition: str) -> list[str]:
    """pyproject's dependencies for this edition (the chat edition drops the image stack)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    out = []
    for dep in deps:
        name = dep.split(";")[0].strip()
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        if name.lower() == "llama-cpp-python":
            continue  # the portable wheel instead
        if edition == "chat" and name.lower() in IMAGE_DISTS:
            continue
        out.append(dep)
    return out


# --- the build environment --------------------------------------------------------------------


def portable_wheel() -> Path:
    """The portable llama-cpp-python wheel, built once (about 20 min on 2 cores)."""
    found = sorted(WHEELS.glob("llama_cpp_python-0.3.36-*.whl"))
    if found:
        return found[-1]
    say(f"Building a portable llama.cpp ({PORTABLE_CMAKE}); once, then kept in {WHEELS}")
    WHEELS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=PORTABLE_CMAKE)
    run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir"),
            *("--no-binary", "llama-cpp-python", "-w", WHEELS, LLAMA_PIN),
        ],
        env=env,
    )
    found = sorted(WHEELS.glob("llama_cpp_python-0.3.36-*.whl"))
    if not found:
        raise BuildError(f"pip built no llama-cpp-python wheel into {WHEELS}.")
    return found[-1]


def build_env(edition: str) -> Path:
    """build/package/env-EDITION, made or reused; returns its python."""
    env = BUILD / f"env-{edition}"
    python = env / "bin" / "python"
    wheel = portable_wheel()
    spec = [TORCH_PIN] * (edition == "full") + [wheel.name, *requirements(edition), *PYINSTALLER]
    key = hashlib.sha256("\n".join(spec).encode()).hexdigest()[:16]
    if python.exists() and (env / ".key").exists() and (env / ".key").read_text() == key:
        say(f"Reusing the {edition} build environment ({env})")
    else:
        say(f"Creating the {edition} build environment ({env})")
        shutil.rmtree(env, ignore_errors=True)
        run([sys.executable, "-m", "venv", env])
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run([*pip, "--upgrade", "pip>=25"])
        if edition == "full":
            run([*pip, TORCH_PIN])  # first, so nothing swaps in a CUDA build
        run([*pip, wheel])
        run([*pip, *requirements(edition), *PYINSTALLER])
        (env / ".key").write_text(key)
    # Hearth itself, fresh every build (the code changes more often than the environment).
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "--no-deps",
            "--force-reinstall",
            ROOT,
        ]
    )
    if edition == "chat":
        check = (
            "import importlib.util as u; "
            "print([m for m in ('torch', 'diffusers') if u.find_spec(m)])"
        )
        out = subprocess.run([python, "-c", check], capture_output=True, text=True).stdout
        if out.strip() != "[]":
            raise BuildError(f"The chat build environment has {out.strip()} in it; rerun.")
    return python


# --- freezing -----------------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def freeze(edition: str, python: Path) -> Path:
    """PyInstaller onedir into build/package/EDITION/dist/hearth; returns that folder."""
    out = BUILD / edition
    say(f"Freezing the {edition} edition with PyInstaller (packaging/hearth.spec)")
    started = time.monotonic()
    env = dict(os.environ, HEARTH_EDITION=edition, HEARTH_VERSION=version())
    env.pop("PYTHONPATH", None)
    run(
        [
            *(python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"),
            *("--distpath", out / "dist", "--workpath", out / "work"),
            ROOT / "packaging" / "hearth.spec",
        ],
        env=env,
        cwd=out.parent,  # not the checkout: `app` must come from the installed package
    )
    tree = out / "dist" / "hearth"
    size = tree_size(tree)
    say(f"Frozen in {time.monotonic() - started:.0f} s: {tree} is {size / 1e6:.0f} MB")
    return tree


def check_budget(edition: str, size: int) -> None:
    say(f"The {edition} onedir is {size / 1e6:.0f} MB (budget {BUDGET[edition] / 1e6:.0f} MB)")
    if size > BUDGET[edition]:
        raise BuildError(
            f"The {edition} build is {size / 1e6:.0f} MB, over its budget of "
            f"{BUDGET[edition] / 1e6:.0f} MB. Trim what grew (docs/packaging.md lists what "
            "is left out) or raise the budget there with the reason."
        )
