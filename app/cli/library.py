"""`hearth models starter/list/show/rm/import/export/catalog`: the library's command-line face."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.cli.common import add_command, hardware_for, load_settings_for
from app.cli.output import ProgressBar, confirm, print_table
from app.humanize import format_local_time, format_parameters, format_size
from app.models.gguf import ModelFileError, UnsupportedArchitectureError
from app.models.kinds import PlannedModel, plan_library_model
from app.models.library import find_library_model
from app.planner import ImagePlan, LoadPlan
from app.planner.facts import ChatModelFacts, ImageModelFacts
from app.store import open_default_database
from app.store.library import ModelKind, ModelSource, list_models

# --- starter --------------------------------------------------------------------------------


def cmd_starter(args: argparse.Namespace) -> int:
    """Install the starter assistant (1.1 GB, once)."""
    from app.models.starter import STARTER, install_starter
    from app.paths import hearth_paths

    paths = hearth_paths().ensure()
    with ProgressBar("starter model") as bar:
        result = install_starter(
            open_default_database(), paths, parts_dir=args.parts_dir, progress=bar.update
        )
    if result.installed_now:
        print(f"Installed the starter assistant {STARTER.name} at {result.path} (sha256 verified).")
    else:
        print(f"The starter assistant {STARTER.name} is already installed at {result.path}.")
    return 0


# --- list / show ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """List the models in the library, with how each fits here.

    Name, kind, size, architecture and quantization, source, the planner's verdict on this
    machine, and when each model was last used.
    """
    rows = list_models(open_default_database())
    hw = hardware_for(None) if rows else None
    settings = load_settings_for(args) if rows else None  # the defaults chosen in Settings
    fits = {row.name: plan_library_model(row, hw, settings) for row in rows} if hw else {}
    if args.json:
        out = [{**row.to_dict(), "verdict": _here(fits.get(row.name))} for row in rows]
        print(json.dumps(out, indent=2, default=str))
        return 0
    if not rows:
        print(
            "No models yet. Install the starter assistant with `hearth models starter`, pick one "
            "with `hearth models catalog`, or import a file with `hearth models import PATH`."
        )
        return 0
    print_table(
        ["NAME", "KIND", "SIZE", "ARCH / QUANT", "SOURCE", "HERE", "LAST USED"],
        (
            [
                row.name,
                str(row.kind),
                format_size(row.size_bytes or 0),
                " ".join(x for x in (row.architecture, row.quantization) if x) or "?",
                str(row.source),
                _here(fits.get(row.name)),
                format_local_time(row.last_used_at),
            ]
            for row in rows
        ),
        right={"SIZE"},
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Everything recorded about a model, and how it would load here."""
    row = find_library_model(open_default_database(), args.name)
    extra = row.extra
    hw = hardware_for(None)
    planned = plan_library_model(row, hw, load_settings_for(args))
    verdict, facts, plan = _here(planned), planned.facts, planned.plan
    if args.json:
        out = {
            **row.to_dict(),
            "verdict": verdict,
            "facts": asdict(facts) if facts is not None else None,
            "plan": plan.to_dict() if plan is not None else None,
        }
        print(json.dumps(out, indent=2, default=str))
        return 0

    path = row.path
    source: str = row.source
    if row.source is ModelSource.LINK:
        source = "link (Hearth uses the file where it is and never deletes it)"
    elif row.imported_from:
        source = f"{source} (from {row.imported_from})"
    lines = [row.name, f"  kind:          {row.kind}", f"  path:          {path}"]
    lines.append(f"  source:        {source}")
    if row.repo:
        rev = f" @ {row.revision}" if row.revision else ""
        lines.append(f"  repo:          {row.repo}{rev}")
    size = row.size_bytes or 0
    lines += [
        f"  size:          {format_size(size)} ({size:,} bytes)",
        f"  sha256:        {row.sha256 or 'not recorded'}",
        f"  license:       {row.license or 'not recorded'}",
    ]
    if isinstance(facts, ChatModelFacts):
        kv = f"{facts.head_count_kv} KV" if facts.head_count_kv != facts.head_count else "no GQA"
        lines += [
            f"  architecture:  {facts.arch}, {facts.block_count} blocks, embedding "
            f"{facts.embedding_length}, {facts.head_count} heads ({kv}), head size "
            f"{facts.key_length}",
            f"  quantization:  {facts.quantization or '?'}",
            f"  parameters:    {format_parameters(facts.parameters)}",
            f"  context:       {facts.context_length:,} tokens (trained)",
            f"  vocabulary:    {facts.vocab_size or '?'} tokens; chat template: "
            f"{'yes' if facts.has_chat_template else 'no (a generic one is used)'}",
        ]
        if facts.pooling is not None:
            lines[-1] = f"  vocabulary:    {facts.vocab_size or '?'} tokens"
            lines.append(
                f"  embeddings:    vectors of {facts.embedding_length} numbers "
                f"({facts.pooling} pooling); serve them with `hearth serve` (/v1/embeddings)"
            )
    elif isinstance(facts, ImageModelFacts):
        parts = ", ".join(f"{k} {format_size(v)}" for k, v in sorted(facts.component_bytes.items()))
        lines += [
            f"  family:        {facts.family} ({facts.pipeline_class or '?'}), native "
            f"{facts.native_resolution}px",
            f"  weights:       {facts.stored_dtype}: {parts}",
        ]
    else:
        lines.append(
            f"  architecture:  {row.architecture or '?'} {row.quantization or ''}".rstrip()
        )
    files = extra.get("files") or []
    if len(files) > 1:
        lines.append(f"  files:         {len(files)}")
        lines += [f"    {f['path']}  {format_size(f['size'])}" for f in files[:20]]
        if len(files) > 20:
            lines.append(f"    … and {len(files) - 20} more")
    lines.append(f"  added:         {format_local_time(row.added_at)}")
    lines.append(f"  last used:     {format_local_time(row.last_used_at)}")
    lines.append(f"On this machine: {verdict}")
    if planned.problem:
        lines.append(f"  {planned.problem}")
    if isinstance(plan, LoadPlan):
        layers = {
            "all": "all layers on the GPU",
            "some": f"{plan.gpu_layers} of {plan.total_layers} layers on the GPU",
            "none": "CPU only",
        }[plan.gpu_layers_mode]
        lines.append(
            f"  {plan.backend.value}, {layers}, {plan.threads} threads, context "
            f"{plan.n_ctx:,}, about {format_size(plan.estimate.total)} in all"
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
    """Remove a model (asks first; refuses while it is loaded).

    Remove a model from the library and delete the files Hearth holds for it. A model
    imported with --link only leaves the library: its files stay.
    """
    from app.models.removal import remove_model
    from app.paths import hearth_paths

    db = open_default_database()
    row = find_library_model(db, args.name)
    if not args.yes:
        if row.source is ModelSource.LINK:
            question = f"Forget {row.name}? Its files at {row.path} stay where they are. [y/N] "
        else:
            question = (
                f"Remove {row.name} and delete its files ({format_size(row.size_bytes or 0)} at "
                f"{row.path})? [y/N] "
            )
        if not confirm(question):
            print(f"Kept {row.name}.")
            return 1
    removed = remove_model(db, hearth_paths(), row.name)
    if removed.deleted:
        print(f"Removed {removed.name} and freed {format_size(removed.freed_bytes)}.")
    else:
        where = ", ".join(str(p) for p in removed.kept)
        print(f"Removed {removed.name} from the library; its files stay at {where}.")
    return 0


# --- import / export ------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    """Import a .gguf, a split GGUF, a diffusers folder, or an export folder.

    Check and copy a model from any disk or USB drive into the library (sha256 recorded).
    PATH is a .gguf file, any part of a split GGUF or its folder, a diffusers folder
    (safetensors only), or a folder written by `hearth models export` (every file is
    verified against its manifest before anything is accepted).
    """
    from app.models.portable import import_model

    with ProgressBar("import") as bar:
        imported = import_model(args.path, link=args.link, name=args.name, progress=bar.update)
    for m in imported:
        if m.already_present:
            print(
                f"{m.name} is already in the library (same sha256 {m.sha256[:12]}…) at {m.path}; "
                "nothing to do."
            )
        elif m.source is ModelSource.LINK:
            print(
                f"Linked {m.name} ({m.kind}, {format_size(m.size_bytes)}) in place at {m.path}; "
                f"sha256 {m.sha256[:12]}… recorded. Hearth will not delete or move it."
            )
        else:
            print(
                f"Imported {m.name} ({m.kind}, {format_size(m.size_bytes)}) into {m.path}; "
                f"sha256 {m.sha256[:12]}… verified."
            )
    new = [m for m in imported if not m.already_present]
    if new:
        first = new[0]
        verb = "hearth chat -m" if first.kind is ModelKind.CHAT else "hearth models show"
        print(f"Try it: {verb} {first.name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Copy models and a verified manifest to a folder, e.g. a USB drive.

    Write each model's files and hearth-manifest.json (sizes, sha256, license, source) into
    DIR; `hearth models import DIR` on the other machine checks them all before accepting.
    """
    from app.models.portable import export_models

    with ProgressBar("export") as bar:
        result = export_models(args.names, args.to, progress=bar.update)
    for m in result.models:
        files = f"{len(m.files)} file{'s' if len(m.files) != 1 else ''}"
        print(f"Exported {m.name} ({m.kind}, {format_size(m.size_bytes)}, {files})")
    print(
        f"Wrote {len(result.models)} model(s), {format_size(result.size_bytes)}, and "
        f"{result.manifest.name} to {result.dest}."
    )
    print(f"On the other machine: hearth models import {result.dest}")
    return 0


# --- catalog ----------------------------------------------------------------------------------


def cmd_catalog(args: argparse.Namespace) -> int:
    """Curated models, with the best quant for this machine.

    Curated chat and image models, each variant with the planner's verdict (fits on GPU /
    split / in RAM / tight / won't fit) and the best fit marked.
    """
    from app.hub.catalog import catalog_entries, fit_variants

    entries = catalog_entries(args.kind)
    hw = hardware_for(args.machine)
    machine = hw.simulated or "this machine"
    models = list_models(open_default_database())
    have = {m.filename for m in models if m.filename} | {m.name for m in models}
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
            title = "Chat models (GGUF)" if kind == ModelKind.CHAT else "Image models (diffusers)"
            print(f"\n{title}")
        fits = fit_variants(e, hw)
        best = next((f for f in fits if f.suggested), None)
        print(f"\n  {e.name} — {e.title} · {e.license}")
        print(f"    {e.description}")
        for f in fits:
            mark = "  ← best here" if f.suggested else ""
            if _installed(f.variant.files[0], f.variant.library_name, e, have):
                mark += "  (installed)"
            size = "~" + format_size(f.variant.size_bytes)
            print(f"    {f.variant.quant:<7} {size:>10}  {f.verdict.value:<19}{mark}".rstrip())
        if best is None:
            print("    Nothing fits here: pick a smaller model.")
        elif e.kind is ModelKind.CHAT:
            print(f"    get it: hearth models pull {e.repo} --quant {best.variant.quant}")
        else:
            print(f"    repo: {e.repo} (fp16 diffusers variant)")
    return 0


def _installed(filename: str, library_name: str, e: Any, have: set[str]) -> bool:
    return (
        filename in have or library_name in have or (e.kind is ModelKind.IMAGE and e.name in have)
    )


# --- helpers ----------------------------------------------------------------------------------


def _here(row: PlannedModel | None) -> str:
    """The HERE column: the verdict on this machine, or in a few words why there is none."""
    if row is None:
        return "?"
    if row.plan is not None:
        return row.plan.verdict.value
    if not row.model.path.exists():
        return "missing (file gone)"
    if isinstance(row.error, UnsupportedArchitectureError):
        return "unusable: unsupported architecture"
    if isinstance(row.error, ModelFileError):
        return "damaged (see show)"
    return "unusable (see show)"


# --- arguments --------------------------------------------------------------------------------


def add_commands(msub: Any) -> None:
    """Add starter, list, show, rm, import, export and catalog to the `hearth models` subparsers."""
    starter = add_command(msub, "starter", cmd_starter)
    starter.add_argument(
        "--from",
        dest="parts_dir",
        type=Path,
        help="a folder holding the starter part files (offline machines)",
    )
    add_command(msub, "list", cmd_list, json="print one JSON array")
    show = add_command(msub, "show", cmd_show, json="print one JSON object")
    show.add_argument("name", help="a library name (see `hearth models list`)")
    add_command(msub, "rm", cmd_rm, yes=True).add_argument("name")
    imp = add_command(msub, "import", cmd_import)
    imp.add_argument("path", type=Path, metavar="PATH")
    imp.add_argument(
        "--link",
        action="store_true",
        help="use the files where they are instead of copying them (they must stay there)",
    )
    imp.add_argument("--name", help="the name in the library (default: from the file name)")
    exp = add_command(msub, "export", cmd_export)
    exp.add_argument("names", nargs="+", metavar="NAME")
    exp.add_argument("--to", required=True, type=Path, metavar="DIR")
    catalog = add_command(msub, "catalog", cmd_catalog, json="print one JSON object", machine=True)
    catalog.add_argument("--kind", choices=["chat", "image"], help="only this kind of model")
