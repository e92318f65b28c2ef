#!/usr/bin/env python3
"""Hearth's side-by-side benchmark harness (run it as `scripts/bench`).

    scripts/bench chat --model PATH.gguf [--json] [--runs 3] [--prompt-tokens 512]
                       [--gen-tokens 128] [--engines hearth,...] [--contention] [--turns]
    scripts/bench image [--json] [--model DIR] [--steps 4] [--size 64x64] [--runs 3]
    scripts/bench load --model PATH.gguf [--json] [--runs 3]
    scripts/bench sweep --model PATH.gguf [--json] [--runs 3] [--prompt-tokens 512] [--only A,B]

Each engine runs in its own fresh process, in alternating rounds; numbers are
{median, min, max} over the rounds. docs/benchmarks.md ("How to run scripts/bench") says
what each number means. Progress goes to stderr, the result to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # benchlib
sys.path.insert(0, str(HERE.parent))  # app

from benchlib import chat, image, load, sweep  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=(__doc__ or "").splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    chat.add_parser(sub)
    image.add_parser(sub)
    load.add_parser(sub)
    sweep.add_parser(sub)
    args = parser.parse_args(argv)
    report = args.func(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        faces = {"chat": chat, "image": image, "load": load, "sweep": sweep}
        faces[args.command].print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
