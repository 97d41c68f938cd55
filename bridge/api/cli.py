"""`lockbridge api-key | devices | codes | unmanaged`: keys in the store, the rest over the API."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from bridge.api import auth
from bridge.api.server import PORT_FILE
from bridge.clock import SystemClock
from bridge.config import ConfigError, LoadedConfig, load_config
from bridge.listener import client_tls
from bridge.portal import cli as portal_cli

EXIT_CONFIG = 2
EXIT_API = 1
CLI_KEY_FILE = "cli-api.key"
ENV_KEY = "LOCKBRIDGE_API_KEY"


def add_parsers(subparsers: Any) -> None:
    """Add this module's subcommands to `lockbridge`."""
    keys = subparsers.add_parser("api-key", help="API keys of the local HTTP API")
    key_sub = keys.add_subparsers(dest="api_key_command", required=True)
    create = _command(key_sub, "create", "make a key (shown once)", _key_create, json_flag=False)
    create.add_argument("--name", default="", help="what the key is for")
    _command(key_sub, "list", "keys, without their secrets", _key_list)
    revoke = _command(key_sub, "revoke", "forget a key", _key_revoke, json_flag=False)
    revoke.add_argument("key_id")

    devices = subparsers.add_parser("devices", help="locks, through the local API")
    dev_sub = devices.add_subparsers(dest="devices_command", required=True)
    dev_list = _command(dev_sub, "list", "every lock", _devices_list, api=True)
    dev_list.add_argument("--unmanaged", action="store_true",
                          help="the locks taken out of lockbridge instead")
    get = _command(dev_sub, "get", "one lock", _devices_get, api=True)
    get.add_argument("device", help="device id or name")
    remove = _command(dev_sub, "remove", "take a lock out of lockbridge (its backup codes come "
                      "off it)", _devices_remove, api=True)
    remove.add_argument("device", help="device id or name")
    restore = _command(dev_sub, "restore", "bring a removed lock back under lockbridge",
                       _devices_restore, api=True)
    restore.add_argument("device", help="device id or name")

    network = subparsers.add_parser(
        "zigbee", aliases=["network"],
        help="a lock network lockbridge runs itself (a Zigbee radio), through the local API")
    net_sub = network.add_subparsers(dest="network_command", required=True)
    permit = _command(net_sub, "permit", "let new locks join for a while", _network_permit,
                      api=True)
    permit.add_argument("--seconds", type=int, default=60,
                        help="how long joining stays open (the radio may cap it; zigpy: 254)")
    permit.add_argument("--driver", help="the driver's name when several run a network")
    leave = _command(net_sub, "remove", "make a lock leave the network", _network_remove,
                     api=True)
    leave.add_argument("device", help="device id or name")

    codes = subparsers.add_parser("codes", help="managed access codes, through the local API")
    code_sub = codes.add_subparsers(dest="codes_command", required=True)
    listing = _command(code_sub, "list", "managed codes", _codes_list, api=True)
    listing.add_argument("--device", help="device id or name")
    create_code = _command(code_sub, "create", "create a code", _codes_create, api=True)
    create_code.add_argument("--device", required=True, help="device id or name")
    _code_fields(create_code)
    create_code.add_argument("--backup-pool", action="store_true",
                             help="use the lock's backup access code pool")
    update = _command(code_sub, "update", "change a code", _codes_update, api=True)
    update.add_argument("access_code_id")
    _code_fields(update)
    update.add_argument("--type", choices=["ongoing", "time_bound"])
    delete = _command(code_sub, "delete", "take a code off its lock", _codes_delete, api=True)
    delete.add_argument("access_code_id")
    pull = _command(code_sub, "pull-backup", "hand out a backup code for a time-bound code",
                    _codes_pull_backup, api=True)
    pull.add_argument("access_code_id")

    unmanaged = subparsers.add_parser("unmanaged", help="codes found on locks, through the API")
    un_sub = unmanaged.add_subparsers(dest="unmanaged_command", required=True)
    un_list = _command(un_sub, "list", "unmanaged codes of a lock", _unmanaged_list, api=True)
    un_list.add_argument("--device", required=True, help="device id or name")
    convert = _command(un_sub, "convert", "make an unmanaged code managed",
                       _unmanaged_convert, api=True)
    convert.add_argument("access_code_id")
    un_delete = _command(un_sub, "delete", "remove an unmanaged code from its lock",
                         _unmanaged_delete, api=True)
    un_delete.add_argument("access_code_id")
    portal_cli.add_parsers(subparsers, _command)


# -- api keys ----------------------------------------------------------------------------------


def _key_create(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    info, key = asyncio.run(_create_key(loaded, args.name))
    print(key)
    print(f"key id {info.key_id}: store it now; lockbridge keeps only its hash",
          file=sys.stderr)
    return 0


def _key_list(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    keys = asyncio.run(_with_store(loaded, lambda store: store.read(auth.list_keys)))
    if args.json:
        print(json.dumps([{"key_id": k.key_id, "name": k.name, "created_at": k.created_at}
                          for k in keys], indent=2))
        return 0
    _table(["key id", "name", "created"], [[k.key_id, k.name, k.created_at] for k in keys])
    return 0


def _key_revoke(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    found = asyncio.run(_with_store(loaded, lambda store: auth.revoke_key(store,
                                                                           args.key_id)))
    if not found:
        print(f"no key {args.key_id}", file=sys.stderr)
        return EXIT_API
    print(f"key {args.key_id} revoked")
    return 0


async def _create_key(loaded: LoadedConfig, name: str) -> tuple[auth.KeyInfo, str]:
    from bridge.daemon import open_store

    async with open_store(loaded) as store:
        return await auth.create_key(store, name, SystemClock().now())


async def _with_store(loaded: LoadedConfig, fn: Callable[[Any], Any]) -> Any:
    from bridge.daemon import open_store

    async with open_store(loaded) as store:
        return await fn(store)


# -- devices ------------------------------------------------------------------------------------


def _devices_list(args: argparse.Namespace, client: ApiClient) -> int:
    route = "/devices/unmanaged/list" if args.unmanaged else "/devices/list"
    devices = client.call(route, {})["devices"]
    if args.json:
        return _print_json(devices)
    if args.unmanaged:
        _table(["name", "state", "type", "device id"], [
            [d["display_name"], "online" if d["properties"]["online"] else "offline",
             d["device_type"], d["device_id"]] for d in devices])
        return 0
    _table(["name", "state", "type", "codes", "device id", "issues"], [
        [d["display_name"], "online" if d["properties"]["online"] else "offline",
         d["device_type"], str(len([c for c in client.call(
             "/access_codes/list", {"device_id": d["device_id"]})["access_codes"]])),
         d["device_id"], _issues(d)] for d in devices])
    return 0


def _devices_get(args: argparse.Namespace, client: ApiClient) -> int:
    device = client.device(args.device)
    if args.json:
        return _print_json(device)
    props = device["properties"]
    rows = [["name", device["display_name"]], ["device id", device["device_id"]],
            ["type", device["device_type"]], ["model", props["model"]["display_name"]],
            ["online", str(props["online"]).lower()],
            ["code lengths", ",".join(str(n) for n in props["supported_code_lengths"])],
            ["backup pool", str(props["supports_backup_access_code_pool"]).lower()],
            ["issues", _issues(device) or "-"]]
    _table(["field", "value"], rows)
    return 0


def _devices_remove(args: argparse.Namespace, client: ApiClient) -> int:
    device = client.device(args.device)
    client.call("/devices/update", {"device_id": device["device_id"], "is_managed": False},
                method="PATCH")
    if args.json:
        return _print_json({"device_id": device["device_id"], "is_managed": False})
    print(f"{device['display_name']} is no longer managed by lockbridge; its backup codes "
          "are coming off the lock")
    return 0


def _devices_restore(args: argparse.Namespace, client: ApiClient) -> int:
    key = "device_id" if _is_uuid(args.device) else "name"
    device = client.call("/devices/unmanaged/get", {key: args.device})["device"]
    client.call("/devices/unmanaged/update", {"device_id": device["device_id"],
                                              "is_managed": True}, method="PATCH")
    if args.json:
        return _print_json({"device_id": device["device_id"], "is_managed": True})
    print(f"{device['display_name']} is managed by lockbridge again")
    return 0


# -- networks -------------------------------------------------------------------------------


def _network_permit(args: argparse.Namespace, client: ApiClient) -> int:
    params: dict[str, Any] = {"seconds": args.seconds}
    if args.driver:
        params["driver"] = args.driver
    answer = client.call("/lockbridge/networks/permit_join", params, method="POST")
    if args.json:
        return _print_json({"driver": answer["driver"], "open_for_s": answer["open_for_s"]})
    print(f"{answer['driver']}: new locks may join for {answer['open_for_s']} s; put the lock "
          "in pairing mode now")
    return 0


def _network_remove(args: argparse.Namespace, client: ApiClient) -> int:
    device = client.device(args.device)
    client.call("/lockbridge/networks/remove_device", {"device_id": device["device_id"]},
                method="POST")
    if args.json:
        return _print_json({"device_id": device["device_id"], "removed": True})
    print(f"{device['display_name']} was asked to leave the network")
    return 0


# -- codes ----------------------------------------------------------------------------------


def _codes_list(args: argparse.Namespace, client: ApiClient) -> int:
    params: dict[str, Any] = {}
    if args.device:
        params["device_id"] = client.device(args.device)["device_id"]
    codes = client.call("/access_codes/list", params)["access_codes"]
    if args.json:
        return _print_json(codes)
    _code_table(codes)
    return 0


def _codes_create(args: argparse.Namespace, client: ApiClient) -> int:
    body: dict[str, Any] = {"device_id": client.device(args.device)["device_id"],
                            **_code_body(args)}
    if args.backup_pool:
        body["use_backup_access_code_pool"] = True
    answer = client.call("/access_codes/create", body, method="POST")
    if args.json:
        return _print_json(answer)
    _code_table([answer["access_code"]])
    attempt = answer["action_attempt"]
    print(f"action attempt {attempt['action_attempt_id']}: {attempt['status']}")
    return 0


def _codes_update(args: argparse.Namespace, client: ApiClient) -> int:
    body = {"access_code_id": args.access_code_id, **_code_body(args)}
    if args.type:
        body["type"] = args.type
    return _attempt_answer(args, client.call("/access_codes/update", body, method="PATCH"))


def _codes_delete(args: argparse.Namespace, client: ApiClient) -> int:
    answer = client.call("/access_codes/delete", {"access_code_id": args.access_code_id},
                         method="DELETE")
    return _attempt_answer(args, answer)


def _codes_pull_backup(args: argparse.Namespace, client: ApiClient) -> int:
    answer = client.call("/access_codes/pull_backup_access_code",
                         {"access_code_id": args.access_code_id}, method="POST")
    if args.json:
        return _print_json(answer)
    backup = answer["backup_access_code"]
    # The point of pulling a backup is to hand its PIN to the guest, so it is shown here.
    print(f"backup {backup['access_code_id']}: PIN {backup['code']}, ends "
          f"{backup['ends_at'] or '-'}")
    return 0


# -- unmanaged codes --------------------------------------------------------------------------


def _unmanaged_list(args: argparse.Namespace, client: ApiClient) -> int:
    device_id = client.device(args.device)["device_id"]
    codes = client.call("/access_codes/unmanaged/list", {"device_id": device_id})
    if args.json:
        return _print_json(codes["access_codes"])
    _table(["access code id", "name", "pin", "can manage", "can delete"], [
        [c["access_code_id"], c["name"] or "", _mask(c["code"]),
         "no" if c["cannot_be_managed"] else "yes",
         "no" if c["cannot_delete_unmanaged_access_code"] else "yes"]
        for c in codes["access_codes"]])
    return 0


def _unmanaged_convert(args: argparse.Namespace, client: ApiClient) -> int:
    client.call("/access_codes/unmanaged/convert_to_managed",
                {"access_code_id": args.access_code_id}, method="PATCH")
    if args.json:
        return _print_json({"ok": True})
    print(f"{args.access_code_id} is now managed")
    return 0


def _unmanaged_delete(args: argparse.Namespace, client: ApiClient) -> int:
    answer = client.call("/access_codes/unmanaged/delete",
                         {"access_code_id": args.access_code_id}, method="DELETE")
    return _attempt_answer(args, answer)


# -- the client -----------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer from the API."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message} (HTTP {status})")


class ApiClient:
    """A small blocking client for the local API (the CLI needs nothing more)."""

    def __init__(self, base_url: str, key: str, timeout_s: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._timeout = timeout_s
        self._tls = tls

    def call(self, path: str, params: dict[str, Any], method: str = "GET") -> dict[str, Any]:
        """Call a route: query string for GET/DELETE, JSON body otherwise."""
        url = self.base_url + path
        data = None
        headers = {"Authorization": f"Bearer {self._key}"}
        if method in ("GET", "DELETE"):
            if params:
                url += "?" + urllib.parse.urlencode(params, doseq=True)
        else:
            data = json.dumps(params).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout,
                                        context=self._tls) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
            except (ValueError, KeyError, TypeError):
                error = {"type": "http_error", "message": str(exc.reason)}
            raise ApiError(exc.code, error.get("type", "?"), error.get("message", "")) \
                from None

    def device(self, device: str) -> dict[str, Any]:
        """A device by id or by name."""
        key = "device_id" if _is_uuid(device) else "name"
        answer: dict[str, Any] = self.call("/devices/get", {key: device})["device"]
        return answer


def client_for(loaded: LoadedConfig, api_key: str | None = None) -> ApiClient:
    """A client for the daemon of this configuration, with the CLI's own key if none given."""
    config = loaded.config
    port_file = config.state_dir / PORT_FILE
    port = int(port_file.read_text()) if port_file.exists() else config.api.port
    host = config.api.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    key = api_key or os.environ.get(ENV_KEY) or _cli_key(loaded)
    cert = config.api.tls_cert_file
    if cert is None:
        return ApiClient(f"http://{host}:{port}", key)
    return ApiClient(f"https://{host}:{port}", key, tls=client_tls(cert))


def _cli_key(loaded: LoadedConfig) -> str:
    """The key the CLI made for itself, kept beside the database (which holds as much)."""
    path = loaded.config.state_dir / CLI_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    _, key = asyncio.run(_create_key(loaded, "lockbridge CLI"))
    loaded.config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


# -- plumbing -------------------------------------------------------------------------------


def _command(sub: Any, name: str, help_text: str,
             func: Callable[..., int], api: bool = False,
             json_flag: bool = True) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.add_argument("-c", "--config", type=Path, required=True)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    if api:
        parser.add_argument("--api-key", help=f"API key (default: ${ENV_KEY}, or the CLI's "
                                              "own key in the state directory)")
    parser.set_defaults(func=_runner(func, api))
    return parser


def _runner(func: Callable[..., int], api: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            loaded = load_config(args.config)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem.render(exc.path), file=sys.stderr)
            return EXIT_CONFIG
        if not api:
            return func(args, loaded)
        try:
            return func(args, client_for(loaded, args.api_key))
        except ApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_API
        except (urllib.error.URLError, OSError) as exc:
            print(f"error: cannot reach the lockbridge API ({exc}); is the daemon running "
                  "with api.enabled?", file=sys.stderr)
            return EXIT_API

    return run


def _code_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--code", help="the PIN (default: one that fits the lock)")
    parser.add_argument("--starts-at", help="ISO 8601 with a time zone; makes it time-bound")
    parser.add_argument("--ends-at", help="ISO 8601 with a time zone")


def _code_body(args: argparse.Namespace) -> dict[str, Any]:
    fields = {"name": args.name, "code": args.code, "starts_at": args.starts_at,
              "ends_at": args.ends_at}
    return {k: v for k, v in fields.items() if v is not None}


def _attempt_answer(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    if args.json:
        return _print_json(answer)
    attempt = answer["action_attempt"]
    print(f"action attempt {attempt['action_attempt_id']} ({attempt['action_type']}): "
          f"{attempt['status']}")
    return 0


def _code_table(codes: Sequence[dict[str, Any]]) -> None:
    _table(["access code id", "name", "pin", "status", "type", "window", "issues"], [
        [c["access_code_id"], c["name"] or "", _mask(c["code"]), c["status"], c["type"],
         f"{c['starts_at']}..{c['ends_at']}" if c["starts_at"] else "-", _issues(c)]
        for c in codes])


def _issues(thing: dict[str, Any]) -> str:
    codes = [e.get("error_code", "") for e in thing.get("errors", [])]
    codes += [w.get("warning_code", "") for w in thing.get("warnings", [])]
    return ", ".join(codes)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _print_json(value: Any) -> int:
    print(json.dumps(value, indent=2))
    return 0


def _mask(pin: str | None) -> str:
    return "?" if not pin else "*" * len(pin)


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
