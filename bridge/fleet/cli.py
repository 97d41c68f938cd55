"""`lockbridge fleet`: run one replica of the operator's backend (docs/fleet.md). Secrets come
from files or the environment, never from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bridge import logs

DSN_ENV = "LOCKBRIDGE_FLEET_DSN"
API_KEY_ENV = "LOCKBRIDGE_FLEET_API_KEY"
NATS_PASSWORD_ENV = "LOCKBRIDGE_FLEET_NATS_PASSWORD"


def add_parsers(subparsers: Any) -> None:
    """Register `fleet`."""
    fleet = subparsers.add_parser("fleet", help="run a replica of the fleet backend (NATS "
                                  "JetStream and PostgreSQL; any number, stateless)")
    fleet.add_argument("--nats", action="append", required=True, metavar="URL",
                       help="a NATS server (repeat for a cluster)")
    fleet.add_argument("--nats-user")
    fleet.add_argument("--nats-password-file", type=Path,
                       help=f"default: ${NATS_PASSWORD_ENV}")
    fleet.add_argument("--nats-creds-file", type=Path)
    fleet.add_argument("--ca-file", type=Path)
    fleet.add_argument("--dsn-file", type=Path, help=f"PostgreSQL conninfo (default: ${DSN_ENV})")
    fleet.add_argument("--api-key-file", type=Path, help=f"default: ${API_KEY_ENV}")
    fleet.add_argument("--listen", default="127.0.0.1:8790", help="HOST:PORT of the API")
    fleet.add_argument("--replicas", type=int, default=3,
                       help="JetStream replicas of the streams it creates (1 or 3)")
    fleet.add_argument("--stale-after", type=float, default=15.0,
                       help="seconds without a heartbeat before a bridge shows disconnected")
    fleet.add_argument("--command-timeout", type=float, default=20.0)
    fleet.add_argument("--ack-wait", type=float, default=30.0,
                       help="seconds before a batch a replica took but did not acknowledge "
                            "(it died) goes to another replica; used when the shared "
                            "consumers are created")
    fleet.add_argument("--resend-after", type=float, default=30.0,
                       help="seconds after which a recorded command never marked published "
                            "(its replica died) is published by this replica")
    fleet.add_argument("--pool-size", type=int, default=8,
                       help="PostgreSQL connections of this replica at most")
    fleet.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                       default="info")
    fleet.set_defaults(func=_run)


def _secret(path: Path | None, env: str) -> str | None:
    if path is not None:
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
            return None
    return os.environ.get(env) or None


def _run(args: argparse.Namespace) -> int:
    dsn = _secret(args.dsn_file, DSN_ENV)
    key = _secret(args.api_key_file, API_KEY_ENV)
    if dsn is None or key is None:
        print(f"give --dsn-file (or ${DSN_ENV}) and --api-key-file (or ${API_KEY_ENV})",
              file=sys.stderr)
        return 2
    password = None
    if args.nats_user:
        password = _secret(args.nats_password_file, NATS_PASSWORD_ENV)
        if password is None:
            print(f"--nats-user needs --nats-password-file (or ${NATS_PASSWORD_ENV})",
                  file=sys.stderr)
            return 2
    host, _, port = str(args.listen).rpartition(":")
    if not port.isdigit():
        print("--listen must be HOST:PORT", file=sys.stderr)
        return 2
    logs.setup(args.log_level)
    from bridge.fleet.service import FleetReplica, FleetSettings

    settings = FleetSettings(
        nats_servers=list(args.nats), dsn=dsn, api_key=key, listen_host=host.strip("[]"),
        listen_port=int(port), nats_user=args.nats_user, nats_password=password,
        nats_creds_file=args.nats_creds_file, ca_file=args.ca_file, replicas=args.replicas,
        stale_after_s=args.stale_after, command_timeout_s=args.command_timeout,
        ack_wait_s=args.ack_wait, pool_size=args.pool_size,
        resend_after_s=args.resend_after)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await FleetReplica(settings).run(stop)

    asyncio.run(main())
    return 0
