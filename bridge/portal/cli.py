"""`lockbridge portal link`: a customer portal magic link, made through the running daemon's
API (`/customers/create_portal`), printed for pasting into a message."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

CommandMaker = Callable[..., argparse.ArgumentParser]


def add_parsers(subparsers: Any, command: CommandMaker) -> None:
    """Add `portal link` to `lockbridge`; `command` is the API CLI's subcommand maker."""
    portal = subparsers.add_parser("portal", help="customer portal links, through the local API")
    sub = portal.add_subparsers(dest="portal_command", required=True)
    link = command(sub, "link", "make a magic link to the portal", _link, api=True)
    link.add_argument("--customer-key", required=True,
                      help="the customer the portal is for (portal.scope_file says its locks)")
    link.add_argument("--read-only", action="store_true", help="browse only; every change "
                      "is refused and PINs are not shown")
    link.add_argument("--embedded", action="store_true",
                      help="for an iframe on one of portal.frame_ancestors")
    link.add_argument("--restricted", action="store_true",
                      help="hide the navigation (for a deep link into one lock)")
    link.add_argument("--device", help="open on this lock (device id or name)")
    link.add_argument("--expires-in", type=float, metavar="SECONDS",
                      help="shorter than portal.link_ttl_hours")


def _link(args: argparse.Namespace, client: Any) -> int:
    body: dict[str, Any] = {"customer_data": {"customer_key": args.customer_key},
                            "read_only": args.read_only, "is_embedded": args.embedded,
                            "navigation_mode": "restricted" if args.restricted else "full"}
    if args.device:
        body["deep_link"] = {"device_id": client.device(args.device)["device_id"]}
    if args.expires_in is not None:
        body["expires_in_s"] = args.expires_in
    portal = client.call("/customers/create_portal", body, method="POST")["customer_portal"]
    if args.json:
        print(json.dumps(portal, indent=2))
        return 0
    print(portal["url"])
    print(f"for {portal['customer_key']}, until {portal['expires_at']}")
    return 0
