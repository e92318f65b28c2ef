"""`hearth imagine` and `hearth images`: make images in a terminal, and browse the gallery."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from app.engine.image_protocol import SCHEDULERS
from app.errors import HearthError

#: The `hearth images` subcommands.
IMAGES_COMMANDS = ("list", "show", "rm", "export", "reveal")


def add_image_commands(sub: Any) -> None:
    """Add `imagine` and `images` to the top-level subparsers."""
    imagine = sub.add_parser(
        "imagine",
        help="make an image from a text prompt",
        description="Make an image from PROMPT with a local Stable Diffusion model. Shows "
        "load progress per component and each denoising step; the image is saved in the "
        "gallery (`hearth images list`) with its settings inside the PNG. Ctrl-C cancels "
        "cleanly. On a CPU, expect minutes per image.",
    )
    imagine.add_argument("prompt", help="what the image should show")
    imagine.add_argument("--negative", default="", help="what the image should not show")
    imagine.add_argument("--steps", type=int, help="denoising steps (default: 25; Turbo models: 1)")
    imagine.add_argument(
        "--guidance", type=float, help="how closely to follow the prompt (default 7; Turbo: 0)"
    )
    imagine.add_argument("--size", help="WxH in pixels, multiples of 8 (default: the model's)")
    imagine.add_argument("--seed", type=int, help="same seed and settings, same image")
    imagine.add_argument(
        "--scheduler", choices=SCHEDULERS, help="sampler (default: the model's own)"
    )
    imagine.add_argument(
        "--model",
        "-m",
        help="a library name or a diffusers folder (default: the newest image model)",
    )
    imagine.add_argument("--out", type=Path, help="also write the image to this file")
    imagine.add_argument("--n", type=int, default=1, help="how many images (seeds seed, seed+1...)")
    imagine.add_argument("--quiet", "-q", action="store_true", help="print only the saved paths")

    images = sub.add_parser("images", help="the gallery of generated images")
    isub = images.add_subparsers(dest="images_command", metavar="SUBCOMMAND", required=True)
    ilist = isub.add_parser("list", help="the images, newest first")
    ilist.add_argument("--json", action="store_true", help="print one JSON array")
    ilist.add_argument("--limit", type=int, help="show at most this many")
    ishow = isub.add_parser("show", help="an image's settings, and how to make it again")
    ishow.add_argument("id", help="an image id (or its first characters)")
    ishow.add_argument("--json", action="store_true")
    irm = isub.add_parser("rm", help="delete an image (file and entry)")
    irm.add_argument("id")
    irm.add_argument("--yes", "-y", action="store_true", help="do not ask")
    iexport = isub.add_parser("export", help="copy an image, settings included, to a folder")
    iexport.add_argument("id")
    iexport.add_argument("--to", type=Path, required=True, metavar="DIR")
    ireveal = isub.add_parser("reveal", help="print the folder holding an image")
    ireveal.add_argument("id")
    ireveal.add_argument("--open", action="store_true", help="show it in the file manager")


def _db() -> Any:
    from app.store import open_default_database
    from app.store.images import recover_gallery

    db = open_default_database()
    recover_gallery(db)
    return db


# --- imagine ------------------------------------------------------------------------------


def cmd_imagine(args: argparse.Namespace) -> int:
    from app.engine.image_session import ImageSession, ImageSettings

    width = height = None
    if args.size:
        from app.cli import _parse_size

        width, height = _parse_size(args.size)
    settings = ImageSettings(
        prompt=args.prompt,
        negative_prompt=args.negative,
        steps=args.steps,
        guidance=args.guidance,
        width=width,
        height=height,
        seed=args.seed,
        scheduler=args.scheduler,
        n_images=args.n,
    )
    session = ImageSession(_db())
    show = _ImagineDisplay(quiet=args.quiet)
    try:
        job = session.prepare(args.model, settings)
        show.plan(job)
        with _CancelOnInterrupt(session, show):
            result = session.run(job, on_event=show.event)
    finally:
        show.end_line()
        session.unload()
    for i, image in enumerate(result.images):
        if args.out:
            out = _numbered(args.out, i, len(result.images))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(image.path.read_bytes())
            print(out)
        else:
            print(image.path)
    if result.reason == "cancelled":
        kept = len(result.images)
        show.say(
            "cancelled: " + (f"kept the {kept} finished image(s)" if kept else "nothing was saved")
        )
        return 130
    return 0


def _numbered(out: Path, index: int, count: int) -> Path:
    if count == 1:
        return out
    return out.with_name(f"{out.stem}-{index + 1}{out.suffix or '.png'}")


class _CancelOnInterrupt:
    """While an image is made, Ctrl-C cancels it cleanly; a second Ctrl-C quits at once."""

    def __init__(self, session: Any, show: _ImagineDisplay) -> None:
        self.session = session
        self.show = show
        self.pressed_at = 0.0
        self.previous: Any = None

    def __enter__(self) -> _CancelOnInterrupt:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - self.pressed_at < 1.0:
            raise KeyboardInterrupt
        self.pressed_at = now
        self.show.cancelling = True
        self.session.stop()


class _ImagineDisplay:
    """Progress on stderr: one line per component loaded, step lines with s/step and ETA."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.open_line = False
        self.cancelling = False
        self.steps_shown: set[tuple[int, int]] = set()
        self.load_started = time.monotonic()

    def say(self, text: str) -> None:
        if self.quiet:
            return
        self.end_line()
        print(text, file=sys.stderr, flush=True)

    def status(self, text: str) -> None:
        """A line that the next one replaces (on a terminal)."""
        if self.quiet:
            return
        if self.tty:
            print("\r" + text.ljust(79), end="", file=sys.stderr, flush=True)
            self.open_line = True
        else:
            print(text, file=sys.stderr, flush=True)

    def end_line(self) -> None:
        if self.open_line:
            print(file=sys.stderr, flush=True)
            self.open_line = False

    def plan(self, job: Any) -> None:
        plan = job.plan
        req = job.request
        self.say(
            f"{job.model} ({job.facts.family}, {job.facts.total_bytes / 1e6:,.1f} MB) on "
            f"{plan.device} ({plan.dtype}), memory mode {plan.memory_mode.value}: "
            f"{req.width}x{req.height}, {req.steps} step{'s' if req.steps != 1 else ''}, "
            f"guidance {req.guidance:g}" + (f", {req.n_images} images" if req.n_images > 1 else "")
        )
        for reason in plan.reasons:
            self.say(f"  {reason}")
        for warning in plan.warnings:
            self.say(f"  ! {warning}")
        self.load_started = time.monotonic()

    def event(self, event: object) -> None:
        from app.engine.image_protocol import (
            ImageLoaded,
            ImageLoadProgress,
            ImageMetrics,
            PromptEncoded,
            StepProgress,
        )
        from app.store.images import GalleryImage

        if isinstance(event, ImageLoadProgress):
            mb = f"{event.bytes_done / 1e6:,.1f}/{event.bytes_total / 1e6:,.1f} MB"
            if event.ready:
                self.say(
                    f"loaded {event.component:<15} {event.bytes_total / 1e6:>9,.1f} MB  "
                    f"{100 * event.fraction:5.1f}%  at {event.elapsed_s:.1f} s"
                )
            elif self.tty:
                eta = event.eta_s
                self.status(
                    f"loading {event.component:<14} {mb}  {100 * event.fraction:5.1f}%"
                    + (f"  ETA {eta:,.0f} s" if eta is not None else "")
                )
        elif isinstance(event, PromptEncoded):
            still = f" while {', '.join(event.loading)} loaded" if event.loading else ""
            self.say(f"prompt encoded in {event.encode_s:.2f} s{still}")
        elif isinstance(event, ImageLoaded):
            self.say(
                f"model ready in {event.load_s:.1f} s: {event.device}, {event.dtype}, "
                f"memory mode {event.memory_mode}" + (", VAE tiling" if event.vae_tiling else "")
            )
            if event.note:
                self.say(f"note: {event.note}")
        elif isinstance(event, StepProgress):
            image = f"image {event.image_index + 1}/{event.n_images} " if event.n_images > 1 else ""
            text = (
                f"{image}step {event.step}/{event.steps}  {event.s_per_step:.2f} s/step  "
                f"ETA {event.eta_s:,.0f} s"
            )
            if self.tty:
                self.status(text)
            else:
                every = max(event.steps // 10, 1)
                if event.step % every == 0 or event.step == event.steps:
                    self.say(text)
        elif isinstance(event, GalleryImage):
            self.say(f"saved image (seed {event.params.seed}, {event.params.scheduler})")
        elif isinstance(event, ImageMetrics):
            self.say(
                f"{event.images} image(s) in {event.total_s:.1f} s, {event.s_per_step:.2f} s/step"
            )


# --- images -------------------------------------------------------------------------------


def cmd_images(args: argparse.Namespace) -> int:
    from app.store import images as gallery

    db = _db()
    command = args.images_command
    if command == "list":
        entries = gallery.list_images(db, args.limit)
        if args.json:
            print(json.dumps([_image_json(e) for e in entries], indent=2))
            return 0
        if not entries:
            print('No images yet. Make one with `hearth imagine "a prompt"`.')
            return 0
        print(f"{'ID':<8}  {'CREATED':<16}  {'SIZE':<9}  {'SEED':>10}  {'MODEL':<20}  PROMPT")
        for e in entries:
            prompt = e.params.prompt if len(e.params.prompt) <= 40 else e.params.prompt[:39] + "…"
            print(
                f"{e.id[:8]}  {e.created_at[:16].replace('T', ' ')}  {e.params.size:<9}  "
                f"{e.params.seed:>10}  {e.params.model[:20]:<20}  {prompt}"
            )
        return 0
    if command == "show":
        e = gallery.get_image(db, args.id)
        if args.json:
            print(json.dumps(_image_json(e), indent=2))
            return 0
        p = e.params
        lines = [
            f"image {e.id}",
            f"  file:       {e.path}" + ("" if e.path.exists() else "  (missing)"),
            f"  created:    {e.created_at}",
            f"  prompt:     {p.prompt}",
        ]
        if p.negative_prompt:
            lines.append(f"  negative:   {p.negative_prompt}")
        lines += [
            f"  model:      {p.model}",
            f"  size:       {p.size}",
            f"  seed:       {p.seed}",
            f"  steps:      {p.steps}",
            f"  guidance:   {p.guidance:g}",
            f"  scheduler:  {p.scheduler}",
            f"  made with:  Hearth {p.app_version}"
            + "".join(f", {k} {v}" for k, v in p.extra.items() if k != "model_ref"),
            f"  again:      {again_command(p)}",
        ]
        print("\n".join(lines))
        return 0
    if command == "rm":
        e = gallery.get_image(db, args.id)
        if not args.yes:
            if not sys.stdin.isatty():
                raise HearthError(
                    f"Deleting image {e.id[:8]} needs confirmation.", "Add --yes to delete it."
                )
            answer = input(f"Delete image {e.id[:8]} ({e.path.name})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Kept.")
                return 1
        gallery.delete_image(db, e.id)
        print(f"Deleted image {e.id[:8]} ({e.path}).")
        return 0
    if command == "export":
        print(gallery.export_image(db, args.id, args.to))
        return 0
    if command == "reveal":
        print(gallery.reveal_image(db, args.id, open_file_manager=args.open))
        return 0
    raise HearthError(f"Unknown images command '{command}'.", "Run `hearth images --help`.")


def again_command(params: Any) -> str:
    """The `hearth imagine` command line that makes this image again."""
    parts = ["hearth", "imagine", params.prompt]
    if params.negative_prompt:
        parts += ["--negative", params.negative_prompt]
    parts += [
        "--model",
        str(params.extra.get("model_ref") or params.model),
        "--size",
        params.size,
        "--seed",
        str(params.seed),
        "--steps",
        str(params.steps),
        "--guidance",
        f"{params.guidance:g}",
    ]
    if params.scheduler in SCHEDULERS:
        parts += ["--scheduler", params.scheduler]
    return shlex.join(parts)


def _image_json(e: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {"id": e.id, "path": str(e.path), "created_at": e.created_at, **asdict(e.params)}
