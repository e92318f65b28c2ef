"""What the command groups share: the --machine option, the hardware a command plans for, the
load options (with the defaults from Settings), sizes."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import HearthError

if TYPE_CHECKING:
    import sqlite_utils

    from app.hardware.profile import HardwareProfile
    from app.planner import LoadSettings

#: What runs a command: the parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]


def add_command(
    sub: Any,
    name: str,
    handler: Handler,
    *,
    json: str | None = None,
    machine: bool = False,
    yes: bool = False,
) -> argparse.ArgumentParser:
    """Add the subcommand `name` to `sub` (an `add_subparsers()` result), run by `handler`.

    The handler's docstring documents the command: its first line is the help in the
    command list, the paragraphs after it the description in `hearth NAME --help`.
    `json` is the help of a `--json` option (None: no such option); `machine` adds
    `--machine`; `yes` adds `--yes`, to delete without asking. Returns the new parser, for
    the command's own arguments.
    """
    summary, _, details = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
    # argparse lists help in lower case without a full stop: "remove a model (asks first)".
    summary = " ".join(summary.split()).removesuffix(".")
    help = summary[:1].lower() + summary[1:] if summary[1:2].islower() else summary
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=" ".join(details.split()) or None
    )
    parser.set_defaults(handler=handler)
    if json is not None:
        parser.add_argument("--json", action="store_true", help=json or None)
    if machine:
        add_machine_option(parser)
    if yes:
        parser.add_argument("--yes", "-y", action="store_true", help="do not ask")
    return parser


def add_machine_option(parser: argparse.ArgumentParser) -> None:
    """Add `--machine NAME_OR_FILE`: plan for a simulated machine instead of this one."""
    parser.add_argument(
        "--machine",
        metavar="NAME_OR_FILE",
        help="use a simulated machine (a name from `hearth plan --list-reference`, or "
        "NAME@FILE.json) instead of this one",
    )


def add_load_options(parser: argparse.ArgumentParser, *, ctx: str) -> None:
    """Add --ctx, --gpu-layers, --threads and --backend; each one left out takes the default
    chosen in Settings (the window's Settings page), else the planner's choice."""
    parser.add_argument("--ctx", type=int, help=f"{ctx} (default: Settings, else automatic)")
    parser.add_argument(
        "--gpu-layers",
        type=int,
        help="layers to offload (0 = CPU only; default: Settings, else automatic)",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads (default: Settings, else the physical cores)"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "cuda", "metal", "cpu"),
        help="where llama.cpp runs (default: Settings, else the best one here)",
    )


def load_settings_for(args: argparse.Namespace, **rest: Any) -> LoadSettings:
    """The LoadSettings of a command: its flags, then the defaults stored in Settings.

    `--backend auto` means "the planner decides", even when Settings names a backend.
    """
    from app.sessions.preferences import PreferenceError, load_settings, parse_number
    from app.store import open_default_database

    for field, flag in (("n_ctx", "ctx"), ("gpu_layers", "gpu_layers"), ("threads", "threads")):
        try:
            parse_number(field, getattr(args, flag, None))
        except PreferenceError as exc:  # one sentence, and a remedy that fits a command line
            raise PreferenceError(
                exc.cause, f"Give --{flag.replace('_', '-')} a number in range, or leave it out."
            ) from None
    db = open_default_database()
    try:
        settings = load_settings(
            db,
            n_ctx=getattr(args, "ctx", None),
            gpu_layers=getattr(args, "gpu_layers", None),
            threads=getattr(args, "threads", None),
            backend=getattr(args, "backend", None),
            **rest,
        )
    finally:
        db.close()
    if getattr(args, "backend", None) == "auto" and settings.backend is not None:
        from dataclasses import replace

        settings = replace(settings, backend=None)
    return settings


def hardware_for(machine: str | None, *, fresh_builds: bool = False) -> HardwareProfile:
    """This machine (build checks cached unless `fresh_builds`), or the simulated `machine`.

    `machine` is a name from the bundled profiles or `NAME@FILE.json`.
    """
    if not machine:
        from app.hardware.detect import this_machine

        return this_machine(fresh_builds=fresh_builds)
    from app.hardware.profile import load_simulated_machines

    name, _, file = machine.partition("@")
    machines = load_simulated_machines(Path(file) if file else None)
    if name not in machines:
        raise HearthError(
            f"There is no simulated machine called '{name}'.",
            f"Pick one of: {', '.join(sorted(machines))}.",
        )
    return machines[name]


def parse_size(text: str) -> tuple[int, int]:
    """`512x768` -> (512, 768); anything else is a HearthError that shows the form.

    The one parser of every face (`app.planner.image_size.parse_size`); the numbers are
    checked against the model where it is known (plan, imagine).

    >>> parse_size("512X768")
    (512, 768)
    """
    from app.planner.image_size import parse_size as parse

    return parse(text)


def open_history() -> sqlite_utils.Database:
    """The database, with any answer a crash cut off marked interrupted (chat and history)."""
    from app.store import conversations, open_default_database

    db = open_default_database()
    conversations.recover_interrupted(db)
    return db
