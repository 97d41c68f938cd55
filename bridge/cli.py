"""`lockbridge` command line: run, check-config, status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge import logs
from bridge.config import ConfigError, LoadedConfig, load_config
from bridge.startup import EXIT_STARTUP, StartupError, startup_errors

# The configuration file is wrong (each problem as FILE:LINE); the unit does not restart on it.
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lockbridge` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        result: int = args.func(args)
    except (StartupError, BaseExceptionGroup) as exc:
        errors = startup_errors(exc)
        if not errors:
            raise
        for error in errors:
            print(error.line(), file=sys.stderr)
        return EXIT_STARTUP
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockbridge", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, required=True)
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)

    status = sub.add_parser("status", help="devices and codes from the store (PINs masked)")
    status.add_argument("-c", "--config", type=Path, required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
    for name in _EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        register = getattr(module, "add_parsers", None) or module.add_parser
        register(sub)
    return parser


# Modules that add subcommands with `add_parsers(subparsers)`; absent ones are skipped.
_EXTENSIONS = ("bridge.doctor", "bridge.api.cli", "bridge.upstream.cli")


def _load(path: Path) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(exc.path), file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    loaded = _load(args.file)
    if loaded is None:
        return EXIT_CONFIG
    print(f"{args.file}: ok ({len(loaded.drivers)} drivers, {len(loaded.config.codes)} "
          "declared codes)")
    return 0


def _run(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    logs.setup(args.log_level or loaded.config.logging.level)
    from bridge.daemon import serve

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(loaded))
    return 0


def _status(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    from bridge.daemon import open_store

    store = open_store(loaded)
    if not store.path.exists():
        print(f"no state yet in {loaded.config.state_dir}: has the daemon run?", file=sys.stderr)
        return 1
    store.open_sync()
    devices, codes = store.read_sync(lambda r: (r.devices(), r.codes()))
    if args.json:
        doc: list[dict[str, Any]] = []
        for d in devices:
            doc.append({
                "device_id": d.device_id, "display_name": d.display_name,
                "online": d.online, "errors": [e.code for e in d.errors],
                "warnings": [w.code for w in d.warnings],
                "access_codes": [_code_json(c) for c in codes if c.device_id == d.device_id],
            })
        print(json.dumps(doc, indent=2))
        return 0
    for d in devices:
        state = "online" if d.online else d.availability.value
        issues = ", ".join(e.code for e in (*d.errors, *d.warnings))
        print(f"{d.display_name}  [{state}]  {d.device_id}" + (f"  ({issues})" if issues else ""))
        for c in codes:
            if c.device_id != d.device_id:
                continue
            kind = "managed" if c.is_managed else "unmanaged"
            when = ""
            if c.starts_at and c.ends_at:
                when = f" {c.starts_at:%Y-%m-%d %H:%M}..{c.ends_at:%Y-%m-%d %H:%M}Z"
            flags = ", ".join(i.code for i in (*c.errors, *c.warnings))
            print(f"  slot {c.slot if c.slot is not None else '-':>3}  {_mask(c.code):<8} "
                  f"{c.status.value:<9} {kind:<9} {c.name or ''}{when}"
                  + (f"  ({flags})" if flags else ""))
    return 0


def _mask(pin: str | None) -> str:
    return "?" if not pin else "*" * len(pin)


def _code_json(c: Any) -> dict[str, Any]:
    return {"access_code_id": c.access_code_id, "name": c.name, "slot": c.slot,
            "status": c.status.value, "is_managed": c.is_managed, "code": _mask(c.code),
            "is_backup": c.is_backup,
            "errors": [e.code for e in c.errors], "warnings": [w.code for w in c.warnings]}


if __name__ == "__main__":
    raise SystemExit(main())
