"""Pieces the fleet tests share: a backend replica as a task, in-process bridge links, and
comparing what PostgreSQL holds with each bridge's own store."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bridge.clock import SystemClock
from bridge.config import NatsUpstreamConfig
from bridge.fleet.service import FleetReplica, FleetSettings
from bridge.stateview import StateView
from bridge.upstream.nats_link import NatsLink
from bridge.upstream.nats_state import render_state
from bridge.upstream.nats_subjects import FleetNames
from tests.harness import Harness
from tests.nats_cluster import BACKEND_PASSWORD, BACKEND_USER, NatsCluster, password_file

API_KEY = "seam_fleet_testkey_0123456789"
NAMES = FleetNames()


@dataclass
class RunningReplica:
    """A backend replica running as a task (tests/fleet_processes.py runs one as a process,
    for a real SIGKILL)."""

    replica: FleetReplica
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.replica.port}"

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 15)


async def start_replica(cluster: NatsCluster, dsn: str, *, replicas: int = 1,
                        stale_after_s: float = 2.0, ack_wait_s: float = 2.0,
                        resend_after_s: float = 30.0) -> RunningReplica:
    settings = FleetSettings(nats_servers=cluster.urls, dsn=dsn, api_key=API_KEY,
                             listen_port=0, nats_user=BACKEND_USER,
                             nats_password=BACKEND_PASSWORD, replicas=replicas,
                             stale_after_s=stale_after_s, command_timeout_s=20.0,
                             ack_wait_s=ack_wait_s, pool_size=4,
                             resend_after_s=resend_after_s, resend_every_s=0.2)
    replica = FleetReplica(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(replica.run(stop), name="fleet-replica")
    ready = asyncio.create_task(replica.ready.wait())
    await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    assert replica.ready.is_set(), "replica did not start"
    return RunningReplica(replica, task, stop)


def link_config(cluster: NatsCluster, root: Path, bridge: str,
                **overrides: Any) -> NatsUpstreamConfig:
    values: dict[str, Any] = {
        "kind": "nats", "servers": [n.ws_url for n in cluster.nodes], "user": bridge,
        "password_file": password_file(root, bridge), "backoff_base_s": 0.05,
        "backoff_cap_s": 0.5, "connect_timeout_s": 2, "publish_timeout_s": 3,
        "heartbeat_s": 0.3, "command_ack_wait_s": 2}
    values.update(overrides)
    return NatsUpstreamConfig.model_validate(values)


@dataclass
class RunningBridge:
    """An engine harness with its NATS link running as a task."""

    bridge_id: str
    harness: Harness
    link: NatsLink
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 20)


async def start_bridge(h: Harness, config: NatsUpstreamConfig, bridge_id: str) -> RunningBridge:
    link = NatsLink(config, h.store, h.engine, SystemClock(), bridge_id)
    await link.prepare()
    return RunningBridge(bridge_id, h, link,
                         asyncio.create_task(link.run(), name=f"link-{bridge_id}"))


async def pg_rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(sql.encode(), args)
        return list(await cursor.fetchall())


async def backend_equals_bridge(dsn: str, bridge: RunningBridge) -> bool:
    """The bridge's present as the backend holds it equals the bridge's own state."""
    want = render_state(StateView(bridge.harness.engine), NAMES, bridge.bridge_id)
    got: dict[str, bytes] = {}
    for kind, object_id, body in await pg_rows(
            dsn, "SELECT 'device', device_id, body FROM devices WHERE bridge_id = %s "
            "AND body IS NOT NULL UNION ALL SELECT CASE WHEN managed THEN 'code' "
            "ELSE 'unmanaged' END, access_code_id, body FROM access_codes "
            "WHERE bridge_id = %s AND body IS NOT NULL", bridge.bridge_id, bridge.bridge_id):
        key = f"{bridge.bridge_id}.{kind}.{object_id}"
        got[key] = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return got == want


async def backend_events(dsn: str, bridge_id: str) -> list[str]:
    return [r[0] for r in await pg_rows(
        dsn, "SELECT event_id FROM events WHERE bridge_id = %s ORDER BY sequence_number",
        bridge_id)]


async def bridge_events(bridge: RunningBridge) -> list[str]:
    events = await bridge.harness.store.read(lambda r: r.events(0, 1_000_000))
    return [e.event_id for e in events]
