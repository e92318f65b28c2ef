"""The `hearth` command line: the argument tree, start-up checks, and one place for errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from app import __version__
from app.errors import HearthError
from app.startup import (
    check_dependencies,
    ensure_standard_streams,
    setup_logging,
    unexpected_error,
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; each command group adds its own (its `add_commands`)."""
    # Imported here, after check_dependencies(): a command group may import rich or the
    # store, and a missing package must be a sentence, not a traceback.
    from app.cli import bench, chat, doctor, history, hub, images, library, remote, serve

    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: private, on-device AI chat and image generation.",
        epilog="With no command, Hearth opens its window. HEARTH_HOME=DIR keeps everything "
        "under DIR (portable mode).",
    )
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    shot = parser.add_argument_group(
        "screenshots", "render one page of the window on your data, save it as PNG and exit"
    )
    shot.add_argument("--screenshot", metavar="FILE", help="the PNG to write")
    shot.add_argument(
        "--page",
        choices=(
            "chat",
            "images",
            "models",
            "downloads",
            "system",
            "settings",
            "server",
            "welcome",
        ),
        default="chat",
        help="which page (default chat)",
    )
    shot.add_argument("--size", default="1280x800", help="window size WxH (default 1280x800)")
    shot.add_argument(
        "--theme", choices=("light", "dark", "system"), help="default: the saved setting"
    )
    parser.set_defaults(handler=None)  # no command: the window
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("gui", help="open the Hearth window (the default)")
    doctor.add_commands(sub)  # doctor, plan
    chat.add_commands(sub)
    history.add_commands(sub)
    images.add_commands(sub)  # imagine, images list/show/rm/export/reveal
    remote.add_commands(sub)  # remote add/list/test/rm
    serve.add_commands(sub)  # the local OpenAI-compatible API
    bench.add_commands(sub)  # bench chat|image|history
    models = sub.add_parser("models", help="the model library")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    library.add_commands(msub)  # starter, list, show, rm, import, export, catalog
    hub.add_commands(msub)  # search, files, pull, downloads, login, logout
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hearth ARGS...`; the exit status (0 done, 1 an error explained, 130 Ctrl-C)."""
    ensure_standard_streams()  # started with no console (a windowed start): None streams
    try:
        check_dependencies()
    except HearthError as exc:
        # rich may be the missing package, so this one error is printed without app.cli.output.
        print(f"error: {exc.cause}\n       {exc.remedy}", file=sys.stderr)
        return 1
    from app.cli.output import EXIT_INTERRUPTED, print_error

    args = build_parser().parse_args(_attach_size_values(sys.argv[1:] if argv is None else argv))
    setup_logging("hearth")
    # Only the command's name: its arguments may be a prompt, which is never logged.
    command = " ".join(
        str(name) for name in (args.command, getattr(args, "models_command", None)) if name
    )
    log.info("command: %s", command or "gui")
    try:
        if args.handler is None and args.screenshot:
            return _screenshot(args)
        if args.handler is None:
            return _launch_gui()
        status = int(args.handler(args))
        log.info("command %s ended with status %d", command or "gui", status)
        return status
    except HearthError as exc:
        log.warning("command %s failed: %s", command, type(exc).__name__)
        return print_error(exc)
    except KeyboardInterrupt:
        log.info("command %s interrupted", command)
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        log.exception("command %s crashed", command)
        return print_error(unexpected_error(exc))


def _attach_size_values(argv: Sequence[str]) -> list[str]:
    """`--size -64x64` as `--size=-64x64`: argparse would take the value for an option and
    say only "expected one argument"; this way the size rule explains what is wrong."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] == "--size" and i + 1 < len(args) and args[i + 1][:2].lstrip("-")[:1].isdigit():
            out.append(f"--size={args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def _screenshot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.cli.common import parse_size
    from app.gui.app import take_screenshot

    width, height = parse_size(args.size)
    out = take_screenshot(Path(args.screenshot), args.page, (width, height), args.theme)
    print(out)
    return 0


def _launch_gui() -> int:
    check_dependencies(gui=True)
    from app.gui.app import launch_gui

    return launch_gui()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
