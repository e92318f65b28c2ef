"""`hearth models search|files|pull|downloads|login|logout`: the Hub from a terminal."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from app.cli.common import add_command, hardware_for
from app.cli.output import EXIT_INTERRUPTED, CtrlC, ProgressBar, print_error, print_table
from app.errors import HearthError
from app.humanize import format_size

if TYPE_CHECKING:
    from app.hardware.profile import HardwareProfile
    from app.hub.config import HubConfig
    from app.hub.quants import GgufVariant


def add_commands(msub: Any) -> None:
    """Add search, files, pull, downloads, login and logout to the `hearth models` subparsers."""
    search = add_command(msub, "search", cmd_search, json="print one JSON array", machine=True)
    search.add_argument("query", nargs="?", default="", help="words in the repo name")
    search.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    files = add_command(msub, "files", cmd_files, json="print one JSON object", machine=True)
    pull = add_command(msub, "pull", cmd_pull, machine=True)
    which = pull.add_mutually_exclusive_group()
    which.add_argument("--quant", "-q", help="the quant to download, e.g. Q4_K_M")
    which.add_argument("--file", "-f", help="a GGUF file of the repo (any part of a split set)")
    for command in (files, pull):
        command.add_argument("repo", metavar="REPO", help="publisher/name")
        command.add_argument("--revision", help="branch, tag or commit (default: main)")
    downloads = add_command(msub, "downloads", cmd_downloads, json="print one JSON array")
    downloads.add_argument("--cancel", metavar="ID", help="cancel a download, deleting its files")
    add_command(msub, "login", cmd_login)
    add_command(msub, "logout", cmd_logout)


# --- search and files ---------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    """Search the Hub for GGUF chat models.

    Search the Hugging Face Hub (or the mirror in HF_ENDPOINT) for GGUF repos, most
    downloaded first, with the quant that would fit this machine best.
    """
    from app.hub.config import hub_config
    from app.hub.search import search_models

    config = hub_config()
    config.require_online()  # before detecting hardware: fail at once when offline
    hw = hardware_for(args.machine)
    found = search_models(args.query, args.limit, hardware=hw, config=config)
    if args.json:
        print(json.dumps([m.to_dict() for m in found], indent=2))
        return 0
    if not found:
        print(f"No GGUF repos on {config.endpoint} match '{args.query}'.")
        return 0
    rows = []
    for m in found:
        fit = "—"
        if m.best_fit:
            size = format_size(m.best_fit.size_bytes, digits=1)
            fit = f"{m.best_fit.quant} ≈{size}: {m.best_fit.verdict.value}"
        updated = m.updated.date().isoformat() if m.updated else ""
        repo = m.repo + (" (gated)" if m.gated else "")
        rows.append([repo, f"{m.downloads:,}", f"{m.likes:,}", updated, fit])
    best_fit = f"BEST FIT ON {hw.simulated or 'this machine'}"
    print_table(
        ["REPO", "DOWNLOADS", "LIKES", "UPDATED", best_fit], rows, right={"DOWNLOADS", "LIKES"}
    )
    print(
        "\nBest fits are estimates from the Hub's parameter counts; "
        "`hearth models files REPO` gives exact sizes."
    )
    return 0


def _repo_variants(
    args: argparse.Namespace,
) -> tuple[HubConfig, HardwareProfile, list[GgufVariant]]:
    """The Hub settings, the machine, and `args.repo`'s GGUF quants with their fit on it."""
    from app.hub.config import hub_config
    from app.hub.search import list_gguf_files

    config = hub_config()
    config.require_online()  # before detecting hardware: fail at once when offline
    hw = hardware_for(args.machine)
    return config, hw, list_gguf_files(args.repo, args.revision, hardware=hw, config=config)


def cmd_files(args: argparse.Namespace) -> int:
    """List a Hub repo's GGUF files by quant, with sizes and fit verdicts.

    List the GGUF models in a Hub repo grouped by quant (split files count as one), with
    exact sizes, whether the Hub gives a sha256, and whether each fits this machine. ★ marks
    the suggested quant.
    """
    _config, hw, variants = _repo_variants(args)
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
    offload = {"all": "all layers on GPU", "some": "some layers on GPU", "none": "CPU"}
    rows = []
    for v in variants:
        detail = f"ctx {v.plan.n_ctx:,}, {offload.get(v.plan.gpu_layers_mode, '')}"
        if not v.complete:
            detail = "parts missing on the Hub"
        rows.append(
            [
                f"{'★' if v.suggested else ' '} {v.quant or v.name}",
                format_size(v.size, digits=1),
                f"{len(v.files)}" if v.complete else f"{len(v.files)}?",
                "yes" if v.sha256_known else "no",
                f"{v.verdict.value} ({detail})",
            ]
        )
        if v.split:
            rows.append(["", "", "", "", f"split: {', '.join(f.path for f in v.files)}"])
    fit_on = f"FIT ON {hw.simulated or 'THIS MACHINE'}"
    print_table(["  QUANT", "SIZE", "FILES", "SHA256", fit_on], rows, right={"SIZE", "FILES"})
    print(f"\nVerdicts are {first.facts_basis}; the exact numbers come once the file is here.")
    best = next((v for v in variants if v.suggested), None)
    if best is not None:
        print(f"★ suggested. Download it: hearth models pull {first.repo} --quant {best.quant}")
    else:
        print("Nothing fits this machine; `hearth models pull REPO --quant Q` fetches one anyway.")
    return 0


# --- pull ---------------------------------------------------------------------------------


def cmd_pull(args: argparse.Namespace) -> int:
    """Download a GGUF model from the Hub into the library.

    Download one quant of a Hub repo (the suggested one unless --quant or --file says
    otherwise), verify its sha256 and add it to the library. Ctrl-C pauses; running the same
    command again resumes where it stopped.
    """
    from huggingface_hub.utils import logging as hf_logging

    from app.hub.downloads import DownloadQueue
    from app.planner import FitVerdict
    from app.store.downloads import DownloadState

    config, _hw, variants = _repo_variants(args)
    variant = _choose(variants, args)
    if variant.verdict is FitVerdict.WONT_FIT:
        print(
            f"warning: {variant.name} ({format_size(variant.size, digits=1)}) won't fit in this "
            "machine's free memory; downloading it anyway as asked.",
            file=sys.stderr,
        )
    # huggingface_hub logs each dropped connection it resumes; Hearth says it once, plainly.
    hf_logging.set_verbosity_error()
    queue = DownloadQueue(config=config)
    job = queue.enqueue(variant)
    if job.state == DownloadState.COMPLETE:
        print(f"{job.name} is already in the library at {job.model_path}.")
        return 0
    resumed = f", resuming at {format_size(job.bytes_done, digits=1)}" if job.bytes_done else ""
    print(
        f"Downloading {variant.name} ({variant.quant or 'GGUF'}, "
        f"{format_size(variant.size, digits=1)}, {len(variant.files)} "
        f"file{'s' if variant.split else ''}) from {variant.repo} at "
        f"{variant.revision[:12]}{resumed}: {variant.verdict.value} here.",
        file=sys.stderr,
    )
    bar = ProgressBar(variant.name)
    last_note: str | None = None
    queue.start(only=[job.id])
    try:
        # Ctrl-C pauses (the partial file is kept); a second one leaves at once.
        with CtrlC() as ctrl_c:
            while not ctrl_c.pressed:
                job = queue.wait(job.id, timeout=0.25)
                if job.note != last_note and job.note and job.note.startswith("connection lost"):
                    bar.note(f"{variant.name}: {job.note}")
                last_note = job.note
                bar.update(job.bytes_done, job.size, job.note or "", rate=job.speed)
                if job.state in (
                    DownloadState.COMPLETE,
                    DownloadState.FAILED,
                    DownloadState.CANCELLED,
                    DownloadState.PAUSED,
                ):
                    break
            if ctrl_c.pressed:
                job = queue.pause(job.id)
    finally:
        queue.close(timeout=3)
        bar.close()
    if ctrl_c.pressed:
        print(
            f"\nPaused {variant.name} at {format_size(job.bytes_done, digits=1)} of "
            f"{format_size(job.size, digits=1)}; the partial file is kept. Resume with: "
            f"{_pull_command(args)}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if job.state == DownloadState.COMPLETE:
        from app.store import open_default_database
        from app.store.library import find_model

        model = find_model(open_default_database(), job.name)
        verified = model is not None and model.sha256_verified
        check = "sha256 verified against the Hub" if verified else "sha256 recorded"
        print(f"Added {job.name} to the library at {job.model_path} ({check}).")
        print(f'Chat with it: hearth chat -m {job.name} "Hello!"')
        return 0
    if job.state == DownloadState.FAILED:
        return print_error(job.error or "The download failed.")
    print(f"The download of {variant.name} was {job.state.value} elsewhere.", file=sys.stderr)
    return 1


def _choose(variants: list[Any], args: argparse.Namespace) -> Any:
    from app.hub.errors import FileNotOnHub

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
            f"{smallest.quant or smallest.name} at {format_size(smallest.size, digits=1)}, is "
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
    """The download queue: progress and errors."""
    from app.hub.downloads import DownloadQueue
    from app.store.downloads import DownloadState

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
    rows = []
    for j in jobs:
        done, size = format_size(j.bytes_done, digits=1), format_size(j.size, digits=1)
        progress = f"{done} / {size} {100 * j.fraction:3.0f}%"
        rows.append([j.id, j.state.value, progress, f"{j.name} ({j.repo})"])
        if j.error and j.state is DownloadState.FAILED:
            rows.append(["", "", "", j.error])
    print_table(["ID", "STATE", "PROGRESS", "MODEL (REPO)"], rows)
    print("\nPaused or failed downloads resume when you run the same `hearth models pull` again.")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    """Save a Hub access token (for gated or private models).

    Save a Hugging Face access token, read from the terminal without echo or from standard
    input, in the OS keyring when there is one, else in a file only you can read. Hearth
    never prints or logs it.
    """
    from app.hub.credentials import save_token

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
    """Forget the saved Hub access token."""
    from app.hub.credentials import delete_token

    if delete_token():
        print("Removed the saved Hub access token.")
    else:
        print("No Hub access token was saved.")
    return 0
