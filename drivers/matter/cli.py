"""`lockbridge matter commission CODE -c FILE`: put a new lock on the Matter server's fabric.

Talks to the Matter server named in the configuration directly (the daemon need not run); the
running daemon sees the new node in the server's events and adds the lock."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import ConfigError, load_config
from drivers.matter.client import MatterLink, ServerError
from drivers.matter.config import Config
from drivers.tasks import cancel_and_wait

EXIT_FAILED = 1
EXIT_CONFIG = 2


def add_parsers(subparsers: Any) -> None:
    """Add `matter` to `lockbridge`."""
    matter = subparsers.add_parser("matter", help="Matter locks through a Matter server")
    sub = matter.add_subparsers(dest="matter_command", required=True)
    commission = sub.add_parser("commission", help="put a new lock on the Matter server's "
                                "fabric, by its setup code (the lock in pairing mode)")
    commission.add_argument("code", help="the manual pairing code or the QR code's MT:... text")
    commission.add_argument("-c", "--config", type=Path, required=True)
    commission.add_argument("--driver", help="the matter driver's name, when there are several")
    commission.add_argument("--timeout", type=float, default=300.0,
                            help="seconds to wait for the server (Thread locks take minutes)")
    commission.set_defaults(func=_commission)


def _driver(args: argparse.Namespace) -> Config | None:
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(exc.path), file=sys.stderr)
        return None
    found = [d for d in loaded.drivers if isinstance(d, Config)
             and (args.driver is None or d.name == args.driver)]
    if len(found) != 1:
        which = f"named {args.driver!r}" if args.driver else "(name one with --driver)"
        print(f"{args.config}: {len(found)} matter drivers {which}; need exactly one",
              file=sys.stderr)
        return None
    return found[0]


def _commission(args: argparse.Namespace) -> int:
    config = _driver(args)
    if config is None:
        return EXIT_CONFIG
    try:
        node = asyncio.run(commission(config, args.code, args.timeout))
    except ServerError as exc:
        print(f"the Matter server could not commission the lock: {exc.details}",
              file=sys.stderr)
        return EXIT_FAILED
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        print(f"cannot reach the Matter server at {config.url}: {exc or type(exc).__name__}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"commissioned: node {node} (lockbridge shows it as matter-{node}-<endpoint>)")
    return 0


async def commission(config: Config, code: str, timeout_s: float) -> int:
    """Ask the server to commission the lock over IP; the new node's id."""
    async with aiohttp.ClientSession() as http:
        link = await MatterLink.connect(http, config.url, config.connect_timeout_s)
        pump = asyncio.create_task(link.pump(lambda _name, _data: None))
        try:
            async with asyncio.timeout(timeout_s):
                node = await link.call("commission_with_code",
                                       {"code": code, "network_only": True})
        finally:
            await link.close()
            await cancel_and_wait(pump)
    node_id = node.get("node_id") if isinstance(node, dict) else None
    if not isinstance(node_id, int):
        raise ServerError(0, f"unexpected answer {node!r}")
    return node_id
