"""`hearth models search|files|pull|downloads|login|logout`: the Hub from a terminal."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from app.errors import HearthError

HUB_COMMANDS = frozenset({"search", "files", "pull", "downloads", "login", "logout"})


def add_hub_commands(msub: Any) -> None:
    """Add the Hub subcommands to the `hearth models` subparsers."""
    from app.cli import _add_machine_option

    search = msub.add_parser(
        "search",
        help="search the Hub for GGUF chat models",
        description="Search the Hugging Face Hub (or the mirror in HF_ENDPOINT) for GGUF "
        "repos, most downloaded first, with the quant that would fit this machine best.",
    )
    search.add_argument("query", nargs="?", default="", help="words in the repo name")
    search.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    search.add_argument("--json", action="store_true", help="print one JSON array")
    _add_machine_option(search)

    files = msub.add_parser(
        "files",
        help="list a Hub repo's GGUF files by quant, with sizes and fit verdicts",
        description="List the GGUF models in a Hub repo grouped by quant (split files count "
        "as one), with exact sizes, whether the Hub gives a sha256, and whether each fits "
        "this machine. ★ marks the suggested quant.",
    )
    files.add_argument("repo", metavar="REPO", help="publisher/name")
    files.add_argument("--revision", help="branch, tag or commit (default: main)")
    files.add_argument("--json", action="store_true", help="print one JSON object")
    _add_machine_option(files)

    pull = msub.add_parser(
        "pull",
        help="download a GGUF model from the Hub into the library",
        description="Download one quant of a Hub repo (the suggested one unless --quant or "
        "--file says otherwise), verify its sha256 and add it to the library. Ctrl-C pauses; "
        "running the same command again resumes where it stopped.",
    )
    pull.add_argument("repo", metavar="REPO", help="publisher/name")
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--quant", "-q", help="the quant to download, e.g. Q4_K_M")
    which.add_argument("--file", "-f", help="a GGUF file of the repo (any part of a split set)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    _add_machine_option(pull)

    downloads = msub.add_parser("downloads", help="the download queue: progress and errors")
    downloads.add_argument("--json", action="store_true", help="print one JSON array")
    downloads.add_argument("--cancel", metavar="ID", help="cancel a download, deleting its files")

    msub.add_parser(
        "login",
        help="save a Hub access token (for gated or private models)",
        description="Save a Hugging Face access token, read from the terminal without echo or "
        "from standard input, in the OS keyring when there is one, else in a file only you "
        "can read. Hearth never prints or logs it.",
    )
    msub.add_parser("logout", help="forget the saved Hub access token")


def cmd_hub(args: argparse.Namespace) -> int:
    command = args.models_command
    if command == "search":
        return cmd_search(args)
    if command == "files":
        return cmd_files(args)
    if command == "pull":
        return cmd_pull(args)
    if command == "downloads":
        return cmd_downloads(args)
    if command == "login":
        return cmd_login(args)
    if command == "logout":
        return cmd_logout(args)
    return 2


# --- search and files ---------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    from app.models.hub import hub_config, search_models

    config = hub_config()
    config.require_online()  # before detecting hardware: fail at once when offline
    hw = _machine(args)
    found = search_models(args.query, args.limit, hardware=hw, config=config)
    if args.json:
        print(json.dumps([m.to_dict() for m in found], indent=2))
        return 0
    if not found:
        print(f"No GGUF repos on {config.endpoint} match '{args.query}'.")
        return 0
    where = hw.simulated or "this machine"
    print(f"{'REPO':<52} {'DOWNLOADS':>10} {'LIKES':>6}  {'UPDATED':<10}  BEST FIT ON {where}")
    for m in found:
        updated = m.updated.date().isoformat() if m.updated else ""
        fit = "—"
        if m.best_fit:
            fit = f"{m.best_fit.quant} ≈{_human(m.best_fit.size_bytes)}: {m.best_fit.verdict.value}"
        gated = " (gated)" if m.gated else ""
        print(f"{m.repo + gated:<52} {m.downloads:>10,} {m.likes:>6,}  {updated:<10}  {fit}")
    print(
        "\nBest fits are estimates from the Hub's parameter counts; "
        "`hearth models files REPO` gives exact sizes."
    )
    return 0


def cmd_files(args: argparse.Namespace) -> int:
    from app.models.hub import hub_config, list_gguf_files

    config = hub_config()
    config.require_online()
    hw = _machine(args)
    variants = list_gguf_files(args.repo, args.revision, hardware=hw, config=config)
    if args.json:
        first = variants[0]
        print(
            json.dumps(
                {
                    "repo": first.repo,
                    "revision": first.revision,
                    "license": first.license,
                    "gated": first.gated,
                    "machine": hw.simulated or "this machine",
                    "variants": [v.to_dict() for v in variants],
                },
                indent=2,
            )
        )
        return 0
    first = variants[0]
    license_ = f", license {first.license}" if first.license else ""
    gated = ", gated: needs `hearth models login`" if first.gated else ""
    print(f"{first.repo} at {first.revision[:12]}{license_}{gated}")
    where = hw.simulated or "THIS MACHINE"
    print(f"  {'QUANT':<10} {'SIZE':>10} {'FILES':>5}  {'SHA256':<6}  FIT ON {where}")
    for v in variants:
        mark = "★" if v.suggested else " "
        files = f"{len(v.files)}" if v.complete else f"{len(v.files)}?"
        sha = "yes" if v.sha256_known else "no"
        where = {"all": "all layers on GPU", "some": "some layers on GPU", "none": "CPU"}
        detail = f"ctx {v.plan.n_ctx:,}, {where.get(v.plan.gpu_layers_mode, '')}"
        if not v.complete:
            detail = "parts missing on the Hub"
        quant = v.quant or v.name
        print(
            f"{mark} {quant:<10} {_human(v.size):>10} {files:>5}  {sha:<6}  "
            f"{v.verdict.value} ({detail})"
        )
        if v.split:
            print(f"  {'':<10} split: {', '.join(f.path for f in v.files)}")
    print(f"\nVerdicts are {first.facts_basis}; the exact numbers come once the file is here.")
    best = next((v for v in variants if v.suggested), None)
    if best is not None:
        print(f"★ suggested. Download it: hearth models pull {first.repo} --quant {best.quant}")
    else:
        print("Nothing fits this machine; `hearth models pull REPO --quant Q` fetches one anyway.")
    return 0


# --- pull ---------------------------------------------------------------------------------


def cmd_pull(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import logging as hf_logging

    from app.cli import ProgressLine
    from app.hardware.planner import FitVerdict
    from app.models.downloads import DownloadQueue, DownloadState
    from app.models.hub import hub_config, list_gguf_files

    config = hub_config()
    config.require_online()
    hw = _machine(args)
    variants = list_gguf_files(args.repo, args.revision, hardware=hw, config=config)
    variant = _choose(variants, args)
    if variant.verdict is FitVerdict.WONT_FIT:
        print(
            f"warning: {variant.name} ({_human(variant.size)}) won't fit in this machine's free "
            "memory; downloading it anyway as asked.",
            file=sys.stderr,
        )
    # huggingface_hub logs each dropped connection it resumes; Hearth says it once, plainly.
    hf_logging.set_verbosity_error()
    queue = DownloadQueue(config=config)
    job = queue.enqueue(variant)
    if job.state == DownloadState.COMPLETE:
        print(f"{job.name} is already in the library at {job.model_path}.")
        return 0
    resumed = f", resuming at {_human(job.bytes_done)}" if job.bytes_done else ""
    print(
        f"Downloading {variant.name} ({variant.quant or 'GGUF'}, {_human(variant.size)}, "
        f"{len(variant.files)} file{'s' if variant.split else ''}) from {variant.repo} at "
        f"{variant.revision[:12]}{resumed}: {variant.verdict.value} here.",
        file=sys.stderr,
    )
    bar = ProgressLine(variant.name)
    last_note: str | None = None
    queue.start(only=[job.id])
    try:
        while True:
            job = queue.wait(job.id, timeout=0.25)
            if job.note != last_note and job.note and job.note.startswith("connection lost"):
                bar.finish()
                print(f"{variant.name}: {job.note}", file=sys.stderr)
            last_note = job.note
            bar.update(job.bytes_done, job.size, job.note or "", speed=job.speed)
            if job.state in (
                DownloadState.COMPLETE,
                DownloadState.FAILED,
                DownloadState.CANCELLED,
                DownloadState.PAUSED,
            ):
                break
    except KeyboardInterrupt:
        job = queue.pause(job.id)
        queue.close(timeout=3)
        bar.finish()
        print(
            f"\nPaused {variant.name} at {_human(job.bytes_done)} of {_human(job.size)}; the "
            f"partial file is kept. Resume with: {_pull_command(args)}",
            file=sys.stderr,
        )
        return 130
    finally:
        queue.close(timeout=3)
    bar.finish()
    if job.state == DownloadState.COMPLETE:
        from app.models.library import find_model, model_extra

        row = find_model(_open_db(), job.name)
        verified = row is not None and model_extra(row).get("sha256_verified")
        check = "sha256 verified against the Hub" if verified else "sha256 recorded"
        print(f"Added {job.name} to the library at {job.model_path} ({check}).")
        print(f'Chat with it: hearth chat -m {job.name} "Hello!"')
        return 0
    if job.state == DownloadState.FAILED:
        print(f"error: {job.error}", file=sys.stderr)
        return 1
    print(f"The download of {variant.name} was {job.state.value} elsewhere.", file=sys.stderr)
    return 1


def _choose(variants: list[Any], args: argparse.Namespace) -> Any:
    from app.models.hub import FileNotOnHub

    repo = variants[0].repo
    if args.file:
        wanted = args.file.strip("/")
        for v in variants:
            if any(f.path == wanted or f.path.rsplit("/", 1)[-1] == wanted for f in v.files):
                return v
        raise FileNotOnHub(
            f"{repo} has no GGUF file called {args.file}.",
            f"See its files with `hearth models files {repo}`.",
        )
    if args.quant:
        matches = [v for v in variants if (v.quant or "").upper() == args.quant.upper()]
        if not matches:
            have = ", ".join(dict.fromkeys(v.quant or v.name for v in variants))
            raise FileNotOnHub(f"{repo} has no {args.quant.upper()} file.", f"It has: {have}.")
        return next((v for v in matches if v.suggested), matches[0])
    best = next((v for v in variants if v.suggested), None)
    if best is None:
        smallest = variants[0]
        raise HearthError(
            f"None of the quants in {repo} fits this machine (the smallest, "
            f"{smallest.quant or smallest.name} at {_human(smallest.size)}, is "
            f"'{smallest.verdict.value}').",
            "Pick one anyway with --quant, or choose a smaller model.",
        )
    return best


def _pull_command(args: argparse.Namespace) -> str:
    parts = ["hearth models pull", args.repo]
    if args.quant:
        parts += ["--quant", args.quant]
    if args.file:
        parts += ["--file", args.file]
    if args.revision:
        parts += ["--revision", args.revision]
    return " ".join(parts)


# --- downloads, login ---------------------------------------------------------------------


def cmd_downloads(args: argparse.Namespace) -> int:
    from app.models.downloads import DownloadQueue

    queue = DownloadQueue()
    try:
        if args.cancel:
            job = queue.cancel(queue.find(args.cancel).id)
            print(f"Cancelled the download of {job.name}; its partial files are deleted.")
            return 0
        jobs = queue.jobs()
    finally:
        queue.close(timeout=1)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return 0
    if not jobs:
        print("No downloads yet. Find a model with `hearth models search`.")
        return 0
    print(f"{'ID':<12}  {'STATE':<9}  {'PROGRESS':<24}  MODEL (REPO)")
    for j in jobs:
        progress = f"{_human(j.bytes_done)} / {_human(j.size)} {100 * j.fraction:3.0f}%"
        print(f"{j.id:<12}  {j.state.value:<9}  {progress:<24}  {j.name} ({j.repo})")
        if j.error and j.state.value == "failed":
            print(f"{'':<12}  {j.error}")
    print("\nPaused or failed downloads resume when you run the same `hearth models pull` again.")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from app.models.tokens import save_token

    if sys.stdin.isatty():
        token = getpass.getpass("Paste your Hugging Face access token (input is hidden): ")
    else:
        token = sys.stdin.readline()
    saved = save_token(token)
    print(f"Saved your Hub access token ({saved.masked}) in {saved.where}.")
    if os.environ.get("HF_TOKEN"):
        print("Note: HF_TOKEN is set in this environment and is used instead while it is set.")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from app.models.tokens import delete_token

    if delete_token():
        print("Removed the saved Hub access token.")
    else:
        print("No Hub access token was saved.")
    return 0


# --- helpers --------------------------------------------------------------------------------


def _machine(args: argparse.Namespace) -> Any:
    from app.cli import _hardware

    return _hardware(getattr(args, "machine", None), include_builds=True)


def _open_db() -> Any:
    from app.store import open_default_database

    return open_default_database()


def _human(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
