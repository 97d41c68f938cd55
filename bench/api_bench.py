"""Benchmark of the local HTTP API: the real daemon in a subprocess, driven over HTTP.

    .venv/bin/python -m bench.api_bench [--locks 4] [--codes 100] [--reads 500] [--concurrency 8]

Measures read latency (p50/p95/p99 of /devices/list and /access_codes/list), create throughput,
the time until every created code is `set` on its simulated lock, and the daemon's peak RSS.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
bridge: {{id: api-bench}}
state_dir: {state}
logging: {{level: warning}}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
{locks}
"""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locks", type=int, default=4)
    parser.add_argument("--codes", type=int, default=100)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lockbridge-api-bench-") as tmp:
        results = _run(Path(tmp), args)
    print(json.dumps(results, indent=2))
    return 0


def _run(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    state = tmp / "state"
    config = tmp / "config.yaml"
    locks = "\n".join(f"      - {{id: l{i}, name: Lock {i}, slot_count: 250}}"
                      for i in range(args.locks))
    config.write_text(CONFIG.format(state=state, locks=locks))
    cli = [sys.executable, "-m", "bridge.cli"]
    key = subprocess.run([*cli, "api-key", "create", "-c", str(config)], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.strip()
    proc = subprocess.Popen([*cli, "run", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = state / "api.port"
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("daemon did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        results = asyncio.run(_drive(url, key, args))
        results["daemon_peak_rss_mb"] = _peak_rss_mb(proc.pid)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        results["shutdown_s"] = round(time.monotonic() - started, 3)
        return results
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _drive(url: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(url, headers=headers) as http:
        devices = (await _get(http, "/devices/list"))["devices"]
        device_ids = [d["device_id"] for d in devices]
        gate = asyncio.Semaphore(args.concurrency)

        async def create(n: int) -> str:
            async with gate:
                body = {"device_id": device_ids[n % len(device_ids)], "name": f"Bench {n}"}
                async with http.post("/access_codes/create", json=body) as answer:
                    doc = await answer.json()
                    assert answer.status == 200, doc
                    return str(doc["access_code"]["access_code_id"])

        started = time.perf_counter()
        created = await asyncio.gather(*(create(n) for n in range(args.codes)))
        create_s = time.perf_counter() - started
        while True:
            codes = (await _get(http, "/access_codes/list"))["access_codes"]
            if sum(1 for c in codes if c["status"] == "set") >= len(created):
                break
            await asyncio.sleep(0.05)
        all_set_s = time.perf_counter() - started

        latencies: dict[str, list[float]] = {"/devices/list": [], "/access_codes/list": []}

        async def read(path: str) -> None:
            async with gate:
                t0 = time.perf_counter()
                await _get(http, path)
                latencies[path].append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(read(path) for path in latencies for _ in range(args.reads)))
    return {
        "locks": args.locks, "codes": args.codes, "concurrency": args.concurrency,
        "create_per_s": round(args.codes / create_s, 1),
        "all_set_s": round(all_set_s, 3),
        "read_latency_ms": {path: _percentiles(values) for path, values in latencies.items()},
    }


async def _get(http: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    async with http.get(path) as answer:
        doc: dict[str, Any] = await answer.json()
        assert answer.status == 200, doc
        return doc


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2)}


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


if __name__ == "__main__":
    raise SystemExit(main())


async def api_latency(requests: int, locks: int = 10) -> dict[str, Any]:
    """Create-code-to-driver-call latency through the real daemon (in this process, so the
    driver call can be timed) against a bare aiohttp handler on the same loop.

    One request at a time, so what is measured is the path (HTTP, validation, the commit, the
    engine's wake-up, the intent's commit), not queueing.
    """
    from bridge.api.auth import create_key
    from bridge.config import load_config
    from bridge.daemon import Bridge, serve

    with tempfile.TemporaryDirectory(prefix="lockbridge-api-latency-") as tmp:
        config = Path(tmp) / "config.yaml"
        lines = "\n".join(f"      - {{id: l{i}, name: Lock {i}, slot_count: 250}}"
                          for i in range(locks))
        config.write_text(CONFIG.format(state=Path(tmp) / "state", locks=lines)
                          .replace("    state_file: sim.json\n", ""))
        stop = asyncio.Event()
        result: dict[str, Any] = {}

        async def measure(bridge: Bridge) -> None:
            try:
                result.update(await _latency_run(bridge, requests, create_key))
            finally:
                stop.set()

        await serve(load_config(config), on_ready=measure, stop=stop)
    result["baseline"] = await _bare_latency(requests)
    result["baseline_p50_ms"] = result["baseline"]["p50"]
    result["baseline_p99_ms"] = result.pop("baseline")["p99"]
    return result


async def _latency_run(bridge: Any, requests: int, create_key: Any) -> dict[str, Any]:
    _, key = await create_key(bridge.store, "bench", bridge.clock.now())
    driver = bridge.drivers["sim"]
    called: dict[str, float] = {}
    arrived: dict[str, asyncio.Event] = {}
    original = driver.write_code

    async def timed_write(external_id: str, code: Any) -> Any:
        called.setdefault(code.name, time.perf_counter())
        if code.name in arrived:
            arrived[code.name].set()
        return await original(external_id, code)

    driver.write_code = timed_write
    url = f"http://127.0.0.1:{bridge.extras['api_port']}"
    headers = {"Authorization": f"Bearer {key}"}
    device_ids = sorted(bridge.engine.devices)
    latencies: list[float] = []
    async with aiohttp.ClientSession(url, headers=headers) as http:
        for n in range(requests):
            name = f"b{n}"
            arrived[name] = asyncio.Event()
            started = time.perf_counter()
            body = {"device_id": device_ids[n % len(device_ids)], "name": name}
            async with http.post("/access_codes/create", json=body) as answer:
                assert answer.status == 200, await answer.text()
            async with asyncio.timeout(30):
                await arrived[name].wait()
            latencies.append((called[name] - started) * 1000)
    cuts = _percentiles(latencies)
    return {"requests": requests, "p50_ms": cuts["p50"], "p99_ms": cuts["p99"]}


async def _bare_latency(requests: int) -> dict[str, float]:
    """A bare aiohttp JSON handler on the same loop: request sent to handler entered."""
    from aiohttp import web

    entered: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        entered.append(time.perf_counter())
        body = await request.json()
        return web.json_response({"ok": True, "echo": body})

    app = web.Application()
    app.router.add_post("/access_codes/create", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for n in range(requests):
                started = time.perf_counter()
                async with http.post("/access_codes/create", json={"name": f"b{n}"}) as answer:
                    await answer.read()
                latencies.append((entered[-1] - started) * 1000)
    finally:
        await runner.cleanup()
    return _percentiles(latencies)
