"""Run every benchmark scenario and print a table; also writes bench/results/latest.json.

    .venv/bin/python -m bench.run            # default sizes, under 5 minutes on 2 cores
    .venv/bin/python -m bench.run --tiny     # seconds; what the test suite's smoke test runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import scenarios

SIZES = {
    "default": {"locks": 100, "codes_per_lock": 30, "scale": [10, 100, 300],
                "steady_locks": 1000, "steady_codes": 30, "steady_s": 20.0,
                "churn_codes": 100_000, "startup_locks": 1000, "startup_codes": 30},
    "tiny": {"locks": 3, "codes_per_lock": 4, "scale": [2, 4], "steady_locks": 3,
             "steady_codes": 3, "steady_s": 0.5, "churn_codes": 300, "startup_locks": 3,
             "startup_codes": 3},
}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the scenarios, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--only-scale-point", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--codes-per-lock", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    if args.only_scale_point:
        point = asyncio.run(scenarios.scale_point(args.only_scale_point, args.codes_per_lock))
        print(json.dumps(point))
        return 0
    size = SIZES["tiny" if args.tiny else "default"]
    wanted = set(args.only or ["cold_converge", "scale", "steady_state", "schedule_churn",
                               "startup"])
    results: dict[str, Any] = {}
    if "cold_converge" in wanted:
        _progress("cold_converge")
        results["cold_converge"] = asyncio.run(
            scenarios.cold_converge(size["locks"], size["codes_per_lock"]))
    if "scale" in wanted:
        _progress("scale")
        results["scale"] = scenarios.scale(size["scale"], size["codes_per_lock"])
    if "steady_state" in wanted:
        _progress("steady_state")
        results["steady_state"] = asyncio.run(scenarios.steady_state(
            size["steady_locks"], size["steady_codes"], size["steady_s"]))
    if "schedule_churn" in wanted:
        _progress("schedule_churn")
        results["schedule_churn"] = scenarios.schedule_churn(size["churn_codes"])
    if "startup" in wanted:
        _progress("startup")
        results["startup"] = scenarios.startup(size["startup_locks"], size["startup_codes"])
    doc = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {platform.processor() or ''} "
                      f"python {platform.python_version()}", "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    for name, values in results.items():
        print(f"{name:16} {json.dumps(values)}")
    return 0


def _progress(name: str) -> None:
    print(f"running {name} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
