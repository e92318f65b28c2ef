"""`hearth remote add|list|test|rm`: the OpenAI-compatible servers Hearth may chat through."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from app.cli.common import add_command
from app.cli.output import confirm, print_table
from app.errors import HearthError


def add_commands(sub: Any) -> None:
    """Add `remote` and its subcommands to the top-level subparsers."""
    remote = sub.add_parser(
        "remote",
        help="remote OpenAI-compatible servers (vLLM, SGLang, llama-server, Ollama, TGI)",
        description="Servers Hearth may chat through, as `hearth chat -m PROVIDER/MODEL`. "
        "Hearth contacts no server you did not add here.",
    )
    rsub = remote.add_subparsers(dest="remote_command", metavar="SUBCOMMAND", required=True)

    add = add_command(rsub, "add", cmd_add)
    add.add_argument("name", help="a short name; models are then NAME/MODEL")
    add.add_argument("url", help="the server's address, e.g. http://10.0.0.5:8000 (→ .../v1)")
    key = add.add_mutually_exclusive_group()
    key.add_argument(
        "--key-stdin",
        action="store_true",
        help="read the API key from standard input (hidden prompt on a terminal)",
    )
    key.add_argument("--key-env", metavar="VAR", help="take the API key from environment VAR")
    key.add_argument("--no-key", action="store_true", help="forget a key saved before")
    add.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="an extra header for every request (repeatable)",
    )
    add.add_argument("--ca-bundle", metavar="FILE", help="trust this PEM CA file for https")
    add.add_argument(
        "--no-verify-tls",
        action="store_true",
        help="do not check the server's certificate (only on a network you trust)",
    )
    add.add_argument("--context", type=int, metavar="N", help="the server's context window")
    add.add_argument(
        "--capability",
        action="append",
        default=[],
        metavar="NAME",
        help="what its models can do, e.g. tools, vision, reasoning (repeatable)",
    )
    add.add_argument(
        "--token-param",
        choices=("max_tokens", "max_completion_tokens"),
        help="how to ask for the answer length (default: max_tokens, switched on a 400)",
    )
    for phase, default in (("connect", 5.0), ("read", 60.0), ("write", 30.0), ("pool", 5.0)):
        add.add_argument(
            f"--{phase}-timeout",
            type=float,
            default=None,
            metavar="S",
            help=f"seconds (default {default:g})",
        )
    add.add_argument("--replace", action="store_true", help="replace a provider of that name")

    add_command(rsub, "list", cmd_list, json="print the providers as JSON")
    test = add_command(rsub, "test", cmd_test, json="print the checks as JSON")
    test.add_argument("name")
    test.add_argument("--model", "-m", help="the model to ask (default: the first listed)")
    add_command(rsub, "rm", cmd_rm, yes=True).add_argument("name")


def cmd_add(args: argparse.Namespace) -> int:
    """Add (or with --replace, change) a remote provider.

    Records an OpenAI-compatible server under NAME; its API key goes to the OS keyring
    (or a file only you can read), never into the database, the log or the command line.
    Nothing is sent to it until you test it or chat with one of its models.
    """
    from dataclasses import replace

    from app.cli.common import open_history
    from app.engines.chat_remote.probe import plain_http_warning
    from app.store import providers as store
    from app.store.secrets import delete_secret, get_secret, set_secret

    db = open_history()
    base_url = store.normalise_base_url(args.url)
    old = store.find_provider(db, args.name)
    if old is not None and not args.replace:
        raise store.ProviderError(
            f"A provider called '{args.name}' is already added ({old.base_url}).",
            "Pick another name, or add it again with --replace.",
        )
    defaults = old.timeouts if old is not None else store.Timeouts()
    timeouts = store.Timeouts(
        connect_s=args.connect_timeout or defaults.connect_s,
        read_s=args.read_timeout or defaults.read_s,
        write_s=args.write_timeout or defaults.write_s,
        pool_s=args.pool_timeout or defaults.pool_s,
    )
    if args.ca_bundle and not os.path.isfile(args.ca_bundle):
        raise HearthError(
            f"There is no CA file at {args.ca_bundle}.", "Give the path of a PEM file."
        )
    provider = store.Provider(
        name=store.check_name(args.name),
        base_url=base_url,
        headers=_headers(args.header),
        verify_tls=not args.no_verify_tls,
        ca_bundle=os.path.abspath(args.ca_bundle) if args.ca_bundle else None,
        timeouts=timeouts,
        context_window=args.context,
        capabilities=tuple(args.capability),
        token_param=args.token_param,
    )
    if old is not None:  # keep what was detected and not set again
        provider = replace(
            provider,
            models=old.models,
            added_at=old.added_at,
            context_window=args.context or old.context_window,
            capabilities=provider.capabilities or old.capabilities,
            token_param=args.token_param or old.token_param,
            headers=provider.headers or old.headers,
            ca_bundle=provider.ca_bundle or (old.ca_bundle if not args.no_verify_tls else None),
        )
    secret = store.provider_secret_name(args.name)
    key = _read_key(args)
    store.add_provider(db, provider, replace_existing=True)
    where = None
    if args.no_key or (old is None and key is None):
        delete_secret(secret)
    if key:
        where = set_secret(secret, key)
    has_key = bool(key) or (not args.no_key and get_secret(secret) is not None)
    print(f"Added '{provider.name}': {provider.base_url}" + (" (replaced)" if old else ""))
    if where:
        print(f"Its API key is saved in {where}.")
    if not provider.verify_tls:
        print("warning: its TLS certificate is not checked (--no-verify-tls).", file=sys.stderr)
    warning = plain_http_warning(provider, has_key)
    if warning and has_key:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"Check it with `hearth remote test {provider.name}`; chat with "
        f"`hearth chat -m {provider.name}/MODEL`."
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the remote providers you added."""
    from app.cli.common import open_history
    from app.store import providers as store
    from app.store.secrets import get_secret

    providers = store.list_providers(open_history())
    has_key = {
        p.name: get_secret(store.provider_secret_name(p.name)) is not None for p in providers
    }
    if args.json:
        print(json.dumps([_provider_json(p, has_key[p.name]) for p in providers], indent=2))
        return 0
    if not providers:
        print("No remote providers yet. Add one with `hearth remote add NAME URL`.")
        return 0
    rows = []
    for p in providers:
        tls = "off" if not p.verify_tls else ("CA file" if p.ca_bundle else "system CAs")
        context = f"{p.context_window:,}" if p.context_window else "detected"
        models = ", ".join(m.id for m in p.models[:3]) + (" ..." if len(p.models) > 3 else "")
        rows.append(
            [p.name, p.base_url, "yes" if has_key[p.name] else "no", tls, context, models or "-"]
        )
    print_table(["NAME", "URL", "KEY", "TLS", "CONTEXT", "MODELS"], rows)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Test a provider: its model list, a one-token answer and a streamed answer.

    Says in one sentence each which part works and which fails (refused, TLS, 401, 404,
    timeout), and remembers the models and context windows the server reports.
    """
    from app.cli.common import open_history
    from app.engines.chat_remote.probe import check_connection
    from app.store import providers as store
    from app.store.secrets import get_secret

    db = open_history()
    provider = store.get_provider(db, args.name)
    key = get_secret(store.provider_secret_name(provider.name))
    report = check_connection(provider, key, args.model)
    changes: dict[str, Any] = {}
    if report.models:
        changes["models"] = report.models
    if report.token_param and report.token_param != (provider.token_param or "max_tokens"):
        changes["token_param"] = report.token_param
    if changes:
        store.update_provider(db, provider.name, **changes)
    if args.json:
        print(
            json.dumps(
                {
                    "provider": report.provider,
                    "ok": report.ok,
                    "model": report.model,
                    "checks": [c.__dict__ for c in report.checks],
                    "models": [m.__dict__ for m in report.models],
                    "warnings": list(report.warnings),
                },
                indent=2,
            )
        )
        return 0 if report.ok else 1
    print(f"Testing '{provider.name}' at {provider.base_url}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"  {mark} {check.name:<9} {check.sentence}")
        if not check.ok and check.remedy:
            print(f"       {'':<9} {check.remedy}")
    for model in report.models:
        if model.context_window:
            print(f"  {model.id}: {model.context_window:,} tokens of context")
    if report.ok and report.model:
        print(f"Chat with it: hearth chat -m {provider.name}/{report.model}")
    return 0 if report.ok else 1


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove a remote provider and its saved key (its chats stay in the history)."""
    from app.cli.common import open_history
    from app.store import providers as store
    from app.store.secrets import delete_secret

    db = open_history()
    provider = store.get_provider(db, args.name)
    question = f"Remove '{provider.name}' ({provider.base_url}) and its saved key? [y/N] "
    refusal = HearthError("Removing needs confirmation.", "Pass --yes to remove without asking.")
    if not args.yes and not confirm(question, refuse_without_terminal=refusal):
        print("Kept it.")
        return 1
    store.remove_provider(db, provider.name)
    delete_secret(store.provider_secret_name(provider.name))
    print(f"Removed '{provider.name}'. Its conversations stay in `hearth history`.")
    return 0


def _read_key(args: argparse.Namespace) -> str | None:
    if args.key_env:
        value = os.environ.get(args.key_env, "").strip()
        if not value:
            raise HearthError(
                f"The environment variable {args.key_env} is empty or not set.",
                "Export the key in it first, or use --key-stdin.",
            )
        return value
    if args.key_stdin:
        if sys.stdin.isatty():
            value = getpass.getpass("API key (input is hidden): ")
        else:
            value = sys.stdin.readline()
        value = value.strip()
        if not value:
            raise HearthError("No API key was given.", "Paste the key, or leave out --key-stdin.")
        return value
    return None


def _headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise HearthError(f"'{item}' is not a header.", "Write it as NAME:VALUE.")
        if name.strip().lower() == "authorization":
            raise HearthError(
                "The key does not go in a header on the command line (it would stay in your "
                "shell's history).",
                "Use --key-stdin or --key-env VAR: Hearth sends it as a Bearer token.",
            )
        headers[name.strip()] = value.strip()
    return headers


def _provider_json(p: Any, has_key: bool) -> dict[str, Any]:
    return {
        "name": p.name,
        "base_url": p.base_url,
        "has_key": has_key,
        "headers": sorted(p.headers),  # names only: values may be secrets too
        "verify_tls": p.verify_tls,
        "ca_bundle": p.ca_bundle,
        "timeouts": p.timeouts.__dict__,
        "context_window": p.context_window,
        "capabilities": list(p.capabilities),
        "token_param": p.token_param,
        "models": [m.__dict__ for m in p.models],
    }
