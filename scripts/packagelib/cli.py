"""`scripts/package`: build the installers, smoke-test them, or write an air-gapped kit."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `packagelib` from scripts/

from packagelib.build import DIST, ROOT, BuildError, build_env, check_budget, freeze, say, tree_size

USAGE = """\
usage: scripts/package [full|chat] [--format deb|tar|all] [--no-lint]
       scripts/package --check [full|chat]
       scripts/package kit --models NAME... --to DIR [--installers DIR]

  full|chat     the edition: full (chat and images, ~1 GB) or chat-only (no torch)
  --format      which Linux installers to build into dist/ (default: all)
  --check       install dist/'s .deb into a clean Debian root and run it there offline:
                doctor, the window (a screenshot), a chat, and (full) an image
  kit           the installers plus chosen models, with checksums and a README, for a
                machine with no network (scripts/package kit --help)
"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "kit":
        return _kit(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    parser = argparse.ArgumentParser(prog="scripts/package", usage=USAGE)
    parser.add_argument("edition", nargs="?", choices=("full", "chat"), default="full")
    parser.add_argument("--format", choices=("deb", "tar", "all"), default="all")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--no-lint", action="store_true", help="skip lintian on the .deb")
    opts = parser.parse_args(args)
    try:
        if opts.check:
            from packagelib.check import check

            return check(opts.edition)
        return _build(opts.edition, opts.format, lint=not opts.no_lint)
    except BuildError as exc:
        print(f"scripts/package: {exc}", file=sys.stderr)
        return 1


def _build(edition: str, fmt: str, *, lint: bool) -> int:
    from packagelib.linux import (
        build_deb,
        build_tar,
        drop_system_libraries,
        link_llama_libraries,
        lintian,
        strip_python,
    )

    python = build_env(edition)
    tree = freeze(edition, python)
    saved = link_llama_libraries(tree)
    say(f"llama.cpp's libraries linked, not copied: {saved / 1e6:.0f} MB saved")
    saved = strip_python(tree)
    say(f"Python's debug sections stripped: {saved / 1e6:.0f} MB saved")
    check_budget(edition, tree_size(tree))
    dropped = drop_system_libraries(tree)
    if dropped:
        say(f"Left to the system (not bundled): {', '.join(dropped)}")
    made = []
    if fmt in ("deb", "all"):
        deb = build_deb(edition, tree, python)
        if lint:
            lintian(deb)
        made.append(deb)
    if fmt in ("tar", "all"):
        made.append(build_tar(edition, tree, python))
    for path in made:
        say(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.0f} MB")
    return 0


def _kit(args: list[str]) -> int:
    """The kit reads the model library, so it runs in the dev environment (made if missing)."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    if not venv_python.exists():
        say("Setting up .venv first (the kit uses Hearth's model library code)")
        subprocess.run(
            ["bash", "-c", f'. "{ROOT}/scripts/bootstrap.sh" && hearth_bootstrap'], check=True
        )
    kit = Path(__file__).resolve().parent / "kit.py"
    default = [] if "--installers" in args else ["--installers", str(DIST)]
    return subprocess.run([str(venv_python), str(kit), *args, *default], check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
