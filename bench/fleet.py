"""The fleet scale run (a benchmark, not a test; docs/fleet.md, docs/performance.md).

N simulated bridges (real engines over simulated locks, each with its own SQLite store and a
real `NatsLink`) in this one process -> a real nats-server -> one `lockbridge fleet` replica ->
PostgreSQL. Each bridge commits `--events` keypad events; the end-to-end rate is events
committed on the bridges / seconds until every one is in PostgreSQL. In the same run, a bare
JetStream loop publishes and consumes the same number of messages of the same size (with
message ids, acked) with nothing around it: the ratio is what lockbridge costs. Commands go
through the backend's API to random bridges during the flow and must each get one result.

    python -m bench.fleet --bridges 10 50 200 --locks 30 --events 20

Every loop is bounded (`--timeout` per size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bridge.clock import FakeClock, SystemClock
from bridge.config import NatsUpstreamConfig
from bridge.daemon import EngineSettings, make_engine, start_drivers_then_load
from bridge.driver import DriverEvent, DriverEventKind
from bridge.fleet.service import FleetReplica, FleetSettings
from bridge.secrets import PinCipher
from bridge.store import Store
from bridge.upstream.nats_link import NatsLink
from bridge.upstream.nats_subjects import MSG_ID
from drivers.simulator import SimLockSpec, SimulatorDriver
from tests.fleet_postgres import fresh_database
from tests.nats_cluster import BACKEND_PASSWORD, BACKEND_USER, NatsCluster, password_file

API_KEY = "seam_fleet_bench_0123456789"


class Bridge:
    """One simulated gateway: an engine over simulated locks, its store and its NATS link."""

    def __init__(self, root: Path, bridge_id: str, locks: int) -> None:
        self.root = root
        self.bridge_id = bridge_id
        self.locks = locks
        self.store = Store(root / "lockbridge.db", PinCipher(random.randbytes(32)))
        clock = FakeClock()
        self.driver = SimulatorDriver("sim", [SimLockSpec(lock_id=f"l{j}", name=f"l{j}")
                                              for j in range(locks)], clock, None)
        # Built by the daemon's own composition root, started by it in `start`.
        self.engine = make_engine(self.store, clock, {"sim": self.driver},
                                  EngineSettings(default_spacing_s=0.0, command_timeout_s=30.0),
                                  rng=random.Random(7))
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, config: NatsUpstreamConfig) -> None:
        await self.store.open()

        await start_drivers_then_load(self.engine, {"sim": self.driver}, [])
        link = NatsLink(config, self.store, self.engine, SystemClock(), self.bridge_id)
        await link.prepare()
        self.tasks = [asyncio.create_task(self.engine.run()), asyncio.create_task(link.run())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()


def link_config(cluster: NatsCluster, root: Path, bridge_id: str) -> NatsUpstreamConfig:
    return NatsUpstreamConfig.model_validate({
        "kind": "nats", "servers": [n.ws_url for n in cluster.nodes], "user": bridge_id,
        "password_file": password_file(root, bridge_id), "backoff_base_s": 0.1,
        "backoff_cap_s": 2, "heartbeat_s": 5})


async def pg_rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(sql.encode())
        return list(await cursor.fetchall())


async def bare_loop(cluster: NatsCluster, count: int, size: int) -> float:
    """Messages/s of a bare publish (with message ids, acked) then pull-consume-ack loop."""
    nc = await cluster.backend()
    js = nc.jetstream()
    name = f"BARE{random.randrange(1 << 30)}"
    await js.add_stream(name=name, subjects=[f"bare.{name}"])
    payload = b"x" * size
    started = time.monotonic()
    for first in range(0, count, 500):
        await asyncio.gather(*(js.publish(f"bare.{name}", payload, headers={MSG_ID: str(i)})
                               for i in range(first, min(count, first + 500))))
    sub = await js.pull_subscribe(f"bare.{name}", durable="bare", stream=name)
    got = 0
    while got < count:  # bounded: every message was published above
        for msg in await sub.fetch(256, timeout=5):
            await msg.ack()
            got += 1
    rate = count / (time.monotonic() - started)
    await js.delete_stream(name)
    await nc.close()
    return rate


async def one_size(root: Path, bridges: int, locks: int, events: int, commands: int,
                   timeout: float) -> dict[str, Any]:
    ids = [f"b{i:03d}" for i in range(bridges)]
    cluster = NatsCluster.build(root / "nats", ids, size=1)
    await cluster.start()
    bridges_up: list[Bridge] = []
    try:
        with fresh_database(root / "pg") as dsn:
            replica = FleetReplica(FleetSettings(
                nats_servers=cluster.urls, dsn=dsn, api_key=API_KEY, listen_port=0,
                nats_user=BACKEND_USER, nats_password=BACKEND_PASSWORD, replicas=1,
                stale_after_s=30))
            stop = asyncio.Event()
            serving = asyncio.create_task(replica.run(stop))
            try:
                await asyncio.wait_for(replica.ready.wait(), 60)
                t0 = time.monotonic()
                for bridge_id in ids:
                    (root / bridge_id).mkdir()
                    bridge = Bridge(root / bridge_id, bridge_id, locks)
                    bridges_up.append(bridge)
                    await bridge.start(link_config(cluster, root, bridge_id))
                setup_s = time.monotonic() - t0
                baseline_events = await _count(dsn)
                started = time.monotonic()
                flow = [asyncio.create_task(_events(b, events)) for b in bridges_up]
                answered = await _commands(f"http://127.0.0.1:{replica.port}", bridges_up,
                                           commands)
                await asyncio.gather(*flow)
                committed = sum([len(await _stored(b)) for b in bridges_up])
                deadline = time.monotonic() + timeout
                while await _count(dsn) < committed:  # bounded by --timeout
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{bridges} bridges: events not all in PostgreSQL")
                    await asyncio.sleep(0.1)
                elapsed = time.monotonic() - started
                new_events = committed - baseline_events
                dupes = await pg_rows(dsn, "SELECT count(*) - count(DISTINCT event_id) "
                                      "FROM events")
                results = await pg_rows(dsn, "SELECT count(*) FROM command_results")
            finally:
                for bridge in bridges_up:
                    await bridge.stop()
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(serving, 30)
        bare = await bare_loop(cluster, max(new_events, 1000), 600)
    finally:
        cluster.stop()
    rate = new_events / elapsed
    return {"bridges": bridges, "locks": bridges * locks, "setup_s": round(setup_s, 1),
            "events": new_events, "seconds": round(elapsed, 2),
            "events_per_s": round(rate), "bare_per_s": round(bare),
            "ratio": round(rate / bare, 3), "duplicates": int(dupes[0][0]),
            "commands": commands, "answered_200": answered, "results": int(results[0][0])}


async def _events(b: Bridge, count: int) -> None:
    devices = list(b.engine.devices.values())
    for i in range(count):
        device = devices[i % len(devices)]
        await b.engine.on_driver_event(device.driver, DriverEvent(
            DriverEventKind.KEYPAD_USED, device.external_id, slot=1))


async def _commands(url: str, bridges: list[Bridge], count: int) -> int:
    ok = 0
    rng = random.Random(5)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        for n in range(count):
            device = rng.choice(list(rng.choice(bridges).engine.devices))
            async with http.post(url + "/access_codes/create",
                                 json={"device_id": device, "name": f"bench {n}"},
                                 timeout=aiohttp.ClientTimeout(total=60)) as response:
                ok += response.status == 200
    return ok


async def _stored(b: Bridge) -> list[str]:
    events = await b.store.read(lambda r: r.events(0, 10_000_000))
    return [e.event_id for e in events]


async def _count(dsn: str) -> int:
    return int((await pg_rows(dsn, "SELECT count(*) FROM events"))[0][0])


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--bridges", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--locks", type=int, default=30)
    parser.add_argument("--events", type=int, default=20, help="per bridge")
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for size in args.bridges:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            row = await one_size(Path(tmp), size, args.locks, args.events, args.commands,
                                 args.timeout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(sys.argv[1:])))
