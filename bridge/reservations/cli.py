"""`lockbridge runs`: the automation runs from the store, newest last (PINs never shown: a
run holds none). Works while the daemon runs."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from bridge.config import ConfigError, load_config
from bridge.reservations.records import AutomationRun, from_document, run_json

EXIT_CONFIG = 2


def add_parsers(sub: Any) -> None:
    """Register `runs`."""
    runs = sub.add_parser("runs", help="what each reservation push, delete or feed update did")
    runs.add_argument("-c", "--config", type=Path, required=True)
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
    runs.set_defaults(func=_runs)


def _runs(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(exc.path), file=sys.stderr)
        return EXIT_CONFIG
    from bridge.daemon import open_store, state_db

    if not state_db(loaded.config.state_dir).exists():
        print(f"no state yet in {loaded.config.state_dir}: has the daemon run?", file=sys.stderr)
        return 1
    store = open_store(loaded)
    store.open_sync()
    try:
        docs = store.read_sync(lambda r: r.documents("automation_runs"))
    except sqlite3.OperationalError:  # a store the daemon has not migrated yet: no runs
        docs = []
    runs = [from_document(AutomationRun, d) for d, _ in docs][-max(args.limit, 1):]
    if args.json:
        print(json.dumps([run_json(r) for r in runs], indent=2))
        return 0
    for run in runs:
        print(f"{run.created_at:%Y-%m-%d %H:%M:%S}Z  {run.trigger}  "
              f"{run.customer_key or '-'}  {run.automation_run_id}")
        for entry in run.entries:
            print(f"  {entry.device_id}  {entry.action}" + (f"  {entry.detail}"
                                                           if entry.detail else ""))
        for line in run.pin_substitutions:
            print(f"  PIN replaced: {line}")
        for line in run.errors:
            print(f"  error: {line}")
        for line in run.ignored:
            print(f"  ignored: {line}")
    return 0
