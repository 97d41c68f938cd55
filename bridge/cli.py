"""`lockbridge` command line: run, check-config, status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
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
    argv = sys.argv[1:] if argv is None else list(argv)
    # The daemon and the store's own commands need none of the extensions' imports (the API
    # client, doctor, the upstream tools): leaving them out makes `run` start sooner and smaller.
    parser = _parser(extensions=not (argv and argv[0] in _CORE_COMMANDS))
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


def _parser(extensions: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockbridge", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, required=True)
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--accept-fresh-state", action="store_true",
                     help="start over although the state this bridge had is gone "
                          "(docs/reliability.md)")
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)

    restore = sub.add_parser("restore", help="put the encrypted state backup back in place of "
                             "a lost database (the daemon stopped)")
    restore.add_argument("-c", "--config", type=Path, required=True)
    source = restore.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", type=Path,
                        help="the backup file (default: store.backup_path)")
    source.add_argument("--from-upstream", action="store_true",
                        help="rebuild the managed codes from the upstream at the next start, "
                             "adopting those found on the locks")
    restore.set_defaults(func=_restore)

    status = sub.add_parser("status", help="devices and codes from the store (PINs masked)")
    status.add_argument("-c", "--config", type=Path, required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
    for name in _EXTENSIONS if extensions else ():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        register = getattr(module, "add_parsers", None) or module.add_parser
        register(sub)
    return parser


# Subcommands defined here, parsed without importing the extensions.
_CORE_COMMANDS = frozenset({"run", "check-config", "restore", "status"})
# Modules that add subcommands with `add_parsers(subparsers)`; absent ones are skipped.
_EXTENSIONS = ("bridge.doctor", "bridge.api.cli", "bridge.upstream.cli",
               "bridge.reservations.cli", "drivers.matter.cli", "bridge.fleet.cli")


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
    # Start-up makes about a million objects that live as long as the daemon (its
    # configuration, modules, 30,000 codes): the cyclic collector walking them again and again
    # while they are made cost about 0.1 s of CPU. The daemon freezes them and turns it back on
    # once started (`daemon.serve`).
    gc.disable()
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    logs.setup(args.log_level or loaded.config.logging.level)
    from bridge.daemon import serve

    # Lost state is a StartupError: `main` prints it as one line with the way out.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(loaded, accept_fresh_state=args.accept_fresh_state))
    return 0


def _restore(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    from bridge.daemon import state_db
    from bridge.secrets import key_path
    from bridge.statebackup import BackupError, restore_state

    config = loaded.config
    if _daemon_running(config.state_dir, config.api.host):
        print("lockbridge is running on this state directory: stop it first "
              "(systemctl stop lockbridge)", file=sys.stderr)
        return 1
    if args.from_upstream:
        return _prepare_upstream_restore(loaded)
    source = args.source or config.store.backup_path
    if source is None:
        print("nothing to restore from: give --from PATH or set store.backup_path",
              file=sys.stderr)
        return 1
    key_file = key_path(config.store.key_file, config.state_dir)
    if not key_file.exists():
        print(f"the PIN key {key_file} is missing: the backup is sealed under it, so put the "
              "old box's key there first", file=sys.stderr)
        return 1
    db = state_db(config.state_dir)
    try:
        done = restore_state(source, db, key_file.read_bytes())
    except (BackupError, OSError) as exc:
        print(f"cannot restore from {source}: {exc}", file=sys.stderr)
        return 1
    kept = f"; the database it replaced is kept as {done.replaced}" if done.replaced else ""
    print(f"restored {db} from {source}: {done.devices} locks, {done.managed_codes} managed "
          f"codes, events up to {done.newest_seq}{kept}. Start lockbridge: it reads the locks "
          "back before changing anything, and continues the upstream's sequence numbers")
    return 0


def _prepare_upstream_restore(loaded: LoadedConfig) -> int:
    from bridge.daemon import open_store, state_db
    from bridge.statebackup import set_aside
    from bridge.upstreamrestore import prepare

    upstream = loaded.config.upstream
    if upstream is None:
        print("no upstream is configured to restore from: use --from PATH or store.backup_path",
              file=sys.stderr)
        return 1
    db = state_db(loaded.config.state_dir)
    replaced = set_aside(db)

    async def make() -> None:
        async with open_store(loaded) as store:
            await store.write(prepare)

    asyncio.run(make())
    kept = f" (the database it replaced is kept as {replaced})" if replaced else ""
    print(f"{db} is ready for a restore from {upstream.host()}{kept}. Start lockbridge: it "
          "fetches the managed codes, finds each on its lock without writing it again, and "
          "writes only those it does not find")
    return 0


def _daemon_running(state_dir: Path, host: str) -> bool:
    """True when a daemon's API answers on the port it recorded in this state directory (a
    daemon without its API is not seen: the operator is told to stop it first)."""
    import socket

    try:
        port = int((state_dir / "api.port").read_text())
    except (OSError, ValueError):
        return False
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _status(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    from bridge.daemon import open_store, state_db

    # Checked before the store is built, which makes the PIN key: a key without a database
    # means lost state to `run`, and `status` on a new box must not fake that.
    if not state_db(loaded.config.state_dir).exists():
        print(f"no state yet in {loaded.config.state_dir}: has the daemon run?", file=sys.stderr)
        return 1
    store = open_store(loaded)
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
