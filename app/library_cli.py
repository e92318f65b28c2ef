"""`hearth models list/show/rm/import/export/catalog`: the library's command-line face."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.hardware.facts import ChatModelFacts, ImageModelFacts
from app.hardware.planner import ImagePlan, LoadPlan, plan_image_load, plan_load
from app.hardware.profile import HardwareProfile
from app.models.gguf_info import ModelFileError

#: The `hearth models` subcommands this module runs.
LIBRARY_COMMANDS = ("list", "show", "rm", "import", "export", "catalog")


def cmd_library(args: argparse.Namespace) -> int:
    """Run one of LIBRARY_COMMANDS."""
    command = args.models_command
    if command == "list":
        return cmd_list(args)
    if command == "show":
        return cmd_show(args)
    if command == "rm":
        return cmd_rm(args)
    if command == "import":
        return cmd_import(args)
    if command == "export":
        return cmd_export(args)
    if command == "catalog":
        return cmd_catalog(args)
    raise HearthError(f"Unknown models command '{command}'.", "Run `hearth models --help`.")


# --- list / show ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from app.models.library import list_models, model_extra

    rows = list_models(_open_db())
    hw = _this_machine() if rows else None
    fits = {row["name"]: _plan_row(row, hw) for row in rows} if hw else {}
    if args.json:
        out = []
        for row in rows:
            verdict, _facts, _plan = fits[row["name"]]
            out.append({**row, "extra": model_extra(row), "verdict": verdict})
        print(json.dumps(out, indent=2, default=str))
        return 0
    if not rows:
        print(
            "No models yet. Install the starter assistant with `hearth models starter`, pick one "
            "with `hearth models catalog`, or import a file with `hearth models import PATH`."
        )
        return 0
    width = max(24, *(len(r["name"]) for r in rows))
    header = (
        f"{'NAME':<{width}}  {'KIND':<5}  {'SIZE':>9}  {'ARCH / QUANT':<20}  {'SOURCE':<7}  "
        f"{'HERE':<19}  LAST USED"
    )
    print(header)
    for row in rows:
        arch = " ".join(x for x in (row["architecture"], row["quantization"]) if x) or "?"
        print(
            f"{row['name']:<{width}}  {row['kind']:<5}  {_gib(row['size_bytes'] or 0):>9}  "
            f"{arch:<20}  {row['source']:<7}  {fits[row['name']][0]:<19}  "
            f"{_when(row['last_used_at'])}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from app.models.library import model_extra
    from app.models.removal import find_library_model

    row = find_library_model(_open_db(), args.name)
    extra = model_extra(row)
    hw = _this_machine()
    verdict, facts, plan = _plan_row(row, hw)
    if args.json:
        out = {
            **row,
            "extra": extra,
            "verdict": verdict,
            "facts": asdict(facts) if facts is not None else None,
            "plan": plan.to_dict() if plan is not None else None,
        }
        print(json.dumps(out, indent=2, default=str))
        return 0

    path = Path(row["path"])
    source = row["source"]
    if source == "link":
        source = "link (Hearth uses the file where it is and never deletes it)"
    elif extra.get("imported_from"):
        source = f"{source} (from {extra['imported_from']})"
    lines = [row["name"], f"  kind:          {row['kind']}", f"  path:          {path}"]
    lines.append(f"  source:        {source}")
    if row["repo"]:
        rev = f" @ {row['revision']}" if row["revision"] else ""
        lines.append(f"  repo:          {row['repo']}{rev}")
    size = row["size_bytes"] or 0
    lines += [
        f"  size:          {_gib(size)} ({size:,} bytes)",
        f"  sha256:        {row['sha256'] or 'not recorded'}",
        f"  license:       {row['license'] or 'not recorded'}",
    ]
    if isinstance(facts, ChatModelFacts):
        kv = f"{facts.head_count_kv} KV" if facts.head_count_kv != facts.head_count else "no GQA"
        lines += [
            f"  architecture:  {facts.arch}, {facts.block_count} blocks, embedding "
            f"{facts.embedding_length}, {facts.head_count} heads ({kv}), head size "
            f"{facts.key_length}",
            f"  quantization:  {facts.quantization or '?'}",
            f"  parameters:    {_params(facts.parameters)}",
            f"  context:       {facts.context_length:,} tokens (trained)",
            f"  vocabulary:    {facts.vocab_size or '?'} tokens; chat template: "
            f"{'yes' if facts.has_chat_template else 'no (a generic one is used)'}",
        ]
    elif isinstance(facts, ImageModelFacts):
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in sorted(facts.component_bytes.items()))
        lines += [
            f"  family:        {facts.family} ({facts.pipeline_class or '?'}), native "
            f"{facts.native_resolution}px",
            f"  weights:       {facts.stored_dtype}: {parts}",
        ]
    else:
        lines.append(
            f"  architecture:  {row['architecture'] or '?'} {row['quantization'] or ''}".rstrip()
        )
    files = extra.get("files") or []
    if len(files) > 1:
        lines.append(f"  files:         {len(files)}")
        lines += [f"    {f['path']}  {_gib(f['size'])}" for f in files[:20]]
        if len(files) > 20:
            lines.append(f"    … and {len(files) - 20} more")
    lines.append(f"  added:         {_when(row['added_at'])}")
    lines.append(f"  last used:     {_when(row['last_used_at'])}")
    lines.append(f"On this machine: {verdict}")
    if isinstance(plan, LoadPlan):
        layers = {
            "all": "all layers on the GPU",
            "some": f"{plan.gpu_layers} of {plan.total_layers} layers on the GPU",
            "none": "CPU only",
        }[plan.gpu_layers_mode]
        lines.append(
            f"  {plan.backend.value}, {layers}, {plan.threads} threads, context "
            f"{plan.n_ctx:,}, about {_gib(plan.estimate.total)} in all"
        )
        lines += [f"  - {r}" for r in plan.reasons]
        lines += [f"  ! {w}" for w in plan.warnings]
    elif isinstance(plan, ImagePlan):
        lines.append(
            f"  {plan.device} ({plan.dtype}), memory mode {plan.memory_mode.value}, "
            f"{plan.width}x{plan.height}"
        )
        lines += [f"  - {r}" for r in plan.reasons]
        lines += [f"  ! {w}" for w in plan.warnings]
    print("\n".join(lines))
    return 0


# --- rm ---------------------------------------------------------------------------------------


def cmd_rm(args: argparse.Namespace) -> int:
    from app.models.removal import find_library_model, remove_model
    from app.paths import hearth_paths

    db = _open_db()
    row = find_library_model(db, args.name)
    if not args.yes:
        if row["source"] == "link":
            question = (
                f"Forget {row['name']}? Its files at {row['path']} stay where they are. [y/N] "
            )
        else:
            question = (
                f"Remove {row['name']} and delete its files ({_gib(row['size_bytes'] or 0)} at "
                f"{row['path']})? [y/N] "
            )
        print(question, end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print(f"\nKept {row['name']}." if not answer else f"Kept {row['name']}.")
            return 1
    removed = remove_model(db, hearth_paths(), row["name"])
    if removed.deleted:
        print(f"Removed {removed.name} and freed {_gib(removed.freed_bytes)}.")
    else:
        where = ", ".join(str(p) for p in removed.kept)
        print(f"Removed {removed.name} from the library; its files stay at {where}.")
    return 0


# --- import / export ------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from app.cli import ProgressLine
    from app.models.transfer import import_model

    bar = ProgressLine("import")
    try:
        imported = import_model(args.path, link=args.link, name=args.name, progress=bar.update)
    finally:
        bar.finish()
    for m in imported:
        if m.already_present:
            print(
                f"{m.name} is already in the library (same sha256 {m.sha256[:12]}…) at {m.path}; "
                "nothing to do."
            )
        elif m.source == "link":
            print(
                f"Linked {m.name} ({m.kind}, {_gib(m.size_bytes)}) in place at {m.path}; "
                f"sha256 {m.sha256[:12]}… recorded. Hearth will not delete or move it."
            )
        else:
            print(
                f"Imported {m.name} ({m.kind}, {_gib(m.size_bytes)}) into {m.path}; "
                f"sha256 {m.sha256[:12]}… verified."
            )
    new = [m for m in imported if not m.already_present]
    if new:
        first = new[0]
        verb = "hearth chat -m" if first.kind == "chat" else "hearth models show"
        print(f"Try it: {verb} {first.name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from app.cli import ProgressLine
    from app.models.transfer import export_models

    bar = ProgressLine("export")
    try:
        result = export_models(args.names, args.to, progress=bar.update)
    finally:
        bar.finish()
    for m in result.models:
        files = f"{len(m.files)} file{'s' if len(m.files) != 1 else ''}"
        print(f"Exported {m.name} ({m.kind}, {_gib(m.size_bytes)}, {files})")
    print(
        f"Wrote {len(result.models)} model(s), {_gib(result.size_bytes)}, and "
        f"{result.manifest.name} to {result.dest}."
    )
    print(f"On the other machine: hearth models import {result.dest}")
    return 0


# --- catalog ----------------------------------------------------------------------------------


def cmd_catalog(args: argparse.Namespace) -> int:
    from app.cli import _hardware
    from app.models.catalog import catalog_entries, fit_variants
    from app.models.library import list_models

    entries = catalog_entries(args.kind)
    hw = _hardware(args.machine, include_builds=True)
    machine = hw.simulated or "this machine"
    have = {r["filename"] for r in list_models(_open_db())} | {
        r["name"] for r in list_models(_open_db())
    }
    if args.json:
        out = []
        for e in entries:
            fits = fit_variants(e, hw)
            suggested = next((f.variant.quant for f in fits if f.suggested), None)
            variants = []
            for f in fits:
                d = f.to_dict()
                d["installed"] = _installed(f.variant.files[0], f.variant.library_name, e, have)
                variants.append(d)
            out.append(
                {
                    "name": e.name,
                    "kind": e.kind,
                    "title": e.title,
                    "repo": e.repo,
                    "license": e.license,
                    "description": e.description,
                    "parameters": e.parameters,
                    "tags": list(e.tags),
                    "architecture": e.architecture,
                    "suggested": suggested,
                    "variants": variants,
                }
            )
        print(json.dumps({"machine": machine, "models": out}, indent=2))
        return 0

    print(f"Curated models, with how each would run on {machine} (sizes approximate).")
    kind = None
    for e in entries:
        if e.kind != kind:
            kind = e.kind
            print(f"\n{'Chat models (GGUF)' if kind == 'chat' else 'Image models (diffusers)'}")
        fits = fit_variants(e, hw)
        best = next((f for f in fits if f.suggested), None)
        print(f"\n  {e.name} — {e.title} · {e.license}")
        print(f"    {e.description}")
        for f in fits:
            mark = "  ← best here" if f.suggested else ""
            if _installed(f.variant.files[0], f.variant.library_name, e, have):
                mark += "  (installed)"
            size = "~" + _gib(f.variant.size_bytes)
            print(f"    {f.variant.quant:<7} {size:>10}  {f.verdict.value:<19}{mark}".rstrip())
        if best is None:
            print("    Nothing fits here: pick a smaller model.")
        elif e.kind == "chat":
            print(f"    get it: hearth models pull {e.repo} --quant {best.variant.quant}")
        else:
            print(f"    repo: {e.repo} (fp16 diffusers variant)")
    return 0


def _installed(filename: str, library_name: str, e: Any, have: set[str]) -> bool:
    return filename in have or library_name in have or (e.kind == "image" and e.name in have)


# --- helpers ----------------------------------------------------------------------------------


def _plan_row(
    row: dict[str, Any], hw: HardwareProfile | None
) -> tuple[str, ChatModelFacts | ImageModelFacts | None, LoadPlan | ImagePlan | None]:
    """(verdict text, facts, plan) for a library model on `hw`; the text says when it cannot."""
    path = Path(row["path"])
    if not path.exists():
        return "missing (file gone)", None, None
    try:
        facts: ChatModelFacts | ImageModelFacts
        if row["kind"] == "image":
            from app.models.diffusers_info import read_diffusers_facts

            facts = read_diffusers_facts(path)
        else:
            from app.models.gguf_info import read_gguf_facts

            facts = read_gguf_facts(path)
    except ModelFileError:
        return "damaged (see show)", None, None
    if hw is None:
        return "?", facts, None
    plan: LoadPlan | ImagePlan
    if isinstance(facts, ImageModelFacts):
        plan = plan_image_load(hw, facts)
    else:
        plan = plan_load(hw, facts)
    return plan.verdict.value, facts, plan


def _this_machine() -> HardwareProfile:
    from app.hardware.detect import detect_hardware

    return detect_hardware(include_builds=True)


def _open_db() -> Any:
    from app.store import open_default_database

    return open_default_database()


def _when(stamp: str | None) -> str:
    if not stamp:
        return "never"
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def _params(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.0f} M"


def _gib(n: float) -> str:
    from app.models.transfer import format_size

    return format_size(n)


# --- arguments --------------------------------------------------------------------------------


def add_library_commands(msub: Any) -> None:
    """Add LIBRARY_COMMANDS to the `hearth models` subparsers."""
    from app.cli import _add_machine_option

    mlist = msub.add_parser(
        "list",
        help="list the models in the library, with how each fits here",
        description="Name, kind, size, architecture and quantization, source, the planner's "
        "verdict on this machine, and when each model was last used.",
    )
    mlist.add_argument("--json", action="store_true", help="print one JSON array")

    show = msub.add_parser(
        "show", help="everything recorded about a model, and how it would load here"
    )
    show.add_argument("name", help="a library name (see `hearth models list`)")
    show.add_argument("--json", action="store_true", help="print one JSON object")

    rm = msub.add_parser(
        "rm",
        help="remove a model (asks first; refuses while it is loaded)",
        description="Remove a model from the library and delete the files Hearth holds for "
        "it. A model imported with --link only leaves the library: its files stay.",
    )
    rm.add_argument("name")
    rm.add_argument("--yes", "-y", action="store_true", help="do not ask")

    imp = msub.add_parser(
        "import",
        help="import a .gguf, a split GGUF, a diffusers folder, or an export folder",
        description="Check and copy a model from any disk or USB drive into the library "
        "(sha256 recorded). PATH is a .gguf file, any part of a split GGUF or its folder, a "
        "diffusers folder (safetensors only), or a folder written by `hearth models export` "
        "(every file is verified against its manifest before anything is accepted).",
    )
    imp.add_argument("path", type=Path, metavar="PATH")
    imp.add_argument(
        "--link",
        action="store_true",
        help="use the files where they are instead of copying them (they must stay there)",
    )
    imp.add_argument("--name", help="the name in the library (default: from the file name)")

    exp = msub.add_parser(
        "export",
        help="copy models and a verified manifest to a folder, e.g. a USB drive",
        description="Write each model's files and hearth-manifest.json (sizes, sha256, "
        "license, source) into DIR; `hearth models import DIR` on the other machine checks "
        "them all before accepting.",
    )
    exp.add_argument("names", nargs="+", metavar="NAME")
    exp.add_argument("--to", required=True, type=Path, metavar="DIR")

    cat = msub.add_parser(
        "catalog",
        help="curated models, with the best quant for this machine",
        description="Curated chat and image models, each variant with the planner's verdict "
        "(fits on GPU / split / in RAM / tight / won't fit) and the best fit marked.",
    )
    cat.add_argument("--kind", choices=["chat", "image"], help="only this kind of model")
    cat.add_argument("--json", action="store_true", help="print one JSON object")
    _add_machine_option(cat)
