"""`hearth serve`: the local OpenAI-compatible API, for editors, scripts and agents."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from app.cli.common import add_command, load_settings_for
from app.cli.output import ProgressBar, Unit


def add_commands(sub: Any) -> None:
    """Add `serve` to the top-level subparsers."""
    from app.api.server import DEFAULT_HOST, DEFAULT_PORT

    serve = add_command(sub, "serve", cmd_serve)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)",
    )
    serve.add_argument("--model", "-m", help="load this library model now, not on first request")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer to this Host name (repeatable; loopback names always work)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="let web pages from this origin call the API, e.g. http://localhost:3000",
    )
    serve.add_argument("--show-key", action="store_true", help="print the API key itself")
    serve.add_argument("--new-key", action="store_true", help="replace the API key with a new one")
    serve.add_argument("--ctx", type=int, help="context length (default: from the planner)")
    serve.add_argument("--max-queue", type=int, default=8, help="requests held at once (default 8)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the library's models over an OpenAI-compatible API on this machine.

    Listens on 127.0.0.1 only unless --host says otherwise, and requires the API key on
    every request (`--show-key` prints it). Point a client at the URL it prints, with
    `/v1` at the end. Ctrl-C stops the server and unloads the model.
    """
    from app.api.security import mask_key
    from app.api.server import ApiServer, ServeConfig, is_loopback

    config = ServeConfig(
        host=args.host,
        port=args.port,
        allowed_hosts=tuple(args.allow_host),
        allowed_origins=tuple(args.allow_origin),
        max_queue=args.max_queue,
        new_key=args.new_key,
    )
    server = ApiServer(config)
    server.service.load_settings = load_settings_for(args)  # --ctx, then Settings
    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: other machines on the network can reach this "
            "server (the key is still required).",
            file=sys.stderr,
        )
    if args.model:
        with ProgressBar("loading", Unit.FRACTION) as bar:
            loaded = server.service.preload(
                args.model, on_progress=lambda p: bar.update(p.fraction, 1.0, args.model)
            )
        print(f"{args.model}: {loaded.backend_used}, {loaded.n_ctx:,} ctx", file=sys.stderr)
    key = server.key if args.show_key else mask_key(server.key)
    print(f"Hearth API on {server.url}/v1", flush=True)
    print(f"key: {key} (kept in {server.key_where}; --show-key prints it)", flush=True)
    print("Ctrl-C stops the server.", file=sys.stderr, flush=True)
    # uvicorn handles the first Ctrl-C: it ends open streams (cancelling their generations),
    # then raises it again; the model is unloaded on the way out.
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    print("stopped", file=sys.stderr)
    return 0
