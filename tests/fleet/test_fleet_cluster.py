"""End to end on a three-node NATS cluster (routes, JetStream replication 3): two bridges ->
cluster -> two backend replicas (real `lockbridge fleet` processes) -> PostgreSQL, with events
and commands flowing while one NATS node and one replica process are SIGKILLed. Afterwards
every event is in PostgreSQL exactly once, every command has exactly one result, and the
backend's present equals each bridge's."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.simulator import SimLockSpec
from tests.conftest import make_harness, stop_harness
from tests.fleet_helpers import (
    API_KEY,
    RunningBridge,
    backend_equals_bridge,
    backend_events,
    bridge_events,
    link_config,
    pg_rows,
    start_bridge,
)
from tests.fleet_postgres import fresh_database
from tests.fleet_processes import ReplicaProcess, start_replica_process
from tests.harness import Harness
from tests.nats_cluster import NatsCluster
from tests.upstream_helpers import eventually, unlock_events

pytestmark = [pytest.mark.timeout(280), pytest.mark.slow]
BRIDGES = ["north", "south"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    nodes = NatsCluster.build(tmp_path / "nats", BRIDGES, size=3)
    await nodes.start(timeout=60)
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def dsn(tmp_path: Path) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        yield stack.enter_context(fresh_database(tmp_path / "pg"))


@pytest.fixture
async def harnesses(tmp_path: Path) -> AsyncIterator[dict[str, Harness]]:
    made: dict[str, Harness] = {}
    for name in BRIDGES:
        (tmp_path / name).mkdir()
        made[name] = await make_harness(tmp_path / name, [
            SimLockSpec(lock_id=f"{name}-{i}", name=f"{name} {i}") for i in range(3)])
    try:
        yield made
    finally:
        for h in made.values():
            await stop_harness(h)


async def create(http: aiohttp.ClientSession, replica: ReplicaProcess, device_id: str,
                 name: str) -> tuple[int, dict[str, Any]]:
    async with http.post(replica.url + "/access_codes/create",
                         json={"device_id": device_id, "name": name},
                         timeout=aiohttp.ClientTimeout(total=40)) as response:
        return response.status, await response.json()


async def test_cluster_loses_a_node_and_a_replica_and_keeps_every_guarantee(
        cluster: NatsCluster, dsn: str, harnesses: dict[str, Harness],
        tmp_path: Path) -> None:
    rng = random.Random(3)
    answers: list[tuple[int, dict[str, Any]]] = []
    stop_flow = asyncio.Event()

    async def events_flow() -> None:
        while not stop_flow.is_set():  # until the test says the flow is over
            for h in harnesses.values():
                device = rng.choice(list(h.engine.devices))
                await unlock_events(h.engine, device, rng.randint(1, 3))
            await asyncio.sleep(0.02)

    async def commands_flow(http: aiohttp.ClientSession, replica: ReplicaProcess) -> None:
        n = 0
        while not stop_flow.is_set():  # until the test says the flow is over
            h = harnesses[BRIDGES[n % 2]]
            device = rng.choice(list(h.engine.devices))
            # Through the replica that will survive, so no request dies with its server.
            answers.append(await create(http, replica, device, f"Guest {n}"))
            n += 1
            await asyncio.sleep(0.05)

    async with contextlib.AsyncExitStack() as stack:
        # ack_wait 2 s: what the killed replica took and never acknowledged comes back soon.
        first, second = (start_replica_process(cluster, dsn, API_KEY, tmp_path, name,
                                               replicas=3, stale_after_s=2.0, ack_wait_s=2.0)
                         for name in ("replica-a", "replica-b"))
        stack.callback(first.kill)
        stack.callback(second.stop)
        await first.wait_ready()
        await second.wait_ready()
        bridges = []
        for name in BRIDGES:
            bridge = await start_bridge(harnesses[name], link_config(cluster, tmp_path, name),
                                        name)
            stack.push_async_callback(bridge.stop)
            bridges.append(bridge)
        http = await stack.enter_async_context(aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {API_KEY}"}))
        for bridge in bridges:
            await eventually(partial(backend_equals_bridge, dsn, bridge), timeout=30,
                             what=f"the first present of {bridge.bridge_id}")
        flows = [asyncio.create_task(events_flow()),
                 asyncio.create_task(commands_flow(http, second))]
        try:
            await eventually(lambda: len(answers) >= 5, timeout=30, what="commands flowing")
            cluster.nodes[1].kill()
            first.kill()  # SIGKILL: its fetched, unacknowledged batches go to the other
            assert first.proc.returncode == -9
            await eventually(lambda: len(answers) >= 15, timeout=60,
                             what="commands flowing after the kills")
        finally:
            stop_flow.set()
            await asyncio.gather(*flows, return_exceptions=True)
        for h in harnesses.values():
            await h.settle()
        for bridge in bridges:
            await eventually(partial(_events_once, dsn, bridge), timeout=40,
                             what=f"every event of {bridge.bridge_id} once")
            await eventually(partial(backend_equals_bridge, dsn, bridge), timeout=40,
                             what=f"the present of {bridge.bridge_id}")
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200]
    commands = {r[0] for r in await pg_rows(dsn, "SELECT command_id FROM commands")}
    results = await pg_rows(dsn, "SELECT command_id, ok FROM command_results")
    assert len(commands) == len(answers)
    assert sorted(c for c, _ in results) == sorted(commands), "one result per command"
    assert all(ok for _, ok in results)
    created = {a["access_code"]["access_code_id"] for _, a in answers}
    on_bridges = {c for h in harnesses.values() for c, code in h.engine.codes.items()
                  if (code.name or "").startswith("Guest")}
    assert created == on_bridges, "each command applied exactly once"


async def _events_once(dsn: str, bridge: RunningBridge) -> bool:
    got = await backend_events(dsn, bridge.bridge_id)
    return len(got) == len(set(got)) and sorted(got) == sorted(await bridge_events(bridge))
