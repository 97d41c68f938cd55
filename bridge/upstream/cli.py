"""`lockbridge upstream-dev` (the reference upstream server) and `upstream-send` (one command)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bridge import logs

TOKEN_ENV = "LOCKBRIDGE_UPSTREAM_TOKEN"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_parsers(subparsers: Any) -> None:
    """Register the upstream subcommands."""
    dev = subparsers.add_parser("upstream-dev", help="run the reference upstream server "
                                "(plain ws://, loopback only)")
    dev.add_argument("--listen", default="127.0.0.1:8788", help="HOST:PORT on loopback")
    dev.add_argument("--db", type=Path, default=Path("upstream-dev.db"))
    dev.add_argument("--token-file", type=Path,
                     help=f"bearer token file (default: ${TOKEN_ENV})")
    dev.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     default="info")
    dev.set_defaults(func=_run_dev)

    send = subparsers.add_parser("upstream-send", help="send one command through a running "
                                 "reference upstream and print the bridge's result")
    send.add_argument("--server", default="http://127.0.0.1:8788")
    send.add_argument("--bridge", required=True, help="the bridge id (bridge.id)")
    send.add_argument("--command-id", help="reuse an id to see the stored first result")
    send.add_argument("--token-file", type=Path,
                      help=f"bearer token file (default: ${TOKEN_ENV})")
    send.add_argument("--timeout", type=float, default=30.0)
    send.add_argument("command", help='JSON, e.g. {"action": "snapshot"}')
    send.set_defaults(func=_send)


def _token(path: Path | None) -> str | None:
    if path is not None:
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
            return None
    return os.environ.get(TOKEN_ENV) or None


def _run_dev(args: argparse.Namespace) -> int:
    host, _, port_text = str(args.listen).rpartition(":")
    host = host.strip("[]")
    if host not in _LOOPBACK or not port_text.isdigit():
        print("--listen must be 127.0.0.1:PORT (or [::1]:PORT): the reference upstream "
              "serves plain ws:// without TLS, so on loopback only", file=sys.stderr)
        return 2
    token = _token(args.token_file)
    if token is None:
        print(f"give --token-file or set ${TOKEN_ENV}", file=sys.stderr)
        return 2
    logs.setup(args.log_level)
    from bridge.upstream.devserver import serve_forever

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await serve_forever(args.db, token, host, int(port_text), stop)

    asyncio.run(main())
    return 0


def _send(args: argparse.Namespace) -> int:
    token = _token(args.token_file)
    if token is None:
        print(f"give --token-file or set ${TOKEN_ENV}", file=sys.stderr)
        return 2
    try:
        command = json.loads(args.command)
    except ValueError:
        print("the command must be JSON", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"bridge_id": args.bridge, "command": command,
                            "timeout": args.timeout}
    if args.command_id:
        body["command_id"] = args.command_id
    request = urllib.request.Request(
        args.server.rstrip("/") + "/commands", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout + 5) as response:
            print(response.read().decode())
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{exc.code}: {exc.read().decode()}", file=sys.stderr)
    except OSError as exc:
        print(f"cannot reach {args.server}: {exc}", file=sys.stderr)
    return 1
