"""`hearth imagine` and `hearth images`: make images in a terminal, and browse the gallery."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from app.cli.common import add_command, parse_size
from app.cli.output import EXIT_INTERRUPTED, CtrlC, ProgressBar, Unit, confirm, print_table
from app.engines.image_diffusers.protocol import SCHEDULERS
from app.errors import HearthError
from app.humanize import format_size


def add_commands(sub: Any) -> None:
    """Add `imagine` and `images` to the top-level subparsers."""
    imagine = add_command(sub, "imagine", cmd_imagine)
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
    listing = add_command(isub, "list", cmd_list, json="print one JSON array")
    listing.add_argument("--limit", type=int, help="show at most this many")
    show = add_command(isub, "show", cmd_show, json="")
    show.add_argument("id", help="an image id (or its first characters)")
    add_command(isub, "rm", cmd_rm, yes=True).add_argument("id")
    export = add_command(isub, "export", cmd_export)
    export.add_argument("id")
    export.add_argument("--to", type=Path, required=True, metavar="DIR")
    reveal = add_command(isub, "reveal", cmd_reveal)
    reveal.add_argument("id")
    reveal.add_argument("--open", action="store_true", help="show it in the file manager")


def _db() -> Any:
    from app.store import open_default_database
    from app.store.gallery import recover_gallery

    db = open_default_database()
    # Half-written files from a crash are removed, finished ones recorded, before listing.
    recover_gallery(db)
    return db


# --- imagine ------------------------------------------------------------------------------


def cmd_imagine(args: argparse.Namespace) -> int:
    """Make an image from a text prompt.

    Make an image from PROMPT with a local Stable Diffusion model. Shows load progress per
    component and each denoising step; the image is saved in the gallery (`hearth images
    list`) with its settings inside the PNG. Ctrl-C cancels cleanly. On a CPU, expect
    minutes per image.
    """
    from app.sessions.image import ImageSession, ImageSettings

    width, height = parse_size(args.size) if args.size else (None, None)
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
        with CtrlC(session.stop):  # Ctrl-C cancels cleanly; a second one quits at once
            result = session.run(job, on_event=show.event)
    finally:
        show.close()
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
        return EXIT_INTERRUPTED
    return 0


def _numbered(out: Path, index: int, count: int) -> Path:
    if count == 1:
        return out
    return out.with_name(f"{out.stem}-{index + 1}{out.suffix or '.png'}")


class _ImagineDisplay:
    """Progress on stderr: a bar while the model loads, a line per component, then the steps."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.total_bytes = 0
        self.loading = ProgressBar("loading", Unit.BYTES, quiet=quiet)
        self.steps = ProgressBar("generating", Unit.STEPS, quiet=quiet)

    def say(self, text: str) -> None:
        """A line of its own, above any bar."""
        self.steps.note(text)

    def close(self) -> None:
        self.loading.close()
        self.steps.close()

    def plan(self, job: Any) -> None:
        plan = job.plan
        req = job.request
        self.total_bytes = job.facts.total_bytes
        self.say(
            f"{job.model} ({job.facts.family}, {format_size(job.facts.total_bytes)}) on "
            f"{plan.device} ({plan.dtype}), memory mode {plan.memory_mode.value}: "
            f"{req.width}x{req.height}, {req.steps} step{'s' if req.steps != 1 else ''}, "
            f"guidance {req.guidance:g}" + (f", {req.n_images} images" if req.n_images > 1 else "")
        )
        for reason in plan.reasons:
            self.say(f"  {reason}")
        for warning in plan.warnings:
            self.say(f"  ! {warning}")

    def event(self, event: object) -> None:
        from app.engines.image_diffusers.protocol import (
            ImageLoaded,
            ImageLoadProgress,
            ImageMetrics,
            PromptEncoded,
            StepProgress,
        )
        from app.store.gallery import GalleryImage

        if isinstance(event, ImageLoadProgress):
            if event.ready:
                self.loading.note(
                    f"loaded {event.component:<15} {format_size(event.bytes_total):>9}  "
                    f"{100 * event.fraction:5.1f}%  at {event.elapsed_s:.1f} s"
                )
            else:
                total = max(self.total_bytes, 1)
                self.loading.update(event.fraction * total, total, event.component, eta=event.eta_s)
        elif isinstance(event, PromptEncoded):
            still = f" while {', '.join(event.loading)} loaded" if event.loading else ""
            self.loading.note(f"prompt encoded in {event.encode_s:.2f} s{still}")
        elif isinstance(event, ImageLoaded):
            self.loading.close()
            self.say(
                f"model ready in {event.load_s:.1f} s: {event.device}, {event.dtype}, "
                f"memory mode {event.memory_mode}" + (", VAE tiling" if event.vae_tiling else "")
            )
            if event.note:
                self.say(f"note: {event.note}")
        elif isinstance(event, StepProgress):
            image = f"image {event.image_index + 1}/{event.n_images}" if event.n_images > 1 else ""
            rate = 1 / event.s_per_step if event.s_per_step > 0 else None
            self.steps.update(event.step, event.steps, image, rate=rate, eta=event.eta_s)
        elif isinstance(event, GalleryImage):
            self.say(f"saved image (seed {event.params.seed}, {event.params.scheduler})")
        elif isinstance(event, ImageMetrics):
            self.steps.close()
            self.say(
                f"{event.images} image(s) in {event.total_s:.1f} s, {event.s_per_step:.2f} s/step"
            )


# --- images -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """The images, newest first."""
    from app.store import gallery

    entries = gallery.list_images(_db(), args.limit)
    if args.json:
        print(json.dumps([_image_json(e) for e in entries], indent=2))
        return 0
    if not entries:
        print('No images yet. Make one with `hearth imagine "a prompt"`.')
        return 0
    print_table(
        ["ID", "CREATED", "SIZE", "SEED", "MODEL", "PROMPT"],
        (
            [
                e.id[:8],
                e.created_at[:16].replace("T", " "),
                e.params.size,
                str(e.params.seed),
                e.params.model[:20],
                e.params.prompt if len(e.params.prompt) <= 40 else e.params.prompt[:39] + "…",
            ]
            for e in entries
        ),
        right={"SEED"},
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """An image's settings, and how to make it again."""
    from app.store import gallery

    e = gallery.get_image(_db(), args.id)
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


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete an image (file and entry)."""
    from app.store import gallery

    db = _db()
    e = gallery.get_image(db, args.id)
    question = f"Delete image {e.id[:8]} ({e.path.name})? [y/N] "
    refusal = HearthError(
        f"Deleting image {e.id[:8]} needs confirmation.", "Add --yes to delete it."
    )
    if not args.yes and not confirm(question, refuse_without_terminal=refusal):
        print("Kept.")
        return 1
    gallery.delete_image(db, e.id)
    print(f"Deleted image {e.id[:8]} ({e.path}).")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Copy an image, settings included, to a folder."""
    from app.store import gallery

    print(gallery.export_image(_db(), args.id, args.to))
    return 0


def cmd_reveal(args: argparse.Namespace) -> int:
    """Print the folder holding an image."""
    from app.store import gallery

    print(gallery.reveal_image(_db(), args.id, open_file_manager=args.open))
    return 0


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
