"""Run every benchmark scenario, print a table and write it as JSON (bench/results/latest.json).

    .venv/bin/python -m bench.run            # default sizes (radio: the zwave-js mock, minutes;
                                             # zigbee_radio: the zigpy fake, seconds)
    .venv/bin/python -m bench.run --tiny     # seconds; what the test suite's smoke test runs
    .venv/bin/python -m bench.run --scale 10 100 1000 5000 --only scale

Every figure is measured against a bare baseline in the same run; nothing here is a timed assert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import api_bench, radio_bench, scenarios, upstream_bench, zigbee_radio_bench
from bench.report import table

SIZES: dict[str, dict[str, Any]] = {
    "default": {"locks": 1000, "codes_per_lock": 30, "baseline_locks": 100,
                "scale": [10, 100, 1000], "steady_s": 60.0, "churn_codes": 100_000,
                "startup_locks": 1000, "startup_codes": 30, "api_requests": 2000,
                "replay_events": 100_000, "round_trips": 500,
                "radio_codes": 30, "radio_slots": 250, "radio_hours": 24},
    "tiny": {"locks": 3, "codes_per_lock": 4, "baseline_locks": 3, "scale": [2, 4],
             "steady_s": 0.5, "churn_codes": 300, "startup_locks": 3, "startup_codes": 3,
             "api_requests": 20, "replay_events": 200, "round_trips": 10,
             "radio_codes": 2, "radio_slots": 10, "radio_hours": 2},
}
SCENARIOS = ("cold_converge", "scale", "steady_state", "schedule_churn", "startup",
             "api_latency", "upstream_replay", "radio", "zigbee_radio")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the scenarios, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="scenarios to run")
    parser.add_argument("--locks", type=int, help="locks for cold converge and steady state")
    parser.add_argument("--codes-per-lock", type=int, help="codes per lock")
    parser.add_argument("--scale", type=int, nargs="+", help="lock counts of the scale curve")
    parser.add_argument("--steady-seconds", type=float, help="idle time measured")
    parser.add_argument("--churn-codes", type=int, help="time-bound codes in schedule churn")
    parser.add_argument("--replay-events", type=int, help="events queued for upstream replay")
    parser.add_argument("--only-scale-point", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args(argv)
    size = dict(SIZES["tiny" if args.tiny else "default"])
    for key, value in (("locks", args.locks), ("codes_per_lock", args.codes_per_lock),
                       ("scale", args.scale), ("steady_s", args.steady_seconds),
                       ("churn_codes", args.churn_codes),
                       ("replay_events", args.replay_events)):
        if value is not None:
            size[key] = value
    if args.only_scale_point:
        point = asyncio.run(scenarios.scale_point(args.only_scale_point, size["codes_per_lock"]))
        print(json.dumps(point))
        return 0
    wanted = set(args.only or SCENARIOS)
    results: dict[str, Any] = {}
    known_points: dict[int, dict[str, Any]] = {}
    if "cold_converge" in wanted or "steady_state" in wanted:
        # Steady state is measured on the bridge cold converge just filled.
        _progress("cold_converge + steady_state", size)
        converged = asyncio.run(scenarios.cold_converge(
            size["locks"], size["codes_per_lock"], size["baseline_locks"],
            idle_s=size["steady_s"] if "steady_state" in wanted else 0.0))
        steady = converged.pop("steady_state", None)
        # Cold converge ran first in this process, so its peak RSS is a scale point's.
        known_points[size["locks"]] = {"locks": size["locks"], "wall_s": converged["wall_s"],
                                       "peak_rss_mb": converged["peak_rss_mb"]}
        if "cold_converge" in wanted:
            results["cold_converge"] = converged
        if steady is not None:
            results["steady_state"] = steady
    if "scale" in wanted:
        _progress("scale", size)
        results["scale"] = scenarios.scale(size["scale"], size["codes_per_lock"],
                                           known_points)
    if "schedule_churn" in wanted:
        _progress("schedule_churn", size)
        results["schedule_churn"] = scenarios.schedule_churn(size["churn_codes"])
    if "startup" in wanted:
        _progress("startup", size)
        results["startup"] = scenarios.startup(size["startup_locks"], size["startup_codes"])
    if "api_latency" in wanted:
        _progress("api_latency", size)
        results["api_latency"] = asyncio.run(api_bench.api_latency(size["api_requests"]))
    if "upstream_replay" in wanted:
        _progress("upstream_replay", size)
        results["upstream_replay"] = _upstream(size["replay_events"], size["round_trips"])
    if "radio" in wanted:
        _progress("radio", size)
        results["radio"] = asyncio.run(radio_bench.radio(
            size["radio_codes"], size["radio_slots"], size["radio_hours"]))
    if "zigbee_radio" in wanted:
        _progress("zigbee_radio", size)
        results["zigbee_radio"] = asyncio.run(zigbee_radio_bench.zigbee_radio(
            size["radio_codes"], size["radio_slots"], size["radio_hours"]))
    doc = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(),
           "sizes": size, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(table(doc))
    print(f"\nwritten to {args.out}")
    return 0


def _upstream(events: int, round_trips: int) -> dict[str, Any]:
    replay = asyncio.run(upstream_bench.upstream_replay(events))
    rtt = asyncio.run(upstream_bench.upstream_command_rtt(round_trips))
    return {
        "events": int(replay["events"]),
        "events_per_s": round(replay["replay_events_per_s"]),
        "baseline_events_per_s": round(replay["bare_ws_events_per_s"]),
        # Throughput ratio, lockbridge over the bare loop (the target: >= 0.3).
        "ratio": round(replay["bare_ws_s"] / replay["replay_s"], 3),
        "into_reference_upstream_events_per_s": round(
            replay["reference_upstream_events_per_s"]),
        "command_rtt_p50_ms": round(rtt["rtt_p50_ms"], 2),
        "command_rtt_p95_ms": round(rtt["rtt_p95_ms"], 2),
        "baseline_command_rtt_p50_ms": round(rtt["bare_ws_rtt_p50_ms"], 3),
    }


def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return (f"{platform.machine()} {model}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def _progress(name: str, size: dict[str, Any]) -> None:
    print(f"running {name} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
