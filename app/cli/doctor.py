"""`hearth doctor` and `hearth plan`: this machine's hardware, and how a model would load on it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import (
    add_command,
    add_load_options,
    hardware_for,
    load_settings_for,
    parse_size,
)
from app.humanize import format_size

if TYPE_CHECKING:
    from app.planner.facts import ChatModelFacts, ImageModelFacts


def add_commands(sub: Any) -> None:
    """Add `doctor` and `plan` to the top-level subparsers."""
    add_command(sub, "doctor", cmd_doctor, json="print one JSON object", machine=True)
    plan = add_command(sub, "plan", cmd_plan, json="print one JSON object", machine=True)
    plan.add_argument(
        "model",
        metavar="PATH_OR_MODEL",
        help="a .gguf file, a diffusers folder, a library name, 'starter', or a reference "
        "model from `hearth plan --list-reference`",
        nargs="?",
    )
    add_load_options(plan, ctx="context length in tokens")
    plan.add_argument(
        "--kv-type",
        default="f16",
        choices=["f16", "q8_0", "q4_0", "f32"],
        help="KV cache type (default f16)",
    )
    plan.add_argument("--size", help="image size WxH for image models (default: native)")
    plan.add_argument(
        "--list-reference",
        action="store_true",
        help="list the reference models and simulated machines",
    )
    plan.set_defaults(usage_error=plan.error)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Report this machine's hardware and builds."""
    from app.hardware.doctor import doctor_report, format_doctor_report
    from app.sessions.preferences import read_load_preferences

    report = doctor_report(hardware_for(args.machine, fresh_builds=True))
    prefs = read_load_preferences()
    if args.json:
        report["load_defaults"] = {
            "backend": prefs.backend.value if prefs.backend else None,
            "gpu_layers": prefs.gpu_layers,
            "threads": prefs.threads,
            "n_ctx": prefs.n_ctx,
        }
        print(json.dumps(report, indent=2))
    else:
        print(format_doctor_report(report))
        print(f"Load defaults (Settings; chat, plan and serve flags win): {prefs.describe()}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Show how a model would load here and whether it fits.

    Plan how a model loads on this machine (or a simulated one): backend, GPU layers,
    threads, context, memory by part, and a fit verdict.
    """
    from app.hardware.profile import load_simulated_machines
    from app.planner import plan_image_load, plan_load
    from app.planner.facts import ChatModelFacts, load_reference_models

    if args.list_reference:
        print("Reference models:")
        for name in load_reference_models():
            print(f"  {name}")
        print("Simulated machines (--machine):")
        for name in load_simulated_machines():
            print(f"  {name}")
        return 0
    if not args.model:
        args.usage_error("plan needs a model: a .gguf path, a diffusers folder or a library name")

    facts = _facts_for(args.model)
    hw = hardware_for(args.machine)
    width, height = parse_size(args.size) if args.size else (None, None)
    settings = load_settings_for(args, kv_type=args.kv_type, image_width=width, image_height=height)
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
        parts = [f"weights {format_size(est.weights)}"]
        parts += [f"CPU repack {format_size(est.repacked)}"] if est.repacked else []
        parts += [f"KV cache {format_size(est.kv_cache)}", f"compute {format_size(est.compute)}"]
        parts += [f"overhead {format_size(est.overhead)}"]
        room = f"RAM {format_size(est.cpu_bytes)} of {format_size(plan.ram_budget)} usable"
        if plan.gpu_budget:
            room += f", GPU {format_size(est.gpu_bytes)} of {format_size(plan.gpu_budget)} usable"
        lines = [
            f"Plan for {facts.name} ({facts.arch}, {facts.quantization or '?'}, "
            f"{format_size(facts.file_size)}) on {machine_name}",
            f"  verdict:     {plan.verdict.value}",
            f"  backend:     {plan.backend.value}",
            f"  GPU layers:  {layers}",
            f"  threads:     {plan.threads}",
            f"  context:     {plan.n_ctx:,} tokens (KV cache {plan.kv_type})",
            f"  memory:      {' + '.join(parts)} = {format_size(est.total)}",
            f"               {room}",
        ]
        print("\n".join(lines + _reasons_and_warnings(plan.reasons, plan.warnings)))
        return 0

    image_plan = plan_image_load(hw, facts, settings)
    if args.json:
        print(
            json.dumps({"machine": machine_name, "kind": "image", **image_plan.to_dict()}, indent=2)
        )
        return 0
    lines = [
        f"Plan for {facts.name} ({facts.family}, {format_size(facts.total_bytes)} as "
        f"{facts.stored_dtype}) on {machine_name}",
        f"  verdict:     {image_plan.verdict.value}",
        f"  device:      {image_plan.device} ({image_plan.dtype})",
        f"  memory mode: {image_plan.memory_mode.value}",
        f"  image size:  {image_plan.width}x{image_plan.height}",
        f"  memory:      weights {format_size(image_plan.weights_bytes)}, device peak "
        f"{format_size(image_plan.peak_device_bytes)}, RAM {format_size(image_plan.ram_bytes)}",
    ]
    print("\n".join(lines + _reasons_and_warnings(image_plan.reasons, image_plan.warnings)))
    return 0


def _reasons_and_warnings(reasons: Sequence[str], warnings: Sequence[str]) -> list[str]:
    return [f"  - {r}" for r in reasons] + [f"  ! {w}" for w in warnings]


def _facts_for(model: str) -> ChatModelFacts | ImageModelFacts:
    """The facts of a .gguf file, a diffusers folder, a reference model or a library model."""
    from app.planner.facts import load_reference_models

    path = Path(model).expanduser()
    if path.is_dir():
        from app.models.diffusers_folder import read_diffusers_facts

        return read_diffusers_facts(path)
    if path.exists() or model.endswith(".gguf"):
        from app.models.gguf import read_gguf_facts

        return read_gguf_facts(path)
    reference: dict[str, ChatModelFacts | ImageModelFacts] = load_reference_models()
    if model in reference:
        return reference[model]
    from app.models.gguf import read_gguf_facts
    from app.models.library import resolve_model_path
    from app.store import open_default_database

    found, _name = resolve_model_path(open_default_database(), model)
    return read_gguf_facts(found)
