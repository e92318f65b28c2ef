"""The `hearth` command line: the same core as the GUI, for terminals and scripts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import __version__
from app.errors import HearthError

GiB = 1024**3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: private, on-device AI chat and image generation.",
        epilog="With no command, Hearth opens its window. HEARTH_HOME=DIR keeps everything "
        "under DIR (portable mode).",
    )
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="open the Hearth window (the default)")

    doctor = sub.add_parser("doctor", help="report this machine's hardware and builds")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    _add_machine_option(doctor)

    plan = sub.add_parser(
        "plan",
        help="show how a model would load here and whether it fits",
        description="Plan how a model loads on this machine (or a simulated one): backend, "
        "GPU layers, threads, context, memory by part, and a fit verdict.",
    )
    plan.add_argument(
        "model",
        metavar="PATH_OR_MODEL",
        help="a .gguf file, a diffusers folder, a library name, 'starter', or a reference "
        "model from `hearth plan --list-reference`",
        nargs="?",
    )
    plan.add_argument("--ctx", type=int, help="context length in tokens (default: automatic)")
    plan.add_argument("--gpu-layers", type=int, help="layers to offload (0 = CPU only)")
    plan.add_argument(
        "--kv-type",
        default="f16",
        choices=["f16", "q8_0", "q4_0", "f32"],
        help="KV cache type (default f16)",
    )
    plan.add_argument("--size", help="image size WxH for image models (default: native)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.add_argument(
        "--list-reference",
        action="store_true",
        help="list the reference models and simulated machines",
    )
    _add_machine_option(plan)

    chat = sub.add_parser(
        "chat",
        help="chat with a model: one message, or an interactive session",
        description="Send MESSAGE and stream the answer, or start an interactive session when "
        "no message is given (Ctrl-C stops an answer, Ctrl-D leaves). A message can also come "
        "on standard input.",
    )
    chat.add_argument("message", nargs="?", help="the message (omit for a session)")
    chat.add_argument(
        "--model",
        "-m",
        default="starter",
        help="library name or .gguf path (default: the starter model)",
    )
    chat.add_argument("--system", "-s", help="system prompt for a new conversation")
    chat.add_argument(
        "--conversation",
        "-c",
        metavar="ID",
        help="continue a conversation (id or prefix from `hearth history list`)",
    )
    chat.add_argument("--seed", type=int, help="sampling seed (same seed, same answer)")
    chat.add_argument("--max-tokens", type=int, default=1024, help="answer length limit")
    chat.add_argument("--temperature", type=float, default=0.7)
    chat.add_argument("--top-p", type=float, default=0.95)
    chat.add_argument("--top-k", type=int, default=40)
    chat.add_argument("--min-p", type=float, default=0.05)
    chat.add_argument("--repeat-penalty", type=float, default=1.1)
    chat.add_argument("--ctx", type=int, help="context length (default: from the planner)")
    chat.add_argument("--gpu-layers", type=int, help="layers to offload (0 = CPU only)")
    chat.add_argument(
        "--json", action="store_true", help="print the final message and its metrics as JSON"
    )
    chat.add_argument("--quiet", "-q", action="store_true", help="no progress or metrics on stderr")

    history = sub.add_parser("history", help="saved conversations")
    hsub = history.add_subparsers(dest="history_command", metavar="SUBCOMMAND", required=True)
    hlist = hsub.add_parser("list", help="recent conversations")
    hlist.add_argument("--json", action="store_true")
    hshow = hsub.add_parser("show", help="print a conversation")
    hshow.add_argument("id")
    hexport = hsub.add_parser("export", help="export a conversation to Markdown or JSON")
    hexport.add_argument("id")
    hexport.add_argument("--format", choices=["md", "json"], default="md")
    hexport.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    hdelete = hsub.add_parser("delete", help="delete a conversation")
    hdelete.add_argument("id")
    hdelete.add_argument("--yes", "-y", action="store_true", help="do not ask")
    hsearch = hsub.add_parser("search", help="full-text search over messages")
    hsearch.add_argument("query")
    hrename = hsub.add_parser("rename", help="rename a conversation")
    hrename.add_argument("id")
    hrename.add_argument("title")

    from app.images_cli import add_image_commands

    add_image_commands(sub)  # imagine, images list/show/rm/export/reveal

    models = sub.add_parser("models", help="the model library")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    starter = msub.add_parser("starter", help="install the starter assistant (1.1 GB, once)")
    starter.add_argument(
        "--from",
        dest="parts_dir",
        type=Path,
        help="a folder holding the starter part files (offline machines)",
    )
    from app.library_cli import add_library_commands

    add_library_commands(msub)  # list, show, rm, import, export, catalog
    from app.hub_cli import add_hub_commands

    add_hub_commands(msub)  # search, files, pull, downloads, login, logout
    return parser


def _add_machine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--machine",
        metavar="NAME_OR_FILE",
        help="use a simulated machine (a name from `hearth plan --list-reference`, or "
        "NAME@FILE.json) instead of this one",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    try:
        if command == "gui":
            from app.gui.launch import launch_gui

            return launch_gui()
        if command == "doctor":
            return cmd_doctor(args)
        if command == "plan":
            return cmd_plan(args, parser)
        if command == "models":
            return cmd_models(args)
        if command == "chat":
            from app.chat_cli import cmd_chat

            return cmd_chat(args)
        if command == "history":
            from app.chat_cli import cmd_history

            return cmd_history(args)
        if command == "imagine":
            from app.images_cli import cmd_imagine

            return cmd_imagine(args)
        if command == "images":
            from app.images_cli import cmd_images

            return cmd_images(args)
    except HearthError as exc:
        print(f"error: {exc.cause}", file=sys.stderr)
        if exc.remedy:
            print(f"       {exc.remedy}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {command}")
    return 2


# --- doctor -------------------------------------------------------------------------------


def _hardware(machine: str | None, include_builds: bool = True, fresh: bool = False) -> Any:
    from app.hardware.profile import load_simulated_machines

    if not machine:
        from app.hardware.detect import detect_hardware

        return detect_hardware(include_builds=include_builds, fresh_builds=fresh)
    name, _, file = machine.partition("@")
    machines = load_simulated_machines(Path(file) if file else None)
    if name not in machines:
        raise HearthError(
            f"There is no simulated machine called '{name}'.",
            f"Pick one of: {', '.join(sorted(machines))}.",
        )
    return machines[name]


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.hardware.report import doctor_report, format_doctor_report

    report = doctor_report(_hardware(args.machine, fresh=True))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_doctor_report(report))
    return 0


# --- plan ---------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from app.hardware.facts import ChatModelFacts
    from app.hardware.planner import LoadSettings, plan_image_load, plan_load
    from app.hardware.profile import load_reference_models, load_simulated_machines

    if args.list_reference:
        print("Reference models:")
        for name in load_reference_models():
            print(f"  {name}")
        print("Simulated machines (--machine):")
        for name in load_simulated_machines():
            print(f"  {name}")
        return 0
    if not args.model:
        parser.error("plan needs a model: a .gguf path, a diffusers folder or a library name")

    facts = _facts_for(args.model)
    hw = _hardware(args.machine, include_builds=True)
    width = height = None
    if args.size:
        width, height = _parse_size(args.size)
    settings = LoadSettings(
        n_ctx=args.ctx,
        gpu_layers=args.gpu_layers,
        kv_type=args.kv_type,
        image_width=width,
        image_height=height,
    )
    machine_name = hw.simulated or "this machine"
    if isinstance(facts, ChatModelFacts):
        plan = plan_load(hw, facts, settings)
        if args.json:
            print(json.dumps({"machine": machine_name, "kind": "chat", **plan.to_dict()}, indent=2))
            return 0
        est = plan.estimate
        layers = {
            "all": f"all {plan.total_layers}",
            "some": f"{plan.gpu_layers} of {plan.total_layers}",
            "none": "none",
        }[plan.gpu_layers_mode]
        lines = [
            f"Plan for {facts.name} ({facts.arch}, {facts.quantization or '?'}, "
            f"{_gib(facts.file_size)}) on {machine_name}",
            f"  verdict:     {plan.verdict.value}",
            f"  backend:     {plan.backend.value}",
            f"  GPU layers:  {layers}",
            f"  threads:     {plan.threads}",
            f"  context:     {plan.n_ctx:,} tokens (KV cache {plan.kv_type})",
            "  memory:      "
            f"weights {_gib(est.weights)}"
            + (f" + CPU repack {_gib(est.repacked)}" if est.repacked else "")
            + f" + KV cache {_gib(est.kv_cache)} + compute "
            f"{_gib(est.compute)} + overhead {_gib(est.overhead)} = {_gib(est.total)}",
            f"               RAM {_gib(est.cpu_bytes)} of {_gib(plan.ram_budget)} usable"
            + (
                f", GPU {_gib(est.gpu_bytes)} of {_gib(plan.gpu_budget)} usable"
                if plan.gpu_budget
                else ""
            ),
        ]
        lines += [f"  - {r}" for r in plan.reasons]
        lines += [f"  ! {w}" for w in plan.warnings]
        print("\n".join(lines))
        return 0

    image_plan = plan_image_load(hw, facts, settings)
    if args.json:
        print(
            json.dumps({"machine": machine_name, "kind": "image", **image_plan.to_dict()}, indent=2)
        )
        return 0
    lines = [
        f"Plan for {facts.name} ({facts.family}, {_gib(facts.total_bytes)} as "
        f"{facts.stored_dtype}) on {machine_name}",
        f"  verdict:     {image_plan.verdict.value}",
        f"  device:      {image_plan.device} ({image_plan.dtype})",
        f"  memory mode: {image_plan.memory_mode.value}",
        f"  image size:  {image_plan.width}x{image_plan.height}",
        f"  memory:      weights {_gib(image_plan.weights_bytes)}, device peak "
        f"{_gib(image_plan.peak_device_bytes)}, RAM {_gib(image_plan.ram_bytes)}",
    ]
    lines += [f"  - {r}" for r in image_plan.reasons]
    lines += [f"  ! {w}" for w in image_plan.warnings]
    print("\n".join(lines))
    return 0


def _facts_for(model: str) -> Any:
    from app.hardware.profile import load_reference_models

    path = Path(model).expanduser()
    if path.is_dir():
        from app.models.diffusers_info import read_diffusers_facts

        return read_diffusers_facts(path)
    if path.exists() or model.endswith(".gguf"):
        from app.models.gguf_info import read_gguf_facts

        return read_gguf_facts(path)
    reference = load_reference_models()
    if model in reference:
        return reference[model]
    from app.models.gguf_info import read_gguf_facts
    from app.models.library import resolve_model_path

    db = _open_db()
    found, _name = resolve_model_path(db, model)
    return read_gguf_facts(found)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise HearthError(
            f"'{text}' is not an image size.", "Write it as WxH, e.g. 512x512."
        ) from None
    return w, h


# --- models -------------------------------------------------------------------------------


def _open_db() -> Any:
    from app.store import open_default_database

    return open_default_database()


def cmd_models(args: argparse.Namespace) -> int:
    from app.library_cli import LIBRARY_COMMANDS, cmd_library

    if args.models_command in LIBRARY_COMMANDS:
        return cmd_library(args)
    from app.hub_cli import HUB_COMMANDS, cmd_hub

    if args.models_command in HUB_COMMANDS:
        return cmd_hub(args)
    if args.models_command == "starter":
        from app.models.starter import STARTER, install_starter
        from app.paths import hearth_paths

        paths = hearth_paths().ensure()
        db = _open_db()
        bar = ProgressLine("starter model")
        result = install_starter(db, paths, parts_dir=args.parts_dir, progress=bar.update)
        bar.finish()
        if result.installed_now:
            print(
                f"Installed the starter assistant {STARTER.name} at {result.path} "
                "(sha256 verified)."
            )
        else:
            print(f"The starter assistant {STARTER.name} is already installed at {result.path}.")
        return 0
    return 2


# --- output helpers -----------------------------------------------------------------------


class ProgressLine:
    """A one-line progress display with speed and ETA on stderr (quiet when not a TTY)."""

    def __init__(self, label: str, *, in_bytes: bool = True) -> None:
        self.label = label
        self.in_bytes = in_bytes  # False: done/total are a fraction, show only % and ETA
        self.start = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()
        self.shown_percent = -10
        self.active = False

    def update(self, done: int, total: int, what: str = "", *, speed: float | None = None) -> None:
        """Show `done` of `total`; `speed` (bytes/s) overrides the average since the start."""
        now = time.monotonic()
        if self.tty and now - self.last < 0.1 and done < total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        if speed is None:
            speed = done / elapsed
        eta = (total - done) / speed if speed > 0 else 0.0
        pct = 100 * done / total if total else 100.0
        sizes = (
            f"  {done / 1e6:,.0f}/{total / 1e6:,.0f} MB  {speed / 1e6:,.0f} MB/s"
            if self.in_bytes
            else ""
        )
        eta_text = f"{eta:,.0f} s" if speed > 0 or done >= total else "--"  # not known yet
        text = f"{self.label}: {what} {pct:5.1f}%{sizes}  ETA {eta_text}"
        if self.tty:
            print("\r" + text.ljust(79), end="", file=sys.stderr, flush=True)
            self.active = True
        elif pct >= self.shown_percent + 10 or done >= total:
            self.shown_percent = int(pct // 10 * 10)
            print(text, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.active:
            print(file=sys.stderr)


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
