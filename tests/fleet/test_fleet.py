"""`lockbridge fleet` on one nats-server and a PostgreSQL database of its own: migrations, the
bridge's events and present written once, the Seam SDK listing devices across bridges and
creating a code routed to the right bridge (checked on the lock), and `bridge_disconnected`
with the time the bridge was last seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import cast

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from nats.js import JetStreamContext
from seam.seam import AsyncSeam

from bridge.clock import SystemClock
from bridge.fleet.api import FleetApi, disconnected_error
from bridge.fleet.db import BridgeSeen, FleetDb, StateChange
from bridge.fleet.schema import MIGRATIONS, migrate
from bridge.upstream.nats_subjects import FleetNames
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
    start_replica,
)
from tests.fleet_postgres import fresh_database
from tests.harness import Harness
from tests.nats_cluster import NatsCluster
from tests.upstream_helpers import eventually, unlock_events

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster.build(tmp_path / "nats", ["east", "west"], size=1)
    await cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def dsn(tmp_path: Path) -> Iterator[str]:
    with fresh_database(tmp_path / "pg") as conninfo:
        yield conninfo


async def test_migrations_apply_once_in_one_transaction(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        assert await migrate(conn) == [n for n, _ in MIGRATIONS]
        assert await migrate(conn) == []
        cursor = await conn.execute("SELECT count(*) FROM schema_migrations")
        assert (await cursor.fetchone()) == (len(MIGRATIONS),)


def test_bridge_disconnected_shows_when_quiet_or_gone() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    stale = timedelta(seconds=15)
    fresh = BridgeSeen("east", now - timedelta(seconds=5), "up")
    assert disconnected_error(fresh, now, stale) is None
    quiet = disconnected_error(BridgeSeen("east", now - timedelta(seconds=16), "up"), now,
                               stale)
    assert quiet is not None and quiet["error_code"] == "bridge_disconnected"
    assert quiet["is_bridge_error"] is True and quiet["last_seen_at"] == "2026-12-02T11:59:44.000Z"
    assert disconnected_error(BridgeSeen("east", now, "down"), now, stale) is not None


@pytest.fixture
async def east_west(tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness]]:
    (tmp_path / "east").mkdir()
    (tmp_path / "west").mkdir()
    east = await make_harness(tmp_path / "east", [SimLockSpec(lock_id="e1", name="East door")])
    west = await make_harness(tmp_path / "west", [SimLockSpec(lock_id="w1", name="West door")])
    try:
        yield east, west
    finally:
        await stop_harness(east)
        await stop_harness(west)


async def test_backend_across_two_bridges(east_west: tuple[Harness, Harness],
                                          node: NatsCluster, dsn: str,
                                          tmp_path: Path) -> None:
    east, west = east_west
    replica = await start_replica(node, dsn)
    bridges = [await start_bridge(east, link_config(node, tmp_path, "east"), "east"),
               await start_bridge(west, link_config(node, tmp_path, "west"), "west")]
    try:
        await unlock_events(east.engine, east.device_id("e1"), 4)
        for bridge in bridges:
            await eventually(partial(_events_equal, dsn, bridge), timeout=20,
                             what=f"events of {bridge.bridge_id}")
            await eventually(partial(backend_equals_bridge, dsn, bridge), timeout=20,
                             what=f"present of {bridge.bridge_id}")
        async with AsyncSeam(api_key=API_KEY, endpoint=replica.url) as seam:
            devices = await seam.devices.list()
            assert {d.display_name for d in devices} == {"East door", "West door"}
            assert all(not d.errors for d in devices)
            west_id = west.device_id("w1")
            create = asyncio.create_task(seam.access_codes.create(
                device_id=west_id, name="Guest", code="8642"))
            # The bridge's engine runs on a fake clock: let it work while the SDK waits.
            await eventually(lambda: _settled_after(create, west), timeout=30,
                             what="the create answered")
            code = create.result()
            assert code.device_id == west_id and code.code == "8642"
            assert "8642" in [s.pin for s in west.driver.lock("w1").slots.values()]
            await eventually(lambda: backend_equals_bridge(dsn, bridges[1]), timeout=20,
                             what="the new code in the backend")
            listed = await seam.access_codes.list(device_id=west_id)
            assert [c.access_code_id for c in listed] == [code.access_code_id]
            # East goes away (a clean stop says so at once); its devices show it, west's not.
            await bridges[0].stop()

            async def east_shown_disconnected() -> bool:
                by_name = {d.display_name: d for d in await seam.devices.list()}
                errors = [e.get("error_code") if isinstance(e, dict) else e.error_code
                          for e in by_name["East door"].errors]
                return errors == ["bridge_disconnected"] and not by_name["West door"].errors

            await eventually(east_shown_disconnected, timeout=20, what="east disconnected")
            bridges[0] = await start_bridge(east, link_config(node, tmp_path, "east"), "east")

            async def east_back() -> bool:
                return all(not d.errors for d in await seam.devices.list())

            await eventually(east_back, timeout=20, what="east back")
    finally:
        for bridge in bridges:
            await bridge.stop()
        await replica.stop()


async def _events_equal(dsn: str, bridge: RunningBridge) -> bool:
    return sorted(await backend_events(dsn, bridge.bridge_id)) == sorted(
        await bridge_events(bridge))


async def _settled_after(task: asyncio.Task[object], h: Harness) -> bool:
    await h.settle()
    return task.done()


async def test_a_command_recorded_but_never_published_is_sent_once(
        east_west: tuple[Harness, Harness], node: NatsCluster, dsn: str,
        tmp_path: Path) -> None:
    """A replica that dies between recording a create and publishing it (the record commits,
    the publish never happens) leaves the command to the others: it reaches its bridge, is
    applied once and gets its one result. Before the resender it stayed without a result."""
    east, _ = east_west
    replica = await start_replica(node, dsn, resend_after_s=0.5)
    bridge = await start_bridge(east, link_config(node, tmp_path, "east"), "east")
    try:
        await eventually(lambda: backend_equals_bridge(dsn, bridge), timeout=20,
                         what="east's present")
        # What the dead replica's request left: the record, and nothing published.
        await replica.replica.db.add_command("cmd-orphan-1", "east", {
            "action": "access_codes.create", "device_id": east.device_id("e1"),
            "name": "Orphan", "code": "5173"})

        async def answered() -> bool:
            await east.settle()
            return bool(await pg_rows(dsn, "SELECT 1 FROM command_results "
                                      "WHERE command_id = 'cmd-orphan-1' AND ok"))

        await eventually(answered, timeout=30, what="the orphaned command's result")
        assert [c.name for c in east.engine.codes.values()] == ["Orphan"]
        assert "5173" in east.slots("e1").values()
        published = await pg_rows(dsn, "SELECT published_at IS NOT NULL FROM commands "
                                  "WHERE command_id = 'cmd-orphan-1'")
        assert published == [(True,)]
        assert await replica.replica.db.unpublished(0.0, 3600.0) == []
    finally:
        await bridge.stop()
        await replica.stop()


async def test_a_device_id_two_bridges_report_is_refused_not_guessed(dsn: str) -> None:
    """Bridges derive device ids from driver and lock ids, so two properties can report the
    same one. A create on it used to go to whichever bridge sorted first (another property's
    door); it is refused, and nothing is recorded or sent."""
    db = FleetDb(dsn, max_size=2)
    await db.open()
    try:
        await db.apply_state([
            StateChange(bridge, "device", "dev-shared", n, {"device_id": "dev-shared",
                                                              "display_name": bridge})
            for n, bridge in enumerate(("east", "west"), start=1)])
        api = FleetApi(db, cast(JetStreamContext, None), FleetNames(), SystemClock(),
                       api_key=API_KEY, stale_after_s=15.0, command_timeout_s=1.0)
        async with TestClient(TestServer(api.app())) as client:
            auth = {"Authorization": f"Bearer {API_KEY}"}
            for path, body in (("/access_codes/create", {"device_id": "dev-shared",
                                                         "name": "Guest"}),
                               ("/devices/get", {"device_id": "dev-shared"})):
                response = await client.post(path, json=body, headers=auth)
                error = (await response.json())["error"]
                assert (response.status, error["type"]) == (409, "ambiguous_device"), path
                assert error["data"] == {"bridge_ids": ["east", "west"]}
        assert await pg_rows(dsn, "SELECT count(*) FROM commands") == [(0,)]
    finally:
        await db.close()
