"""`hearth bench chat|image|history`: how fast this machine runs a model, the app's way."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from app.cli.common import add_command, add_load_options, load_settings_for, parse_size
from app.humanize import format_size

if TYPE_CHECKING:
    from sqlite_utils import Database

    from app.sessions.bench import ChatBench, ImageBench, Progress

R = TypeVar("R", "ChatBench", "ImageBench")


def add_commands(sub: Any) -> None:
    """Add `bench` with its subcommands to the top-level subparsers."""
    bench = sub.add_parser("bench", help="measure a model's speed on this machine")
    bsub = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    chat = add_command(bsub, "chat", cmd_bench_chat, json="print one JSON object")
    chat.add_argument("--model", help="a library name or a .gguf file (default: the starter)")
    chat.add_argument("--prompt-tokens", type=int, default=512, help="prompt length (512)")
    chat.add_argument("--gen-tokens", type=int, default=128, help="tokens to generate (128)")
    chat.add_argument("--runs", type=int, default=3, help="measured runs after a warm-up (3)")
    add_load_options(chat, ctx="context length")
    image = add_command(bsub, "image", cmd_bench_image, json="print one JSON object")
    image.add_argument("--model", help="a library name or a diffusers folder")
    image.add_argument("--size", help="WxH (default: the model's native size)")
    image.add_argument("--steps", type=int, default=4, help="denoising steps per image (4)")
    image.add_argument("--runs", type=int, default=2, help="images to time (2)")
    history = add_command(bsub, "history", cmd_bench_history, json="print a JSON list")
    history.add_argument("--model", help="only this model's results")


def cmd_bench_chat(args: argparse.Namespace) -> int:
    """Measure load time, time to first token, prompt and decode speed, and peak memory.

    The model loads through the normal path (the planner's choices for this machine, or
    the --ctx/--threads/--gpu-layers/--backend given, then Settings). After one warm-up,
    each run gets a prompt of --prompt-tokens that starts differently, so no run reuses
    the previous one's cache; sampling is greedy. Medians of --runs; the result is kept
    (see `hearth bench history` and the System page).
    """
    from app.models.starter import STARTER
    from app.sessions.bench import bench_chat

    settings = load_settings_for(args)
    result = _measure(
        args,
        lambda db, on_progress: bench_chat(
            db,
            args.model or STARTER.name,
            prompt_tokens=args.prompt_tokens,
            gen_tokens=args.gen_tokens,
            runs=args.runs,
            settings=settings,
            on_progress=on_progress,
        ),
    )
    if result is None:  # --json: printed already
        return 0
    print(
        f"  {result.backend}, {result.threads} threads, {result.gpu_layers} GPU layers, "
        f"context {result.n_ctx}, batch {result.n_batch}, KV {result.kv_type}, "
        f"flash attention {'on' if result.flash_attn else 'off'}"
    )
    print(f"  load              {result.load_s:8.2f} s")
    _row("time to 1st token", result.ttft_s.__dict__, "s", 3)
    _row(f"prompt ({result.prompt_tokens} tok)", result.prompt_tps.__dict__, "tok/s", 1)
    _row(f"decode ({result.gen_tokens} tok)", result.decode_tps.__dict__, "tok/s", 1)
    _peak(result.peak_rss_bytes)
    print(f"  medians of {result.runs} run{'s' if result.runs != 1 else ''} after a warm-up")
    return 0


def cmd_bench_image(args: argparse.Namespace) -> int:
    """Measure an image model: load time, time to the first step, s/step, total, memory.

    The pipeline is planned and loaded as `hearth imagine` does; the images are thrown
    away (the gallery is left alone). The first run includes the load; the others show the
    loaded pipeline's speed. The result is kept (`hearth bench history`).
    """
    from app.sessions.bench import bench_image

    width, height = parse_size(args.size) if args.size else (None, None)
    result = _measure(
        args,
        lambda db, on_progress: bench_image(
            db,
            args.model,
            width=width,
            height=height,
            steps=args.steps,
            runs=args.runs,
            on_progress=on_progress,
        ),
    )
    if result is None:  # --json: printed already
        return 0
    print(
        f"  {result.device}, {result.dtype}, memory mode {result.memory_mode}, "
        f"{result.width}x{result.height}, {result.steps} steps"
    )
    print(f"  load              {result.load_s:8.2f} s")
    if result.load_to_first_step_s is not None:
        print(f"  load to 1st step  {result.load_to_first_step_s:8.2f} s")
    _row("time to 1st step", result.first_step_s.__dict__, "s", 3)
    _row("per step", result.s_per_step.__dict__, "s", 3)
    _row("total per image", result.total_s.__dict__, "s", 2)
    _peak(result.peak_rss_bytes)
    return 0


def _measure(args: argparse.Namespace, bench: Callable[[Database, Progress], R]) -> R | None:
    """Run `bench` on the default database behind the bench progress bar; with --json print
    the result and return None, else print its first line and return it for the rest."""
    from app.cli.output import ProgressBar, Unit
    from app.store import open_default_database

    db = open_default_database()
    try:
        with ProgressBar("bench", Unit.FRACTION, quiet=args.json) as bar:
            result = bench(db, lambda what, f: bar.update(f, 1.0, what))
    finally:
        db.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return None
    print(f"{result.model} on {result.machine}")
    return result


def cmd_bench_history(args: argparse.Namespace) -> int:
    """List kept bench results, newest first."""
    from app.cli.output import print_table
    from app.store import open_default_database
    from app.store.bench import list_results

    db = open_default_database()
    try:
        records = list_results(db, model=args.model)
    finally:
        db.close()
    if args.json:
        print(json.dumps([r.result for r in records], indent=2))
        return 0
    if not records:
        print("No bench results yet: run `hearth bench chat` or `hearth bench image`.")
        return 0
    rows = [_history_row(r.kind, r.result) for r in records]
    print_table(["when", "kind", "model", "where", "speed", "first"], rows)
    return 0


def _history_row(kind: str, r: dict[str, Any]) -> list[str]:
    when = str(r.get("created_at", ""))[:16].replace("T", " ")
    if kind == "chat":
        where = f"{r['backend']}, {r['threads']} threads, {r['gpu_layers']} GPU layers"
        speed = (
            f"{r['decode_tps']['median']:.1f} tok/s decode, "
            f"{r['prompt_tps']['median']:.0f} tok/s prompt"
        )
        first = f"{r['ttft_s']['median']:.2f} s to 1st token"
    else:
        where = f"{r['device']}, {r['dtype']}, {r['width']}x{r['height']}"
        speed = f"{r['s_per_step']['median']:.2f} s/step"
        first = f"{r['first_step_s']['median']:.2f} s to 1st step"
    return [when, kind, str(r["model"]), where, speed, first]


def _row(label: str, stat: dict[str, float], unit: str, digits: int) -> None:
    print(
        f"  {label:<17} {stat['median']:8.{digits}f} {unit}"
        f"  (min {stat['min']:.{digits}f}, max {stat['max']:.{digits}f})"
    )


def _peak(peak_rss_bytes: int | None) -> None:
    peak = format_size(peak_rss_bytes) if peak_rss_bytes else "not measured"
    print(f"  peak memory       {peak:>8}")
