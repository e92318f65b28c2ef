"""`scripts/package --check [full|chat]`: the .deb, installed into a clean Debian root, run offline.

1. A minimal Debian 12 root (debootstrap, made once and kept as a tarball under
   build/package/), unpacked fresh for every check.
2. `apt-get install ./hearth_VERSION_amd64.deb` in it: the package's own Depends must be
   enough (plus Xvfb, xdotool and ImageMagick, the test's tools).
3. With the network cut (`unshare -n`: a namespace with no interfaces up), in the root:
   `hearth doctor`; the window under Xvfb, timed from a cold start (page cache dropped)
   and a warm one, and a screenshot of it (build/package/check-EDITION-window.png, to
   look at); an air-gapped kit (`scripts/package kit` with this .deb and the Gemma test
   model) checked by its `verify` script and its models imported, then a chat through the
   frozen worker, once with the CPU module ggml picks
   and once forcing the plain x86-64 one; (full) the tiny image pipeline makes a PNG, and
   (chat) `hearth imagine` says it is not in this edition.
4. When dist/ holds the edition's tar.gz too: as an ordinary user in the same root,
   `./install.sh` into the home, `hearth --version` and `hearth doctor` from
   ~/.local/bin, then `./uninstall.sh`, which must leave nothing of the program behind.

Needs root (debootstrap, chroot, mounts, unshare). Prints each step and what it saw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from packagelib.build import BUILD, DIST, ROOT, BuildError, run, say, version
from packagelib.linux import package_name

BASE = BUILD / "debian-bookworm-minbase.tar"
GEMMA = ROOT / ".venv" / "share" / "hearth-test-models" / "gemma-3-270m-q4_k_m.gguf"
TOOLS = ["xvfb", "xdotool", "imagemagick", "x11-utils"]
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


def base_root() -> Path:
    """The debootstrap tarball (about 3 minutes the first time)."""
    if BASE.exists():
        return BASE
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed. Install Debian's debootstrap, then rerun.")
    say("Making a minimal Debian 12 root with debootstrap (once; kept in build/package)")
    tmp = BUILD / "debootstrap.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    run(["debootstrap", "--variant=minbase", "bookworm", tmp])
    run(["tar", "-C", tmp, "-cf", f"{BASE}.partial", "."])
    os.replace(f"{BASE}.partial", BASE)
    shutil.rmtree(tmp, ignore_errors=True)
    return BASE


class Root:
    """A fresh root from the base tarball, with /proc, /sys and /dev mounted while in use."""

    MOUNTS = (("proc", "proc", "proc"), ("/sys", "sys", None), ("/dev", "dev", None))

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted: list[Path] = []

    def __enter__(self) -> Root:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        run(["tar", "-C", self.path, "-xf", base_root()])
        for source, target, fstype in self.MOUNTS:
            where = self.path / target
            where.mkdir(exist_ok=True)
            cmd = (
                ["mount", "-t", fstype, source, where]
                if fstype
                else ["mount", "--rbind", source, where]
            )
            run(cmd)
            self.mounted.append(where)
        shutil.copy2("/etc/resolv.conf", self.path / "etc" / "resolv.conf")
        return self

    def __exit__(self, *exc: object) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", "-R", "-l", str(where)], check=False)
        self.mounted.clear()

    def sh(
        self,
        script: str,
        *,
        offline: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run `script` in the root (network cut unless offline=False); output is printed."""
        cmd = ["chroot", str(self.path), "/bin/sh", "-c", script]
        if offline:
            cmd = ["unshare", "-n", *cmd]
        print(f"    [root{' offline' if offline else ''}] $ {script}", flush=True)
        done = subprocess.run(
            cmd,
            env={**ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        out = (done.stdout + done.stderr).rstrip()
        if out:
            print("      " + out.replace("\n", "\n      "), flush=True)
        return done

    def must(self, script: str, **kw: object) -> str:
        done = self.sh(script, **kw)  # type: ignore[arg-type]
        if done.returncode != 0:
            raise BuildError(f"In the clean root, `{script}` failed (exit {done.returncode}).")
        return done.stdout


def check(edition: str) -> int:
    if os.geteuid() != 0:
        raise BuildError(
            "The smoke test needs root (debootstrap, chroot, unshare). Run it as root."
        )
    deb = DIST / f"{package_name(edition)}_{version()}_amd64.deb"
    if not deb.exists():
        raise BuildError(
            f"{deb} is not built yet. Run scripts/package {edition} --format deb first."
        )
    if not GEMMA.exists():
        raise BuildError(
            f"The Gemma test model is missing ({GEMMA}). Run ./scripts/test once to fetch it."
        )
    started = time.monotonic()
    results: dict[str, object] = {"edition": edition, "deb": deb.name}
    with Root(BUILD / f"check-root-{edition}") as root:
        say(f"Installing {deb.name} into a clean Debian 12 root (apt resolves its Depends)")
        shutil.copy2(deb, root.path / "tmp" / deb.name)
        root.must("apt-get update -q", offline=False, timeout=900)
        root.must(
            f"apt-get install -y -q --no-install-recommends /tmp/{deb.name} {' '.join(TOOLS)}",
            offline=False,
            timeout=1800,
        )
        root.must(
            "test -x /opt/hearth/hearth && test -L /usr/bin/hearth"
            " && test -f /usr/share/applications/hearth.desktop"
        )

        say("Offline from here on (unshare -n)")
        doctor = root.must("hearth doctor")
        if "llama-cpp-python" not in doctor or "CPU module" not in doctor:
            raise BuildError(
                "`hearth doctor` did not report the llama.cpp build and its CPU module."
            )
        results["doctor_cpu_module"] = next(
            line.split(":", 1)[1].strip() for line in doctor.splitlines() if "CPU module" in line
        )

        say("The window under Xvfb: a cold start (page cache dropped), a warm one, a screenshot")
        cold = _window_start(root, screenshot=False, cold=True, display=7)
        warm = _window_start(root, screenshot=True, cold=False, display=8)
        png = BUILD / f"check-{edition}-window.png"
        shutil.copy2(root.path / "tmp" / "window.png", png)
        results["window_title"] = warm["title"]
        results["window_screenshot"] = str(png.relative_to(ROOT))
        results["window_cold_start_s"] = cold["seconds"]
        results["window_warm_start_s"] = warm["seconds"]
        results["version_cold_s"] = _timed(root, "hearth --version", cold=True)

        say("An air-gapped kit (this .deb and the Gemma model): verify it, import its models")
        _make_kit(deb, root.path / "tmp" / "kit")
        verified = root.must("cd /tmp/kit && sh verify")
        if "OK" not in verified:
            raise BuildError("The kit's verify script did not end with OK.")
        root.must("hearth models import /tmp/kit/models")
        results["kit"] = "verified with sha256sum in the bare root, models imported offline"

        say("A chat through the frozen worker, on the Gemma model from the kit")
        chat = (
            "hearth chat -m gemma --temperature 0 --seed 1 --max-tokens 16 --json 'Name a colour.'"
        )
        reply = json.loads(root.must(chat, timeout=300))
        if not str(reply.get("content", "")).strip():
            raise BuildError("The frozen chat worker answered nothing.")
        results["chat"] = {k: reply.get(k) for k in ("content", "state")}
        results["chat_decode_tps"] = reply.get("metrics", {}).get("decode_tps")
        results["chat_ttft_s"] = reply.get("metrics", {}).get("ttft_s")
        results["chat_command_s"] = _timed(root, chat, cold=False)

        say("The same chat on the plain x86-64 CPU module (HEARTH_LLAMA_CPU_VARIANT=x64)")
        forced = json.loads(root.must(chat, env={"HEARTH_LLAMA_CPU_VARIANT": "x64"}, timeout=300))
        if not str(forced.get("content", "")).strip():
            raise BuildError("With the x64 CPU module forced, the chat answered nothing.")
        results["chat_x64"] = {k: forced.get(k) for k in ("content", "state")}
        results["chat_x64_decode_tps"] = forced.get("metrics", {}).get("decode_tps")
        results["chat_x64_ttft_s"] = forced.get("metrics", {}).get("ttft_s")
        doctor_x64 = root.must("hearth doctor", env={"HEARTH_LLAMA_CPU_VARIANT": "x64"})
        if "CPU module:           x64" not in doctor_x64 and "x64 (portable" not in doctor_x64:
            raise BuildError("With HEARTH_LLAMA_CPU_VARIANT=x64 the doctor names another module.")

        if edition == "full":
            say("An image from the tiny pipeline")
            tiny = root.path / "tmp" / "tiny-sd"
            run(
                [
                    ROOT / ".venv" / "bin" / "python",
                    ROOT / "scripts" / "make_tiny_pipeline.py",
                    tiny,
                ]
            )
            root.must("hearth models import /tmp/tiny-sd --name tiny-sd")
            root.must(
                "hearth imagine -m tiny-sd --steps 2 --size 64x64 --seed 3"
                " --out /tmp/made.png 'a red square'",
                timeout=600,
            )
            made = root.path / "tmp" / "made.png"
            if not made.exists() or made.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                raise BuildError("`hearth imagine` in the frozen full edition wrote no PNG.")
            shutil.copy2(made, BUILD / "check-full-image.png")
            results["image"] = str((BUILD / "check-full-image.png").relative_to(ROOT))
        else:
            done = root.sh("hearth imagine 'a red square'")
            if done.returncode == 0 or "not in this edition" not in done.stdout + done.stderr:
                raise BuildError(
                    "The chat edition's `hearth imagine` did not say it is not in this edition."
                )
            results["imagine"] = "not in this edition"
        tarball = DIST / f"{package_name(edition)}-{version()}-linux-x86_64.tar.gz"
        if tarball.exists():
            results["tarball"] = _check_tarball(root, tarball)
    results["seconds"] = round(time.monotonic() - started)
    out = BUILD / f"check-{edition}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"Smoke test passed ({results['seconds']} s): {out.relative_to(ROOT)}")
    print(json.dumps(results, indent=2))
    return 0


def _make_kit(deb: Path, to: Path) -> None:
    """`scripts/package kit` with this .deb and the Gemma test model, written to `to`.

    The model comes from a Hearth home of the build's own (build/package/kit-home), where
    the source checkout imports it as "gemma": the kit is made the way a person makes one.
    """
    home = BUILD / "kit-home"
    shutil.rmtree(home, ignore_errors=True)
    source = BUILD / "kit-models"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    try:
        os.link(GEMMA, source / GEMMA.name)
    except OSError:  # another disk
        shutil.copy2(GEMMA, source / GEMMA.name)
    venv = ROOT / ".venv" / "bin"
    env = {**os.environ, "HEARTH_HOME": str(home)}
    run([venv / "hearth", "models", "import", source, "--name", "gemma"], env=env)
    run(
        [
            venv / "python",
            ROOT / "scripts" / "packagelib" / "kit.py",
            "--models",
            "gemma",
            "--to",
            to,
            "--installers",
            deb.parent,
            "--include",
            deb.name,
            "--home",
            home,
        ]
    )


def _drop_caches() -> bool:
    """Empty the page cache, so the next start reads the program from disk (a cold start)."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _timed(root: Root, script: str, *, cold: bool) -> float | None:
    """Seconds `script` takes in the root (None where the cache could not be dropped)."""
    if cold and not _drop_caches():
        return None
    began = time.monotonic()
    root.must(script, timeout=600)
    return round(time.monotonic() - began, 2)


def _window_start(root: Root, *, screenshot: bool, cold: bool, display: int) -> dict[str, object]:
    """Start the window under Xvfb; seconds until it is on screen (mapped), its title."""
    if cold and not _drop_caches():
        return {"seconds": None, "title": ""}
    d = display  # a display of its own for each start: an X server's lock outlives it a while
    shot = f"sleep 3; DISPLAY=:{d} import -window root /tmp/window.png; " if screenshot else ""
    out = root.must(
        f"Xvfb :{d} -screen 0 1280x800x24 >/tmp/xvfb.log 2>&1 & xvfb=$!; "
        f"for i in $(seq 1 100); do DISPLAY=:{d} xdpyinfo >/dev/null 2>&1 && break;"
        " sleep 0.1; done; "
        f"DISPLAY=:{d} xdpyinfo >/dev/null 2>&1 || {{ cat /tmp/xvfb.log; exit 3; }}; "
        f"t0=$(date +%s%N); DISPLAY=:{d} hearth >/tmp/hearth-window.log 2>&1 & app=$!; "
        "for i in $(seq 1 1200); do "
        f"  DISPLAY=:{d} xdotool search --onlyvisible --name Hearth >/dev/null 2>&1 && break;"
        " sleep 0.05; done; "
        'echo "visible_ms=$(( ($(date +%s%N) - t0) / 1000000 ))"; '
        + shot
        + f"DISPLAY=:{d} xdotool search --onlyvisible --name Hearth getwindowname %1; "
        "kill $app; wait $app; kill $xvfb; wait $xvfb; tail -5 /tmp/hearth-window.log",
        timeout=180,
    )
    lines = out.strip().splitlines()
    ms = next((int(x.split("=", 1)[1]) for x in lines if x.startswith("visible_ms=")), None)
    title = next((x for x in lines if x.startswith("Hearth")), "")
    if not title:
        raise BuildError("The window did not come up under Xvfb (its log is above).")
    return {"seconds": None if ms is None else round(ms / 1000, 2), "title": title}


def _check_tarball(root: Root, tarball: Path) -> dict[str, object]:
    """The tar.gz, as a person without root uses it: install.sh into their home, run, remove.

    Runs as an ordinary user in the same root (the .deb brought the system libraries; the
    tarball's tree is its own), offline like the rest.
    """
    say(f"The tarball as an ordinary user: {tarball.name}, install.sh, hearth, uninstall.sh")
    root.must("id tester >/dev/null 2>&1 || useradd -m -s /bin/sh tester")
    shutil.copy2(tarball, root.path / "tmp" / tarball.name)
    user = "chroot --userspec=tester:tester / /usr/bin/env HOME=/home/tester sh -c"
    folder = tarball.name.removesuffix(".tar.gz")

    def as_tester(script: str) -> str:
        return root.must(f"{user} '{script}'", timeout=600)

    as_tester(f"cd ~ && tar -xzf /tmp/{tarball.name} && cd {folder} && ./install.sh")
    version_out = as_tester("~/.local/bin/hearth --version").strip()
    doctor = as_tester("~/.local/bin/hearth doctor")
    if "CPU module" not in doctor:
        raise BuildError("The tarball's hearth doctor did not name llama.cpp's CPU module.")
    entry = as_tester("cat ~/.local/share/applications/hearth.desktop")
    if "Exec=" not in entry:
        raise BuildError("The tarball's install.sh wrote no menu entry.")
    as_tester(f"cd ~/{folder} && ./uninstall.sh")
    left = root.sh(
        f"{user} 'ls -d ~/.local/opt/hearth ~/.local/bin/hearth"
        " ~/.local/share/applications/hearth.desktop 2>/dev/null'"
    )
    if left.stdout.strip():
        raise BuildError(f"uninstall.sh left {left.stdout.split()} behind.")
    return {"installed": True, "version": version_out, "uninstalled": True}


if __name__ == "__main__":
    sys.exit(check(sys.argv[1] if len(sys.argv) > 1 else "full"))
